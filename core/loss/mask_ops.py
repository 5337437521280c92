"""Mask costs (for matching) and box-cropped mask losses (for training), as in D-FINE-seg.

All functions work on mask-head resolution maps (H/4 x W/4 of the input); ground-truth masks are
first resized there bilinearly, which makes them soft targets in [0, 1] along the edges.
"""

# Adapted from D-FINE-seg (Apache-2.0), ArgoHA/D-FINE-seg (src/d_fine/matcher.py,
# src/d_fine/dfine_criterion.py).

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DICE_EPS = 1e-6


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """[N,H,W] 0/1 masks (any dtype) -> float32 [N,h,w] soft masks, bilinear, clamped to [0,1].

    Returns the float masks unchanged in value when they already have the requested size.
    """
    masks = masks.float()
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size))
    out = F.interpolate(masks.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return out.squeeze(1).clamp_(0.0, 1.0)


def box_regions(boxes_cxcywh: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Boolean [M,h,w] maps of the mask pixels inside each normalised cxcywh box, and the box
    areas [M] in mask pixels (at least 1) the cropped BCE is normalised by — upstream
    D-FINE-seg's crop, operation for operation.

    The box corners in mask pixel units are clamped to x1 in [0, w-1], x2 in [1, w]; pixel i
    is inside when x1 <= i < x2 (so a box edge inside a pixel includes it on the right and
    excludes it on the left, and a box narrower than a pixel may cover none). The area is the
    continuous (x2 - x1) * (y2 - y1), not the pixel count.
    """
    boxes = boxes_cxcywh.detach().float()
    cx, cy, w, h = boxes.unbind(-1)
    x1 = ((cx - w / 2) * width).clamp(0, width - 1)
    y1 = ((cy - h / 2) * height).clamp(0, height - 1)
    x2 = ((cx + w / 2) * width).clamp(1, width)
    y2 = ((cy + h / 2) * height).clamp(1, height)
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)
    inside_x = (xs[None, :] >= x1[:, None]) & (xs[None, :] < x2[:, None])  # [M, w]
    inside_y = (ys[None, :] >= y1[:, None]) & (ys[None, :] < y2[:, None])  # [M, h]
    area = ((x2 - x1) * (y2 - y1)).clamp(min=1.0)
    return inside_y[:, :, None] & inside_x[:, None, :], area


def cropped_bce_loss(pred_logits: Tensor, target: Tensor, regions: Tensor, area: Tensor) -> Tensor:
    """Mean over instances of (BCE summed inside the GT box) / (box area in mask pixels).

    Pixels outside the box do not contribute, so the head is not punished for what it predicts
    far from the object (the box crop at post-processing removes it anyway).
    """
    if pred_logits.shape[0] == 0:
        return pred_logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(pred_logits.float(), target.float(), reduction="none")
    inside = regions.to(bce.dtype)
    return ((bce * inside).sum(dim=(1, 2)) / area.to(bce.dtype)).mean()


def cropped_dice_loss(pred_logits: Tensor, target: Tensor, regions: Tensor) -> Tensor:
    """Mean over instances of 1 - Dice(sigmoid(pred), target), both restricted to the GT box."""
    if pred_logits.shape[0] == 0:
        return pred_logits.sum() * 0.0
    inside = regions.to(torch.float32)
    prob = pred_logits.float().sigmoid() * inside
    tgt = target.float() * inside
    inter = (prob * tgt).flatten(1).sum(1)
    denom = prob.flatten(1).sum(1) + tgt.flatten(1).sum(1) + DICE_EPS
    dice = 1.0 - (2.0 * inter + DICE_EPS) / denom
    return dice.mean()


def pairwise_dice_cost(pred_logits: Tensor, target: Tensor) -> Tensor:
    """[Q,h,w] logits x [T,h,w] soft masks -> [Q,T] cost 1 - Dice over the full mask map."""
    prob = pred_logits.float().sigmoid().flatten(1)
    tgt = target.float().flatten(1)
    inter = prob @ tgt.T
    denom = prob.sum(1)[:, None] + tgt.sum(1)[None, :]
    return 1.0 - (2.0 * inter + DICE_EPS) / (denom + DICE_EPS)


def pairwise_focal_cost(
    pred_logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """[Q,h,w] logits x [T,h,w] soft masks -> [Q,T] sigmoid focal cost averaged over all pixels.

    Per pixel: alpha (1-p)^g (-log(p + 1e-8)) * t + (1-alpha) p^g (-log(1 - p + 1e-8)) * (1-t),
    as upstream's matcher (the 1e-8 caps both logs at 18.4, like its class cost): two matrix
    products, so the Q x T x pixels tensor is never built.
    """
    logits = pred_logits.float().flatten(1)
    tgt = target.float().flatten(1)
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob**gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    cost = pos @ tgt.T + neg @ (1 - tgt).T
    return cost / logits.shape[1]
