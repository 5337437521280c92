"""core.grabcut: box -> mask on the demo images, holes, refinement clicks, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.dataset import rasterize_instance
from core.demo import render_demo_image
from core.errors import UserFacingError
from core.grabcut import grabcut_mask, mask_iou, next_click


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_demo_objects_from_their_box_alone():
    img, insts = render_demo_image(0)
    ious = []
    for inst in insts:
        gt = rasterize_instance(inst, img.shape[1], img.shape[0]).astype(bool)
        ious.append(mask_iou(grabcut_mask(img, _bbox(gt)), gt))
    assert len(ious) == 4 and min(ious) >= 0.95


def _scene() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = (rng.normal(60, 8, (200, 300, 3))).clip(0, 255).astype(np.uint8)
    return img


def test_ring_keeps_its_hole():
    import cv2

    img = _scene()
    gt = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(gt, (150, 100), 60, 1, -1)
    cv2.circle(gt, (150, 100), 25, 0, -1)
    img[gt.astype(bool)] = (40, 200, 230)
    m = grabcut_mask(img, (85, 35, 215, 165))
    assert mask_iou(m, gt.astype(bool)) >= 0.95
    assert not m[100, 150]  # the hole is background
    from core.geometry import mask_to_polygons

    outer, holes = mask_to_polygons(m, 1.0, 16.0)
    assert len(outer) == 1 and len(holes) == 1


def test_negative_click_removes_a_touching_neighbour():
    img = _scene()
    gt = np.zeros(img.shape[:2], bool)
    gt[60:140, 60:140] = True
    img[60:140, 60:140] = (30, 160, 240)
    img[60:140, 140:220] = (35, 155, 240)  # a touching neighbour of a near-identical colour
    box = (55, 55, 180, 145)  # a sloppy box that takes part of the neighbour
    first = grabcut_mask(img, box)
    assert mask_iou(first, gt) < 0.8
    click = next_click(first, gt)
    assert click is not None and click[1] is False  # the biggest error is extra: a negative click
    x, y = click[0]
    assert 140 <= x <= 180 and 60 <= y <= 140
    pos, neg = [], [click[0]]
    m = grabcut_mask(img, box, pos, neg)
    while mask_iou(m, gt) < 0.9 and len(pos) + len(neg) < 4:
        c = next_click(m, gt)
        (pos if c[1] else neg).append(c[0])
        m = grabcut_mask(img, box, pos, neg)
    assert mask_iou(first, gt) == pytest.approx(0.667, abs=0.01)  # the box took 40 of 120 columns
    assert mask_iou(m, gt) >= 0.99 and (len(pos), len(neg)) == (0, 1)  # one negative click fixes it
    np.testing.assert_array_equal(m, grabcut_mask(img, box, pos, neg))  # deterministic


def test_positive_click_outside_box_is_object():
    img = _scene()
    gt = np.zeros(img.shape[:2], bool)
    gt[50:150, 50:150] = True
    img[gt] = (200, 90, 20)
    m = grabcut_mask(img, (50, 50, 120, 150), positive=[(140, 100)])
    assert m[100, 140]


def test_bad_input_is_one_clear_error():
    img = _scene()
    with pytest.raises(UserFacingError, match="under 2 px"):
        grabcut_mask(img, (10, 10, 11, 40))
    with pytest.raises(UserFacingError, match="BGR uint8"):
        grabcut_mask(img.astype(np.float32), (10, 10, 50, 50))
    with pytest.raises(UserFacingError, match="under 2 px"):
        grabcut_mask(img, (400, 10, 500, 50))  # entirely outside the image


def test_next_click_none_when_perfect():
    m = np.zeros((10, 10), bool)
    m[2:5, 2:5] = True
    assert next_click(m, m) is None
    assert next_click(np.zeros_like(m), m)[1] is True


def test_editor_polygon_covers_mask_pixels_as_areas():
    """mask_instance grows the outline to the pixels' edges: a small triangle keeps its IoU."""
    import cv2

    from app.prelabel import mask_instance

    m = np.zeros((60, 60), np.uint8)
    cv2.fillPoly(m, [np.array([[10, 10], [40, 12], [20, 38]], np.int32)], 1)
    m = m.astype(bool)
    inst = mask_instance(m, 2)
    assert inst.source == "model" and inst.class_id == 2
    grown = mask_iou(rasterize_instance(inst, 60, 60).astype(bool), m)
    from core.annotation import Instance

    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    centres = Instance(0, polygons=[c.reshape(-1, 2) + 0.5 for c in contours])  # the old trace
    through_centres = mask_iou(rasterize_instance(centres, 60, 60).astype(bool), m)
    assert grown >= 0.95 and through_centres < 0.9
    sq = np.zeros((20, 20), bool)
    sq[5:10, 4:12] = True
    np.testing.assert_allclose(mask_instance(sq, 0).bbox(), (4.0, 5.0, 12.0, 10.0), atol=1e-9)


def test_margin_and_core_options_keep_an_easy_object():
    img, insts = render_demo_image(0)
    for inst in insts:
        gt = rasterize_instance(inst, img.shape[1], img.shape[0]).astype(bool)
        for opts in ({"margin": 0.5}, {"core": 0.8}, {"iterations": 2}):
            assert mask_iou(grabcut_mask(img, _bbox(gt), **opts), gt) >= 0.9, opts
