"""AdamW with D-FINE's regex parameter groups.

Why groups: the backbone is ImageNet-pretrained and trains with a smaller lr than the freshly
initialised encoder/decoder/heads; weight decay on norm scales and biases only shrinks them
towards zero, so the official configs switch it off there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

# (name, regex on the parameter name, is_backbone, decay): first match wins, in this order
BACKBONE = r"^(?:module\.)?backbone\."
NO_DECAY = r"(?:^|\.)(?:norm\w*|bn|lab|\w*_norm)\.|\.bias$|(?:^|\.)(?:norm\w*|bn)\d*\."


@dataclass
class GroupSpec:
    name: str
    lr: float
    weight_decay: float


def param_group_name(name: str, param: torch.Tensor) -> str:
    """'backbone' | 'backbone_no_decay' | 'no_decay' | 'default' for one named parameter.
    1-d tensors (norm scales, biases, LearnableAffineBlock scalars) never get weight decay."""
    in_backbone = re.search(BACKBONE, name) is not None
    no_decay = param.ndim <= 1 or re.search(NO_DECAY, name) is not None
    if in_backbone:
        return "backbone_no_decay" if no_decay else "backbone"
    return "no_decay" if no_decay else "default"


def build_param_groups(model: nn.Module, lr: float, backbone_lr: float, weight_decay: float) -> list[dict]:
    specs = {
        "backbone": GroupSpec("backbone", backbone_lr, weight_decay),
        "backbone_no_decay": GroupSpec("backbone_no_decay", backbone_lr, 0.0),
        "default": GroupSpec("default", lr, weight_decay),
        "no_decay": GroupSpec("no_decay", lr, 0.0),
    }
    buckets: dict[str, list[torch.nn.Parameter]] = {k: [] for k in specs}
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets[param_group_name(name, p)].append(p)
    return [{"params": buckets[k], "lr": s.lr, "initial_lr": s.lr, "weight_decay": s.weight_decay, "name": k}
            for k, s in specs.items() if buckets[k]]


def build_optimizer(model: nn.Module, lr: float, backbone_lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over the groups; fused where torch has the kernel for the parameters' device (CPU and
    CUDA): the same update, ~4x faster than the per-tensor loop at size N on a CPU
    (tests/test_train_units.py checks it against the loop)."""
    groups = build_param_groups(model, lr, backbone_lr, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay,
                             fused=fused_kernel_available(groups) or None)


def fused_kernel_available(groups: list[dict]) -> bool:
    """Every parameter a floating tensor on a CPU or CUDA device (the fused AdamW's devices)."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
