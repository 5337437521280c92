"""User actions (clicks + keys) to label a project's objects (default: the generated demo) to a
target mask IoU (``--target``, default 0.85), per tool, with a scripted user:

* polygon  — plain polygons, ideal placement. Per object: close to the fewest vertices that
             reach the target IoU (parts/holes too small to matter dropped; each ring reduced to
             k vertices at its corners (Visvalingam-Whyatt) or evenly along curves, up to 6 px
             outside the edge; vertices added greedily where they gain the most IoU), one click
             per vertex + one click to close each ring + one class key. Close to a lower bound.
* polygon_on_edge — the same with every vertex on the object's outline (where a person clicks:
             on the visible edge, not a few pixels outside it). The reference of every ratio.
* grabcut  — the GrabCut tool (G). Per object: press + release of the box drag (the object's box
             with ±``--jitter`` px of hand error), one class key, then refinement clicks until the
             polygon the editor makes reaches the target. The clicks follow the standard simulated
             user of interactive segmentation: click the interior-most pixel of the largest error
             region (positive if missed object, negative if extra). An object not reached within
             ``--max-clicks`` is finished as a polygon: its polygon_on_edge cost is added.
* scissors — intelligent scissors (core.scissors): anchors placed on the true outline, 3 per ring
             to start (evenly spread, best of 4 phases), then each next anchor where it gains the
             most IoU (among points every 6 px along the outline, 6..40 per ring); one click per
             anchor + one to close each ring + the class key. Every candidate placed and still
             short: finished as a polygon (its polygon_on_edge cost added).
* grabcut_then_scissors — both tools, as a person uses them: the GrabCut box and up to
             ``--switch-after`` (2) clicks; an object not reached by then is drawn with scissors (the
             box, the clicks and a tool key wasted, the class key already given).
* sam_<name> — click-to-segment (core.sam) with each registry pair found in the weights cache
             (``dfine weights get <name>``): the GrabCut user (box + clicks), the image embedded
             once per image.
* model    — "segment with the project's model inside this box" (M), with ``--model`` (a run's
             best.pt or an export): press + release, a class key only when the model's class is
             wrong; an object the model misses (IoU < target) is finished with GrabCut as above.

One tool key per image and tool. IoU is mask IoU of the editor's polygon rasterised like the
evaluation, against the project's labels. Objects whose mask is under ``--min-area-frac`` of the
image (default 1 %), crowd and box-only labels are left out; real outlines that touch or cross
themselves are repaired with ``shapely.make_valid``, and an object no repair makes usable is
skipped and counted, never a crash.

Run:  .venv/bin/python benchmarks/label_effort.py [--project P] [--images N] [--model runs/demo/best.pt]
Prints a table; writes benchmarks/out/label_effort.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without reinstalling

import numpy as np
import shapely
from shapely.geometry import Polygon

from app.prelabel import best_detection_mask, class_mapping, mask_instance
from core.annotation import Instance
from core.data.dataset import rasterize_instance
from core.grabcut import grabcut_mask, mask_iou, next_click
from core.scissors import Scissors, path_polygons

OUT = Path(__file__).resolve().parent / "out"


def gt_mask(inst: Instance, w: int, h: int) -> np.ndarray:
    return rasterize_instance(inst, w, h).astype(bool)


OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)  # px a person places edges outside a curved boundary


def _fewest(ring: np.ndarray, k: int) -> np.ndarray:
    """Visvalingam-Whyatt: drop the vertex spanning the smallest triangle until ``k`` remain
    (evenly spread on curves, corners kept)."""
    pts = np.asarray(ring, dtype=np.float64)
    while len(pts) > k:
        prev, nxt = np.roll(pts, 1, 0), np.roll(pts, -1, 0)
        area = np.abs((pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - prev[:, 1])
                      - (nxt[:, 0] - prev[:, 0]) * (pts[:, 1] - prev[:, 1]))
        pts = np.delete(pts, int(np.argmin(area)), 0)
    return pts


def _offset(ring: np.ndarray, d: float) -> np.ndarray | None:
    """The ring moved outward by ``d`` (mitre joins: the same corners, no extra vertices)."""
    if d == 0:
        return ring
    geom = Polygon(ring).buffer(d, join_style="mitre", mitre_limit=5.0)
    if geom.is_empty or not isinstance(geom, Polygon):
        return None
    return np.asarray(geom.exterior.coords, dtype=np.float64)[:-1]


def _even(ring: np.ndarray, k: int, phase: float) -> np.ndarray:
    """``k`` points evenly spaced by arc length along the ring, starting ``phase`` of a step in."""
    closed = np.vstack([ring, ring[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    at = (np.arange(k) + phase) * cum[-1] / k
    return np.stack([np.interp(at, cum, closed[:, 0]), np.interp(at, cum, closed[:, 1])], 1)


def _ring_fit(ring: np.ndarray, k: int, hole: bool, offsets=OFFSETS) -> np.ndarray:
    """The k-vertex ring closest to ``ring`` (shapely IoU): corners kept (Visvalingam-Whyatt) or
    evenly spread (curves), each moved outward (holes: inward) by the best of OFFSETS."""
    target = _valid(ring)  # real outlines (COCO) can touch or cross themselves
    best, best_iou = ring, -1.0
    for cand in [_fewest(ring, k)] + [_even(ring, k, ph) for ph in (0.0, 0.25, 0.5, 0.75)]:
        for d in offsets:
            o = _offset(cand, -d if hole else d)
            if o is None or len(o) < 3:
                continue
            poly = shapely.make_valid(Polygon(o))
            union = poly.union(target).area
            iou = poly.intersection(target).area / union if union > 0 else 0.0
            if iou > best_iou:
                best, best_iou = o, iou
    return best


def _best_offset(rings, ks, gt, w, h, offsets=OFFSETS) -> tuple[float, int]:
    """(mask IoU, vertices) of the instance drawn with each ring fitted by ``k`` vertices."""
    fitted = [(_ring_fit(r, k, hole, offsets), hole) for (r, hole), k in zip(rings, ks)]
    parts = [f for f, hole in fitted if not hole]
    holes = [f for f, hole in fitted if hole]
    iou = mask_iou(gt_mask(Instance(0, polygons=parts, holes=holes), w, h), gt)
    return iou, sum(len(f) for f, _ in fitted)


def _valid(ring: np.ndarray):
    """The area a (possibly self-touching or crossing) outline encloses, as valid geometry."""
    return shapely.make_valid(Polygon(ring))


def kept_rings(inst: Instance, gt: np.ndarray, w: int, h: int, target: float) -> list[tuple[np.ndarray, bool]]:
    """(ring, is_hole) a person draws: the instance's rings with the smallest dropped while the IoU
    allows (a person skips specks)."""
    rings = [(np.asarray(p), False) for p in inst.polygons] + [(np.asarray(q), True) for q in inst.holes]
    order = sorted(range(len(rings)), key=lambda k: abs(_valid(rings[k][0]).area))
    keep = list(range(len(rings)))
    for k in order:
        trial = [j for j in keep if j != k]
        if not any(not rings[j][1] for j in trial):
            continue
        cand = Instance(0, polygons=[rings[j][0] for j in trial if not rings[j][1]],
                        holes=[rings[j][0] for j in trial if rings[j][1]])
        if mask_iou(gt_mask(cand, w, h), gt) >= target:
            keep = trial
    return [rings[j] for j in keep]


def polygon_actions(inst: Instance, w: int, h: int, target: float = 0.9, offsets=OFFSETS
                    ) -> tuple[int, int, float]:
    """(actions, vertices, iou) of a near-cheapest plain-polygon drawing of ``inst`` reaching ``target``:
    parts/holes too small to matter dropped, then each ring starts at 3 vertices and the ring whose
    next vertex gains the most IoU gets it, until the target is met."""
    gt = gt_mask(inst, w, h)
    rings = kept_rings(inst, gt, w, h, target)
    ks = [min(3, len(r)) for r, _ in rings]
    iou, vertices = _best_offset(rings, ks, gt, w, h, offsets)
    while iou < target:
        options = [j for j in range(len(rings)) if ks[j] < len(rings[j][0])]
        if not options:
            break
        scored = []
        for j in options:
            trial = list(ks)
            trial[j] += 1
            scored.append((_best_offset(rings, trial, gt, w, h, offsets), j))
        (iou, vertices), j = max(scored, key=lambda t: t[0][0])
        ks[j] += 1
    return vertices + len(rings) + 1, vertices, iou  # vertex clicks + a close per ring + the class key


def editor_iou(mask: np.ndarray, gt: np.ndarray, w: int, h: int) -> float:
    """IoU of the polygon the editor makes from ``mask`` (what is saved), against ``gt``."""
    inst = mask_instance(mask, 0)
    return 0.0 if inst is None else mask_iou(gt_mask(inst, w, h), gt)


GRABCUT_OPTIONS: dict = {}  # --grabcut-* overrides of core.grabcut's defaults (what the tuning measured)


def grabcut_actions(img: np.ndarray, inst: Instance, rng: np.random.Generator, jitter: float = 2.0,
                    target: float = 0.9, max_clicks: int = 10) -> tuple[int, int, float, bool]:
    """(actions, refinement clicks, iou, reached) for one object with the GrabCut tool."""
    h, w = img.shape[:2]
    gt = gt_mask(inst, w, h)
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    box += rng.uniform(-jitter, jitter, 4)
    pos: list[tuple[float, float]] = []
    neg: list[tuple[float, float]] = []
    mask = grabcut_mask(img, box, **GRABCUT_OPTIONS)
    iou = editor_iou(mask, gt, w, h)
    while iou < target and len(pos) + len(neg) < max_clicks:
        nxt = next_click(mask, gt)
        if nxt is None:
            break
        (pos if nxt[1] else neg).append(nxt[0])
        mask = grabcut_mask(img, box, pos, neg, **GRABCUT_OPTIONS)
        iou = editor_iou(mask, gt, w, h)
    clicks = len(pos) + len(neg)
    return 2 + 1 + clicks, clicks, iou, iou >= target


def sam_actions(model, emb, img: np.ndarray, inst: Instance, rng: np.random.Generator, jitter: float = 2.0,
                target: float = 0.9, max_clicks: int = 10) -> tuple[int, int, float, bool]:
    """(actions, clicks, iou, reached) with click-to-segment (core.sam): the same simulated user as
    GrabCut (box drag with hand error + class key, then clicks on the largest error region)."""
    h, w = img.shape[:2]
    gt = gt_mask(inst, w, h)
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64) + rng.uniform(-jitter, jitter, 4)
    pts: list[tuple[float, float]] = []
    labels: list[int] = []
    mask = model.predict(emb, pts, labels, box)[0]
    iou = editor_iou(mask, gt, w, h)
    while iou < target and len(pts) < max_clicks:
        nxt = next_click(mask, gt)
        if nxt is None:
            break
        pts.append(nxt[0])
        labels.append(int(nxt[1]))
        mask = model.predict(emb, pts, labels, box)[0]
        iou = editor_iou(mask, gt, w, h)
    return 2 + 1 + len(pts), len(pts), iou, iou >= target


def cached_sam_models(project: Path | None) -> dict:
    """name -> SamModel for every registry pair whose two files are in the weights cache."""
    from core.sam import SamModel
    from core.weights.cache import weights_dir
    from core.weights.sam_registry import sam_entries, sam_files

    folder = weights_dir(project)
    return {e.name: SamModel.from_cache(e, folder) for e in sam_entries()
            if all(p.is_file() for p in sam_files(e, folder).values())}


SCISSORS_CANDIDATES = (6, 40)  # anchor positions a simulated person chooses from, per ring (min, max)
SCISSORS_SPACING = 6.0         # px of outline between two candidate positions (before the min/max)


def _crop_box(inst: Instance, w: int, h: int, margin: float = 0.15) -> tuple[int, int, int, int]:
    pts = np.vstack(list(inst.polygons))
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    mx, my = max(16.0, margin * (x1 - x0)), max(16.0, margin * (y1 - y0))
    return (int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my))),
            int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my))))


def scissors_actions(img: np.ndarray, inst: Instance, target: float = 0.9) -> tuple[int, int, float, bool]:
    """(actions, anchors, iou, reached) with the intelligent-scissors tool (core.scissors).

    The simulated person places anchors on the true outline: each ring (parts/holes a person skips
    dropped, as for polygons) starts with 3 anchors evenly spread (the best of 4 phases), then the
    anchor that gains the most IoU is added, chosen among candidate points evenly spread along the
    outline (every SCISSORS_SPACING px, 6..40 per ring), in outline order; one click per anchor +
    one to close each ring + the class key. The tool runs on a crop around the object (its box +
    15 %, at least 16 px): the same paths as on the whole image unless a path would leave the crop.
    Not reached with every candidate placed: finished as a polygon on the edge (the caller adds it)."""
    h, w = img.shape[:2]
    gt = gt_mask(inst, w, h)
    rings = kept_rings(inst, gt, w, h, target)
    cx0, cy0, cx1, cy1 = _crop_box(inst, w, h)
    tool = Scissors(img[cy0:cy1, cx0:cx1])
    gt_crop = gt[cy0:cy1, cx0:cx1]
    cw, ch = cx1 - cx0, cy1 - cy0
    off = np.array([cx0, cy0], np.float64)
    cands = []
    for ring, _hole in rings:
        local = _valid(ring)
        per = local.length if local.length > 0 else float(np.hypot(*np.diff(np.vstack([ring, ring[:1]]), axis=0).T).sum())
        k = int(np.clip(round(per / SCISSORS_SPACING), *SCISSORS_CANDIDATES))
        pts = _even(np.asarray(ring, np.float64), k, 0.0) - off
        cands.append([(float(min(max(x, 0.5), cw - 0.5)), float(min(max(y, 0.5), ch - 0.5))) for x, y in pts])
    paths: dict[tuple[int, int], list[np.ndarray]] = {}  # (ring, anchor) -> its paths to every candidate

    def closed(j: int, idx: list[int]) -> list[np.ndarray]:
        ring = []
        for a, b in zip(idx, idx[1:] + idx[:1]):
            if (j, a) not in paths:  # one map per anchor position, all its paths at once
                paths[(j, a)] = tool.paths_from(cands[j][a], cands[j])
            ring.append(paths[(j, a)][b] if not ring else paths[(j, a)][b][1:])
        return path_polygons(np.vstack(ring))

    def score(anchor_sets: list[list[int]]) -> float:
        parts, holes = [], []
        for j, ((_ring, hole), idx) in enumerate(zip(rings, anchor_sets)):
            (holes if hole else parts).extend(closed(j, idx))
        if not parts:
            return 0.0
        pred = gt_mask(Instance(0, polygons=parts, holes=holes), cw, ch)
        return mask_iou(pred.astype(bool), gt_crop)

    anchors = []
    for j, c in enumerate(cands):  # 3 evenly spread, the best of 4 phases (this ring alone counted)
        k = len(c)
        starts = [sorted({(round(ph * k / 12) + m * k // 3) % k for m in range(3)}) for ph in range(4)]
        trial_sets = [[s if i == j else (starts[0] if i > j else anchors[i]) for i in range(len(cands))]
                      for s in starts]
        anchors.append(max(zip((score(t) for t in trial_sets), starts))[1])
    iou = score(anchors)
    while iou < target:
        best = None
        for j, c in enumerate(cands):
            for pos in range(len(c)):
                if pos in anchors[j]:
                    continue
                trial = [list(a) for a in anchors]
                trial[j] = sorted(trial[j] + [pos])
                got = score(trial)
                if best is None or got > best[0]:
                    best = (got, trial)
        if best is None:
            break
        iou, anchors = best
    n = sum(len(a) for a in anchors)
    return n + len(rings) + 1, n, iou, iou >= target


def model_actions(img, inst, det, mapping, rng, jitter=2.0, target=0.9) -> tuple[int, float, bool]:
    """(actions, iou, model_enough) for one object with the model-box tool (GrabCut as fallback)."""
    h, w = img.shape[:2]
    gt = gt_mask(inst, w, h)
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64) + rng.uniform(-jitter, jitter, 4)
    hit = best_detection_mask(det, tuple(box))
    if hit is not None:
        k, mask = hit
        iou = editor_iou(mask, gt, w, h)
        if iou >= target:
            wrong_class = mapping.get(int(det.labels[k])) != inst.class_id
            return 2 + int(wrong_class), iou, True
    a, _c, iou, _ok = grabcut_actions(img, inst, rng, jitter, target)
    return 2 + a, iou, False


def demo_objects(n_images: int):
    """(image id, BGR image, instances) of the first ``n_images`` generated demo images."""
    from core.demo import render_demo_image

    for index in range(n_images):
        img, insts = render_demo_image(index)
        yield str(index), img, insts


def project_objects(root: Path, n_images: int | None):
    """(image id, BGR image, instances) of a project's images (sorted, the first ``n_images``)."""
    from core.data.images import read_image
    from core.project import Project

    project = Project.open(root)
    for path in project.image_paths()[:n_images]:
        ann = project.load_annotation(path)
        yield project.rel_image(path), read_image(path), ann.instances


def main() -> None:
    from core.demo import CLASSES, N_IMAGES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, help="a project's images and labels (default: the generated demo)")
    ap.add_argument("--images", type=int, help=f"first N images (default: all; the demo has {N_IMAGES})")
    ap.add_argument("--target", type=float, default=0.85, help="mask IoU each object must reach")
    ap.add_argument("--min-area-frac", type=float, default=0.01,
                    help="objects whose mask is smaller than this fraction of the image are left out")
    ap.add_argument("--tools", default="polygon,polygon_on_edge,grabcut,scissors",
                    help="comma-separated tools to simulate (polygon_on_edge is always run: the reference)")
    ap.add_argument("--jitter", type=float, default=2.0, help="hand error of a dragged box corner, px")
    ap.add_argument("--max-clicks", type=int, default=10, help="GrabCut refinement clicks before polygon fallback")
    ap.add_argument("--switch-after", type=int, default=2,
                    help="grabcut_then_scissors: GrabCut clicks before the user switches to scissors")
    ap.add_argument("--grabcut-iterations", type=int, help="GrabCut iterations (default: core.grabcut's)")
    ap.add_argument("--grabcut-margin", type=float, help="crop margin around the box, fraction of it")
    ap.add_argument("--grabcut-core", type=float, help="start from the box's inscribed ellipse x this (0: the box)")
    ap.add_argument("--model", type=Path, help="the project's model (runs/<name>/best.pt or an export)")
    ap.add_argument("--out", type=Path, default=OUT / "label_effort.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    for key in ("iterations", "margin", "core"):
        if getattr(args, f"grabcut_{key}") is not None:
            GRABCUT_OPTIONS[key] = getattr(args, f"grabcut_{key}")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if "polygon_on_edge" not in tools:
        tools.insert(0, "polygon_on_edge")
    unknown = set(tools) - {"polygon", "polygon_on_edge", "grabcut", "scissors"}
    if unknown:
        ap.error(f"unknown tool(s) {sorted(unknown)}")
    if args.project is not None:
        from core.project import Project

        class_names = Project.open(args.project).class_names
        source = project_objects(args.project, args.images)
    else:
        class_names = list(CLASSES)
        source = demo_objects(args.images or N_IMAGES)
    sams = cached_sam_models(args.project)
    tools += [f"sam_{name}" for name in sams]
    predictor = mapping = None
    if args.model is not None:
        from app.prelabel import load_predictor

        predictor = load_predictor(args.model, 0.5)
        mapping = class_mapping(list(getattr(predictor, "class_names", []) or []), class_names)
    t0 = time.perf_counter()
    rows, skipped, n_img, small = [], [], 0, 0
    for image_id, img, insts in source:
        n_img += 1
        h, w = img.shape[:2]
        det = predictor.predict([img])[0] if predictor is not None else None
        embeddings = {name: model.embed(img) for name, model in sams.items()}  # once per image, as the GUI
        for inst in insts:
            if inst.is_box or inst.iscrowd:
                continue
            gt = gt_mask(inst, w, h)
            if gt.sum() < args.min_area_frac * w * h:
                small += 1
                continue
            try:
                rows.append(object_row(image_id, img, inst, tools, args, rng, det, mapping, sams, embeddings))
            except (shapely.errors.GEOSException, ValueError) as exc:  # an outline no repair fixes
                skipped.append({"image": image_id, "class": inst.class_id, "error": f"{type(exc).__name__}: {exc}"})
    methods = tools + (["grabcut_then_scissors"] if {"grabcut", "scissors"} <= set(tools) else [])
    write_report(rows, skipped, small, n_img, methods + (["model"] if predictor is not None else []), args, t0)


def object_row(image_id, img, inst, tools, args, rng, det, mapping, sams, embeddings) -> dict:
    h, w = img.shape[:2]
    row = {"image": image_id, "class": inst.class_id, "parts": len(inst.polygons), "holes": len(inst.holes)}
    e_actions, e_vertices, e_iou = polygon_actions(inst, w, h, args.target, offsets=(0.0,))
    row.update(polygon_on_edge_actions=e_actions, polygon_on_edge_vertices=e_vertices,
               polygon_on_edge_iou=round(e_iou, 4))
    if "polygon" in tools:
        p_actions, vertices, p_iou = polygon_actions(inst, w, h, args.target)
        row.update(polygon_actions=p_actions, polygon_vertices=vertices, polygon_iou=round(p_iou, 4))
    if "grabcut" in tools:
        g_actions, clicks, g_iou, reached = grabcut_actions(img, inst, rng, args.jitter, args.target,
                                                            args.max_clicks)
        row.update(grabcut_actions=g_actions + (0 if reached else e_actions), grabcut_clicks=clicks,
                   grabcut_iou=round(g_iou, 4), grabcut_reached=reached)
    if "scissors" in tools:
        s_actions, anchors, s_iou, reached = scissors_actions(img, inst, args.target)
        row.update(scissors_actions=s_actions + (0 if reached else e_actions), scissors_anchors=anchors,
                   scissors_iou=round(s_iou, 4), scissors_reached=reached)
    if "grabcut" in tools and "scissors" in tools:  # GrabCut first; not there after K clicks: scissors
        k = args.switch_after
        quick = row["grabcut_reached"] and row["grabcut_clicks"] <= k
        row["grabcut_then_scissors_actions"] = (row["grabcut_actions"] if quick
                                                else 3 + k + row["scissors_actions"])
    for name, model in sams.items():
        a, clicks, iou, reached = sam_actions(model, embeddings[name], img, inst, rng, args.jitter, args.target,
                                              args.max_clicks)
        row.update({f"sam_{name}_actions": a + (0 if reached else e_actions), f"sam_{name}_clicks": clicks,
                    f"sam_{name}_iou": round(iou, 4), f"sam_{name}_reached": reached})
    if det is not None:
        m_actions, m_iou, enough = model_actions(img, inst, det, mapping, rng, args.jitter, args.target)
        row.update(model_actions=m_actions, model_iou=round(m_iou, 4), model_enough=enough)
    return row


def write_report(rows, skipped, small, n_img, methods, args, t0) -> None:
    ref = "polygon_on_edge"
    n = max(1, len(rows))
    totals = {m: sum(r[f"{m}_actions"] for r in rows) + n_img for m in methods}  # + one tool key per image
    summary = {
        "source": str(args.project) if args.project else "demo", "images": n_img, "objects": len(rows),
        "skipped_invalid": len(skipped), "below_min_area": small, "min_area_frac": args.min_area_frac,
        "target_iou": args.target, "jitter_px": args.jitter, "grabcut_options": GRABCUT_OPTIONS, "totals": totals,
        "per_object": {m: round(totals[m] / n, 2) for m in methods},
        "vs_polygon_on_edge": {m: round(totals[m] / max(1, totals[ref]), 3) for m in methods},
        "mean_polygon_on_edge_vertices": round(float(np.mean([r["polygon_on_edge_vertices"] for r in rows] or [0])), 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for m, flag, count in [("grabcut", "grabcut_reached", "grabcut_clicks"),
                           ("scissors", "scissors_reached", "scissors_anchors")] + [
                               (m, f"{m}_reached", f"{m}_clicks") for m in methods if m.startswith("sam_")]:
        if m in methods:
            summary[f"{m}_fallbacks"] = sum(not r[flag] for r in rows)
            summary[f"{m}_mean_{count.rsplit('_', 1)[1]}"] = round(float(np.mean([r[count] for r in rows] or [0])), 2)
    if "model" in methods:
        summary["model_enough"] = sum(r["model_enough"] for r in rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "objects": rows, "skipped": skipped}, indent=1))
    print(f"{summary['source']}: {n_img} images, {len(rows)} objects >= {args.min_area_frac:.0%} of the image "
          f"({small} smaller left out, {len(skipped)} invalid outlines skipped), target mask IoU {args.target}, "
          f"box jitter ±{args.jitter} px")
    has_poly = "polygon" in methods
    print("| tool | actions | per object | vs polygon on edge |" + (" vs polygon (ideal) |" if has_poly else ""))
    print("|---|---|---|---|" + ("---|" if has_poly else ""))
    for m in methods:
        line = f"| {m} | {totals[m]} | {totals[m] / n:.2f} | {totals[m] / max(1, totals[ref]):.3f} |"
        if has_poly:
            line += f" {totals[m] / max(1, totals['polygon']):.3f} |"
        print(line)
    notes = [f"polygon on edge: {summary['mean_polygon_on_edge_vertices']} vertices per object"]
    for m in methods:
        if m in ("grabcut", "scissors") or m.startswith("sam_"):
            key = "anchors" if m == "scissors" else "clicks"
            notes.append(f"{m}: {summary[f'{m}_mean_{key}']} {key} per object, {summary[f'{m}_fallbacks']} "
                         f"finished as polygons")
    print("; ".join(notes) + f"; {summary['seconds']} s; raw numbers: {args.out}")


if __name__ == "__main__":
    main()
