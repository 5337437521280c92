"""Pure geometry of editing (numpy only, no Qt): vertex lists of an instance,
hit tests and the edits a drag makes. Kept apart so it is unit-testable and fast."""

from __future__ import annotations

import numpy as np

from core.annotation import Instance

VertexRef = tuple[int, int]  # (part, vertex); parts are polygons then holes


def parts(inst: Instance) -> list[np.ndarray]:
    """Editable vertex arrays: a box is its 4 corners, a polygon its parts then holes."""
    if inst.is_box:
        x0, y0, x1, y1 = inst.bbox()
        return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)]
    return list(inst.polygons) + list(inst.holes)


def nearest_vertex(inst: Instance, x: float, y: float, radius: float) -> VertexRef | None:
    best, best_d = None, radius * radius
    for p, pts in enumerate(parts(inst)):
        d = ((pts[:, 0] - x) ** 2 + (pts[:, 1] - y) ** 2)
        k = int(np.argmin(d))
        if d[k] <= best_d:
            best, best_d = (p, k), float(d[k])
    return best


def nearest_edge(inst: Instance, x: float, y: float, radius: float) -> tuple[int, int, np.ndarray] | None:
    """(part, index of the edge's first vertex, projected point) of the closest edge within radius."""
    if inst.is_box:
        return None
    best, best_d = None, radius
    q = np.array([x, y])
    for p, pts in enumerate(parts(inst)):
        a = pts
        b = np.roll(pts, -1, axis=0)
        ab = b - a
        denom = np.maximum((ab ** 2).sum(1), 1e-12)
        t = np.clip(((q - a) * ab).sum(1) / denom, 0.0, 1.0)
        proj = a + ab * t[:, None]
        d = np.sqrt(((proj - q) ** 2).sum(1))
        k = int(np.argmin(d))
        if d[k] <= best_d:
            best, best_d = (p, k, proj[k]), float(d[k])
    return best


def _with_parts(inst: Instance, new_parts: list[np.ndarray]) -> Instance:
    out = inst.copy()
    n = len(inst.polygons)
    out.polygons = new_parts[:n]
    out.holes = new_parts[n:]
    return out


def move_vertex(inst: Instance, ref: VertexRef, x: float, y: float) -> Instance:
    """Instance with vertex ``ref`` at (x, y); a box corner drag resizes the box
    against the opposite corner."""
    p, k = ref
    if inst.is_box:
        corners = parts(inst)[0]
        ox, oy = corners[(k + 2) % 4]
        out = inst.copy()
        out.box = (min(x, ox), min(y, oy), max(x, ox), max(y, oy))
        return out
    new_parts = [a.copy() for a in parts(inst)]
    new_parts[p][k] = (x, y)
    return _with_parts(inst, new_parts)


def insert_vertex(inst: Instance, part: int, after: int, x: float, y: float) -> Instance:
    new_parts = [a.copy() for a in parts(inst)]
    new_parts[part] = np.insert(new_parts[part], after + 1, [x, y], axis=0)
    return _with_parts(inst, new_parts)


def delete_vertex(inst: Instance, ref: VertexRef) -> Instance | None:
    """Instance without the vertex; None when the part would drop below a triangle
    (deleting that vertex would destroy the part: the caller asks to delete the instance)."""
    if inst.is_box:
        return None
    p, k = ref
    new_parts = [a.copy() for a in parts(inst)]
    if len(new_parts[p]) <= 3:
        return None
    new_parts[p] = np.delete(new_parts[p], k, axis=0)
    return _with_parts(inst, new_parts)


def translate(inst: Instance, dx: float, dy: float) -> Instance:
    out = inst.copy()
    if inst.is_box:
        x0, y0, x1, y1 = inst.bbox()
        out.box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    else:
        d = np.array([dx, dy])
        out.polygons = [p + d for p in inst.polygons]
        out.holes = [h + d for h in inst.holes]
    return out


def clamp_translation(inst: Instance, dx: float, dy: float, w: int, h: int) -> tuple[float, float]:
    """Limit a move so the instance stays inside the image."""
    x0, y0, x1, y1 = inst.bbox()
    dx = min(max(dx, -x0), w - x1)
    dy = min(max(dy, -y0), h - y1)
    return dx, dy


def point_in_instance(inst: Instance, x: float, y: float) -> bool:
    """Even-odd test over parts and holes (matplotlib-free, vectorised)."""
    if inst.is_box:
        x0, y0, x1, y1 = inst.bbox()
        return x0 <= x <= x1 and y0 <= y <= y1
    inside = False
    for pts in parts(inst):
        xs, ys = pts[:, 0], pts[:, 1]
        xj, yj = np.roll(xs, 1), np.roll(ys, 1)
        cond = (ys > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (xj - xs) * (y - ys) / (yj - ys) + xs
        crossings = int(np.count_nonzero(cond & (x < xint)))
        inside ^= bool(crossings % 2)
    return inside
