"""Hungarian matcher: known assignments on tiny cases and the cost matrix against formulas."""

import itertools
import math

import torch

from core.loss.matcher import HungarianMatcher


def _logits(probs):
    p = torch.tensor(probs, dtype=torch.float32)
    return torch.log(p / (1 - p))


def _as_pairs(indices):
    return [sorted(zip(r.tolist(), c.tolist())) for r, c in indices]


def test_box_cost_picks_the_obvious_assignment():
    # query 0 sits on target 1, query 2 on target 0, query 1 is far away; same class scores.
    boxes = torch.tensor([[[0.7, 0.7, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05], [0.3, 0.3, 0.2, 0.2]]])
    outputs = {"pred_logits": torch.zeros(1, 3, 2), "pred_boxes": boxes}
    targets = [
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])}
    ]
    indices = HungarianMatcher()(outputs, targets)["indices"]
    assert _as_pairs(indices) == [[(0, 1), (2, 0)]]


def test_class_cost_decides_between_identical_boxes():
    box = [0.5, 0.5, 0.2, 0.2]
    outputs = {
        "pred_logits": _logits([[[0.9, 0.1], [0.1, 0.9]]]),
        "pred_boxes": torch.tensor([[box, box]]),
    }
    targets = [{"labels": torch.tensor([1, 0]), "boxes": torch.tensor([box, box])}]
    assert _as_pairs(HungarianMatcher()(outputs, targets)["indices"]) == [[(0, 1), (1, 0)]]


def _mask_case():
    """Boxes favour query i <-> target i; the predicted masks favour the swap."""
    h = w = 8
    left = torch.zeros(h, w)
    left[:, :4] = 1
    right = 1 - left
    gt_small = torch.nn.functional.interpolate(torch.stack([left, right])[:, None], size=(32, 32))[:, 0]
    pred_masks = torch.stack([right, left])[None] * 20 - 10  # query 0 predicts target 1's mask
    outputs = {
        "pred_logits": torch.zeros(1, 2, 1),
        "pred_boxes": torch.tensor([[[0.5, 0.5, 0.40, 0.40], [0.5, 0.5, 0.44, 0.44]]]),
        "pred_masks": pred_masks,
    }
    targets = [
        {
            "labels": torch.tensor([0, 0]),
            "boxes": torch.tensor([[0.5, 0.5, 0.40, 0.40], [0.5, 0.5, 0.44, 0.44]]),
            "masks": gt_small.to(torch.uint8),  # input resolution 32x32, resized to 8x8 inside
        }
    ]
    return outputs, targets


def test_mask_cost_decides_the_assignment():
    outputs, targets = _mask_case()
    no_mask = HungarianMatcher(cost_mask=0, cost_mask_dice=0)(outputs, targets)["indices"]
    assert _as_pairs(no_mask) == [[(0, 0), (1, 1)]]
    with_mask = HungarianMatcher()(outputs, targets)["indices"]
    assert _as_pairs(with_mask) == [[(0, 1), (1, 0)]]
    dice_only = HungarianMatcher(cost_mask=0, cost_mask_dice=1)(outputs, targets)["indices"]
    assert _as_pairs(dice_only) == [[(0, 1), (1, 0)]]


def test_has_mask_false_removes_the_mask_cost():
    outputs, targets = _mask_case()
    targets[0]["has_mask"] = torch.tensor([False, False])
    assert _as_pairs(HungarianMatcher()(outputs, targets)["indices"]) == [[(0, 0), (1, 1)]]


def test_cost_matrix_equals_the_written_out_formula():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 3, 2, generator=g)
    boxes = torch.tensor([[[0.4, 0.5, 0.3, 0.2], [0.6, 0.4, 0.2, 0.3], [0.5, 0.5, 0.5, 0.5]]])
    masks = torch.randn(1, 3, 2, 2, generator=g) * 3
    gt_boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.6, 0.2, 0.2]])
    gt_masks = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    labels = [1, 0]
    m = HungarianMatcher(cost_class=2, cost_bbox=5, cost_giou=2, cost_mask=1.5, cost_mask_dice=0.5)
    cost = m.cost_matrices(
        {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks},
        [{"labels": torch.tensor(labels), "boxes": gt_boxes, "masks": gt_masks}],
    )[0]

    def xyxy(b):
        cx, cy, w, h = b.tolist()
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    def giou(a, b):
        ax0, ay0, ax1, ay1 = xyxy(a)
        bx0, by0, bx1, by1 = xyxy(b)
        inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        encl = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
        return inter / union - (encl - union) / encl

    for q, t in itertools.product(range(3), range(2)):
        p = torch.sigmoid(logits[0, q, labels[t]]).item()
        cls = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p**2 * -math.log(1 - p + 1e-8)
        l1 = (boxes[0, q] - gt_boxes[t]).abs().sum().item()
        pm = torch.sigmoid(masks[0, q]).flatten().tolist()
        gm = gt_masks[t].flatten().tolist()
        dice = 1 - (2 * sum(a * b for a, b in zip(pm, gm)) + 1e-6) / (sum(pm) + sum(gm) + 1e-6)
        focal = sum(
            0.25 * (1 - a) ** 2 * -math.log(a + 1e-8) * b + 0.75 * a**2 * -math.log(1 - a + 1e-8) * (1 - b)
            for a, b in zip(pm, gm)
        ) / len(pm)
        expected = 2 * cls + 5 * l1 - 2 * giou(boxes[0, q], gt_boxes[t]) + 1.5 * focal + 0.5 * dice
        assert abs(cost[q, t].item() - expected) < 1e-5, (q, t)


def test_batch_with_an_empty_image_and_topk_rounds():
    outputs = {
        "pred_logits": torch.zeros(2, 4, 1),
        "pred_boxes": torch.tensor(
            [[[0.2, 0.2, 0.1, 0.1], [0.21, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]]] * 2
        ),
    }
    targets = [
        {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.2, 0.2, 0.1, 0.1]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
    ]
    result = HungarianMatcher()(outputs, targets, return_topk=2)
    assert _as_pairs(result["indices"]) == [[(0, 0)], []]
    # second round may not reuse query 0: the next closest box (query 1) gets the target too
    assert _as_pairs(result["indices_o2m"]) == [[(0, 0), (1, 0)], []]


def test_mask_focal_cost_caps_the_logs_as_upstream():
    """Upstream D-FINE-seg's focal mask cost takes log(p + 1e-8) and log(1 - p + 1e-8): at a
    saturated logit (p == 1 in float32) the wrong-side pixel costs 0.75 * -log(1e-8), not the
    exact 0.75 * logit."""
    from core.loss.mask_ops import pairwise_focal_cost

    logits = torch.tensor([[[30.0, -30.0]]])  # [Q=1, 1, 2]
    gt = torch.tensor([[[0.0, 1.0]]])  # both pixels on the wrong side
    cost = pairwise_focal_cost(logits, gt, alpha=0.25, gamma=2.0)
    p_low = torch.sigmoid(torch.tensor(-30.0)).item()
    expected = (0.75 * -math.log(1e-8) + 0.25 * (1 - p_low) ** 2 * -math.log(p_low + 1e-8)) / 2
    assert abs(cost.item() - expected) < 1e-5 * expected
