"""D-FINE-seg mask head: a small pixel decoder on the PAN outputs + per-query mask embeddings.

Follows the D-FINE-seg paper (Saakyan, Solntsev) and ArgoHA/D-FINE-seg (Apache-2.0):
  PAN levels -> 1x1 conv + GroupNorm to a common width -> bilinear upsample to the finest
  level and sum -> 3x3 conv + GN + ReLU -> bilinear upsample to stride 4 -> 3x3 conv + GN +
  ReLU. Each query's decoder hidden state -> 3-layer MLP -> embedding; mask logits are the
  scaled dot product of embedding and the stride-4 feature map (a dynamic 1x1 conv).
When the finest PAN level is stride 16 (size N), the same head fuses at stride 16 and the
upsample goes x4, so masks are always H/4 x W/4.

Widths: the paper's head keeps the common width (256) through both 3x3 convs and the mask
embedding ("paper" preset in core.model.builder; parameter counts match the paper's table).
On CPU its stride-4 3x3 conv (256->256 on H/4 x W/4) costs more than the whole S detector,
so the "lite" preset narrows the common width, the two 3x3 convs and the embedding. The "cpu"
preset keeps the fuse conv (at the finest PAN stride) 128 wide and narrows only the stride-4 conv
and the embedding (to 32): once quantized it costs what lite does, and its masks match the paper
head's on our measurements, where lite's fall short.
`upsample_last` (the "lite_s8" preset) runs both 3x3 convs at the finest PAN stride (8; 16 for
size N) and bilinearly upsamples their output to stride 4: the stride-4 conv costs 4x less, the
mask map keeps its H/4 x W/4 size and the same parameters as "lite".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.model.decoder import MLP

__all__ = ["MaskHead", "MaskPixelDecoder"]


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = 32 if channels % 32 == 0 else 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


class MaskPixelDecoder(nn.Module):
    """Fuses the PAN maps into one stride-4 map of `mask_dim` channels."""

    def __init__(self, in_channels: list[int], in_strides: list[int], fuse_dim: int = 256,
                 mask_dim: int = 256, mid_dim: int | None = None, upsample_last: bool = False):
        super().__init__()
        mid_dim = fuse_dim if mid_dim is None else mid_dim
        self.upsample_last = upsample_last
        if in_strides[0] % 4 != 0:
            raise ValueError(f"finest PAN stride must be a multiple of 4, got {in_strides[0]}")
        self.upscale = in_strides[0] // 4  # 2 for stride 8, 4 for stride 16 (size N)
        self.lateral = nn.ModuleList([nn.Conv2d(c, fuse_dim, 1, bias=False) for c in in_channels])
        self.lateral_norm = nn.ModuleList([_group_norm(fuse_dim) for _ in in_channels])
        self.fuse_conv = nn.Conv2d(fuse_dim, mid_dim, 3, padding=1, bias=False)
        self.fuse_norm = _group_norm(mid_dim)
        self.out_conv = nn.Conv2d(mid_dim, mask_dim, 3, padding=1, bias=False)
        self.out_norm = _group_norm(mask_dim)
        for conv in (self.fuse_conv, self.out_conv):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral_norm[0](self.lateral[0](feats[0]))
        size = x.shape[-2:]
        for i in range(1, len(feats)):
            t = self.lateral_norm[i](self.lateral[i](feats[i]))
            x = x + F.interpolate(t, size=size, mode="bilinear", align_corners=False)
        x = F.relu(self.fuse_norm(self.fuse_conv(x)))
        if self.upsample_last:
            x = F.relu(self.out_norm(self.out_conv(x)))
            return F.interpolate(x, scale_factor=float(self.upscale), mode="bilinear", align_corners=False)
        x = F.interpolate(x, scale_factor=float(self.upscale), mode="bilinear", align_corners=False)
        return F.relu(self.out_norm(self.out_conv(x)))


class MaskHead(nn.Module):
    """Pixel decoder + query-embedding MLP. `logits(hidden, features)` gives mask logits."""

    def __init__(self, in_channels: list[int], in_strides: list[int], hidden_dim: int,
                 fuse_dim: int = 256, mask_dim: int = 256, mid_dim: int | None = None,
                 upsample_last: bool = False):
        super().__init__()
        self.mask_dim = mask_dim
        self.pixel_decoder = MaskPixelDecoder(in_channels, in_strides, fuse_dim, mask_dim, mid_dim, upsample_last)
        self.query_mlp = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Stride-4 mask features [B, mask_dim, H/4, W/4]."""
        return self.pixel_decoder(feats)

    def embed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Query hidden states [..., B, Q, C] -> scaled mask embeddings [..., B, Q, mask_dim]."""
        return self.query_mlp(hidden) * (self.mask_dim ** -0.5)

    def logits(self, hidden: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """[..., B, Q, C] hidden states x [B, D, h, w] features -> [..., B, Q, h, w] logits.

        Leading dims (decoder layers in training) are folded into the query axis, so it is one
        [B, L*Q, D] x [B, D, h*w] product: broadcasting the features over L instead would copy
        them L times and make the backward materialise and sum an [L, B, D, h*w] gradient
        (size N, 640 px, batch 4, CPU: training step 9.1 -> 8.1 s, forward+backward of the
        mask product 3.6 -> 2.4 s of CPU time)."""
        emb = self.embed(hidden)
        b, d, h, w = features.shape
        lead = emb.shape[:-3]  # () in eval: one layer, the same code path
        q, layers = emb.shape[-2], math.prod(lead)
        flat = emb.reshape(layers, b, q, d).permute(1, 0, 2, 3).reshape(b, layers * q, d)
        out = torch.bmm(flat, features.reshape(b, d, h * w))  # [B, L*Q, h*w]
        return out.reshape(b, layers, q, h, w).transpose(0, 1).reshape(*lead, b, q, h, w)
