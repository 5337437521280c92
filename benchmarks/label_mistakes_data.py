"""The label-mistake benchmark's data set (not the demo): four shape classes (star, cross,
hexagon, ring) on striped / noisy textured backgrounds with occlusion, small images so a CPU
trains the fold models in bounded time, and labels with injected mistakes of every kind the
finder flags. The true labels and the list of injected mistakes are kept beside the project.

Deterministic: image i comes from rng([seed, i]); the injection from rng([seed, "inject"]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from shapely.affinity import scale as shp_scale
from shapely.affinity import translate as shp_translate
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box
from shapely.ops import unary_union

from core.annotation import ImageAnnotation, Instance

CLASSES = ["star", "cross", "hexagon", "ring"]
SIZE = 256
KINDS = ("missing_label", "wrong_class", "bad_geometry", "duplicate_label", "spurious_label")


def _shape(cls: int, rng: np.random.Generator) -> Polygon:
    r = float(rng.uniform(22, 48))
    cx, cy = rng.uniform(0.12, 0.88, 2) * SIZE
    rot = float(rng.uniform(0, 2 * np.pi))
    if cls == 0:  # 5-point star
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    elif cls == 1:  # plus-shaped cross
        a = r * 0.33
        pts = np.array([[-a, -r], [a, -r], [a, -a], [r, -a], [r, a], [a, a], [a, r], [-a, r], [-a, a], [-r, a],
                        [-r, -a], [-a, -a]])
    elif cls == 2:  # hexagon
        t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    else:  # ring (a disc with a hole) approximated by a 24-gon; the hole is cut below
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    c, s = np.cos(rot), np.sin(rot)
    poly = Polygon(pts @ np.array([[c, s], [-s, c]]) + [cx, cy])
    if cls == 3:
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        poly = poly.difference(Polygon(np.stack([np.cos(t), np.sin(t)], 1) * r * 0.5 + [cx, cy]))
    return poly


def _background(rng: np.random.Generator) -> np.ndarray:
    """Low-contrast stripes at a random angle over a smooth colour field, plus grain."""
    low = rng.uniform(70, 190, size=(3, 3, 3)).astype(np.float32)
    bg = cv2.resize(low, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    ang, period = rng.uniform(0, np.pi), rng.uniform(6, 18)
    stripes = np.sin((np.cos(ang) * xx + np.sin(ang) * yy) * 2 * np.pi / period)
    bg += (stripes * rng.uniform(8, 20))[..., None]
    bg += rng.normal(0, 7, size=bg.shape).astype(np.float32)
    return bg


def _paint(img: np.ndarray, poly: Polygon, color: np.ndarray, rng: np.random.Generator) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for g in [poly] if isinstance(poly, Polygon) else list(poly.geoms):
        ext = np.round(np.asarray(g.exterior.coords) * 16).astype(np.int32)
        cv2.fillPoly(mask, [ext], 1, lineType=cv2.LINE_AA, shift=4)
        for h in g.interiors:
            cv2.fillPoly(mask, [np.round(np.asarray(h.coords) * 16).astype(np.int32)], 0, lineType=cv2.LINE_AA,
                         shift=4)
    m = mask.astype(bool)
    img[m] = color + rng.normal(0, 8, size=(int(m.sum()), 3))


def moved_outline(g, rng: np.random.Generator, frame):
    """The injected 'bad geometry': the outline scaled 0.75-1.3x and moved 35-50 % of its size
    (random signs), clipped to ``frame``. Shared with label_mistakes_photos, draw for draw."""
    dx, dy = rng.choice([-1, 1], 2) * rng.uniform(0.35, 0.5, 2) * np.array(
        [g.bounds[2] - g.bounds[0], g.bounds[3] - g.bounds[1]])
    s = rng.uniform(0.75, 1.3)
    return shp_translate(shp_scale(g, s, s), dx, dy).intersection(frame)


def near_duplicate(inst: Instance, rng: np.random.Generator) -> Instance:
    """The injected 'duplicate label': the same outline jittered by under a pixel."""
    dup = inst.copy()
    dup.polygons = [p + rng.uniform(-0.8, 0.8, 2) for p in dup.polygons]
    dup.holes = [p + rng.uniform(-0.8, 0.8, 2) for p in dup.holes]
    return dup


def instance_from_geometry(cls: int, geom) -> Instance | None:
    """Polygons (>= 20 px^2) and holes (>= 4 px^2) of a shapely geometry as an Instance, or None."""
    parts = [geom] if isinstance(geom, Polygon) else list(getattr(geom, "geoms", []))
    polys, holes = [], []
    for g in parts:
        if isinstance(g, Polygon) and g.area >= 20:
            polys.append(np.asarray(g.exterior.coords)[:-1])
            holes += [np.asarray(h.coords)[:-1] for h in g.interiors if Polygon(h).area >= 4]
    return Instance(class_id=cls, polygons=polys, holes=holes) if polys else None


def render(index: int, seed: int) -> tuple[np.ndarray, list[Instance], list[Polygon]]:
    """Image ``index``, its true labels and their visible shapes."""
    rng = np.random.default_rng([seed, index])
    img = _background(rng)
    frame = shapely_box(0, 0, SIZE, SIZE)
    shapes: list[tuple[int, Polygon]] = []
    n = int(rng.integers(1, 5))
    for _ in range(40):
        if len(shapes) >= n:
            break
        cls = int(rng.integers(0, len(CLASSES)))
        poly = _shape(cls, rng).intersection(frame)
        if poly.area < 600:
            continue
        # occlusion allowed, but every earlier shape keeps >= 60 % of its area visible
        if all(prev.difference(unary_union([p for _, p in shapes if p is not prev] + [poly])).area
               >= 0.6 * prev.area for _, prev in shapes):
            shapes.append((cls, poly))
    for _cls, poly in shapes:
        _paint(img, poly, rng.uniform(15, 240, 3), rng)
    insts, visible = [], []
    for k, (cls, poly) in enumerate(shapes):
        later = [p for _, p in shapes[k + 1:]]
        vis = poly.difference(unary_union(later)) if later else poly
        inst = instance_from_geometry(cls, vis)
        if inst is not None:
            insts.append(inst)
            visible.append(vis)
    return np.clip(img, 0, 255).astype(np.uint8), insts, visible


@dataclass
class Injected:
    kind: str
    image: str  # relative path
    instance: int | None  # index in the written (noisy) labels; None for a dropped label
    box: list[float]  # where it is (xyxy)


def _bbox(geom) -> list[float]:
    x0, y0, x1, y1 = geom.bounds
    return [float(x0), float(y0), float(x1), float(y1)]


def _poly_geom(inst: Instance):
    return unary_union([Polygon(p) for p in inst.polygons]).buffer(0)


def make_benchmark_project(root: Path, n_images: int = 300, seed: int = 15, per_kind: int = 20) -> list[Injected]:
    """Write the project (images, noisy labels, splits) under ``root`` and return the injected
    mistakes (also in root/injected.json; the true labels in root/truth.json)."""
    from core.project import Project

    rng = np.random.default_rng([seed, 7])
    proj = Project.create(root, CLASSES, "segment")
    text = proj.config_path.read_text(encoding="utf-8")
    text = text.replace("  image_size: 640\n", f"  image_size: {SIZE}\n", 1).replace("  size: s\n", "  size: n\n", 1)
    proj.config_path.write_text(text, encoding="utf-8")
    proj.reload_config()
    data = []
    for i in range(n_images):
        img, insts, vis = render(i, seed)
        rel = f"img_{i:04d}.png"
        cv2.imwrite(str(proj.image_dir / rel), img)
        data.append((rel, insts, vis))
    truth = {rel: [inst.to_dict() for inst in insts] for rel, insts, _ in data}
    # choose the instances to corrupt: each (image, instance) at most once
    slots = [(n, k) for n, (_, insts, _) in enumerate(data) for k in range(len(insts))]
    order = rng.permutation(len(slots))
    plan: dict[tuple[int, int], str] = {}
    kinds_needing_instance = ["missing_label", "wrong_class", "bad_geometry", "duplicate_label"]
    it = iter(order)
    for kind in kinds_needing_instance:
        for _ in range(per_kind):
            plan[slots[next(it)]] = kind
    spurious_images = [int(v) for v in rng.choice(n_images, per_kind, replace=False)]
    injected: list[Injected] = []
    for n, (rel, insts, vis) in enumerate(data):
        out: list[Instance] = []
        for k, inst in enumerate(insts):
            kind = plan.get((n, k))
            if kind == "missing_label":
                injected.append(Injected(kind, rel, None, _bbox(vis[k])))
                continue
            if kind == "wrong_class":
                new = inst.copy()
                new.class_id = int((inst.class_id + rng.integers(1, len(CLASSES))) % len(CLASSES))
                injected.append(Injected(kind, rel, len(out), _bbox(vis[k])))
                out.append(new)
                continue
            if kind == "bad_geometry":
                moved = moved_outline(_poly_geom(inst), rng, shapely_box(0, 0, SIZE, SIZE))
                new = instance_from_geometry(inst.class_id, moved)
                if new is None:
                    new = inst
                injected.append(Injected(kind, rel, len(out), _bbox(vis[k])))
                out.append(new)
                continue
            out.append(inst)
            if kind == "duplicate_label":
                injected.append(Injected(kind, rel, len(out), _bbox(vis[k])))
                out.append(near_duplicate(inst, rng))
        if n in spurious_images:  # a label where there is only background
            occupied = unary_union(vis) if vis else Polygon()
            for _ in range(50):
                cand = _shape(int(rng.integers(0, len(CLASSES))), rng).intersection(shapely_box(0, 0, SIZE, SIZE))
                if cand.area > 600 and cand.intersection(occupied).area < 0.05 * cand.area:
                    new = instance_from_geometry(int(rng.integers(0, len(CLASSES))), cand)
                    if new is not None:
                        injected.append(Injected("spurious_label", rel, len(out), _bbox(cand)))
                        out.append(new)
                        break
        proj.save_annotation(ImageAnnotation(proj.image_dir / rel, SIZE, SIZE, out))
    proj.write_splits()
    (root / "truth.json").write_text(json.dumps(truth))
    (root / "injected.json").write_text(json.dumps([i.__dict__ for i in injected], indent=0))
    return injected
