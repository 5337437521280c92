"""Intelligent scissors: an outline that snaps to image edges between the points a person clicks.

Why OpenCV's ``IntelligentScissorsMB`` (what CVAT uses): it needs no model and no download; the
edge features of an image are computed once (tens of ms for a photo), then each anchor costs one
shortest-path map (Dijkstra over the image, ~0.1 s at 640x480) and every path from that anchor to
the pointer is a cheap look-up — fast enough for a live preview while the pointer moves.

Use (one :class:`Scissors` per image, built on a worker thread for a large image)::

    s = Scissors(image_bgr)            # edge features, once
    s.append((x, y))                   # an anchor (one undo step: s.pop())
    s.path_to((x, y))                  # snapped path last anchor -> pointer, (N, 2) float, live preview
    s.append((x, y))                   # the next anchor: the path to it becomes part of the outline
    parts = s.close()                  # path back to the first anchor -> valid polygons, ready to edit

Coordinates are image pixels as the labels use them (pixel ``i`` covers ``[i, i+1)``): a path runs
through pixel centres. Images larger than ``max_pixels`` are worked on downscaled (the paths are
scaled back), which keeps an anchor's map under ~0.5 s on 12 MP photos.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon

from core.errors import UserFacingError

__all__ = ["MAX_PIXELS", "SIMPLIFY_PX", "Scissors", "path_polygons"]

MAX_PIXELS = 2_000_000  # larger images are downscaled for the edge features and the maps
SIMPLIFY_PX = 1.0       # the closed outline is simplified by this much (px): fewer vertices to drag
GRADIENT_MAX = 200      # gradient magnitudes above this count as equally strong edges
# Edge feature: Laplacian zero-crossings (OpenCV's default), not Canny(32, 100) as in OpenCV's
# sample: on COCO128-seg (first 8 images, 17 objects, IoU 0.85) the simulated user needed 1.13x the
# on-edge polygon actions with zero-crossings vs 1.24x with Canny (benchmarks/README.md).


def path_polygons(path: np.ndarray, simplify: float = SIMPLIFY_PX, min_area: float = 1.0) -> list[np.ndarray]:
    """A closed pixel path (N, 2) -> valid polygons (float64 (M, 2), counter-clockwise), largest
    first: a path that touches or crosses itself becomes its parts (``shapely.make_valid``), never
    an invalid ring; parts under ``min_area`` px^2 are dropped."""
    pts = np.asarray(path, dtype=np.float64)
    if len(pts) >= 2:
        keep = np.ones(len(pts), bool)
        keep[1:] = np.any(np.diff(pts, axis=0) != 0, axis=1)  # no repeated points
        pts = pts[keep]
    if len(pts) < 3:
        return []
    geom = shapely.make_valid(Polygon(pts))
    if simplify > 0:
        geom = shapely.make_valid(geom.simplify(simplify, preserve_topology=True))
    parts = [g for g in _polygons(geom) if g.area >= min_area]
    parts.sort(key=lambda g: -g.area)
    out = []
    for part in parts:
        part = shapely.geometry.polygon.orient(part, sign=1.0)
        out.append(np.asarray(part.exterior.coords, dtype=np.float64)[:-1])
    return out


def _polygons(geom) -> list[Polygon]:
    """The polygons of a geometry, collections flattened (``make_valid`` can return a collection
    holding a MultiPolygon and lines)."""
    if isinstance(geom, Polygon):
        return [] if geom.is_empty else [geom]
    return [p for g in getattr(geom, "geoms", ()) for p in _polygons(g)]


class Scissors:
    """The intelligent-scissors state of one image: its edge features, the anchors placed so far
    and the snapped outline between them. Not thread-safe: build it on a worker, then use it from
    one thread (``path_to`` of a new anchor builds its map, ~0.1-0.5 s, once)."""

    def __init__(self, image: np.ndarray, max_pixels: int = MAX_PIXELS):
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserFacingError(f"intelligent scissors need a BGR uint8 image, got shape {image.shape} "
                                  f"{image.dtype}")
        self.height, self.width = image.shape[:2]
        self.scale = min(1.0, float(np.sqrt(max_pixels / max(1, self.width * self.height))))
        work = image
        if self.scale < 1.0:
            work = cv2.resize(image, (max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale))),
                              interpolation=cv2.INTER_AREA)
        self._wh = (work.shape[1], work.shape[0])
        self._tool = cv2.segmentation.IntelligentScissorsMB()
        self._tool.setEdgeFeatureZeroCrossingParameters()
        self._tool.setGradientMagnitudeMaxLimit(GRADIENT_MAX)
        self._tool.applyImage(np.ascontiguousarray(work))
        self._source: tuple[int, int] | None = None  # the point whose map is built
        self.anchors: list[tuple[float, float]] = []
        self._segments: list[np.ndarray] = []  # _segments[k]: path anchors[k] -> anchors[k + 1]

    # ---------------------------------------------------------------- coordinates
    def _cell(self, point: Sequence[float]) -> tuple[int, int]:
        """Image point -> the (x, y) pixel of the working image, clamped inside it."""
        x, y = float(point[0]), float(point[1])
        if not (np.isfinite(x) and np.isfinite(y)):
            raise UserFacingError(f"point {point!r} is not finite")
        cx = min(max(int(np.floor(x * self.scale)), 0), self._wh[0] - 1)
        cy = min(max(int(np.floor(y * self.scale)), 0), self._wh[1] - 1)
        return cx, cy

    def _to_image(self, cells: np.ndarray) -> np.ndarray:
        return (np.asarray(cells, dtype=np.float64).reshape(-1, 2) + 0.5) / self.scale

    # ---------------------------------------------------------------- paths
    def paths_from(self, source: Sequence[float], targets: Sequence[Sequence[float]]) -> list[np.ndarray]:
        """The snapped paths from ``source`` to each of ``targets`` (image points), each (N, 2)
        float64 from source to target through pixel centres. One map for ``source`` (reused
        while the source stays the same)."""
        src = self._cell(source)
        if self._source != src:
            self._tool.buildMap(src)
            self._source = src
        return [self._to_image(self._tool.getContour(self._cell(t))) for t in targets]

    def path_to(self, point: Sequence[float]) -> np.ndarray:
        """The live preview: the snapped path from the last anchor to ``point`` (empty (0, 2)
        without an anchor)."""
        if not self.anchors:
            return np.zeros((0, 2))
        return self.paths_from(self.anchors[-1], [point])[0]

    def prepare(self) -> None:
        """Build the last anchor's map now (what the first ``path_to`` after ``append`` would do,
        ~0.1-0.5 s): a GUI calls it on its worker right after ``append`` and previews a straight
        line until it returns (no other call on this object meanwhile)."""
        if self.anchors:
            self.paths_from(self.anchors[-1], [])

    def append(self, point: Sequence[float]) -> None:
        """Add an anchor; the snapped path from the previous anchor becomes part of the outline."""
        self._cell(point)  # validates
        p = (float(point[0]), float(point[1]))
        if self.anchors:
            self._segments.append(self.paths_from(self.anchors[-1], [p])[0])
        self.anchors.append(p)

    def pop(self) -> tuple[float, float] | None:
        """Undo the last anchor (and its path); None when there is none."""
        if not self.anchors:
            return None
        if self._segments:
            self._segments.pop()
        return self.anchors.pop()

    def outline(self) -> np.ndarray:
        """The open outline so far (first anchor -> last anchor), (N, 2)."""
        if not self.anchors:
            return np.zeros((0, 2))
        if not self._segments:
            return self._to_image(np.array([self._cell(self.anchors[0])]))
        return np.vstack([self._segments[0]] + [s[1:] for s in self._segments[1:]])

    def closing_path(self) -> np.ndarray:
        """The snapped path from the last anchor back to the first (what ``close`` adds)."""
        if len(self.anchors) < 2:
            return np.zeros((0, 2))
        return self.paths_from(self.anchors[-1], [self.anchors[0]])[0]

    def close(self, simplify: float = SIMPLIFY_PX) -> list[np.ndarray]:
        """Close the outline back to the first anchor -> its polygons (largest first; several only
        when the path crosses itself), then start over. Needs 3 anchors (2 would give a path there
        and the same path back)."""
        if len(self.anchors) < 3:
            raise UserFacingError(f"intelligent scissors: {len(self.anchors)} point(s) placed, closing needs 3")
        ring = np.vstack([self.outline(), self.closing_path()[1:]])
        self.anchors.clear()
        self._segments.clear()
        return path_polygons(ring, simplify)
