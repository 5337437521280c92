"""Shared pre/post-processing and the Detections contract, on synthetic arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.errors import UserFacingError
from core.infer.detections import Detections
from core.infer.postprocess import box_pixel_range, paste_masks, paste_masks_naive, postprocess
from core.infer.preprocess import preprocess


def soft_discs(k: int, size: int, rng: np.random.Generator, image_hw: tuple[int, int]):
    """k soft-edged discs (sigmoid probabilities) on a size x size map, and boxes around them
    in image pixels (a bit off the disc, so the box cut matters)."""
    h, w = image_hw
    yy, xx = np.mgrid[0:size, 0:size]
    masks, boxes = [], []
    for _ in range(k):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.04, 0.2) * size
        masks.append(1 / (1 + np.exp(-(r - np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)) / 1.5)))
        boxes.append([(cx - r * 1.1) * w / size, (cy - r * 0.9) * h / size,
                      (cx + r * 0.85) * w / size, (cy + r * 1.2) * h / size])
    return np.array(masks, np.float32), np.array(boxes, np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


# ---------------------------------------------------------------------------- box pixel range

def test_box_pixel_range_uses_pixel_centres():
    # pixel c is inside when its centre c + 0.5 lies in [x0, x1]
    assert box_pixel_range(np.array([0.0, 0.0, 4.0, 3.0]), (10, 10)) == (0, 3, 0, 4)
    assert box_pixel_range(np.array([0.6, 1.5, 2.4, 2.5]), (10, 10)) == (1, 3, 1, 2)
    assert box_pixel_range(np.array([-5.0, -5.0, 50.0, 50.0]), (6, 8)) == (0, 6, 0, 8)
    r0, r1, c0, c1 = box_pixel_range(np.array([3.0, 3.0, 3.2, 3.2]), (10, 10))
    assert r1 <= r0 and c1 <= c0  # no pixel centre inside


# ---------------------------------------------------------------------------- mask pasting

def test_paste_tiny_case_exact_values():
    # 2x2 map [[0, 1], [0, 1]] to 4x4: bilinear columns sample x = (c + .5) / 2 - .5
    # -> -0.25, 0.25, 0.75, 1.25 -> values 0, .25, .75, 1 (edges clamp); > 0.5 keeps cols 2, 3
    m = np.array([[[0.0, 1.0], [0.0, 1.0]]], np.float32)
    full_box = np.array([[0, 0, 4, 4]], np.float32)
    expected = np.zeros((1, 4, 4), bool)
    expected[0, :, 2:] = True
    assert np.array_equal(paste_masks(m, full_box, (4, 4)), expected)
    assert np.array_equal(paste_masks_naive(m, full_box, (4, 4)), expected)
    # the box cuts the mask: only column 2 (centre 2.5 in [0, 3]) survives
    cut = paste_masks(m, np.array([[0, 1, 3, 4]], np.float32), (4, 4))
    assert cut[0].sum() == 3 and cut[0, 1:, 2].all()


@pytest.mark.parametrize("image_hw,map_size", [((1080, 1920), 160), ((333, 517), 40), ((640, 640), 160),
                                               ((37, 91), 64), ((720, 1280), 80)])
def test_crop_resize_equals_full_frame_resize(image_hw, map_size):
    rng = np.random.default_rng(map_size + image_hw[0])
    masks, boxes = soft_discs(12, map_size, rng, image_hw)
    fast = paste_masks(masks, boxes, image_hw)
    naive = paste_masks_naive(masks, boxes, image_hw)
    ious = [iou(f, n) for f, n in zip(fast, naive)]
    assert min(ious) >= 0.99, ious
    assert all(f.sum() > 0 for f in fast)
    # nothing outside the box
    for f, b in zip(fast, boxes):
        r0, r1, c0, c1 = box_pixel_range(b, image_hw)
        inside = np.zeros(image_hw, bool)
        inside[r0:r1, c0:c1] = True
        assert not (f & ~inside).any()


def test_naive_matches_an_independent_bilinear_oracle():
    # the reference itself against a hand-written half-pixel bilinear resize
    rng = np.random.default_rng(3)
    m = rng.random((1, 5, 7)).astype(np.float32)
    h, w = 13, 17
    ys = np.clip((np.arange(h) + 0.5) * 5 / h - 0.5, 0, 4)
    xs = np.clip((np.arange(w) + 0.5) * 7 / w - 0.5, 0, 6)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, 4), np.minimum(x0 + 1, 6)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = m[0]
    oracle = (a[y0][:, x0] * (1 - fy) * (1 - fx) + a[y0][:, x1] * (1 - fy) * fx
              + a[y1][:, x0] * fy * (1 - fx) + a[y1][:, x1] * fy * fx)
    box = np.array([[0, 0, w, h]], np.float32)
    close = np.abs(oracle - 0.5) > 1e-4  # ignore values on the threshold itself
    assert np.array_equal(paste_masks_naive(m, box, (h, w))[0][close], (oracle > 0.5)[close])
    assert np.array_equal(paste_masks(m, box, (h, w))[0][close], (oracle > 0.5)[close])


# ---------------------------------------------------------------------------- postprocess

def raw_batch():
    """Two images' raw outputs: K=4, mask maps 8x8."""
    scores = np.array([[0.9, 0.7, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1]], np.float32)
    labels = np.array([[2, 0, 1, 1], [0, 0, 1, 2]], np.int64)
    boxes = np.array([[[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 1.2, 1.0], [0.5, 0.5, 0.75, 0.75], [0, 0, 1, 1]]] * 2,
                     np.float32)
    masks = np.ones((2, 4, 8, 8), np.float32)
    return {"scores": scores, "labels": labels, "boxes": boxes, "masks": masks}


def test_postprocess_threshold_scaling_and_box_cut():
    dets = postprocess(raw_batch(), [(40, 80), (10, 10)], conf=0.5, class_names=["a", "b", "c"])
    d = dets[0]
    assert len(d) == 3  # 0.9, 0.7 and 0.5 (>= conf) kept
    np.testing.assert_array_equal(d.scores, np.array([0.9, 0.7, 0.5], np.float32))
    np.testing.assert_array_equal(d.labels, [2, 0, 1])
    assert d.labels.dtype == np.int64 and d.boxes.dtype == np.float32
    np.testing.assert_allclose(d.boxes, [[0, 0, 40, 20], [20, 10, 80, 40], [40, 20, 60, 30]])  # x clipped at 80
    assert d.masks.shape == (3, 40, 80) and d.masks.dtype == bool
    # all-ones maps: each mask is exactly its box
    for m, b in zip(d.masks, d.boxes):
        x0, y0, x1, y1 = b.astype(int)
        assert m.sum() == (x1 - x0) * (y1 - y0) and m[y0:y1, x0:x1].all()
    assert len(dets[1]) == 0 and dets[1].masks.shape == (0, 10, 10) and dets[1].boxes.shape == (0, 4)


def test_postprocess_detect_and_rle():
    raw = raw_batch()
    det_only = postprocess({k: v for k, v in raw.items() if k != "masks"}, [(40, 80), (10, 10)], conf=0.6)
    assert det_only[0].masks is None and len(det_only[0]) == 2 and not det_only[0].has_masks
    dense = postprocess(raw, [(40, 80), (10, 10)], conf=0.5)[0]
    rle = postprocess(raw, [(40, 80), (10, 10)], conf=0.5, rle=True)[0]
    assert rle.masks is None and len(rle.rles) == 3
    assert np.array_equal(rle.mask_array(), dense.masks)
    naive = postprocess(raw, [(40, 80), (10, 10)], conf=0.5, naive=True)[0]
    assert np.array_equal(naive.masks, dense.masks)


def test_detections_coco_results_and_validation():
    d = postprocess(raw_batch(), [(40, 80), (10, 10)], conf=0.5)[0]
    rows = d.to_coco_results(image_id=7, category_ids=[10, 11, 12])
    assert [r["category_id"] for r in rows] == [12, 10, 11]
    assert rows[1]["bbox"] == [20.0, 10.0, 60.0, 30.0]  # xywh
    assert rows[0]["segmentation"]["size"] == [40, 80]
    from pycocotools import mask as mask_utils

    assert mask_utils.area(rows[2]["segmentation"]) == 200
    with pytest.raises(ValueError, match="masks must be bool"):
        Detections(d.boxes, d.scores, d.labels, (40, 80), d.masks.astype(np.uint8))
    with pytest.raises(ValueError, match="lengths differ"):
        Detections(d.boxes[:2], d.scores, d.labels, (40, 80))


# ---------------------------------------------------------------------------- preprocess

def test_preprocess_layout_and_values():
    blue = np.zeros((30, 50, 3), np.uint8)
    blue[..., 0] = 255  # BGR blue
    gray = np.full((20, 10), 51, np.uint8)
    batch, sizes = preprocess([blue, gray], (32, 64))
    assert batch.shape == (2, 3, 32, 64) and batch.dtype == np.float32
    assert sizes == [(30, 50), (20, 10)]
    np.testing.assert_allclose(batch[0, 2], 1.0)  # blue lands in the last (RGB) channel
    np.testing.assert_allclose(batch[0, :2], 0.0)
    np.testing.assert_allclose(batch[1], 0.2, atol=1e-6)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    expected = cv2.resize(img, (64, 32), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(preprocess([img], (32, 64))[0][0], expected, atol=1e-6)


def test_preprocess_rejects_bad_images():
    with pytest.raises(UserFacingError, match="image #1: expected dtype uint8"):
        preprocess([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32)], (32, 32))
    with pytest.raises(UserFacingError, match="HxWx3"):
        preprocess([np.zeros((4, 4, 2), np.uint8)], (32, 32))
    with pytest.raises(UserFacingError, match="numpy array"):
        preprocess(["img.jpg"], (32, 32))
