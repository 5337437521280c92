"""Label checks that need no model: geometry outside the image or degenerate."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box

from core.analysis.issues import LabelIssue
from core.annotation import ImageAnnotation, Instance


def _shape(inst: Instance):
    """The instance as a shapely geometry (parts minus holes), made valid."""
    if inst.is_box:
        return shapely_box(*inst.bbox())
    parts = [Polygon(p) for p in inst.polygons if len(p) >= 3]
    geom = shapely.union_all([shapely.make_valid(p) for p in parts]) if parts else Polygon()
    for h in inst.holes:
        if len(h) >= 3:
            geom = geom.difference(shapely.make_valid(Polygon(h)))
    return geom


def _flat_polygons(geom) -> list[list[float]]:
    polys = [geom] if geom.geom_type == "Polygon" else [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon"]
    return [np.asarray(p.exterior.coords[:-1], np.float64).round(2).ravel().tolist() for p in polys if not p.is_empty]


def check_geometry(ann: ImageAnnotation, min_area: float = 4.0, edge_tol: float = 1.0) -> tuple[list[LabelIssue], set[int]]:
    """Issues for out-of-image and degenerate instances, and the set of degenerate
    instance indices (the model-based checks skip those)."""
    issues: list[LabelIssue] = []
    degenerate: set[int] = set()
    frame = shapely_box(0, 0, ann.width, ann.height)
    img = str(ann.image_path)
    for k, inst in enumerate(ann.instances):
        pts = np.concatenate(inst.polygons) if inst.polygons else np.asarray(inst.bbox(), float).reshape(2, 2)
        bbox = list(inst.bbox()) if np.isfinite(pts).all() else [0.0, 0.0, 0.0, 0.0]
        reason = None
        if not np.isfinite(pts).all():
            reason = "non-finite coordinates"
        elif any(len(p) < 3 for p in inst.polygons):
            reason = "a polygon part has fewer than 3 points"
        else:
            x0, y0, x1, y1 = inst.bbox()
            if x1 - x0 < 1.0 or y1 - y0 < 1.0:
                reason = f"{x1 - x0:.1f} x {y1 - y0:.1f} px extent"
            elif inst.area() < min_area:
                reason = f"area {inst.area():.1f} px^2 < {min_area}"
        if reason:
            degenerate.add(k)
            issues.append(LabelIssue("degenerate_geometry", img, k, bbox, inst.class_id, 0.95,
                                     {"reason": reason}, {"action": "delete"},
                                     f"instance {k}: degenerate geometry ({reason})"))
            continue
        outside = ((pts[:, 0] < -edge_tol) | (pts[:, 1] < -edge_tol) |
                   (pts[:, 0] > ann.width + edge_tol) | (pts[:, 1] > ann.height + edge_tol))
        if not outside.any():
            continue
        geom = _shape(inst)
        area = geom.area
        inside = geom.intersection(frame)
        frac_out = 1.0 - (inside.area / area if area > 0 else 0.0)
        fix: dict[str, Any]
        if inside.area < min_area:
            fix = {"action": "delete"}
        elif inst.is_box:
            fix = {"action": "clip", "box": [round(v, 2) for v in inside.bounds]}
        else:
            fix = {"action": "clip", "polygons": _flat_polygons(inside)}
        issues.append(LabelIssue("out_of_image", img, k, bbox, inst.class_id, 0.6 + 0.4 * min(1.0, frac_out * 2),
                                 {"outside_fraction": round(frac_out, 4), "points_outside": int(outside.sum())},
                                 fix, f"instance {k}: {100 * frac_out:.0f}% of its area is outside the image"))
    return issues, degenerate
