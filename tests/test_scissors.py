"""Intelligent scissors engine (core.scissors): paths snap to edges, anchors undo, closing gives
valid polygons — on a synthetic square (exact numbers) and on a real photo (coco8-seg)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from core.errors import UserFacingError
from core.scissors import Scissors, path_polygons

COCO8 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco8-seg"
SQUARE = Polygon([(50, 50), (150, 50), (150, 150), (50, 150)])


def square_image(seed: int = 0) -> np.ndarray:
    """200x200 grey noise with a bright square whose pixels are [50, 150) x [50, 150)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(70, 8, (200, 200)).clip(0, 255)
    img[50:150, 50:150] = rng.normal(190, 8, (100, 100)).clip(0, 255)
    return cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2BGR)


def edge_distances(path: np.ndarray) -> np.ndarray:
    return np.array([SQUARE.exterior.distance(Polygon([(x, y), (x + 1e-3, y), (x, y + 1e-3)]).centroid)
                     for x, y in path])


def test_path_between_two_anchors_on_an_edge_stays_on_it():
    s = Scissors(square_image())
    s.append((50.5, 60.5))
    path = s.path_to((50.5, 140.5))
    assert len(path) >= 80
    assert edge_distances(path).max() <= 1.0  # pixel centres either side of x = 50


def test_path_round_a_corner_follows_the_edges_not_the_chord():
    s = Scissors(square_image(1))
    s.append((50.5, 110.5))      # left edge
    path = s.path_to((110.5, 50.5))  # top edge: the straight chord passes 42 px inside the corner
    assert edge_distances(path).max() <= 1.5
    assert np.hypot(*(path.min(axis=0) - (50.5, 50.5))) <= 1.5  # went through the corner


def test_close_gives_the_square_and_pop_undoes_one_anchor():
    s = Scissors(square_image(2))
    for p in [(100.5, 50.5), (149.5, 100.5), (100.5, 149.5)]:  # mid-points of three sides
        s.append(p)
    s.append((10.5, 10.5))  # a wrong click ...
    assert s.pop() == (10.5, 10.5)  # ... is one undo step
    s.append((50.5, 100.5))  # the fourth side: the way back cannot run along the others
    assert len(s.anchors) == 4 and len(s.outline()) > 290
    parts = s.close()
    assert len(parts) == 1 and s.anchors == []
    poly = Polygon(parts[0])
    assert poly.is_valid
    iou = poly.intersection(SQUARE).area / poly.union(SQUARE).area
    assert iou >= 0.97  # through pixel centres: ~0.5 px inside the 100 px square's edges
    assert len(parts[0]) <= 12  # simplified: a few vertices to drag, not 400


def test_prepare_builds_the_last_anchors_map_once():
    s = Scissors(square_image())
    s.prepare()  # no anchor: nothing to do
    s.append((50.5, 60.5))
    s.prepare()
    built = []

    class Spy:  # the OpenCV object's methods are read-only: wrap it
        def __init__(self, tool):
            self.tool = tool

        def buildMap(self, p):  # noqa: N802 (OpenCV's name)
            built.append(p)
            self.tool.buildMap(p)

        def getContour(self, p):  # noqa: N802
            return self.tool.getContour(p)

    s._tool = Spy(s._tool)
    path = s.path_to((50.5, 140.5))
    assert built == [] and len(path) >= 80  # the map prepare built serves the preview
    s.append((50.5, 140.5))
    s.path_to((100.5, 149.5))
    assert built == [(50, 140)]  # a new anchor: one new map


def test_close_needs_three_anchors_and_rejects_bad_input():
    s = Scissors(square_image())
    s.append((50.5, 50.5))
    s.append((149.5, 50.5))
    with pytest.raises(UserFacingError, match="closing needs 3"):
        s.close()
    with pytest.raises(UserFacingError):
        s.append((float("nan"), 3.0))
    with pytest.raises(UserFacingError):
        Scissors(np.zeros((10, 10, 3), np.float32))
    assert Scissors(square_image()).path_to((3, 3)).shape == (0, 2)


def test_points_outside_the_image_are_clamped():
    s = Scissors(square_image())
    s.append((-20, -20))
    path = s.path_to((500, 500))
    assert (path >= 0.5).all() and (path <= 199.5).all()
    assert tuple(path[0]) == (0.5, 0.5) and tuple(path[-1]) == (199.5, 199.5)


def test_large_images_are_worked_on_downscaled_in_image_coordinates():
    big = cv2.resize(square_image(3), (800, 800), interpolation=cv2.INTER_NEAREST)  # square [200, 600)
    s = Scissors(big, max_pixels=200 * 200)
    assert s.scale == pytest.approx(0.25)
    for p in [(202, 202), (598, 202), (598, 598), (202, 598)]:
        s.append(p)
    poly = Polygon(s.close()[0])
    big_square = Polygon([(200, 200), (600, 200), (600, 600), (200, 600)])
    assert poly.intersection(big_square).area / poly.union(big_square).area >= 0.97


def test_self_crossing_path_becomes_valid_parts():
    bowtie = np.array([(0, 0), (10, 10), (10, 0), (0, 10)], float)
    parts = path_polygons(bowtie, simplify=0)
    assert len(parts) == 2 and all(Polygon(p).is_valid for p in parts)
    assert path_polygons(np.array([(1, 1), (1, 1), (2, 2)], float)) == []
    # a bow-tie with a spur: make_valid gives a collection holding a MultiPolygon and a line
    spur = np.array([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0), (-5, -5)], float)
    parts = path_polygons(spur, simplify=0)
    assert len(parts) == 2 and sum(Polygon(p).area for p in parts) == pytest.approx(50.0)


@pytest.mark.skipif(not COCO8.is_dir(), reason="coco8-seg not in ../shared/data")
def test_closing_on_a_coco8_photo_gives_a_valid_polygon_near_the_object():
    from core.data.images import read_image

    img_path = COCO8 / "images" / "val" / "000000000042.jpg"
    img = read_image(img_path)
    h, w = img.shape[:2]
    line = (COCO8 / "labels" / "val" / "000000000042.txt").read_text().splitlines()[0].split()
    ring = np.array(line[1:], float).reshape(-1, 2) * (w, h)
    truth = Polygon(ring).buffer(0)
    s = Scissors(img)
    step = max(1, len(ring) // 12)
    for p in ring[::step]:
        s.append(p)
    parts = s.close()
    assert parts and all(Polygon(p).is_valid and len(p) >= 3 for p in parts)
    poly = Polygon(parts[0])
    assert poly.intersection(truth).area / poly.union(truth).area >= 0.8
