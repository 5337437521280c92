"""User actions (clicks + keys) to label the demo project's objects to mask IoU >= 0.9,
three ways, with a scripted user:

* polygon  — plain polygons, ideal placement. Per object: close to the fewest vertices that
             reach the target IoU (parts/holes too small to matter dropped; each ring reduced to
             k vertices at its corners (Visvalingam-Whyatt) or evenly along curves, up to 6 px
             outside the edge; vertices added greedily where they gain the most IoU), one click
             per vertex + one click to close each ring + one class key. Close to a lower bound.
* polygon_on_edge — the same with every vertex on the object's outline (where a person clicks:
             on the visible edge, not a few pixels outside it).
* grabcut  — the GrabCut tool (G). Per object: press + release of the box drag (the object's box
             with ±``--jitter`` px of hand error), one class key, then refinement clicks until the
             polygon the editor makes reaches the target. The clicks follow the standard simulated
             user of interactive segmentation: click the interior-most pixel of the largest error
             region (positive if missed object, negative if extra). An object not reached within
             ``--max-clicks`` is finished as a polygon: its polygon_on_edge cost is added.
* model    — "segment with the project's model inside this box" (M), with ``--model`` (a run's
             best.pt or an export): press + release, a class key only when the model's class is
             wrong; an object the model misses (IoU < target) is finished with GrabCut as above.

One tool key per image and method (P, G or M). IoU is mask IoU of the editor's polygon (after
``mask_to_polygons``) rasterised like the evaluation, against the demo's exact labels.

Run:  .venv/bin/python benchmarks/label_effort.py [--images 64] [--model runs/demo/best.pt]
Prints a table; writes benchmarks/out/label_effort.json.
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
    target = Polygon(ring)
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


def polygon_actions(inst: Instance, w: int, h: int, target: float = 0.9, offsets=OFFSETS
                    ) -> tuple[int, int, float]:
    """(actions, vertices, iou) of a near-cheapest plain-polygon drawing of ``inst`` reaching ``target``:
    parts/holes too small to matter dropped, then each ring starts at 3 vertices and the ring whose
    next vertex gains the most IoU gets it, until the target is met."""
    gt = gt_mask(inst, w, h)
    rings = [(np.asarray(p), False) for p in inst.polygons] + [(np.asarray(q), True) for q in inst.holes]
    order = sorted(range(len(rings)), key=lambda k: abs(shapely.area(Polygon(rings[k][0]))))
    keep = list(range(len(rings)))
    for k in order:  # a person skips specks: drop the smallest rings while the IoU allows
        trial = [j for j in keep if j != k]
        if not any(not rings[j][1] for j in trial):
            continue
        cand = Instance(0, polygons=[rings[j][0] for j in trial if not rings[j][1]],
                        holes=[rings[j][0] for j in trial if rings[j][1]])
        if mask_iou(gt_mask(cand, w, h), gt) >= target:
            keep = trial
    rings = [rings[j] for j in keep]
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
    mask = grabcut_mask(img, box)
    iou = editor_iou(mask, gt, w, h)
    while iou < target and len(pos) + len(neg) < max_clicks:
        nxt = next_click(mask, gt)
        if nxt is None:
            break
        (pos if nxt[1] else neg).append(nxt[0])
        mask = grabcut_mask(img, box, pos, neg)
        iou = editor_iou(mask, gt, w, h)
    clicks = len(pos) + len(neg)
    return 2 + 1 + clicks, clicks, iou, iou >= target


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


def main() -> None:
    from core.demo import CLASSES, N_IMAGES, render_demo_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=N_IMAGES, help="first N demo images (default all)")
    ap.add_argument("--target", type=float, default=0.9, help="mask IoU each object must reach")
    ap.add_argument("--jitter", type=float, default=2.0, help="hand error of a dragged box corner, px")
    ap.add_argument("--max-clicks", type=int, default=10, help="GrabCut refinement clicks before polygon fallback")
    ap.add_argument("--model", type=Path, help="the project's model (runs/<name>/best.pt or an export)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    predictor = mapping = None
    if args.model is not None:
        from app.prelabel import load_predictor

        predictor = load_predictor(args.model, 0.5)
        mapping = class_mapping(list(getattr(predictor, "class_names", []) or []), CLASSES)
    t0 = time.perf_counter()
    rows = []
    for index in range(args.images):
        img, insts = render_demo_image(index)
        h, w = img.shape[:2]
        det = predictor.predict([img])[0] if predictor is not None else None
        for inst in insts:
            p_actions, vertices, p_iou = polygon_actions(inst, w, h, args.target)
            e_actions, e_vertices, e_iou = polygon_actions(inst, w, h, args.target, offsets=(0.0,))
            g_actions, clicks, g_iou, reached = grabcut_actions(img, inst, rng, args.jitter, args.target,
                                                                args.max_clicks)
            if not reached:
                g_actions += e_actions
            row = {"image": index, "class": inst.class_id, "parts": len(inst.polygons), "holes": len(inst.holes),
                   "polygon_actions": p_actions, "polygon_vertices": vertices, "polygon_iou": round(p_iou, 4),
                   "polygon_on_edge_actions": e_actions, "polygon_on_edge_vertices": e_vertices,
                   "polygon_on_edge_iou": round(e_iou, 4),
                   "grabcut_actions": g_actions, "grabcut_clicks": clicks, "grabcut_iou": round(g_iou, 4),
                   "grabcut_reached": reached}
            if det is not None:
                m_actions, m_iou, enough = model_actions(img, inst, det, mapping, rng, args.jitter, args.target)
                row.update(model_actions=m_actions, model_iou=round(m_iou, 4), model_enough=enough)
            rows.append(row)
    n_img = args.images
    methods = ["polygon", "polygon_on_edge", "grabcut"] + (["model"] if predictor is not None else [])
    totals = {m: sum(r[f"{m}_actions"] for r in rows) + n_img for m in methods}  # + one tool key per image
    summary = {
        "images": n_img, "objects": len(rows), "target_iou": args.target, "jitter_px": args.jitter,
        "totals": totals, "per_object": {m: round(totals[m] / len(rows), 2) for m in methods},
        "grabcut_vs_polygon": round(totals["grabcut"] / totals["polygon"], 3),
        "grabcut_vs_polygon_on_edge": round(totals["grabcut"] / totals["polygon_on_edge"], 3),
        "grabcut_no_click": sum(r["grabcut_clicks"] == 0 and r["grabcut_reached"] for r in rows),
        "grabcut_fallbacks": sum(not r["grabcut_reached"] for r in rows),
        "mean_polygon_vertices": round(float(np.mean([r["polygon_vertices"] for r in rows])), 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if predictor is not None:
        summary["model_vs_polygon"] = round(totals["model"] / totals["polygon"], 3)
        summary["model_enough"] = sum(r["model_enough"] for r in rows)
    OUT.mkdir(exist_ok=True)
    (OUT / "label_effort.json").write_text(json.dumps({"summary": summary, "objects": rows}, indent=1))
    print(f"demo: {n_img} images, {len(rows)} objects, target mask IoU {args.target}, box jitter ±{args.jitter} px")
    print("| method | actions | per object | vs polygon (ideal) | vs polygon on edge |")
    print("|---|---|---|---|---|")
    for m in methods:
        print(f"| {m} | {totals[m]} | {totals[m] / len(rows):.2f} | {totals[m] / totals['polygon']:.3f} "
              f"| {totals[m] / totals['polygon_on_edge']:.3f} |")
    print(f"polygon: {summary['mean_polygon_vertices']} vertices per object on average (on the edge: "
          f"{np.mean([r['polygon_on_edge_vertices'] for r in rows]):.2f}); grabcut: "
          f"{summary['grabcut_no_click']} objects with no refinement click, {summary['grabcut_fallbacks']} "
          f"finished as polygons; {summary['seconds']} s")


if __name__ == "__main__":
    main()
