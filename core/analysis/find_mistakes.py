"""Rank likely label mistakes by comparing labels with a model's predictions.

Per image: geometry checks (no model needed), duplicate GTs (two labels on one
object), then a one-to-one assignment of predictions to labels that prefers the
same class (scipy's linear_sum_assignment on IoU + a same-class bonus), from
which follow wrong class, bad polygon/box, missing label (confident prediction
on no label) and spurious label (label no prediction supports).

Scores are in [0, 1] and built so that strong evidence ranks first: certain
geometry errors ~0.95, duplicates = their IoU, wrong class = score x IoU,
missing = score x (1 - best IoU with any label), bad geometry = score x (1 - IoU),
spurious = 0.75 x (1 - best overlapping prediction score).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.analysis.geometry_checks import check_geometry
from core.analysis.issues import LabelIssue
from core.annotation import ImageAnnotation
from core.eval import rle as rle_ops
from core.eval.records import ImagePred, gt_from_annotation
from core.geometry import mask_to_polygons

FIX_TOLERANCE_PX = 0.7  # a suggested outline is within this of the model's mask
FIX_MIN_AREA_PX = 4.0  # parts smaller than this are specks of the mask, not the object


@dataclass
class AnalysisConfig:
    conf: float = 0.5  # a prediction this confident is evidence of an object
    support_score: float = 0.1  # weaker predictions still support an existing label
    assoc_iou: float = 0.1  # a prediction and a label overlapping more than this are about one object
    class_iou: float = 0.5  # wrong class needs a matched prediction overlapping at least this much
    good_iou: float = 0.7  # below this a confident matched prediction says the polygon/box is off
    duplicate_iou: float = 0.8  # two labels overlapping more than this are one object labelled twice
    min_area: float = 4.0  # px^2; smaller labels are degenerate
    spurious_weight: float = 0.75  # a model may just miss an object: spurious ranks below firm evidence


def _fix_geometry(pred: ImagePred, p: int, use_masks: bool) -> dict:
    box = [round(float(v), 2) for v in pred.boxes[p]]
    if use_masks and pred.masks is not None:
        outers, holes = mask_to_polygons(rle_ops.decode([pred.masks[p]])[0], FIX_TOLERANCE_PX, FIX_MIN_AREA_PX)
        fix = {"polygons": [o.round(2).ravel().tolist() for o in outers], "box": box}
        if holes:
            fix["holes"] = [h.round(2).ravel().tolist() for h in holes]
        return fix
    return {"box": box}


def _ious(a_masks, a_boxes, b_masks, b_boxes, use_masks: bool) -> np.ndarray:
    if use_masks:
        return rle_ops.mask_iou(a_masks, b_masks)
    return rle_ops.box_iou(a_boxes, b_boxes)


def analyze_image(ann: ImageAnnotation, pred: ImagePred, task: Literal["segment", "detect"] = "segment",
                  cfg: AnalysisConfig | None = None) -> list[LabelIssue]:
    """All issues of one image (one per labelled instance, unsorted)."""
    cfg = cfg or AnalysisConfig()
    img = str(ann.image_path)
    use_masks = task == "segment" and pred.masks is not None
    issues, degenerate = check_geometry(ann, cfg.min_area)
    # degenerate labels are never rasterised (NaN or 2-point polygons); crowd regions only excuse predictions
    ok = [k for k in range(len(ann.instances)) if k not in degenerate]
    gt = gt_from_annotation(ImageAnnotation(ann.image_path, ann.width, ann.height,
                                            [ann.instances[k] for k in ok]), with_masks=use_masks)
    sub = [j for j in range(len(gt)) if not gt.iscrowd[j]]
    valid = [ok[j] for j in sub]  # instance index of each evaluated label
    gm = [gt.masks[j] for j in sub] if use_masks else None
    gb = gt.boxes[sub]
    gl = gt.labels[sub]

    # duplicates: a later label covering an earlier one
    dup: set[int] = set()
    gg = _ious(gm, gb, gm, gb, use_masks)
    for j in range(len(valid)):
        for i in range(j):
            if i in dup or gg[j, i] <= cfg.duplicate_iou:
                continue
            dup.add(j)
            k, ki = valid[j], valid[i]
            issues.append(LabelIssue(
                "duplicate_label", img, k, gb[j].tolist(), int(gl[j]), float(gg[j, i]),
                {"iou": round(float(gg[j, i]), 4), "other_instance": ki, "other_class": int(gl[i])},
                {"action": "delete"}, f"instance {k} repeats instance {ki} (IoU {gg[j, i]:.2f})"))
            break
    keep = [j for j in range(len(valid)) if j not in dup]

    p = pred.top(cfg.support_score)
    pm = p.masks if use_masks else None
    iou = _ious(pm, p.boxes, [gm[j] for j in keep] if use_masks else None, gb[keep], use_masks)  # [P, G]
    iou_all = _ious(pm, p.boxes, gm, gb, use_masks)  # incl. duplicates
    if len(gt) and gt.iscrowd.any():
        crowd = np.nonzero(gt.iscrowd)[0]
        cm = [gt.masks[k] for k in crowd] if use_masks else None
        in_crowd = _ious(pm, p.boxes, cm, gt.boxes[crowd], use_masks).max(axis=1) > cfg.assoc_iou
    else:
        in_crowd = np.zeros(len(p), bool)

    same = p.labels[:, None] == gl[keep][None, :]
    allowed = iou > cfg.assoc_iou
    weight = np.where(allowed, iou + 0.5 * same + 0.1 * p.scores[:, None], -1e6)
    rows, cols = linear_sum_assignment(weight, maximize=True) if weight.size else ([], [])
    pairs = [(r, c) for r, c in zip(rows, cols) if allowed[r, c]]
    matched_p = {r for r, _ in pairs}
    matched_g = {c for _, c in pairs}
    # second pass: a label moved far off its object still touches it; a confident same-class
    # prediction overlapping a leftover label at all is the same object, outlined badly
    up = [r for r in range(len(p)) if r not in matched_p and p.scores[r] >= cfg.conf]
    ug = [c for c in range(len(keep)) if c not in matched_g]
    if up and ug:
        sub = iou[np.ix_(up, ug)]
        ok2 = (sub > 0) & same[np.ix_(up, ug)]
        r2, c2 = linear_sum_assignment(np.where(ok2, sub, -1e6), maximize=True)
        for a, b in zip(r2, c2):
            if ok2[a, b]:
                pairs.append((up[a], ug[b]))
                matched_p.add(up[a])
                matched_g.add(ug[b])

    for r, c in pairs:
        k = valid[keep[c]]
        s, v, pc, gc = float(p.scores[r]), float(iou[r, c]), int(p.labels[r]), int(gl[keep[c]])
        ev = {"pred_score": round(s, 4), "iou": round(v, 4), "pred_class": pc}
        if pc != gc and v >= cfg.class_iou and s >= cfg.conf:
            issues.append(LabelIssue("wrong_class", img, k, gb[keep[c]].tolist(), gc, s * v, ev,
                                     {"action": "set_class", "class_id": pc},
                                     f"instance {k}: labelled class {gc}, model says {pc} ({s:.2f})"))
        elif v < cfg.good_iou and pc == gc:
            issues.append(LabelIssue("bad_geometry", img, k, gb[keep[c]].tolist(), gc, s * (1 - v), ev,
                                     {"action": "replace_geometry", **_fix_geometry(p, r, use_masks)},
                                     f"instance {k}: outline disagrees with the model (IoU {v:.2f})"))

    for r in range(len(p)):
        s = float(p.scores[r])
        if r in matched_p or s < cfg.conf or in_crowd[r]:
            continue
        best = float(iou_all[r].max()) if iou_all.shape[1] else 0.0
        if best > cfg.class_iou:
            continue  # a second prediction on a labelled object: a model duplicate, not a label issue
        pc = int(p.labels[r])
        issues.append(LabelIssue("missing_label", img, None, p.boxes[r].tolist(), pc, s * (1 - best),
                                 {"pred_score": round(s, 4), "iou": round(best, 4), "pred_class": pc},
                                 {"action": "add", "class_id": pc, **_fix_geometry(p, r, use_masks)},
                                 f"model finds class {pc} ({s:.2f}) where nothing is labelled"))

    for c in range(len(keep)):
        if c in matched_g:
            continue
        k = valid[keep[c]]
        overlapping = p.scores[iou[:, c] > cfg.assoc_iou] if len(p) else np.zeros(0)
        best_s = float(overlapping.max()) if len(overlapping) else 0.0
        issues.append(LabelIssue("spurious_label", img, k, gb[keep[c]].tolist(), int(gl[keep[c]]),
                                 cfg.spurious_weight * (1 - best_s),
                                 {"pred_score": round(best_s, 4),
                                  "iou": round(float(iou[:, c].max()) if len(p) else 0.0, 4)},
                                 {"action": "delete"}, f"instance {k}: no prediction supports this label"))
    return _one_per_instance(issues)


def _one_per_instance(issues: list[LabelIssue]) -> list[LabelIssue]:
    """One issue per labelled instance (the strongest); the others' kinds go to evidence["also"]."""
    best: dict[int, LabelIssue] = {}
    others: dict[int, list[str]] = {}
    out = []
    for issue in issues:
        if issue.instance is None:
            out.append(issue)
            continue
        cur = best.get(issue.instance)
        if cur is None or issue.score > cur.score:
            if cur is not None:
                others.setdefault(issue.instance, []).append(cur.kind)
            best[issue.instance] = issue
        else:
            others.setdefault(issue.instance, []).append(issue.kind)
    for k, issue in best.items():
        if k in others:
            issue.evidence["also"] = others[k]
        out.append(issue)
    return out


def analyze(annotations: Iterable[ImageAnnotation], predictions: Iterable[ImagePred],
            task: Literal["segment", "detect"] = "segment", cfg: AnalysisConfig | None = None) -> list[LabelIssue]:
    """Ranked likely label mistakes (highest score first) over aligned (annotation,
    prediction) streams; predictions may be a generator (one image in memory)."""
    cfg = cfg or AnalysisConfig()
    out: list[LabelIssue] = []
    for ann, pred in zip(annotations, predictions, strict=True):
        out.extend(analyze_image(ann, pred, task, cfg))
    out.sort(key=lambda i: (-i.score, i.image, -1 if i.instance is None else i.instance))
    return out


def issues_per_kind(issues: Sequence[LabelIssue]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in issues:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    return counts
