"""HybridEncoder: intra-scale transformer on the coarsest level + CCFF (FPN/PAN with ELAN blocks).

Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/zoo/dfine/hybrid_encoder.py, itself
modified from RT-DETR). Module names/order follow upstream so official checkpoints load.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.model.grad_layout import BatchNorm2d

__all__ = ["HybridEncoder", "make_activation", "sincos_position_embedding"]


def make_activation(act: str | None) -> nn.Module:
    """Activation by name, as the official configs spell them."""
    if act is None:
        return nn.Identity()
    table = {"silu": nn.SiLU, "swish": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU,
             "leaky_relu": nn.LeakyReLU, "hardsigmoid": nn.Hardsigmoid}
    if act.lower() not in table:
        raise ValueError(f"unknown activation {act!r}; choose from {sorted(table)}")
    return table[act.lower()]()


class ConvNormLayer(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation."""

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, stride: int, g: int = 1,
                 padding: int | None = None, act: str | None = None):
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, groups=g, padding=padding,
                              bias=False)
        self.norm = BatchNorm2d(ch_out)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class SCDown(nn.Module):
    """Spatial-channel decoupled downsampling: 1x1 conv, then depthwise strided conv."""

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        self.cv1 = ConvNormLayer(c1, c2, 1, 1)
        self.cv2 = ConvNormLayer(c2, c2, k, s, g=c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class VGGBlock(nn.Module):
    """RepVGG-style block: 3x3 conv-BN + 1x1 conv-BN, summed, then activation."""

    def __init__(self, ch_in: int, ch_out: int, act: str = "silu"):
        super().__init__()
        self.conv1 = ConvNormLayer(ch_in, ch_out, 3, 1, padding=1)
        self.conv2 = ConvNormLayer(ch_in, ch_out, 1, 1, padding=0)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv1(x) + self.conv2(x))


class CSPLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 3,
                 expansion: float = 1.0, act: str = "silu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormLayer(in_channels, hidden, 1, 1, act=act)
        self.conv2 = ConvNormLayer(in_channels, hidden, 1, 1, act=act)
        self.bottlenecks = nn.Sequential(*[VGGBlock(hidden, hidden, act) for _ in range(num_blocks)])
        self.conv3 = (ConvNormLayer(hidden, out_channels, 1, 1, act=act)
                      if hidden != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class RepNCSPELAN4(nn.Module):
    """CSP-ELAN block used for every FPN/PAN fusion in D-FINE."""

    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 3, act: str = "silu"):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = ConvNormLayer(c1, c3, 1, 1, act=act)
        self.cv2 = nn.Sequential(CSPLayer(c3 // 2, c4, n, 1, act=act),
                                 ConvNormLayer(c4, c4, 3, 1, act=act))
        self.cv3 = nn.Sequential(CSPLayer(c4, c4, n, 1, act=act),
                                 ConvNormLayer(c4, c4, 3, 1, act=act))
        self.cv4 = ConvNormLayer(c3 + 2 * c4, c2, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.append(self.cv2(y[-1]))
        y.append(self.cv3(y[-1]))
        return self.cv4(torch.cat(y, 1))


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (AIFI)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = make_activation(activation)

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        q = k = src if pos_embed is None else src + pos_embed
        attn, _ = self.self_attn(q, k, value=src)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class TransformerEncoder(nn.Module):
    def __init__(self, encoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed=pos_embed)
        return src


def sincos_position_embedding(w: int, h: int, embed_dim: int = 256,
                              temperature: float = 10000.0) -> torch.Tensor:
    """2-D sin-cos position embedding [1, w*h, embed_dim], laid out as upstream (w-major grid)."""
    if embed_dim % 4 != 0:
        raise ValueError(f"embed_dim must be divisible by 4 for 2-D sin-cos embedding, got {embed_dim}")
    grid_w, grid_h = torch.meshgrid(torch.arange(int(w), dtype=torch.float32),
                                    torch.arange(int(h), dtype=torch.float32), indexing="ij")
    pos_dim = embed_dim // 4
    omega = 1.0 / (temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim))
    out_w = grid_w.flatten()[..., None] @ omega[None]
    out_h = grid_h.flatten()[..., None] @ omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]


class HybridEncoder(nn.Module):
    """Projects backbone levels to `hidden_dim`, runs AIFI on `use_encoder_idx`, then FPN + PAN.

    Returns one map per input level (same strides), each with `hidden_dim` channels.
    """

    def __init__(self, in_channels: list[int], feat_strides: list[int], hidden_dim: int = 256,
                 nhead: int = 8, dim_feedforward: int = 1024, dropout: float = 0.0,
                 enc_act: str = "gelu", use_encoder_idx: Sequence[int] = (2,),
                 num_encoder_layers: int = 1, pe_temperature: float = 10000.0,
                 expansion: float = 1.0, depth_mult: float = 1.0, act: str = "silu",
                 eval_spatial_size: tuple[int, int] | None = None):
        super().__init__()
        self.in_channels = list(in_channels)
        self.feat_strides = list(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.eval_spatial_size = eval_spatial_size
        self.out_channels = [hidden_dim] * len(in_channels)
        self.out_strides = self.feat_strides

        self.input_proj = nn.ModuleList([
            nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(c, hidden_dim, kernel_size=1, bias=False)),
                ("norm", BatchNorm2d(hidden_dim)),
            ]))
            for c in in_channels
        ])
        layer = TransformerEncoderLayer(hidden_dim, nhead, dim_feedforward, dropout, enc_act)
        self.encoder = nn.ModuleList([
            TransformerEncoder(copy.deepcopy(layer), num_encoder_layers)
            for _ in range(len(self.use_encoder_idx))
        ])
        c4 = round(expansion * hidden_dim // 2)
        n = round(3 * depth_mult)
        self.lateral_convs = nn.ModuleList()
        self.fpn_blocks = nn.ModuleList()
        for _ in range(len(in_channels) - 1):
            self.lateral_convs.append(ConvNormLayer(hidden_dim, hidden_dim, 1, 1))
            self.fpn_blocks.append(RepNCSPELAN4(hidden_dim * 2, hidden_dim, hidden_dim * 2, c4, n))
        self.downsample_convs = nn.ModuleList()
        self.pan_blocks = nn.ModuleList()
        for _ in range(len(in_channels) - 1):
            self.downsample_convs.append(nn.Sequential(SCDown(hidden_dim, hidden_dim, 3, 2)))
            self.pan_blocks.append(RepNCSPELAN4(hidden_dim * 2, hidden_dim, hidden_dim * 2, c4, n))

        # Cached position embeddings for the build size (plain attributes, not state: upstream).
        self._pos_cache: dict[int, torch.Tensor] = {}
        if eval_spatial_size:
            for idx in self.use_encoder_idx:
                s = self.feat_strides[idx]
                self._pos_cache[idx] = sincos_position_embedding(
                    eval_spatial_size[1] // s, eval_spatial_size[0] // s, hidden_dim,
                    pe_temperature)

    def _pos_embed(self, idx: int, w: int, h: int, ref: torch.Tensor) -> torch.Tensor:
        cached = self._pos_cache.get(idx)
        # Shapes are Python ints here, so this branch is static under ONNX tracing.
        if self.training or cached is None or cached.shape[1] != w * h:
            return sincos_position_embedding(w, h, self.hidden_dim, self.pe_temperature).to(ref)
        return cached.to(ref)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.in_channels):
            raise ValueError(f"HybridEncoder expects {len(self.in_channels)} levels, got {len(feats)}")
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        if self.num_encoder_layers > 0:
            for i, idx in enumerate(self.use_encoder_idx):
                h, w = proj[idx].shape[2:]
                src = proj[idx].flatten(2).permute(0, 2, 1)
                memory = self.encoder[i](src, pos_embed=self._pos_embed(idx, w, h, src))
                proj[idx] = memory.permute(0, 2, 1).reshape(-1, self.hidden_dim, h, w).contiguous()

        n_lvl = len(self.in_channels)
        inner = [proj[-1]]  # top-down FPN
        for idx in range(n_lvl - 1, 0, -1):
            j = n_lvl - 1 - idx
            high = self.lateral_convs[j](inner[0])
            inner[0] = high
            up = F.interpolate(high, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[j](torch.cat([up, proj[idx - 1]], dim=1)))

        outs = [inner[0]]  # bottom-up PAN
        for idx in range(n_lvl - 1):
            down = self.downsample_convs[idx](outs[-1])
            outs.append(self.pan_blocks[idx](torch.cat([down, inner[idx + 1]], dim=1)))
        return outs
