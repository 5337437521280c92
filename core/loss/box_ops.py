"""Box conversions and pairwise IoU / generalized IoU, in plain torch (no torchvision).

Boxes are either ``cxcywh`` (centre, size — what the model predicts and the targets hold, normalised
to [0, 1]) or ``xyxy`` (corners — what IoU needs).
"""

# Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/zoo/dfine/box_ops.py, itself from DETR).

from __future__ import annotations

import torch
from torch import Tensor

# The two conversions are the network's own (one implementation for model and loss).
from core.model.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh

__all__ = ["box_area", "box_cxcywh_to_xyxy", "box_iou", "box_xyxy_to_cxcywh", "generalized_box_iou",
           "paired_box_iou", "paired_generalized_box_iou"]  # the conversions are re-exported


def box_area(boxes: Tensor) -> Tensor:
    """Area of xyxy boxes [..., 4] -> [...]."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU of xyxy boxes [N,4] x [M,4] -> (iou [N,M], union [N,M]).

    The union is returned too because generalized IoU needs it.
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019) of xyxy boxes [N,4] x [M,4] -> [N,M].

    GIoU = IoU - (enclosing area - union) / enclosing area; it is in [-1, 1] and, unlike IoU,
    still has a gradient when the boxes do not overlap.
    """
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of row i of boxes1 with row i of boxes2 (xyxy, [N,4] each) -> [N].

    The criterion only needs matched pairs; this avoids building the N x N matrix and taking its
    diagonal as the official code does (same numbers).
    """
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter / union


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of row i of boxes1 with row i of boxes2 (xyxy, [N,4] each) -> [N]."""
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    iou = inter / union
    elt = torch.min(boxes1[:, :2], boxes2[:, :2])
    erb = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    ewh = (erb - elt).clamp(min=0)
    enclosing = ewh[:, 0] * ewh[:, 1]
    return iou - (enclosing - union) / enclosing
