"""The label-mistake benchmark on real photos (issue #30): COCO128-seg imported the way a user
would (`dfine import ultralytics`), the same five kinds of injected mistakes as the generated set,
and a simulated detector whose errors look like a real one's (see :func:`realistic_predictions`).

COCO128-seg is downloaded, never committed (benchmarks/README.md, "Label mistakes", says how).
The realistic simulator also runs on the generated set (it only needs the true labels), so both
data sets are judged by the same kind of model.

Deterministic: injection from rng([seed, "inject"]), predictions from rng([seed, image index]).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from shapely.affinity import translate as shp_translate
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box
from shapely.ops import unary_union

from core.annotation import ImageAnnotation, Instance
from label_mistakes_data import instance_from_geometry, moved_outline, near_duplicate

# COCO's supercategories, in the 80-class (Ultralytics) order: confusions of a real detector stay
# inside one (car/truck, cat/dog, cup/bowl), so the simulated confusions do too
COCO_GROUPS = ([0], list(range(1, 9)), list(range(9, 14)), list(range(14, 24)), list(range(24, 29)),
               list(range(29, 39)), list(range(39, 46)), list(range(46, 56)), list(range(56, 62)),
               list(range(62, 68)), list(range(68, 73)), list(range(73, 80)))
MIN_INJECT_SIDE = 16.0  # px: mistakes are injected on objects at least this big (sqrt of the area)


def write_data_yaml(coco_root: Path, out: Path, names: list[str]) -> Path:
    """A data.yaml for the downloaded folder (COCO128-seg ships none), written beside the benchmark output."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "coco128-seg.yaml"
    path.write_text(json.dumps({"path": str(coco_root.resolve()), "train": "images/train2017",
                                "names": list(names)}), encoding="utf-8")  # JSON is YAML
    return path


def coco_names() -> list[str]:
    """The 80 COCO class names from coco8-seg's yaml in ../shared/data (or the repo's fixtures)."""
    import yaml

    for cand in (Path(__file__).resolve().parents[2] / "shared/data/coco8-seg/coco8-seg.yaml",
                 Path("/work/shared/data/coco8-seg/coco8-seg.yaml")):
        if cand.is_file():
            names = yaml.safe_load(cand.read_text())["names"]
            return [names[i] for i in range(len(names))]
    raise SystemExit("coco8-seg.yaml not found (for the 80 class names)")


def _geom(inst: Instance):
    parts = [Polygon(p).buffer(0) for p in inst.polygons if len(p) >= 3]
    g = unary_union(parts) if parts else Polygon()
    for h in inst.holes:
        if len(h) >= 3:
            g = g.difference(Polygon(h).buffer(0))
    return g


def _bbox(geom) -> list[float]:
    return [float(v) for v in geom.bounds]


def import_coco128(coco_root: Path, out: Path) -> Path:
    """`dfine import ultralytics` of the folder into <out>/project (what a new user does)."""
    from core.convert import read_source
    from core.project_import import import_into_project

    proj = out / "project"
    if (proj / "project.yaml").is_file():
        return proj
    yaml_path = write_data_yaml(coco_root, out, coco_names())
    result = read_source("ultralytics", yaml_path)
    import_into_project(result, proj, task="segment")
    return proj


def inject(proj: Path, seed: int = 30, per_kind: int = 16) -> list[dict]:
    """Replace the project's labels with noisy ones: ``per_kind`` of each kind (dropped, class
    swapped to a random other class, outline moved 35-50 % of its size and rescaled, duplicated,
    an outline of another object put on background). The true labels go to truth.json, the
    list to injected.json. Mistakes go on objects of side >= MIN_INJECT_SIDE px only."""
    from core.project import Project

    project = Project.open(proj)
    if (proj / "injected.json").is_file():
        return json.loads((proj / "injected.json").read_text())
    anns, errors = project.load_all()
    if errors:
        raise SystemExit(f"{len(errors)} label files could not be read: {errors[0]}")
    nc = len(project.class_names)
    rng = np.random.default_rng([seed, 7])
    truth = {project.rel_image(a.image_path): [i.to_dict() for i in a.instances] for a in anns}
    slots = [(n, k) for n, a in enumerate(anns) for k, inst in enumerate(a.instances)
             if not inst.is_box and np.sqrt(max(inst.area(), 0.0)) >= MIN_INJECT_SIDE]
    order = iter(rng.permutation(len(slots)))
    plan: dict[tuple[int, int], str] = {}
    for kind in ("missing_label", "wrong_class", "bad_geometry", "duplicate_label"):
        for _ in range(per_kind):
            plan[slots[next(order)]] = kind
    spurious = set(int(v) for v in rng.choice(len(anns), per_kind, replace=False))
    donors = [inst for a in anns for inst in a.instances
              if not inst.is_box and np.sqrt(max(inst.area(), 0.0)) >= MIN_INJECT_SIDE]
    injected: list[dict] = []
    for n, a in enumerate(anns):
        rel = project.rel_image(a.image_path)
        frame = shapely_box(0, 0, a.width, a.height)
        out: list[Instance] = []
        for k, inst in enumerate(a.instances):
            kind = plan.get((n, k))
            box = list(inst.bbox())
            if kind == "missing_label":
                injected.append({"kind": kind, "image": rel, "instance": None, "box": box})
                continue
            if kind == "wrong_class":
                new = inst.copy()
                new.class_id = int((inst.class_id + rng.integers(1, nc)) % nc)
                injected.append({"kind": kind, "image": rel, "instance": len(out), "box": box})
                out.append(new)
                continue
            if kind == "bad_geometry":
                new = instance_from_geometry(inst.class_id, moved_outline(_geom(inst), rng, frame)) or inst
                injected.append({"kind": kind, "image": rel, "instance": len(out), "box": box})
                out.append(new)
                continue
            out.append(inst)
            if kind == "duplicate_label":
                injected.append({"kind": kind, "image": rel, "instance": len(out), "box": box})
                out.append(near_duplicate(inst, rng))
        if n in spurious:  # another object's outline, on this image's background
            occupied = unary_union([_geom(i) for i in a.instances]) if a.instances else Polygon()
            for _ in range(200):
                g = _geom(donors[int(rng.integers(len(donors)))])
                w, h = g.bounds[2] - g.bounds[0], g.bounds[3] - g.bounds[1]
                if w >= a.width - 2 or h >= a.height - 2:
                    continue
                x, y = rng.uniform(0, a.width - w), rng.uniform(0, a.height - h)
                cand = shp_translate(g, x - g.bounds[0], y - g.bounds[1]).intersection(frame)
                if cand.area > 0 and cand.intersection(occupied).area < 0.05 * cand.area:
                    new = instance_from_geometry(int(rng.integers(nc)), cand)
                    if new is not None:
                        injected.append({"kind": "spurious_label", "image": rel, "instance": len(out),
                                         "box": _bbox(cand)})
                        out.append(new)
                        break
        project.save_annotation(ImageAnnotation(a.image_path, a.width, a.height, out))
    (proj / "truth.json").write_text(json.dumps(truth))
    (proj / "injected.json").write_text(json.dumps(injected, indent=0))
    return injected


def preexisting(project, anns: list[ImageAnnotation], truth: dict) -> set[tuple[str, int]]:
    """(image, instance) of the noisy labels that are source labels the model-free checks flag on
    the TRUE labels already (COCO has a few outlines under 4 px^2 and near-duplicate pairs): real
    problems of the source, neither injected nor false alarms, so the scoring leaves them out."""
    from core.analysis.evidence import evaluable_labels
    from core.analysis.find_mistakes import find_duplicates
    from core.analysis.geometry_checks import check_geometry
    from core.analysis.settings import AnalysisConfig

    cfg = AnalysisConfig()
    out: set[tuple[str, int]] = set()
    for a in anns:
        rel = project.rel_image(a.image_path)
        true = [Instance.from_dict(d) for d in truth[rel]]
        clean = ImageAnnotation(a.image_path, a.width, a.height, true)
        issues, degenerate = check_geometry(clean, cfg.min_area)
        flagged = {i.instance for i in issues}
        dups, _ = find_duplicates(evaluable_labels(clean, degenerate, True), rel, cfg, True)
        flagged |= {i.instance for i in dups}
        keys = {json.dumps(true[k].to_dict(), sort_keys=True) for k in flagged}
        for k, inst in enumerate(a.instances):
            if json.dumps(inst.to_dict(), sort_keys=True) in keys:
                out.add((rel, k))
    return out


# --------------------------------------------------------------------- the simulated detector


def related_classes(c: int, nc: int, groups=COCO_GROUPS) -> list[int]:
    """Classes a detector confuses ``c`` with: its COCO supercategory (the generated set's
    4 shapes: every other class)."""
    if nc != 80:
        return [k for k in range(nc) if k != c]
    for g in groups:
        if c in g:
            return [k for k in g if k != c]
    return []


def _perturbed_outline(inst: Instance, rng: np.random.Generator, frame):
    """The true outline a few pixels off: grown or shrunk 0.5-2.5 px and shifted up to 2 px."""
    g = _geom(inst)
    if g.is_empty:
        return g
    g = g.buffer(float(rng.uniform(0.5, 2.5) * rng.choice([-1, 1])), join_style=2)
    g = shp_translate(g, *rng.uniform(-2, 2, 2)).intersection(frame)
    return g if not g.is_empty else _geom(inst)


def _rle(geom, h: int, w: int):
    from core import rle as rle_ops

    polys = [geom] if isinstance(geom, Polygon) else [p for p in getattr(geom, "geoms", []) if isinstance(p, Polygon)]
    outer = [np.asarray(p.exterior.coords)[:-1] for p in polys if p.area > 0]
    holes = [np.asarray(i.coords)[:-1] for p in polys for i in p.interiors]
    if not outer:
        return None
    return rle_ops.polygons_to_rle(outer, holes, h, w)


def realistic_predictions(project, anns: list[ImageAnnotation], truth: dict, seed: int = 0,
                          groups=COCO_GROUPS) -> list:
    """A decent detector's predictions, simulated from the TRUE labels (so it finds what the
    noisy labels lost and not what they invented), with the errors a real one makes:

    - misses grow as objects shrink: P(miss) = 0.04 + 0.5 exp(-side / 24 px) (side = sqrt of the
      area: ~40 % at 8 px, ~20 % at 24 px, ~5 % at 100 px); half the misses leave a faint trace
      of the right class (0.05-0.3), the rest nothing;
    - confusions go to related classes (its COCO supercategory) for 6 % of objects, with lower
      confidence than a correct detection (0.45-0.75) and the true class still second (0.2-0.45);
    - mask outlines a few pixels off (grown/shrunk 0.5-2.5 px, shifted up to 2 px);
    - score spread: a found object scores 0.35-0.98, higher for bigger objects, with noise;
    - false positives on clutter: Poisson(0.7) per image, at textured spots away from the labels,
      object-sized, scored 0.3-0.75, of a class that occurs in the data set.

    No mirrored view: this is what `dfine analyze --predictions` gets from any other detector."""
    from core import rle as rle_ops
    from core.eval.records import ImagePred

    nc = len(project.class_names)
    freq = np.bincount([int(d["class_id"]) for v in truth.values() for d in v], minlength=nc).astype(float)
    freq /= freq.sum()
    sides = np.array([np.sqrt(max(Instance.from_dict(d).area(), 1.0)) for v in truth.values() for d in v])
    out = []
    for n, a in enumerate(anns):
        rng = np.random.default_rng([seed, n])
        frame = shapely_box(0, 0, a.width, a.height)
        rows = []  # (rle, score, class)
        true = [Instance.from_dict(d) for d in truth[project.rel_image(a.image_path)]]
        for inst in true:
            side = float(np.sqrt(max(inst.area(), 1.0)))
            g = _perturbed_outline(inst, rng, frame)
            m = _rle(g, a.height, a.width)
            if m is None:
                continue
            if rng.random() < 0.04 + 0.5 * np.exp(-side / 24.0):
                if rng.random() < 0.5:
                    rows.append((m, float(rng.uniform(0.05, 0.3)), inst.class_id))
                continue
            rel = related_classes(inst.class_id, nc, groups)
            if rel and rng.random() < 0.06:
                rows.append((m, float(rng.uniform(0.45, 0.75)), int(rng.choice(rel))))
                rows.append((m, float(rng.uniform(0.2, 0.45)), inst.class_id))
                continue
            q = float(np.mean(sides <= side))  # size quantile: bigger objects score higher
            rows.append((m, float(np.clip(0.45 + 0.4 * q + rng.normal(0, 0.12), 0.35, 0.98)), inst.class_id))
        for _ in range(int(rng.poisson(0.7))):
            fp = _clutter_box(a, true, sides, rng)
            if fp is not None:
                m = rle_ops.polygons_to_rle([fp], [], a.height, a.width)
                rows.append((m, float(rng.uniform(0.3, 0.75)), int(rng.choice(nc, p=freq))))
        boxes = rle_ops.to_xyxy([r[0] for r in rows]) if rows else np.zeros((0, 4))
        out.append(ImagePred(np.asarray(boxes).reshape(-1, 4), [r[1] for r in rows], [r[2] for r in rows],
                             [r[0] for r in rows], str(a.image_path)))
    return out


def _clutter_box(a: ImageAnnotation, true: list[Instance], sides: np.ndarray, rng: np.random.Generator):
    """An ellipse (polygon) of a typical object size at a textured spot off the labels, or None."""
    from core.data.images import read_image

    img = read_image(Path(a.image_path))
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    energy = cv2.GaussianBlur(np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)),
                              (0, 0), 8)
    occ = np.zeros(grey.shape, np.uint8)
    for inst in true:
        for p in inst.polygons:
            cv2.fillPoly(occ, [np.round(np.asarray(p)).astype(np.int32)], 1)
    energy[occ > 0] = 0
    flat = energy.ravel() / max(float(energy.sum()), 1e-9)
    if not np.isfinite(flat).all() or flat.sum() <= 0:
        return None
    idx = int(rng.choice(len(flat), p=flat / flat.sum()))
    cy, cx = divmod(idx, grey.shape[1])
    r = float(rng.choice(sides)) / 2
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ax = r * rng.uniform(0.7, 1.4)
    pts = np.stack([cx + ax * np.cos(t), cy + (r * r / ax) * np.sin(t)], 1)
    pts[:, 0] = pts[:, 0].clip(0, a.width - 1)
    pts[:, 1] = pts[:, 1].clip(0, a.height - 1)
    return pts if Polygon(pts).area > 16 else None


__all__ = ["COCO_GROUPS", "import_coco128", "inject", "realistic_predictions", "related_classes"]
