"""Box conversions, IoU and GIoU on boxes whose values are worked out by hand."""

import torch

from core.loss.box_ops import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    paired_box_iou,
    paired_generalized_box_iou,
)


def test_cxcywh_xyxy_round_trip_and_values():
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.0, 0.2]])
    xyxy = box_cxcywh_to_xyxy(cxcywh)
    torch.testing.assert_close(xyxy, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.1, 0.8, 0.1, 1.0]]))
    torch.testing.assert_close(box_xyxy_to_cxcywh(xyxy), cxcywh)


def test_negative_size_is_clamped_to_an_empty_box():
    xyxy = box_cxcywh_to_xyxy(torch.tensor([[0.5, 0.5, -0.2, 0.2]]))
    torch.testing.assert_close(xyxy, torch.tensor([[0.5, 0.4, 0.5, 0.6]]))


def test_iou_and_giou_of_overlapping_and_disjoint_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
    iou, union = box_iou(a, b)
    # a0 vs b0: intersection 1, union 4 + 4 - 1 = 7; enclosing box 3x3 = 9.
    assert abs(iou[0, 0].item() - 1 / 7) < 1e-6
    assert abs(union[0, 0].item() - 7) < 1e-6
    giou = generalized_box_iou(a, b)
    assert abs(giou[0, 0].item() - (1 / 7 - 2 / 9)) < 1e-6
    # a1 vs b1: disjoint, union 2, enclosing 3x1 = 3 -> GIoU = 0 - 1/3.
    assert iou[1, 1].item() == 0.0
    assert abs(giou[1, 1].item() + 1 / 3) < 1e-6
    # a1 vs b0: disjoint, union 1 + 4 = 5, enclosing 3x3 = 9 -> -(9-5)/9.
    assert abs(giou[1, 0].item() + 4 / 9) < 1e-6
    # identical boxes
    assert abs(generalized_box_iou(a[:1], a[:1]).item() - 1.0) < 1e-6


def test_paired_versions_equal_the_matrix_diagonal():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(6, 2, generator=g)
    boxes1 = torch.cat([xy, xy + torch.rand(6, 2, generator=g)], 1)
    xy = torch.rand(6, 2, generator=g)
    boxes2 = torch.cat([xy, xy + torch.rand(6, 2, generator=g)], 1)
    torch.testing.assert_close(paired_box_iou(boxes1, boxes2), torch.diag(box_iou(boxes1, boxes2)[0]))
    torch.testing.assert_close(
        paired_generalized_box_iou(boxes1, boxes2), torch.diag(generalized_box_iou(boxes1, boxes2))
    )
