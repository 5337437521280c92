"""core.geometry: the one box IoU (pycocotools is the oracle) and the one mask -> polygon trace
(pixel-edge convention: rasterising the polygons gives back the mask)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from shapely.geometry import Polygon

from core.annotation import Instance
from core.data.formats.coco import instance_rle
from core.geometry import box_iou, box_iou_xyxy, mask_to_polygons


def test_box_iou_equals_pycocotools_with_crowd() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 50, (40, 2))
    a = np.hstack([a, a + rng.uniform(0.5, 30, (40, 2))])
    b = rng.uniform(0, 50, (30, 2))
    b = np.hstack([b, b + rng.uniform(0.5, 30, (30, 2))])
    crowd = rng.random(30) < 0.3
    xywh = lambda x: np.hstack([x[:, :2], x[:, 2:] - x[:, :2]])  # noqa: E731
    oracle = np.asarray(mask_utils.iou(xywh(a), xywh(b), crowd.astype(int).tolist()))
    np.testing.assert_allclose(box_iou(a, b, crowd), oracle, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(box_iou(a, b), np.asarray(mask_utils.iou(xywh(a), xywh(b), [0] * 30)), atol=1e-12)


def test_box_iou_exact_small_cases() -> None:
    assert box_iou_xyxy([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert box_iou_xyxy([0, 0, 2, 2], [2, 0, 4, 2]) == 0.0  # touching edges
    assert box_iou_xyxy([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # empty boxes: no NaN
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def _back(m: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    outers, holes = mask_to_polygons(m, tolerance)
    return mask_utils.decode(instance_rle(Instance(0, polygons=outers, holes=holes), *m.shape)).astype(bool)


@pytest.mark.parametrize("seed", range(6))
def test_polygons_rasterise_back_to_the_mask(seed: int) -> None:
    """Blobs with holes, thin strips and lone pixels: pixel for pixel with tolerance 0."""
    import cv2

    rng = np.random.default_rng(seed)
    m = np.zeros((80, 90), np.uint8)
    for _ in range(4):
        cv2.ellipse(m, (int(rng.integers(10, 80)), int(rng.integers(10, 70))),
                    (int(rng.integers(4, 20)), int(rng.integers(4, 20))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    cv2.circle(m, (45, 40), 5, 0, -1)  # a hole where the blobs cover it
    m[5, 3:30] = 1  # a one-pixel strip
    m[70, 85] = 1  # a lone pixel
    m = m.astype(bool)
    back = _back(m)
    assert (back == m).mean() > 0.999 and (back & m).sum() / (back | m).sum() > 0.995


def test_exact_convention_on_tiny_cases() -> None:
    m = np.zeros((10, 10), bool)
    m[2:5, 3:7] = True
    (outer,), holes = mask_to_polygons(m)
    assert holes == [] and Polygon(outer).equals(Polygon([(3, 2), (7, 2), (7, 5), (3, 5)]))
    assert Polygon(outer).exterior.is_ccw  # outers counter-clockwise (y down: as drawn, clockwise)
    line = np.zeros((10, 10), bool)
    line[4, 2:7] = True
    (strip,), _ = mask_to_polygons(line)
    assert Polygon(strip).equals(Polygon([(2, 4), (7, 4), (7, 5), (2, 5)]))
    assert (_back(line) == line).all()
    assert mask_to_polygons(np.zeros((5, 5), bool)) == ([], [])


def test_holes_kept_and_min_area_drops_specks() -> None:
    m = np.zeros((40, 40), bool)
    m[5:35, 5:35] = True
    m[15:25, 15:25] = False
    m[38, 38] = True
    outers, holes = mask_to_polygons(m, min_area=4)
    assert len(outers) == 1 and len(holes) == 1
    assert Polygon(outers[0], holes).area == pytest.approx(30 * 30 - 10 * 10 + 0.5 * 4 * 0.5)  # 4 cut corners
    assert (_back(m)[:36, :36] == m[:36, :36]).all()
