"""RLE helpers and the ImageAnnotation -> RLE converter, on shapes with known pixel areas."""

import numpy as np
import pytest

from core.annotation import ImageAnnotation, Instance
from core import rle
from core.eval.records import ImagePred, gt_from_annotation

SQ = lambda x0, y0, x1, y1: np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def test_encode_decode_roundtrip_and_area():
    m = np.zeros((3, 7, 9), bool)
    m[0, 1:4, 2:6] = True
    m[2, :, 0] = True
    r = rle.encode(m)
    assert len(r) == 3
    assert rle.area(r).tolist() == [12, 0, 7]
    assert np.array_equal(rle.decode(r), m)
    assert rle.to_xyxy(r)[0].tolist() == [2, 1, 6, 4]


def test_polygon_square_hole_and_parts_areas():
    h, w = 40, 40
    assert rle.area([rle.polygons_to_rle([SQ(0, 0, 10, 10)], [], h, w)])[0] == 100
    # hole subtracted: 100 - 16
    assert rle.area([rle.polygons_to_rle([SQ(0, 0, 10, 10)], [SQ(2, 2, 6, 6)], h, w)])[0] == 84
    # two disjoint parts: 100 + 100; overlapping parts: union 150
    assert rle.area([rle.polygons_to_rle([SQ(0, 0, 10, 10), SQ(20, 20, 30, 30)], [], h, w)])[0] == 200
    assert rle.area([rle.polygons_to_rle([SQ(0, 0, 10, 10), SQ(5, 0, 15, 10)], [], h, w)])[0] == 150
    # clipped to the image; a 2-point "polygon" is ignored (empty mask), not read as a box
    assert rle.area([rle.polygons_to_rle([SQ(-5, -5, 5, 5)], [], h, w)])[0] == 25
    assert rle.area([rle.polygons_to_rle([np.array([[0, 0], [9, 9]], float)], [], h, w)])[0] == 0


def test_mask_iou_and_crowd_rule():
    h, w = 20, 20
    a = rle.box_to_rle([0, 0, 10, 10], h, w)
    b = rle.box_to_rle([0, 0, 10, 5], h, w)
    assert rle.mask_iou([b], [a])[0, 0] == pytest.approx(0.5)
    # crowd GT: intersection / detection area = 50 / 50
    assert rle.mask_iou([b], [a], [True])[0, 0] == pytest.approx(1.0)
    assert rle.box_iou(np.array([[0, 0, 10, 5]]), np.array([[0, 0, 10, 10]]))[0, 0] == pytest.approx(0.5)
    assert rle.mask_iou([], [a]).shape == (0, 1)


def test_gt_from_annotation_uses_polygons_holes_and_boxes(tmp_path):
    ann = ImageAnnotation(tmp_path / "a.png", 40, 30, [
        Instance(0, polygons=[SQ(0, 0, 10, 10)], holes=[SQ(2, 2, 6, 6)]),
        Instance(1, box=(20, 5, 30, 15)),
        Instance(1, polygons=[SQ(0, 20, 4, 24)], iscrowd=True),
    ])
    gt = gt_from_annotation(ann)
    assert gt.labels.tolist() == [0, 1, 1]
    assert gt.iscrowd.tolist() == [False, False, True]
    assert rle.area(gt.masks).tolist() == [84, 100, 16]
    assert gt.boxes[1].tolist() == [20, 5, 30, 15]
    assert gt.masks[0]["size"] == [30, 40]


def test_pred_bool_masks_become_rle_and_bad_shapes_raise():
    m = np.zeros((2, 5, 6), bool)
    m[1, 2:4, 1:3] = True
    p = ImagePred(np.zeros((2, 4)), [0.9, 0.2], [0, 1], m)
    assert isinstance(p.masks, list) and rle.area(p.masks).tolist() == [0, 4]
    assert p.top(0.5).scores.tolist() == [0.9]
    with pytest.raises(ValueError, match="lengths differ"):
        ImagePred(np.zeros((2, 4)), [0.9], [0, 1])
    with pytest.raises(ValueError, match=r"masks must be \[2,H,W\]"):
        ImagePred(np.zeros((2, 4)), [0.9, 0.1], [0, 1], np.zeros((3, 5, 6), bool))
