"""Rank likely label mistakes by comparing labels with a model's predictions, using what the
model knows: per-class calibrated confidence, its class probability vector, and whether a
mirrored view of the image agrees.

Best used on out-of-fold predictions (core.analysis.folds): a model that trained on a wrong
label has learned it. Steps per image:

1. geometry checks (no model needed) and duplicate labels (two labels on one object);
2. predictions are grouped into *hypotheses*, one per decoder query: D-FINE scores every class
   of a query with its own sigmoid and keeps the top (query, class) pairs, so one object shows
   up as several predictions with the same box and different classes; together they are the
   query's class vector ``v`` (classes below the stored threshold count as 0);
3. each hypothesis's *evidence* for a class is its score, and, when mirrored-image predictions
   are given, the geometric mean of that score and the best same-class mirrored score on the
   same spot (box IoU >= 0.5): an object the model sees from both sides is firmer evidence than
   a flicker (model false positives rarely repeat in the mirror);
4. one-to-one assignment of hypotheses to labels (scipy's linear_sum_assignment on IoU plus the
   hypothesis's score for the label's class), firm hypotheses first (see :func:`match`): a label
   is judged against the model's confident view of its object, not a faint query beside it.

Calibration (:func:`core.analysis.calibration.calibrate`, from the same predictions and labels over
the whole set; every per-class number shrunk toward the whole model's, empirical Bayes): per
class ``c`` the threshold ``t_c`` at the best F1, the recall ``R_c`` there, the typical mask IoU
``m_c`` of correct detections, and ``P_c(e)``: P(a hypothesis of class c with evidence e is a
labelled object), local (isotonic), corrected for object size by the model's own precision per
size group; ``R_c(s)`` and ``m_c(s)`` are taken per object size ``s`` the same way. The outline
edge check (:mod:`core.analysis.outline_edges`) is calibrated on the project too: an outline's
edge z gives P_bg, the probability that it lies on background, read against the project's own
labels (or the model's outlines on labelled objects) and the same outlines moved onto background.
The pixels enter by Bayes (:func:`with_pixels`: the claim's odds times P_bg / (1 - P_bg) for the
story "on background"), so where the two distributions overlap the model's claim stands.

Scores (in [0, 1], higher = more likely a label mistake):

- degenerate / out-of-image geometry ~0.95 (certain); duplicate label = the two labels' IoU;
- wrong class: evidence e for the model's class p >= t_p on a label of class g (IoU >= 0.5):
  ``P_p(e) * (1 - min(1, e_g / t_g)) * habit`` -- a swap is strong when the model is sure of
  another class *and* gives the labelled class little (e_g: the same query's evidence for g);
  ``habit`` (:func:`confusion_habit`) discounts a (g, p) disagreement the model makes on many
  labels of the project (its habit, not as many label mistakes);
- missing label: unmatched hypothesis with e >= t_p: ``P_p(e) * (1 - best IoU with a label)``,
  with the pixels (the model's outline: on an edge like the model's outlines on labelled objects,
  or on background?), one item per object: hypotheses whose masks (boxes in detect) overlap >= 0.5
  are one object (the strongest is reported, the rest counted as ``agreeing_queries``), and one
  overlapping a matched hypothesis is that labelled object, judged with its label;
- bad outline: matched, same class, e >= t_g, IoU below ``min(good_iou, 0.85 m_g(s))``:
  ``P_g(e) * min(1, 2 (1 - IoU / m_g(s))) * a``, where ``a`` is the box IoU of the plain and
  mirrored predictions (a model whose outline wobbles is weak evidence about the label's); the
  pixels may veto it when the label's outline follows the image's edges and the model's does not
  (:func:`label_off_outline`);
- spurious label: the label's class gets evidence u < t_g from every hypothesis on it:
  ``spurious_weight * R_g(s) * (1 - a / t_g)`` with the pixels (the label's outline on background?)
  -- only as strong as the model's recall of the class at this size, and weaker when the model
  sees anything there (a: the highest plain score of any class on it, from hypotheses not paired
  with another label). A model that finds fewer than ``USELESS_RECALL`` of the labels makes no
  spurious (delete) claims at all.

Without calibration (:class:`Calibration` empty): ``t_c`` = ``conf``, ``R_c`` = 1, ``m_c`` =
``good_iou`` and ``P_c(e)`` = e: the uncalibrated rules of old.
Every issue's ``message`` is one sentence with these numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.analysis.calibration import Calibration, hypothesis_sides
from core.analysis.evidence import Hypotheses, Labels, evaluable_labels, group_hypotheses, pair_ious
from core.analysis.geometry_checks import check_geometry
from core.analysis.issues import LabelIssue
from core.analysis.outline_edges import EdgeCalibration, EdgeEvidence, ImageEdges, calibrate_edges
from core.analysis.settings import AnalysisConfig
from core.annotation import ImageAnnotation
from core.data.images import read_image
from core import rle as rle_ops
from core.eval.records import ImagePred
from core.geometry import mask_to_polygons

FIX_TOLERANCE_PX = 0.7  # a suggested outline is within this of the model's mask
FIX_MIN_AREA_PX = 4.0  # parts smaller than this are specks of the mask, not the object
SAME_OBJECT_IOU = 0.5  # two queries' masks (boxes in detect) overlapping this much are one object

__all__ = ["AnalysisConfig", "Calibration", "analyze", "analyze_image", "issues_per_kind"]


# ---------------------------------------------------------------------------- per-image pieces


def find_duplicates(labels: Labels, image: str, cfg: AnalysisConfig, use_masks: bool
                    ) -> tuple[list[LabelIssue], set[int]]:
    """A later label covering an earlier one is the same object labelled twice."""
    issues: list[LabelIssue] = []
    dup: set[int] = set()
    overlap = pair_ious(labels.masks, labels.boxes, labels.masks, labels.boxes, use_masks)
    for j in range(len(labels.index)):
        for i in range(j):
            if i in dup or overlap[j, i] <= cfg.duplicate_iou:
                continue
            dup.add(j)
            k, ki, v = labels.index[j], labels.index[i], float(overlap[j, i])
            issues.append(LabelIssue(
                "duplicate_label", image, k, labels.boxes[j].tolist(), int(labels.classes[j]), v,
                {"iou": round(v, 4), "other_instance": ki, "other_class": int(labels.classes[i])},
                {"action": "delete"}, f"label {k} repeats label {ki} (overlap IoU {v:.2f})"))
            break
    return issues, dup


def match(hyp_iou: np.ndarray, hyps: Hypotheses, label_classes: np.ndarray, confident: np.ndarray,
          cfg: AnalysisConfig) -> list[tuple[int, int]]:
    """One-to-one (hypothesis, label) pairs, in three passes so that a label is judged against the
    model's firm view of its object, not a flicker that happens to overlap it a little better:

    1. ``confident`` hypotheses and labels: overlap first, then the hypothesis's belief in the
       label's class (of two firm queries on one object, the one agreeing with the label); a firm
       hypothesis of another class pairs only when it covers the label (IoU >= ``class_iou``):
       overlapping a little, it is a neighbour the label occludes or is occluded by;
    2. what is left, a confident hypothesis of the label's class overlapping it at all: a label
       moved far off its object still touches it, so they are the same object, outlined badly;
    3. the weak hypotheses and the labels still unpaired (the model sees something there)."""
    if not hyp_iou.size:
        return []
    belief = hyps.vectors[:, label_classes]
    overlap = hyp_iou > cfg.assoc_iou
    firm = np.asarray(confident, bool)
    same = np.argmax(hyps.evidence, axis=1)[:, None] == np.asarray(label_classes)[None, :]  # top class = label's
    one_object = overlap & (same | (hyp_iou >= cfg.class_iou))
    pairs = _assign(np.where(one_object & firm[:, None], hyp_iou + 0.5 * belief, -np.inf), [])
    pairs = _assign(np.where((hyp_iou > 0) & same & firm[:, None], hyp_iou, -np.inf), pairs)
    return _assign(np.where(overlap & ~firm[:, None], hyp_iou + 0.5 * belief, -np.inf), pairs)


def _assign(weight: np.ndarray, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``pairs`` plus the best one-to-one assignment among the rows and columns they leave free
    (-inf: not allowed)."""
    taken_rows, taken_cols = {a for a, _ in pairs}, {b for _, b in pairs}
    rows = [h for h in range(weight.shape[0]) if h not in taken_rows]
    cols = [j for j in range(weight.shape[1]) if j not in taken_cols]
    if not rows or not cols:
        return pairs
    sub = weight[np.ix_(rows, cols)]
    ok = np.isfinite(sub)
    if not ok.any():
        return pairs
    r, c = linear_sum_assignment(np.where(ok, sub, -1e6), maximize=True)
    return pairs + [(rows[a], cols[b]) for a, b in zip(r, c) if ok[a, b]]


def _fix_geometry(pred: ImagePred, p: int, use_masks: bool) -> dict:
    box = [round(float(v), 2) for v in pred.boxes[p]]
    if use_masks and pred.masks is not None:
        outers, holes = mask_to_polygons(rle_ops.decode([pred.masks[p]])[0], FIX_TOLERANCE_PX, FIX_MIN_AREA_PX)
        fix = {"polygons": [o.round(2).ravel().tolist() for o in outers], "box": box}
        if holes:
            fix["holes"] = [h.round(2).ravel().tolist() for h in holes]
        return fix
    return {"box": box}


@dataclass
class ImageContext:
    """What the judging functions share for one image."""

    image: str
    pred: ImagePred
    hyps: Hypotheses
    labels: Labels
    keep: list[int]  # labels left after duplicates
    iou: np.ndarray  # [H, len(keep)]
    cal: Calibration
    cfg: AnalysisConfig
    names: Sequence[str]
    use_masks: bool
    flips: bool
    edges: ImageEdges | None = None  # the outline edge check (segment mode, polygon labels)
    edge_cal: EdgeCalibration | None = None  # what edge z means in this project
    areas: list[float] | None = None  # each evaluable label's area (px^2)
    hside: np.ndarray = field(default_factory=lambda: np.zeros(0))  # each hypothesis's side (sqrt of its area, px)

    def labels_area(self, j: int) -> float:
        return float(self.areas[self.keep[j]]) if self.areas else 0.0

    def name(self, c: int) -> str:
        return self.names[c] if 0 <= c < len(self.names) else f"class {c}"

    def seen(self, h: int, c: int) -> str:
        """'star 0.93 (mirrored view 0.90)' for the reason sentences."""
        v = float(self.hyps.vectors[h, c])
        text = f"{self.name(c)} {v:.2f}"
        if self.flips:
            mirrored = float(self.hyps.evidence[h, c]) ** 2 / v if v > 0 else 0.0
            text += f" (mirrored view {mirrored:.2f})" if mirrored > 0 else " (not in the mirrored view)"
        return text


def judge_pair(ctx: ImageContext, h: int, j: int) -> LabelIssue | None:
    """A hypothesis matched to label ``keep[j]``: wrong class, bad outline, unsupported, or fine."""
    hy, cal, cfg = ctx.hyps, ctx.cal, ctx.cfg
    g = int(ctx.labels.classes[ctx.keep[j]])
    k = ctx.labels.index[ctx.keep[j]]
    box = ctx.labels.boxes[ctx.keep[j]].tolist()
    v = float(ctx.iou[h, j])
    p = hy.top_class(h)
    e_p, e_g = float(hy.evidence[h, p]), float(hy.evidence[h, g])
    t_p, t_g = cal.of(p).threshold, cal.of(g).threshold
    rep = int(hy.rep[h])
    ev = {"pred_score": round(float(hy.vectors[h, p]), 4), "iou": round(v, 4), "pred_class": p,
          "evidence": round(e_p, 4), "label_class_score": round(float(hy.vectors[h, g]), 4)}
    if p != g and v >= cfg.class_iou and e_p >= t_p:
        habit = confusion_habit(cal, g, p)
        sure = cal.confidence(p, e_p, ctx.hside[h])
        score = sure * (1.0 - min(1.0, e_g / max(t_g, 1e-6))) * habit
        if score > 0:
            ev.update(precision_at_score=round(sure, 4),
                      model_calls_class_so=cal.confusions.get((g, p), 0))
            words = ""
            if habit < 1.0:
                words = (f"; the model calls {cal.confusions[(g, p)]} {ctx.name(g)} labels {ctx.name(p)}, "
                         "more a habit of the model than label mistakes")
            return LabelIssue("wrong_class", ctx.image, k, box, g, score, ev, {"action": "set_class", "class_id": p},
                              f"model says {ctx.seen(h, p)}; label says {ctx.name(g)} ({hy.vectors[h, g]:.2f}, "
                              f"threshold {t_g:.2f})" + words)
    if e_g < t_g:
        return None  # the label's class is not supported here: judged with the unmatched labels
    typical = cal.typical_iou(g, float(np.sqrt(max(ctx.labels_area(j), 0.0))))
    if v < min(cfg.good_iou, 0.85 * typical):
        steady = float(hy.flip_box_iou[h])
        sure = cal.confidence(g, e_g, ctx.hside[h])
        score = sure * min(1.0, 2.0 * max(0.0, 1.0 - v / typical)) * steady
        if score <= 0:
            return None
        fix = _fix_geometry(ctx.pred, rep, ctx.use_masks)  # the model's outline; the image is read only now
        model_outline = fix.get("polygons", []) + fix.get("holes", [])
        pixels = ctx.edges.compare(k, model_outline) if ctx.edges is not None else None
        off = label_off_outline(ctx, k, model_outline) if pixels is not None else None
        score = with_pixels(score, None if off is None else min(off, 0.5))  # the pixels only veto here
        if score > 0:
            ev.update(precision_at_score=round(sure, 4), typical_iou=round(typical, 4),
                      mirror_box_iou=round(steady, 4))
            words = ""
            if pixels is not None:
                ev.update(label_outline_on_edge=round(pixels.label_cover, 3), model_outline_on_edge=round(pixels.model_cover, 3))
                words = (f"; the label's outline lies on an image edge for {pixels.label_cover:.0%} of its length, "
                         f"the model's for {pixels.model_cover:.0%}")
            if off is not None:
                ev["p_label_off"] = round(off, 3)
                words += f" (P(the label is the one off) {off:.2f})"
            return LabelIssue("bad_geometry", ctx.image, k, box, g, score, ev, {"action": "replace_geometry", **fix},
                              f"outline overlaps the model's {ctx.name(g)} ({e_g:.2f}) by IoU {v:.2f}, typical "
                              f"{typical:.2f}" + (f"; mirrored view agrees (box IoU {steady:.2f})" if ctx.flips else "")
                              + words)
    return None


def judge_unmatched_prediction(ctx: ImageContext, h: int, in_crowd: bool, best_label_iou: float) -> LabelIssue | None:
    """A confident hypothesis on no label: a missing label (unless it sits on a labelled object)."""
    hy = ctx.hyps
    p = hy.top_class(h)
    e = float(hy.evidence[h, p])
    if in_crowd or e < ctx.cal.of(p).threshold or best_label_iou > ctx.cfg.class_iou:
        return None
    rep = int(hy.rep[h])
    sure = ctx.cal.confidence(p, e, ctx.hside[h])
    ev = {"pred_score": round(float(hy.vectors[h, p]), 4), "iou": round(best_label_iou, 4), "pred_class": p,
          "evidence": round(e, 4), "precision_at_score": round(sure, 4)}
    fix = _fix_geometry(ctx.pred, rep, ctx.use_masks)
    # the model's outline where nothing is labelled: on edges as the project's labels are, or on background?
    edge = ctx.edges.z_of(fix.get("polygons", [])) if ctx.edges is not None and fix.get("polygons") else None
    background = edge_factor(edge, ctx.edge_cal, model=True)
    words = ""
    if background is not None and edge is not None:  # (a background verdict needs an edge)
        ev.update(edge_z=round(edge.z, 2), p_background=round(background, 3))
        if background >= 0.75:
            words = (f"; but its outline follows no edge, unlike the project's labels (edge z {edge.z:.1f}, "
                     f"P(background) {background:.2f})")
    return LabelIssue("missing_label", ctx.image, None, ctx.pred.boxes[rep].tolist(), p,
                      with_pixels(sure, None if background is None else 1.0 - background) * (1.0 - best_label_iou), ev,
                      {"action": "add", "class_id": p, **fix},
                      f"model finds {ctx.seen(h, p)} where nothing is labelled "
                      f"(threshold {ctx.cal.of(p).threshold:.2f})" + words)


def unmatched_predictions(ctx: ImageContext, hm, hb: np.ndarray, partner: np.ndarray, in_crowd: np.ndarray,
                          iou_all: np.ndarray) -> list[LabelIssue]:
    """Missing labels, one per object. A weak model often puts several queries on one object
    (boxes too different to be one query's classes): those on an object a label already matched
    are that object, and of several on an unlabelled object only the strongest is reported (the
    others count as agreeing queries), so one dropped label is one item, not five. A query of
    another class than the matched pair's (label and query) is a neighbour the matched query's
    mask spills onto, not that object. ``partner``: each hypothesis's paired label (-1: none)."""
    n = len(ctx.hyps)
    if not n:
        return []
    same = pair_ious(hm, hb, hm, hb, ctx.use_masks)
    matched_list = [h for h in range(n) if partner[h] >= 0]
    pair_classes = {h: {ctx.hyps.top_class(h), int(ctx.labels.classes[ctx.keep[partner[h]]])} for h in matched_list}
    order = sorted((h for h in range(n) if partner[h] < 0),
                   key=lambda h: -float(ctx.hyps.evidence[h, ctx.hyps.top_class(h)]))
    reported: list[tuple[int, LabelIssue]] = []
    for h in order:
        if any(same[h, m] >= SAME_OBJECT_IOU and ctx.hyps.top_class(h) in pair_classes[m] for m in matched_list):
            continue  # another query on an object that has its label (judged with that label)
        twin = next((issue for r, issue in reported if same[h, r] >= SAME_OBJECT_IOU), None)
        if twin is not None:
            twin.evidence["agreeing_queries"] = twin.evidence.get("agreeing_queries", 1) + 1
            continue
        best = float(iou_all[h].max()) if iou_all.shape[1] else 0.0
        issue = judge_unmatched_prediction(ctx, h, bool(in_crowd[h]), best)
        if issue is not None:
            reported.append((h, issue))
    for _, issue in reported:
        if issue.evidence.get("agreeing_queries", 1) > 1:
            issue.message += f"; {issue.evidence['agreeing_queries']} of its queries see it"
    return [issue for _, issue in reported]


def judge_unsupported_label(ctx: ImageContext, j: int, partner: np.ndarray) -> LabelIssue:
    """A label whose class no hypothesis on it supports: spurious, as strong as the class's recall
    and weaker when the model sees *something* there (of any class: then it may be a wrong class
    the model is unsure of, or an object it finds hard). A hypothesis paired with another label
    (``partner``: each hypothesis's label, -1 for none) is that object, not something here."""
    g = int(ctx.labels.classes[ctx.keep[j]])
    k = ctx.labels.index[ctx.keep[j]]
    on_it = (ctx.iou[:, j] > ctx.cfg.assoc_iou) & ((partner < 0) | (partner == j))
    u = float(ctx.hyps.evidence[on_it, g].max()) if on_it.any() else 0.0
    anything = float(ctx.hyps.vectors[on_it].max()) if on_it.any() else 0.0
    c = ctx.cal.of(g)
    side = float(np.sqrt(max(ctx.labels_area(j), 0.0)))
    recall = ctx.cal.recall_at_size(g, side)
    edge = ctx.edges.of(k) if ctx.edges is not None else None
    background = edge_factor(edge, ctx.edge_cal)
    score = with_pixels(ctx.cfg.spurious_weight * recall * (1.0 - min(1.0, anything / max(c.threshold, 1e-6))),
                        background)
    ev: dict[str, Any] = {"pred_score": round(u, 4), "iou": round(float(ctx.iou[:, j].max()) if len(ctx.hyps) else 0.0, 4),
          "any_class_score": round(anything, 4), "class_recall": round(c.recall, 4), "threshold": round(c.threshold, 4),
          "class_labels": c.labels, "class_found": c.found, "recall_at_size": round(recall, 4)}
    if edge is not None:
        ev.update(edge_z=round(edge.z, 2), edge_step=round(edge.step, 1), background_step=round(edge.background_step, 1))
    if background is not None:
        ev["p_background"] = round(background, 3)
    elif ctx.edges is not None and ctx.edges.skipped:
        ev["edge_check"] = ctx.edges.skipped
    seen = f", {anything:.2f} for any class" if anything > u else ""
    found = ""
    if ctx.cal.overall is not None:  # calibrated: the counts behind the recall, not a bare percentage
        found = (f"; it finds {c.found} of {c.labels} {ctx.name(g)} labels, {recall:.0%} expected at this size"
                 if c.labels else f"; no {ctx.name(g)} labels to learn from, {recall:.0%} expected at this size")
    return LabelIssue("spurious_label", ctx.image, k, ctx.labels.boxes[ctx.keep[j]].tolist(), g, score, ev,
                      {"action": "delete"},
                      f"label says {ctx.name(g)} but the model gives it {u:.2f} here{seen} (threshold {c.threshold:.2f}"
                      f"{found})" + _edge_words(edge, background))


def edge_factor(edge: EdgeEvidence | None, edges: EdgeCalibration | None, model: bool = False) -> float | None:
    """P(the outline lies on background) from the project's own edge z distributions (None: no
    verdict, or no calibration). ``model``: the outline is a model's mask, judged against the
    model's outlines on labelled objects (a mask a few pixels off follows edges less than a label)."""
    if edge is None or edges is None:
        return None
    return edges.background(edge.z, model, edge.side)


PIXEL_ODDS_LIMIT = 0.01  # the image's edges alone never make a story more than 99 to 1 (kernel tails are thin)


def with_pixels(prior: float, p: float | None) -> float:
    """Bayes: a claim held with probability ``prior`` (from the model) after the image's edges,
    which alone (equal priors) give its story probability ``p`` -- posterior odds = prior odds x
    p / (1 - p). ``p`` None: no verdict, the prior stands."""
    if p is None:
        return float(prior)
    p = float(np.clip(p, PIXEL_ODDS_LIMIT, 1.0 - PIXEL_ODDS_LIMIT))
    prior = float(np.clip(prior, 0.0, 1.0))
    num = prior * p
    den = num + (1.0 - prior) * (1.0 - p)
    return num / den if den > 0 else 0.0


def label_off_outline(ctx: ImageContext, k: int, model_outline: list) -> float | None:
    """Which of two outlines of one object is off, by the image's edges read against the
    project's (equal priors): P(the label's outline is on background and the model's on an
    object) / P(one of the two is). Both on edges, or neither: ~0.5, the model's claim stands."""
    if ctx.edges is None or ctx.edge_cal is None or not model_outline:
        return None
    lab, mod = ctx.edges.of(k), ctx.edges.z_of(model_outline)
    if lab is None or mod is None:
        return None
    pl = ctx.edge_cal.background(lab.z, False, lab.side)
    pm = ctx.edge_cal.background(mod.z, True, mod.side)
    a, b = pl * (1.0 - pm), (1.0 - pl) * pm
    return a / (a + b) if a + b > 0 else None


def confusion_habit(cal: Calibration, g: int, p: int) -> float:
    """How much of a "label g should be p" claim stands when the model says p on ``n`` g-labels
    of the project: if its disagreements were label mistakes, spread over the class pairs like
    the labels are, a pair would see ``lam = D n_g / (N (C - 1))`` of them (D disagreements, N
    labels, C classes); beyond one plus that, the repeats are the model's habit:
    ``min(1, (1 + lam) / n)``."""
    n = cal.confusions.get((g, p), 0)
    if n <= 1 or cal.overall is None:
        return 1.0
    total = sum(cal.confusions.values())
    n_labels = cal.overall.labels
    n_g = cal.of(g).labels
    k = max(len(cal.classes) - 1, 1)
    lam = total * n_g / max(n_labels * k, 1)
    return float(min(1.0, (1.0 + lam) / n))


def _edge_words(edge: EdgeEvidence | None, background: float | None) -> str:
    if edge is None or background is None:
        return ""
    if background >= 0.75:
        return (f"; its outline follows no edge, unlike the project's labels (edge z {edge.z:.1f}, "
                f"P(background) {background:.2f})")
    if background <= 0.25:
        return (f"; but its outline follows an edge as the project's labels do (edge z {edge.z:.1f}, "
                f"P(background) {background:.2f}): likely an object the model misses")
    return f"; the image's edges cannot tell (edge z {edge.z:.1f}, P(background) {background:.2f})"


def analyze_image(ann: ImageAnnotation, pred: ImagePred, task: Literal["segment", "detect"] = "segment",
                  cfg: AnalysisConfig | None = None, flips: ImagePred | None = None,
                  calibration: Calibration | None = None, class_names: Sequence[str] = (),
                  read: Callable[[Path], np.ndarray] | None = read_image) -> list[LabelIssue]:
    """All issues of one image (one per labelled instance, unsorted). ``read`` loads the image
    for the outline edge check (only when a label is unsupported; None: no check)."""
    cfg = cfg or AnalysisConfig()
    cal = calibration or Calibration(default_threshold=cfg.conf, default_iou=cfg.good_iou)
    image = str(ann.image_path)
    use_masks = task == "segment" and pred.masks is not None
    issues, degenerate = check_geometry(ann, cfg.min_area)
    labels = evaluable_labels(ann, degenerate, use_masks)
    dup_issues, dup = find_duplicates(labels, image, cfg, use_masks)
    issues += dup_issues
    keep = [j for j in range(len(labels.index)) if j not in dup]

    p = pred.top(cfg.support_score)
    num_classes = max(len(class_names), int(labels.classes.max()) + 1 if len(labels.classes) else 0)
    hyps = group_hypotheses(p, flips, num_classes)
    # masks exist exactly when use_masks (use_masks checks pred.masks; evaluable_labels rasterises then)
    hm = [p.masks[r] for r in hyps.rep] if use_masks and p.masks is not None else None
    hb = p.boxes[hyps.rep].reshape(-1, 4)
    label_masks = labels.masks
    iou = pair_ious(hm, hb, [label_masks[j] for j in keep] if label_masks is not None else None,
                    labels.boxes[keep], use_masks)
    iou_all = pair_ious(hm, hb, labels.masks, labels.boxes, use_masks)  # incl. duplicates
    if len(labels.crowd_boxes):
        in_crowd = pair_ious(hm, hb, labels.crowd_masks, labels.crowd_boxes, use_masks).max(axis=1) > cfg.assoc_iou
    else:
        in_crowd = np.zeros(len(hyps), bool)
    edges = ImageEdges(ann, read) if read is not None and cfg.edge_check and task == "segment" else None
    edge_cal = (cal.edges if edges is None or read is None or cal.edges is not None
                else calibrate_edges([ann], read, predictions=[p], min_score=cfg.support_score))
    ctx = ImageContext(image, p, hyps, labels, keep, iou, cal, cfg, class_names, use_masks, flips is not None, edges,
                       edge_cal, [ann.instances[k].area() for k in labels.index], hypothesis_sides(hm, hb))

    confident = np.array([hyps.evidence[h, hyps.top_class(h)] >= cal.of(hyps.top_class(h)).threshold
                          for h in range(len(hyps))], bool)
    pairs = match(iou, hyps, labels.classes[keep], confident, cfg)
    supported: set[int] = set()
    partner = -np.ones(len(hyps), np.int64)
    for h, j in pairs:
        partner[h] = j
    for h, j in pairs:
        issue = judge_pair(ctx, h, j)
        g = int(labels.classes[keep[j]])
        if issue is not None:
            issues.append(issue)
        if issue is not None or hyps.evidence[h, g] >= cal.of(g).threshold:
            supported.add(j)
    issues += unmatched_predictions(ctx, hm, hb, partner, in_crowd, iou_all)
    if not cal.model_finds_almost_nothing:  # its misses are no reason to delete anything
        issues += [judge_unsupported_label(ctx, j, partner) for j in range(len(keep)) if j not in supported]
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
            task: Literal["segment", "detect"] = "segment", cfg: AnalysisConfig | None = None,
            flips: Iterable[ImagePred] | None = None, calibration: Calibration | None = None,
            class_names: Sequence[str] = (), read: Callable[[Path], np.ndarray] | None = read_image
            ) -> list[LabelIssue]:
    """Ranked likely label mistakes (highest score first) over aligned (annotation, prediction)
    streams (and mirrored-image predictions when given); predictions may be a generator.
    ``read``: how images are loaded for the outline edge check (None: no check)."""
    cfg = cfg or AnalysisConfig()
    if not isinstance(annotations, Sequence):
        annotations = list(annotations)
    calibration = calibration or Calibration(default_threshold=cfg.conf, default_iou=cfg.good_iou)
    if calibration.edges is None and read is not None and cfg.edge_check and task == "segment":
        if not isinstance(predictions, Sequence):
            predictions = list(predictions)
        calibration.edges = calibrate_edges(annotations, read, predictions=predictions, min_score=cfg.support_score)
    out: list[LabelIssue] = []
    flip_iter = iter(flips) if flips is not None else None
    for ann, pred in zip(annotations, predictions, strict=True):
        flip = next(flip_iter) if flip_iter is not None else None
        out.extend(analyze_image(ann, pred, task, cfg, flip, calibration, class_names, read))
    out.sort(key=lambda i: (-i.score, i.image, -1 if i.instance is None else i.instance))
    return out


def issues_per_kind(issues: Sequence[LabelIssue]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in issues:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    return counts
