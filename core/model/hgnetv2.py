"""HGNetV2 backbone (variants B0-B6), the CNN that D-FINE uses.

Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/nn/backbone/hgnetv2.py, itself after
PaddleDetection). Module names and registration order follow upstream exactly so that the
official `state_dict` keys (and the ImageNet "stage1" backbone files) load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.model.grad_layout import BatchNorm2d

__all__ = ["HGNET_ARCHS", "FrozenBatchNorm2d", "HGNetv2"]

# name -> (stem channels, per-stage rows:
#   in, mid, out, num_blocks, downsample, light_block, kernel_size, layers_per_block)
HGNET_ARCHS: dict[str, dict] = {
    "B0": {"stem": (3, 16, 16), "stages": [
        (16, 16, 64, 1, False, False, 3, 3), (64, 32, 256, 1, True, False, 3, 3),
        (256, 64, 512, 2, True, True, 5, 3), (512, 128, 1024, 1, True, True, 5, 3)]},
    "B1": {"stem": (3, 24, 32), "stages": [
        (32, 32, 64, 1, False, False, 3, 3), (64, 48, 256, 1, True, False, 3, 3),
        (256, 96, 512, 2, True, True, 5, 3), (512, 192, 1024, 1, True, True, 5, 3)]},
    "B2": {"stem": (3, 24, 32), "stages": [
        (32, 32, 96, 1, False, False, 3, 4), (96, 64, 384, 1, True, False, 3, 4),
        (384, 128, 768, 3, True, True, 5, 4), (768, 256, 1536, 1, True, True, 5, 4)]},
    "B3": {"stem": (3, 24, 32), "stages": [
        (32, 32, 128, 1, False, False, 3, 5), (128, 64, 512, 1, True, False, 3, 5),
        (512, 128, 1024, 3, True, True, 5, 5), (1024, 256, 2048, 1, True, True, 5, 5)]},
    "B4": {"stem": (3, 32, 48), "stages": [
        (48, 48, 128, 1, False, False, 3, 6), (128, 96, 512, 1, True, False, 3, 6),
        (512, 192, 1024, 3, True, True, 5, 6), (1024, 384, 2048, 1, True, True, 5, 6)]},
    "B5": {"stem": (3, 32, 64), "stages": [
        (64, 64, 128, 1, False, False, 3, 6), (128, 128, 512, 2, True, False, 3, 6),
        (512, 256, 1024, 5, True, True, 5, 6), (1024, 512, 2048, 2, True, True, 5, 6)]},
    "B6": {"stem": (3, 48, 96), "stages": [
        (96, 96, 192, 2, False, False, 3, 6), (192, 192, 512, 3, True, False, 3, 6),
        (512, 384, 1024, 6, True, True, 5, 6), (1024, 768, 2048, 3, True, True, 5, 6)]},
}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine terms (buffers, not parameters).

    The official L/X configs freeze the backbone norms this way; it changes the state_dict
    (no `num_batches_tracked`) and the parameter count, so we must do the same.
    """

    weight: torch.Tensor  # buffers (frozen), registered in __init__
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.eps = eps
        self.num_features = num_features

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (
            self.running_var.reshape(1, -1, 1, 1) + self.eps
        ).rsqrt()
        shift = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + shift


class LearnableAffineBlock(nn.Module):
    """y = scale * x + bias with two learnable scalars (the "lab" of HGNetV2)."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale_value]))
        self.bias = nn.Parameter(torch.tensor([bias_value]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class ConvBNAct(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, use_act: bool = True, use_lab: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride,
                              padding=(kernel_size - 1) // 2, groups=groups, bias=False)
        self.bn = BatchNorm2d(out_chs)
        self.act = nn.ReLU() if use_act else nn.Identity()
        self.lab = LearnableAffineBlock() if (use_act and use_lab) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(self.act(self.bn(self.conv(x))))


class LightConvBNAct(nn.Module):
    """1x1 conv (no act) followed by a depthwise kxk conv."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, use_lab: bool = False):
        super().__init__()
        self.conv1 = ConvBNAct(in_chs, out_chs, 1, use_act=False, use_lab=use_lab)
        self.conv2 = ConvBNAct(out_chs, out_chs, kernel_size, groups=out_chs, use_lab=use_lab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, use_lab: bool = False):
        super().__init__()
        self.stem1 = ConvBNAct(in_chs, mid_chs, 3, stride=2, use_lab=use_lab)
        self.stem2a = ConvBNAct(mid_chs, mid_chs // 2, 2, use_lab=use_lab)
        self.stem2b = ConvBNAct(mid_chs // 2, mid_chs, 2, use_lab=use_lab)
        self.stem3 = ConvBNAct(mid_chs * 2, mid_chs, 3, stride=2, use_lab=use_lab)
        self.stem4 = ConvBNAct(mid_chs, out_chs, 1, use_lab=use_lab)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        x2 = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        x1 = self.pool(x)
        return self.stem4(self.stem3(torch.cat([x1, x2], dim=1)))


class HG_Block(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, layer_num: int,
                 kernel_size: int = 3, residual: bool = False, light_block: bool = False,
                 use_lab: bool = False):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList()
        for i in range(layer_num):
            cin = in_chs if i == 0 else mid_chs
            if light_block:
                self.layers.append(LightConvBNAct(cin, mid_chs, kernel_size, use_lab=use_lab))
            else:
                self.layers.append(ConvBNAct(cin, mid_chs, kernel_size, use_lab=use_lab))
        total = in_chs + layer_num * mid_chs
        # HGNetv2 builds its stages with upstream's default agg="se": squeeze + excitation
        # 1x1 convs (the "ese" variant with EseModule is not used by any D-FINE size).
        self.aggregation = nn.Sequential(ConvBNAct(total, out_chs // 2, 1, use_lab=use_lab),
                                         ConvBNAct(out_chs // 2, out_chs, 1, use_lab=use_lab))
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        outs = [x]
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        x = self.aggregation(torch.cat(outs, dim=1))
        return self.drop_path(x) + identity if self.residual else x


class HG_Stage(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, block_num: int, layer_num: int,
                 downsample: bool = True, light_block: bool = False, kernel_size: int = 3,
                 use_lab: bool = False):
        super().__init__()
        self.downsample = (
            ConvBNAct(in_chs, in_chs, 3, stride=2, groups=in_chs, use_act=False, use_lab=use_lab)
            if downsample else nn.Identity()
        )
        self.blocks = nn.Sequential(*[
            HG_Block(in_chs if i == 0 else out_chs, mid_chs, out_chs, layer_num,
                     kernel_size=kernel_size, residual=i > 0, light_block=light_block,
                     use_lab=use_lab)
            for i in range(block_num)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def _freeze_norms(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below `module` by a FrozenBatchNorm2d (upstream freeze_norm)."""
    if isinstance(module, nn.BatchNorm2d):
        return FrozenBatchNorm2d(module.num_features, module.eps)
    for name, child in module.named_children():
        new = _freeze_norms(child)
        if new is not child:
            setattr(module, name, new)
    return module


class HGNetv2(nn.Module):
    """HGNetV2; returns the stage outputs listed in `return_idx` (strides 4, 8, 16, 32)."""

    out_strides = (4, 8, 16, 32)

    def __init__(self, name: str = "B0", use_lab: bool = False,
                 return_idx: tuple[int, ...] | list[int] = (1, 2, 3),
                 freeze_stem_only: bool = True, freeze_at: int = -1, freeze_norm: bool = False):
        super().__init__()
        if name not in HGNET_ARCHS:
            raise ValueError(f"unknown HGNetV2 variant {name!r}; choose from {sorted(HGNET_ARCHS)}")
        arch = HGNET_ARCHS[name]
        self.name = name
        self.use_lab = use_lab
        self.return_idx = list(return_idx)
        self.out_channels = [row[2] for row in arch["stages"]]
        in_chs, mid_chs, out_chs = arch["stem"]
        self.stem = StemBlock(in_chs, mid_chs, out_chs, use_lab=use_lab)
        self.stages = nn.ModuleList([
            HG_Stage(cin, mid, cout, nb, nl, ds, light, k, use_lab)
            for (cin, mid, cout, nb, ds, light, k, nl) in arch["stages"]
        ])
        if freeze_at >= 0:
            for p in self.stem.parameters():
                p.requires_grad_(False)
            if not freeze_stem_only:
                for stage in self.stages[: freeze_at + 1]:
                    for p in stage.parameters():
                        p.requires_grad_(False)
        if freeze_norm:
            _freeze_norms(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for idx, stage in enumerate(self.stages):
            x = stage(x)
            if idx in self.return_idx:
                outs.append(x)
        return outs
