"""Work-around for a torch CPU bug in BatchNorm's backward.

BatchNorm2d's backward computes a wrong input gradient when the incoming gradient has batch
size 1 and channels-last strides that are ambiguous at N = 1 (e.g. strides (C, 1, W*C, C) for
[1, C, H, W]) — what the backward of permute/flatten (the AIFI encoder) or of cat produces.
Found because parameter gradients of batch [a] and batch [a, a] differed in the backbone.
Handing BatchNorm a contiguous gradient gives the right result (and costs one copy only
where the layout was odd).
"""

from __future__ import annotations

import torch
from torch import nn


class _ContiguousGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def contiguous_grad(x: torch.Tensor) -> torch.Tensor:
    """Identity; its backward makes the gradient contiguous. No-op when no gradient flows
    (eval, ONNX tracing under no_grad), so exported graphs are unchanged."""
    return _ContiguousGrad.apply(x) if (torch.is_grad_enabled() and x.requires_grad) else x


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (same parameters and state-dict keys) that always receives a contiguous
    gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return contiguous_grad(super().forward(x))
