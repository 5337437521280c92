"""Deploy-time re-parameterisation: fold eval-mode BatchNorms into the preceding convs and merge
each RepVGG-style `VGGBlock` (3x3 conv-BN + 1x1 conv-BN) into one 3x3 conv with bias.

Why: at inference a BatchNorm is a fixed per-channel affine map, so conv -> BN is one conv with
bias, and the two parallel branches of a VGGBlock sum to one 3x3 kernel (the 1x1 kernel sits at
its centre). Fewer ops and memory passes for the torch Predictor, ONNX and OpenVINO; the
outputs are the same up to float rounding.

`fuse_for_deploy` works on a deep copy: the training model, its checkpoints and its
`state_dict` keys stay the official ones. Only `DeployModel` (inference/export) uses the copy.

Adapted from D-FINE (Apache-2.0), Peterande/D-FINE: `RepVggBlock.convert_to_deploy` in
src/zoo/dfine/hybrid_encoder.py (kernel3x3 + pad(kernel1x1), bias3x3 + bias1x1).
"""

from __future__ import annotations

import copy
from itertools import pairwise
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from core.model.hgnetv2 import ConvBNAct, FrozenBatchNorm2d
from core.model.hybrid_encoder import ConvNormLayer, VGGBlock

__all__ = ["FusedVGGBlock", "fuse_for_deploy", "is_batchnorm"]

# Modules whose forward is `... norm(conv(x)) ...` with nothing in between: (type, conv, norm).
_CONV_NORM_PAIRS: tuple[tuple[type[nn.Module], str, str], ...] = (
    (ConvNormLayer, "conv", "norm"),   # act(norm(conv(x)))
    (ConvBNAct, "conv", "bn"),          # lab(act(bn(conv(x)))): lab comes after the ReLU
)

_M = TypeVar("_M", bound=nn.Module)


class FusedVGGBlock(nn.Module):
    """A re-parameterised VGGBlock: act(conv3x3(x)), same output as act(conv1(x) + conv2(x))."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module):
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def is_batchnorm(module: nn.Module) -> bool:
    """BatchNorm2d (ours or torch's) or the backbone's FrozenBatchNorm2d."""
    return isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d))


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    if not (type(conv) is nn.Conv2d and is_batchnorm(norm)):
        return False
    if getattr(norm, "running_mean", None) is None or getattr(norm, "running_var", None) is None:
        return False  # track_running_stats=False: eval BN uses batch statistics, not foldable
    return conv.out_channels == norm.num_features


def _fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> bool:
    """Replace parent.conv by the folded conv (with bias) and parent.norm by nn.Identity."""
    conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
    if not _foldable(conv, norm):
        return False
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
    setattr(parent, norm_name, nn.Identity())
    return True


def _fold_conv_norms(model: nn.Module) -> int:
    """Fold every conv -> BN pair we know the forward of; returns how many were folded."""
    folded = 0
    for module in list(model.modules()):
        for cls, conv_name, norm_name in _CONV_NORM_PAIRS:
            if isinstance(module, cls):
                folded += _fold_pair(module, conv_name, norm_name)
        if isinstance(module, nn.Sequential):  # e.g. the encoder's input_proj (conv, norm)
            names = list(module._modules)
            for a, b in pairwise(names):
                folded += _fold_pair(module, a, b)
    return folded


def _branch(layer: nn.Module, kernel: int, padding: int) -> nn.Conv2d | None:
    """The folded conv of a VGGBlock branch, if it has the shape re-parameterisation needs."""
    if not (isinstance(layer, ConvNormLayer) and isinstance(layer.norm, nn.Identity)
            and isinstance(layer.act, nn.Identity)):
        return None
    c = layer.conv
    ok = (type(c) is nn.Conv2d and c.kernel_size == (kernel, kernel) and c.stride == (1, 1)
          and c.padding == (padding, padding) and c.dilation == (1, 1) and c.groups == 1
          and c.padding_mode == "zeros")
    return c if ok else None


def _merge_vgg(block: VGGBlock) -> FusedVGGBlock | None:
    """kernel = k3 + pad(k1 to 3x3), bias = b3 + b1 (both branches already BN-folded)."""
    c3, c1 = _branch(block.conv1, 3, 1), _branch(block.conv2, 1, 0)
    if c3 is None or c1 is None or c3.weight.shape[:2] != c1.weight.shape[:2]:
        return None
    conv = nn.Conv2d(c3.in_channels, c3.out_channels, 3, 1, padding=1, bias=True,
                     device=c3.weight.device, dtype=c3.weight.dtype)
    conv.weight.copy_(c3.weight + F.pad(c1.weight, [1, 1, 1, 1]))
    assert conv.bias is not None  # built with bias=True
    zero = torch.zeros_like(conv.bias)
    conv.bias.copy_((zero if c3.bias is None else c3.bias) + (zero if c1.bias is None else c1.bias))
    return FusedVGGBlock(conv, block.act)


def _merge_vgg_blocks(model: nn.Module) -> int:
    merged = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, VGGBlock):
                fused = _merge_vgg(child)
                if fused is not None:
                    setattr(parent, name, fused)
                    merged += 1
    return merged


@torch.no_grad()
def fuse_for_deploy(model: _M) -> _M:
    """Fused deep copy of `model` in eval mode; `model` itself is left untouched.

    Every conv -> BN (ConvNormLayer, ConvBNAct / LightConvBNAct, the encoder's input_proj; plain
    and frozen BN) becomes a conv with bias and an nn.Identity in the BN's slot, so the modules'
    forwards run unchanged; every VGGBlock becomes a `FusedVGGBlock` (one 3x3 conv + act).
    GroupNorm/LayerNorm (mask head, transformer) depend on the input and are kept.
    """
    fused = copy.deepcopy(model).eval()
    _fold_conv_norms(fused)
    _merge_vgg_blocks(fused)
    return fused
