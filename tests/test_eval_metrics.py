"""The paper's fixed-threshold rules, one tiny hand-computed case each.

Boxes are used (task="detect") unless the rule is about masks; every expected
number below is worked out by hand in the comment next to it.
"""

import numpy as np
import pytest

from core import rle
from core.eval.evaluator import Evaluator
from core.eval.matching import greedy_match
from core.eval.records import ImageGT, ImagePred

H, W = 100, 100


def gt(boxes, labels, crowd=None, masks=None):
    return ImageGT(H, W, np.array(boxes, float).reshape(-1, 4), labels, masks, crowd)


def pred(boxes, scores, labels, masks=None):
    return ImagePred(np.array(boxes, float).reshape(-1, 4), scores, labels, masks)


def run(g, p, task="detect", n=2, **kw):
    ev = Evaluator(n, task=task, coco=False, **kw)
    ev.add(g, p)
    return ev.summary()


def test_exact_match_is_tp():
    s = run(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 10]], [0.9], [0])).fixed
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)
    assert (s.precision, s.recall, s.f1, s.iou) == (1.0, 1.0, 1.0, 1.0)


def test_iou_must_exceed_half_strictly():
    # [0,0,10,5] vs [0,0,10,10]: IoU = 50/100 = 0.5 -> not a match: 1 FP + 1 FN
    s = run(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 5]], [0.9], [0])).fixed
    assert (s.tp, s.fp, s.fn, s.f1, s.iou) == (0, 1, 1, 0.0, 0.0)
    # [0,0,10,6]: IoU = 60/100 = 0.6 -> TP; IoU metric = 0.6 / 1
    s = run(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 6]], [0.9], [0])).fixed
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)
    assert s.iou == pytest.approx(0.6)


def test_second_prediction_on_matched_gt_is_fp():
    # TP (IoU 1) + FP (IoU 0.9 but GT already used): P = 1/2, R = 1, F1 = 2/3, IoU = (1 + 0) / 2
    s = run(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], [0, 0])).fixed
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.precision == 0.5 and s.recall == 1.0
    assert s.f1 == pytest.approx(2 / 3)
    assert s.iou == pytest.approx(0.5)


def test_class_mismatch_is_one_fp_and_one_fn():
    s = run(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 10]], [0.9], [1])).fixed
    assert (s.tp, s.fp, s.fn, s.f1, s.iou) == (0, 1, 1, 0.0, 0.0)
    assert (s.per_class["0"].fn, s.per_class["0"].fp) == (1, 0)
    assert (s.per_class["1"].fp, s.per_class["1"].fn) == (1, 0)
    # rows GT, cols pred, index 2 = background
    assert s.confusion.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_iou_is_mean_over_tp_fp_fn_and_per_class():
    g = gt([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0, 0, 1])
    p = pred([[0, 0, 10, 10], [20, 20, 30, 28], [60, 60, 70, 70]], [0.9, 0.9, 0.9], [0, 0, 1])
    s = run(g, p).fixed
    # TPs IoU 1.0 and 0.8, one FP (class 1), one FN (class 1): IoU = 1.8 / 4
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.iou == pytest.approx(0.45)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    assert s.per_class["0"].iou == pytest.approx(0.9) and s.per_class["0"].f1 == 1.0
    assert s.per_class["1"].iou == 0.0 and s.per_class["1"].f1 == 0.0
    assert s.confusion.tolist() == [[2, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_predictions_under_conf_are_dropped():
    s = run(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 10], [50, 50, 60, 60]], [0.4, 0.9], [0, 0])).fixed
    # the only kept prediction (0.9) is elsewhere: 1 FP + 1 FN
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)
    s = run(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 10]], [0.4], [0]), conf=0.3).fixed
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)


def test_mask_iou_for_segment_box_iou_for_detect():
    # L-shaped GT mask inside box [0,0,10,10]: area 100 - 64 = 36; prediction = full box mask (100 px).
    l_shape = np.zeros((1, H, W), bool)
    l_shape[0, :10, :2] = True
    l_shape[0, 8:10, :10] = True
    assert l_shape.sum() == 36
    g = gt([[0, 0, 10, 10]], [0], masks=l_shape)
    p = pred([[0, 0, 10, 10]], [0.9], [0], masks=[rle.box_to_rle([0, 0, 10, 10], H, W)])
    seg = run(g, p, task="segment").fixed  # mask IoU 36/100 = 0.36 -> no match
    assert (seg.tp, seg.fp, seg.fn) == (0, 1, 1)
    det = run(g, p, task="detect").fixed  # box IoU 1.0 -> TP
    assert (det.tp, det.fp, det.fn, det.iou) == (1, 0, 0, 1.0)


def test_greedy_matching_takes_highest_iou_pair_first():
    # pred0 overlaps GT0 (0.6) and GT1 (0.9); pred1 overlaps GT1 (0.7) only.
    # Greedy: (pred0, GT1, .9) first, then pred1 cannot take GT1 -> pred0-GT1 only.
    m = greedy_match(np.array([[0.6, 0.9], [0.0, 0.7]]))
    assert m.matches == [(0, 1, 0.9)]
    assert m.unmatched_preds == [1] and m.unmatched_gts == [0]


def test_crowd_regions_are_neither_fp_nor_fn():
    g = gt([[0, 0, 10, 10], [50, 50, 90, 90]], [0, 0], crowd=[False, True])
    p = pred([[0, 0, 10, 10], [55, 55, 65, 65]], [0.9, 0.9], [0, 0])
    s = run(g, p).fixed  # the prediction inside the crowd box is ignored, the crowd GT is no FN
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)


def test_f1_curve_and_best_threshold():
    g = gt([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])
    p = pred([[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70]], [0.9, 0.3, 0.6], [0, 0, 1])
    c = run(g, p, thresholds=[0.2, 0.3, 0.5, 0.7, 0.95]).curve
    # t<=.3: TP2 FP1 -> P 2/3 R 1 F1 .8 ; t=.5: TP1 FP1 FN1 -> .5 ; t=.7: TP1 FN1 -> 2/3 ; t=.95: 0
    assert c.f1 == pytest.approx([0.8, 0.8, 0.5, 2 / 3, 0.0])
    assert c.precision == pytest.approx([2 / 3, 2 / 3, 0.5, 1.0, 0.0])
    assert c.best_threshold == 0.3 and c.best_f1 == pytest.approx(0.8)  # ties -> higher threshold
    # class 0 alone: F1 1.0 up to 0.3; class 1 only ever has an FP -> F1 0 everywhere, best = highest
    assert c.per_class_best["0"] == {"threshold": 0.3, "f1": 1.0}
    assert c.per_class_best["1"]["f1"] == 0.0


def test_streams_over_images_and_class_ids_are_checked():
    ev = Evaluator(2, task="detect", coco=False)
    ev.add(gt([[0, 0, 10, 10]], [0]), pred([[0, 0, 10, 10]], [0.9], [0]))
    ev.add(gt([[0, 0, 10, 10]], [1]), pred(np.zeros((0, 4)), [], []))
    s = ev.summary().fixed
    assert (s.tp, s.fp, s.fn, s.recall) == (1, 0, 1, 0.5)
    with pytest.raises(ValueError, match="class id 5"):
        ev.add(gt([[0, 0, 10, 10]], [5]), pred(np.zeros((0, 4)), [], []))
