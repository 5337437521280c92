"""Fine-grained Distribution Refinement (FDR) helpers the FGL loss needs.

D-FINE predicts each box edge as a distribution over ``reg_max + 1`` bins whose values follow the
non-uniform weighting function W(n). The FGL loss needs the inverse: for a ground-truth edge
distance, the two neighbouring bins and their interpolation weights.
"""

# Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/zoo/dfine/dfine_utils.py).

from __future__ import annotations

import torch
from torch import Tensor

# The bin values W(n) belong to the network (the decoder integrates over them); the loss inverts
# them, so it uses the very same function rather than a copy.
from core.model.decoder import weighting_function

__all__ = ["bbox2distance", "translate_gt", "weighting_function"]


def translate_gt(
    gt: Tensor, reg_max: int, reg_scale: Tensor | float, up: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Map continuous edge offsets to (left bin index, right-bin weight, left-bin weight).

    The index is float (as the official code keeps it); values beyond the outermost bins get the
    whole weight on the nearest valid side.
    """
    gt = gt.reshape(-1)
    values = weighting_function(reg_max, up, reg_scale).to(gt.dtype)
    left = (values.unsqueeze(0) <= gt.unsqueeze(1)).sum(dim=1) - 1
    indices = left.to(gt.dtype)
    weight_right = torch.zeros_like(indices)
    weight_left = torch.zeros_like(indices)

    valid = (left >= 0) & (left < reg_max)
    vi = left[valid]
    left_diff = (gt[valid] - values[vi]).abs()
    right_diff = (values[vi + 1] - gt[valid]).abs()
    weight_right[valid] = left_diff / (left_diff + right_diff)
    weight_left[valid] = 1.0 - weight_right[valid]

    below = left < 0
    weight_right[below] = 0.0
    weight_left[below] = 1.0
    indices[below] = 0.0

    above = left >= reg_max
    weight_right[above] = 1.0
    weight_left[above] = 0.0
    indices[above] = reg_max - 0.1
    return indices, weight_right, weight_left


def bbox2distance(
    points: Tensor, bbox: Tensor, reg_max: int, reg_scale: Tensor | float, up: Tensor, eps: float = 0.1
) -> tuple[Tensor, Tensor, Tensor]:
    """Ground-truth boxes as FGL targets relative to the decoder's reference boxes.

    points: reference boxes [n,4] cxcywh; bbox: GT boxes [n,4] xyxy. Returns flattened [n*4]
    (left-bin index clamped to [0, reg_max - eps], right weight, left weight), edge order
    left, top, right, bottom — the inverse of the decoder's distance2bbox.
    """
    scale = reg_scale.abs() if isinstance(reg_scale, Tensor) else abs(float(reg_scale))
    w = points[:, 2] / scale + 1e-16
    h = points[:, 3] / scale + 1e-16
    left = (points[:, 0] - bbox[:, 0]) / w - 0.5 * scale
    top = (points[:, 1] - bbox[:, 1]) / h - 0.5 * scale
    right = (bbox[:, 2] - points[:, 0]) / w - 0.5 * scale
    bottom = (bbox[:, 3] - points[:, 1]) / h - 0.5 * scale
    four = torch.stack([left, top, right, bottom], dim=-1)
    indices, weight_right, weight_left = translate_gt(four, reg_max, reg_scale, up)
    indices = indices.clamp(min=0, max=reg_max - eps)
    return indices.reshape(-1).detach(), weight_right.detach(), weight_left.detach()
