"""Brush and eraser on an instance's mask: paint a stroke into the instance's raster, which the
GUI turns back into polygons (holes kept).

Why through a mask: fixing a GrabCut or model mask (a missed bit, a spill) is a paint stroke, not
twenty vertex drags; the round trip polygon -> mask -> polygon is exact to the pixel grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.annotation import Instance
from core.data.dataset import rasterize_instance

def paint_stroke(mask: np.ndarray, points: Sequence[Sequence[float]], radius: float, value: bool) -> np.ndarray:
    """A copy of bool ``mask`` with a round-capped stroke of ``radius`` px through ``points``
    (image pixel coordinates) set to ``value``: exactly the pixels whose centre (index + 0.5) lies
    within ``radius`` of the polyline. Work is limited to each segment's own window."""
    if radius <= 0:
        raise ValueError(f"brush radius must be positive, got {radius}")
    out = np.array(mask, dtype=bool, copy=True)
    h, w = out.shape
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    segments = list(zip(pts[:-1], pts[1:])) if len(pts) > 1 else [(pts[0], pts[0])]
    for a, b in segments:
        x0 = max(0, int(np.floor(min(a[0], b[0]) - radius)))
        x1 = min(w, int(np.ceil(max(a[0], b[0]) + radius)) + 1)
        y0 = max(0, int(np.floor(min(a[1], b[1]) - radius)))
        y1 = min(h, int(np.ceil(max(a[1], b[1]) + radius)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
        py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
        d = b - a
        length2 = float(d @ d)
        t = 0.0 if length2 == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length2, 0.0, 1.0)
        dist2 = (px - (a[0] + t * d[0])) ** 2 + (py - (a[1] + t * d[1])) ** 2
        out[y0:y1, x0:x1][dist2 <= radius * radius] = bool(value)
    return out


def instance_mask(inst: Instance | None, width: int, height: int) -> np.ndarray:
    """The instance's pixels (boxes and polygons with holes), or an empty mask for None."""
    if inst is None:
        return np.zeros((height, width), bool)
    return rasterize_instance(inst, width, height).astype(bool)
