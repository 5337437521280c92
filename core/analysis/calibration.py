"""Per-class calibration of the label-mistake finder from the project's own predictions and
labels (out-of-fold predictions make it honest): the best-F1 threshold, the recall there (and
how it falls with object size), the typical mask IoU of correct detections, the precision-at-score
curve, and how often the model calls one class's labels another class.

**Few labels, few claims.** Every per-class number is shrunk toward the same number over all
classes (empirical Bayes): ``(n_c x_c + a x_all) / (n_c + a)`` with ``n_c`` the class's labels
(correct detections for the typical IoU, hypotheses for precision) and ``a`` the prior's strength
in labels, estimated from how much the classes' recalls differ beyond binomial noise (a beta-
binomial method of moments, kept in [``MIN_STRENGTH``, ``MAX_STRENGTH``]). A class with 3 labels
all found is then "3 of 3" at the model's overall recall pulled up a little, not "100 %".

core.analysis.find_mistakes explains how each number enters a score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.analysis.evidence import evaluable_labels, group_hypotheses, pair_ious
from core.analysis.geometry_checks import check_geometry
from core.analysis.settings import AnalysisConfig
from core.annotation import ImageAnnotation
from core import rle as rle_ops
from core.eval.records import ImagePred

if TYPE_CHECKING:
    from core.analysis.outline_edges import EdgeCalibration

MIN_STRENGTH = 2.0  # labels: the prior's least weight (classes that truly differ still lean on it a little)
MAX_STRENGTH = 50.0  # labels: its most (classes indistinguishable: a class needs many labels to stand alone)
SIZE_BINS = 5  # object-size bins (quantiles of the labels' sides) for recall vs size
USELESS_RECALL = 0.1  # a model finding fewer of the labels than this makes no delete suggestions


@dataclass
class ClassCalibration:
    """What the predictions say about one class's scores (see the module docstring); the numbers
    used are shrunk; ``labels`` / ``found`` are the raw counts for the reason sentences."""

    threshold: float
    recall: float = 1.0
    f1: float | None = None
    typical_iou: float | None = None
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # evidence, ascending
    precision: np.ndarray = field(default_factory=lambda: np.zeros(0))  # P(correct | evidence = scores[i])
    labels: int = 0
    found: int = 0

    def confidence(self, s: float) -> float:
        """P(a hypothesis with evidence s is a labelled object of this class) -- local, not
        cumulative: a clutter false positive at 0.6 is judged by what 0.6 means, not by the
        0.95s above it -- or s itself without calibration."""
        if not len(self.scores):
            return float(s)
        return float(np.interp(s, self.scores, self.precision))


@dataclass
class Calibration:
    classes: dict[int, ClassCalibration] = field(default_factory=dict)
    default_threshold: float = 0.5
    default_iou: float = 0.7
    overall: ClassCalibration | None = None  # all classes pooled: the prior
    strength: float = 0.0  # the prior's weight, in labels
    size_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # label side (px) bin edges
    size_recall: np.ndarray = field(default_factory=lambda: np.zeros(0))  # overall recall per bin / overall recall
    size_iou: np.ndarray = field(default_factory=lambda: np.zeros(0))  # median IoU of correct ones per bin / overall
    size_precision: list[ClassCalibration] = field(default_factory=list)  # overall P(correct | evidence) per bin
    confusions: dict[tuple[int, int], int] = field(default_factory=dict)  # (label class, model class) -> labels
    edges: EdgeCalibration | None = None  # set by analyze()

    def of(self, c: int) -> ClassCalibration:
        got = self.classes.get(c)
        if got is not None:
            return got
        if self.overall is not None:  # a class without labels: the model overall
            o = self.overall
            return ClassCalibration(o.threshold, o.recall, o.f1, o.typical_iou, o.scores, o.precision)
        return ClassCalibration(self.default_threshold, typical_iou=None)

    def typical_iou(self, c: int, side: float | None = None) -> float:
        """The class's typical IoU of a correct detection (at this object side, px: a few pixels
        off costs a small object more of its IoU)."""
        t = self.of(c).typical_iou
        if t is None:
            return self.default_iou
        if side is not None and len(self.size_iou):
            t *= float(self.size_iou[self._bin(side)])
        return float(np.clip(t, 0.0, 1.0))

    def _bin(self, side: float) -> int:
        return int(np.clip(np.searchsorted(self.size_edges, side, side="right") - 1, 0, len(self.size_edges) - 1))

    def confidence(self, c: int, e: float, side: float | None = None) -> float:
        """P(a hypothesis of class c with evidence e is a labelled object): the class's curve,
        times how the model's overall precision at e for objects of this side compares with its
        precision at e over all sizes (a real detector is surer of big objects: 0.6 is a low score
        for a big one, a usual one for a small one)."""
        p = self.of(c).confidence(e)
        if side is None or not self.size_precision or self.overall is None:
            return p
        overall = self.overall.confidence(e)
        here = self.size_precision[self._bin(side)].confidence(e)
        return float(np.clip(p * here / overall, 0.0, 1.0)) if overall > 0 else p

    def recall_at_size(self, c: int, side: float) -> float:
        """The class's recall for an object of this side (sqrt of its area, px): the class's
        (shrunk) recall times how the model's overall recall at this size compares with its mean."""
        r = self.of(c).recall
        if not len(self.size_recall):
            return r
        return float(np.clip(r * self.size_recall[self._bin(side)], 0.0, 1.0))

    @property
    def model_finds_almost_nothing(self) -> bool:
        o = self.overall
        return o is not None and o.labels > 0 and o.found < USELESS_RECALL * o.labels

    def to_dict(self, names: Sequence[str] = ()) -> dict:
        def name(c: int) -> str:
            return names[c] if 0 <= c < len(names) else str(c)
        out = {name(c): {"threshold": round(k.threshold, 4), "f1": None if k.f1 is None else round(k.f1, 4),
                         "recall": round(k.recall, 4), "labels": k.labels, "found": k.found,
                         "typical_iou": None if k.typical_iou is None else round(k.typical_iou, 4)}
               for c, k in sorted(self.classes.items())}
        if self.overall is not None:
            o = self.overall
            out["(all classes)"] = {"threshold": round(o.threshold, 4), "recall": round(o.recall, 4),
                                    "labels": o.labels, "found": o.found, "prior_strength": round(self.strength, 1),
                                    "typical_iou": None if o.typical_iou is None else round(o.typical_iou, 4)}
        return out


def _best_f1(s: np.ndarray, correct: np.ndarray, n_labels: int) -> tuple[int, np.ndarray]:
    """Index of the best-F1 cut in descending scores ``s`` and the precision curve."""
    tp = np.cumsum(correct)
    precision = tp / np.arange(1, len(s) + 1)
    recall = tp / max(n_labels, 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    last_of_tie = np.r_[s[1:] < s[:-1], True]  # thresholds sit where the next score is lower
    return int(np.flatnonzero(last_of_tie)[np.argmax(f1[last_of_tie])]), precision


def local_precision(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(correct | score) as a non-decreasing step function (isotonic regression, pool adjacent
    violators: more evidence is never worse): (unique scores ascending, their precision)."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(scores, kind="stable")
    s, c = np.asarray(scores, float)[order], np.asarray(correct, float)[order]
    u, inv = np.unique(s, return_inverse=True)
    w = np.bincount(inv, minlength=len(u)).astype(float)
    mean = np.bincount(inv, weights=c, minlength=len(u)) / w
    return u, isotonic_regression(mean, weights=w, increasing=True).x


def _class_curve(scores: list[float], correct: list[bool], n_labels: int, default: float, iou: list[float]
                 ) -> ClassCalibration:
    """Best-F1 threshold, precision-at-or-above curve and recall of one set of hypotheses (raw)."""
    if not n_labels or not scores:
        return ClassCalibration(default, 0.0 if n_labels else 1.0, labels=n_labels)
    order = np.argsort(-np.asarray(scores), kind="stable")
    s = np.asarray(scores, float)[order]
    c = np.asarray(correct, float)[order]
    best, _ = _best_f1(s, c, n_labels)
    tp = np.cumsum(c)
    f1 = 2 * tp[best] / (best + 1 + n_labels)
    xs, ps = local_precision(s, c)
    return ClassCalibration(float(s[best]), float(tp[best] / n_labels), float(f1),
                            float(np.median(iou)) if iou else None, xs, ps, n_labels, int(tp[best]))


def prior_strength(found: np.ndarray, n: np.ndarray) -> float:
    """How many labels the overall recall weighs in a class's (beta-binomial method of moments):
    the spread of the classes' recalls beyond what binomial noise on ``n`` labels explains."""
    keep = n > 0
    found, n = found[keep].astype(float), n[keep].astype(float)
    if len(n) < 2:
        return MAX_STRENGTH
    r = found.sum() / n.sum()
    if r <= 0 or r >= 1:
        return MAX_STRENGTH
    between = (np.sum(n * (found / n - r) ** 2) - len(n) * r * (1 - r)) / n.sum()
    if between <= 0:
        return MAX_STRENGTH
    return float(np.clip(r * (1 - r) / between - 1.0, MIN_STRENGTH, MAX_STRENGTH))


def _shrunk(own: list[float], correct: list[bool], n_labels: int, ious: list[float], prior: ClassCalibration,
            a: float) -> ClassCalibration:
    """One class's numbers, each pulled toward the overall ones with weight ``a`` labels."""
    t = (n_labels * _class_curve(own, correct, n_labels, prior.threshold, ious).threshold
         + a * prior.threshold) / (n_labels + a) if own and n_labels else prior.threshold
    own_scores = own
    s = np.asarray(own, float)
    c = np.asarray(correct, bool)
    found = int(np.sum(c & (s >= t))) if len(s) else 0
    recall = (found + a * prior.recall) / (n_labels + a)
    tp_ious = [v for v in ious]
    typical = None
    if prior.typical_iou is not None or tp_ious:
        base = prior.typical_iou if prior.typical_iou is not None else float(np.median(tp_ious))
        typical = (float(np.sum(tp_ious)) + a * base) / (len(tp_ious) + a)
    if len(s):  # the class's own curve and the overall one, weighted n_c : a, on both grids
        xs, ps = local_precision(s, c)
        grid = np.union1d(xs, prior.scores)
        own = np.interp(grid, xs, ps)
        prior_p = np.array([prior.confidence(float(v)) for v in grid])
        s, precision = grid, (len(c) * own + a * prior_p) / (len(c) + a)
        f1 = 2 * found / (int(np.sum(np.asarray(own_scores) >= t)) + n_labels) if n_labels else None
    else:
        s, precision, f1 = prior.scores, prior.precision, None  # no hypotheses of this class: the overall curve
    return ClassCalibration(float(t), float(recall), f1, typical, s, precision, n_labels, found)


def hypothesis_sides(masks, boxes: np.ndarray) -> np.ndarray:
    """sqrt of each hypothesis's area (mask, or box without masks), px."""
    if masks is not None:
        return np.sqrt(np.maximum(rle_ops.area(masks).astype(float), 0.0)) if len(masks) else np.zeros(0)
    b = np.asarray(boxes, float).reshape(-1, 4)
    return np.sqrt(np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 0.0))


def calibrate(annotations: Sequence[ImageAnnotation], predictions: Sequence[ImagePred],
              task: Literal["segment", "detect"] = "segment", cfg: AnalysisConfig | None = None,
              flips: Sequence[ImagePred | None] | None = None, num_classes: int | None = None) -> Calibration:
    """Per-class thresholds and confidence curves from these predictions against these labels:
    a hypothesis is correct when its top class matches a label of that class at IoU >= 0.5
    (greedy, best evidence first); all shrunk toward the pooled numbers (module docstring)."""
    cfg = cfg or AnalysisConfig()
    per_class: dict[int, tuple[list[float], list[bool], list[float]]] = {}
    n_labels: dict[int, int] = {}
    label_rows: list[tuple[int, float, float]] = []  # (class, side px, evidence of its correct hypothesis or -1)
    hyp_rows: list[tuple[float, float, bool]] = []  # (side px, evidence, correct) of every hypothesis
    tp_rows: list[tuple[float, float]] = []  # (label side px, IoU) of correct hypotheses
    disagree: list[tuple[int, int, float]] = []  # (label class, model class, evidence) at IoU >= 0.5
    nc = num_classes or 0
    for ann in annotations:
        for inst in ann.instances:
            nc = max(nc, inst.class_id + 1)
    for n, (ann, pred) in enumerate(zip(annotations, predictions, strict=True)):
        use_masks = task == "segment" and pred.masks is not None
        _, degenerate = check_geometry(ann, cfg.min_area)
        labels = evaluable_labels(ann, degenerate, use_masks)
        for c in labels.classes:
            n_labels[int(c)] = n_labels.get(int(c), 0) + 1
        sides = [float(np.sqrt(max(ann.instances[k].area(), 0.0))) for k in labels.index]
        found_ev = -np.ones(len(labels.index))
        p = pred.top(cfg.support_score)
        hyps = group_hypotheses(p, flips[n] if flips is not None else None, nc)
        if len(hyps):
            hm: list | None = None
            if use_masks:
                assert p.masks is not None  # segment mode: predictions carry masks
                hm = [p.masks[r] for r in hyps.rep]
            hb = p.boxes[hyps.rep].reshape(-1, 4)
            iou = pair_ious(hm, hb, labels.masks, labels.boxes, use_masks)
            hside = hypothesis_sides(hm, hb)
            taken: set[int] = set()
            tops = [hyps.top_class(h) for h in range(len(hyps))]
            ev = [float(hyps.evidence[h, tops[h]]) for h in range(len(hyps))]
            for h in np.argsort(-np.asarray(ev), kind="stable"):
                c = tops[h]
                if ev[h] <= 0:
                    continue
                cand = [j for j in range(len(labels.classes)) if j not in taken and labels.classes[j] == c
                        and iou[h, j] >= 0.5]
                scores, correct, ious = per_class.setdefault(c, ([], [], []))
                scores.append(ev[h])
                hyp_rows.append((float(hside[h]), ev[h], bool(cand)))
                if cand:
                    j = max(cand, key=lambda j: iou[h, j])
                    taken.add(j)
                    correct.append(True)
                    ious.append(float(iou[h, j]))
                    found_ev[j] = ev[h]
                    tp_rows.append((sides[j], float(iou[h, j])))
                else:
                    correct.append(False)
                    other = [j for j in range(len(labels.classes)) if labels.classes[j] != c and iou[h, j] >= 0.5]
                    if other:
                        disagree.append((int(labels.classes[max(other, key=lambda j: iou[h, j])]), c, ev[h]))
        label_rows += [(int(c), s, float(e)) for c, s, e in zip(labels.classes, sides, found_ev)]
    all_s = [s for v in per_class.values() for s in v[0]]
    all_c = [c for v in per_class.values() for c in v[1]]
    all_i = [i for v in per_class.values() for i in v[2]]
    total = sum(n_labels.values())
    out = Calibration(default_threshold=cfg.conf, default_iou=cfg.good_iou)
    if not total:
        return out
    overall = _class_curve(all_s, all_c, total, cfg.conf, all_i)
    classes = sorted(set(per_class) | set(n_labels))
    raw_found = np.array([sum(1 for s, ok in zip(*per_class.get(c, ([], []))[:2]) if ok and s >= overall.threshold)
                          for c in classes])
    a = prior_strength(raw_found, np.array([n_labels.get(c, 0) for c in classes]))
    out.overall, out.strength = overall, a
    for c in classes:
        scores, correct, ious = per_class.get(c, ([], [], []))
        out.classes[c] = _shrunk(scores, correct, n_labels.get(c, 0), ious, overall, a)
    # recall vs object size, over all classes (each label found at its class's threshold)
    rows = np.array(label_rows, float).reshape(-1, 3)
    if len(rows) >= 2 * SIZE_BINS and overall.recall > 0:
        found = np.array([e >= out.classes[int(c)].threshold for c, _, e in rows], float)
        edges = np.quantile(rows[:, 1], np.linspace(0, 1, SIZE_BINS + 1))
        edges[0], edges[-1] = 0.0, np.inf
        b = np.clip(np.searchsorted(edges, rows[:, 1], side="right") - 1, 0, SIZE_BINS - 1)
        mean = found.mean()
        per_bin = np.array([(found[b == k].sum() + a * mean) / ((b == k).sum() + a) for k in range(SIZE_BINS)])
        out.size_edges, out.size_recall = edges[:-1], per_bin / max(mean, 1e-9)
        tps = np.array(tp_rows, float).reshape(-1, 2)
        if len(tps) and overall.typical_iou:
            tb = np.clip(np.searchsorted(out.size_edges, tps[:, 0], side="right") - 1, 0, SIZE_BINS - 1)
            out.size_iou = np.array([(tps[tb == k, 1].sum() + a * overall.typical_iou) / ((tb == k).sum() + a)
                                     for k in range(SIZE_BINS)]) / overall.typical_iou
        hr = np.array(hyp_rows, float).reshape(-1, 3)
        hb_ = np.clip(np.searchsorted(out.size_edges, hr[:, 0], side="right") - 1, 0, SIZE_BINS - 1)
        for k in range(SIZE_BINS):
            m = hb_ == k
            out.size_precision.append(_shrunk(list(hr[m, 1]), list(hr[m, 2] > 0.5), int(m.sum()), [], overall, a)
                                      if m.any() else overall)
    for g, pc, e in disagree:
        if e >= out.classes[pc].threshold:
            out.confusions[(g, pc)] = out.confusions.get((g, pc), 0) + 1
    return out
