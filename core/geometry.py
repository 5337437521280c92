"""Plane geometry every room shares: box IoU and mask -> polygon tracing (one of each).

Pixel convention (the one of ``core.annotation``): pixel (row r, column c) is the unit square
[c, c+1] x [r, r+1], origin at the top-left corner of the top-left pixel. A traced polygon
therefore runs along the outer edges of the mask's pixels and covers their area: rasterising
it again (pycocotools, as evaluation and training do) gives back the mask, where a polygon
through pixel centres would lose a half-pixel rim (about 10 % of the IoU of a 30 px object).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import shapely
from shapely.geometry import GeometryCollection, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

PIXEL_HALF = 0.5  # from a pixel's centre to its edge


def box_iou(a: np.ndarray, b: np.ndarray, iscrowd: Sequence[bool] | None = None) -> np.ndarray:
    """IoU [N, M] of xyxy boxes [N, 4] x [M, 4], continuous coordinates (no +1), as pycocotools
    computes it. For a crowd box of ``b`` the value is intersection / area(a), COCO's rule that
    lets detections inside a crowd region be ignored. Empty boxes have IoU 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    if iscrowd is not None and len(b):
        crowd = np.asarray(iscrowd, bool).reshape(-1)
        union = np.where(crowd[None, :], area_a[:, None], union)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_iou_xyxy(a, b) -> float:
    """IoU of two single xyxy boxes."""
    return float(box_iou(a, b)[0, 0])


def _polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom] if not geom.is_empty else []
    if isinstance(geom, (MultiPolygon, GeometryCollection)):
        return [p for g in geom.geoms for p in _polygon_parts(g)]
    return []  # lines/points left by make_valid carry no area


def _traced_shapes(mask: np.ndarray) -> list[tuple[BaseGeometry, bool]]:
    """Each outer contour with its holes, through pixel centres (OpenCV's trace + 0.5), or for
    lone pixels and one-pixel lines (no area between centres) their pixel squares already:
    (shape, on_pixel_edges)."""
    m = np.ascontiguousarray(np.asarray(mask).astype(np.uint8))
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    hier = hierarchy[0]
    shapes: list[tuple[BaseGeometry, bool]] = []
    for i, contour in enumerate(contours):
        if hier[i][3] >= 0:  # holes are collected from their parent
            continue
        shell = contour.reshape(-1, 2).astype(np.float64) + PIXEL_HALF
        if len(shell) < 3 or Polygon(shell).area == 0:  # lone pixels, one-pixel-wide lines
            shapes.append((shapely.union_all([Point(x, y).buffer(PIXEL_HALF, cap_style="square")
                                              for x, y in np.unique(shell, axis=0)]), True))
            continue
        holes = []
        child = hier[i][2]
        while child >= 0:
            if len(contours[child]) >= 3:
                holes.append(contours[child].reshape(-1, 2).astype(np.float64) + PIXEL_HALF)
            child = hier[child][0]
        shapes.append((shapely.make_valid(Polygon(shell, holes)), False))
    return shapes


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0, min_area: float = 0.0
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Binary mask [H, W] -> (outer polygons, holes) as float64 (N, 2) pixel-edge outlines (see
    the module docstring), valid (shapely) and counter-clockwise outers.

    ``tolerance`` simplifies (max distance in px from the traced outline; 0 keeps every corner,
    an editor wants ~1 px: far fewer vertices to drag); parts and holes smaller than
    ``min_area`` px^2 are dropped (specks). Lone pixels and one-pixel lines are kept as their
    squares/strips, so with ``min_area=0`` no foreground pixel is lost."""
    outers: list[np.ndarray] = []
    inners: list[np.ndarray] = []
    for shape, on_edges in _traced_shapes(mask):
        geom = shape
        if not on_edges:
            if tolerance > 0:
                geom = shapely.make_valid(geom.simplify(tolerance, preserve_topology=True))
            geom = shapely.make_valid(geom.buffer(PIXEL_HALF, join_style="mitre", mitre_limit=5.0))
        geom = shapely.make_valid(geom.simplify(0.0))  # drop collinear vertices
        for part in _polygon_parts(geom):
            if part.area < max(min_area, 1e-9):
                continue
            part = shapely.geometry.polygon.orient(part, sign=1.0)
            outers.append(np.asarray(part.exterior.coords, dtype=np.float64)[:-1])
            for ring in part.interiors:
                if Polygon(ring).area >= max(min_area, 1e-9):
                    inners.append(np.asarray(ring.coords, dtype=np.float64)[:-1])
    return outers, inners
