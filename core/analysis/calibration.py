"""Per-class calibration of the label-mistake finder from out-of-fold predictions: the
best-F1 threshold, the recall there, the typical mask IoU of correct detections and the
precision-at-score curve (core.analysis.find_mistakes explains how each enters a score)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.analysis.evidence import evaluable_labels, group_hypotheses, pair_ious
from core.analysis.geometry_checks import check_geometry
from core.analysis.settings import AnalysisConfig
from core.annotation import ImageAnnotation
from core.eval.records import ImagePred

MIN_CALIBRATION = 5  # fewer labels (or detections) of a class: use the uncalibrated rules


@dataclass
class ClassCalibration:
    """What out-of-fold data says about one class's scores (see the module docstring)."""

    threshold: float
    recall: float = 1.0
    f1: float | None = None
    typical_iou: float | None = None
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # evidence, descending
    precision: np.ndarray = field(default_factory=lambda: np.zeros(0))  # precision at >= scores[i]

    def confidence(self, s: float) -> float:
        """P(a hypothesis with evidence >= s is a labelled object of this class), or s itself."""
        if not len(self.scores):
            return float(s)
        n = int(np.searchsorted(-self.scores, -s, side="right"))  # hypotheses with evidence >= s
        return float(self.precision[n - 1]) if n else float(self.precision[0])


@dataclass
class Calibration:
    classes: dict[int, ClassCalibration] = field(default_factory=dict)
    default_threshold: float = 0.5
    default_iou: float = 0.7

    def of(self, c: int) -> ClassCalibration:
        return self.classes.get(c) or ClassCalibration(self.default_threshold, typical_iou=None)

    def typical_iou(self, c: int) -> float:
        t = self.of(c).typical_iou
        return self.default_iou if t is None else t

    def to_dict(self, names: Sequence[str] = ()) -> dict:
        def name(c: int) -> str:
            return names[c] if 0 <= c < len(names) else str(c)
        return {name(c): {"threshold": round(k.threshold, 4), "f1": None if k.f1 is None else round(k.f1, 4),
                          "recall": round(k.recall, 4),
                          "typical_iou": None if k.typical_iou is None else round(k.typical_iou, 4)}
                for c, k in sorted(self.classes.items())}



def _class_curve(scores: list[float], correct: list[bool], n_labels: int, default: float, iou: list[float]
                 ) -> ClassCalibration:
    """Best-F1 threshold, precision-at-or-above curve and recall of one class."""
    if n_labels < MIN_CALIBRATION or len(scores) < MIN_CALIBRATION:
        return ClassCalibration(default)
    order = np.argsort(-np.asarray(scores), kind="stable")
    s = np.asarray(scores, float)[order]
    tp = np.cumsum(np.asarray(correct, float)[order])
    precision = tp / np.arange(1, len(s) + 1)
    recall = tp / n_labels
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    # thresholds sit at a score where the next is lower (ties stay together)
    last_of_tie = np.r_[s[1:] < s[:-1], True]
    best = int(np.flatnonzero(last_of_tie)[np.argmax(f1[last_of_tie])])
    # the precision curve is made non-increasing in s from the top: more evidence is never worse
    monotone = np.maximum.accumulate(precision[::-1])[::-1]
    return ClassCalibration(float(s[best]), float(recall[best]), float(f1[best]),
                            float(np.median(iou)) if iou else None, s, monotone)


def calibrate(annotations: Sequence[ImageAnnotation], predictions: Sequence[ImagePred],
              task: Literal["segment", "detect"] = "segment", cfg: AnalysisConfig | None = None,
              flips: Sequence[ImagePred | None] | None = None, num_classes: int | None = None) -> Calibration:
    """Per-class thresholds and confidence curves from these predictions against these labels
    (out-of-fold predictions make them honest): a hypothesis is correct when its top class
    matches a label of that class at IoU >= 0.5 (greedy, best evidence first)."""
    cfg = cfg or AnalysisConfig()
    per_class: dict[int, tuple[list[float], list[bool], list[float]]] = {}
    n_labels: dict[int, int] = {}
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
        p = pred.top(cfg.support_score)
        hyps = group_hypotheses(p, flips[n] if flips is not None else None, nc)
        if not len(hyps):
            continue
        hm = [p.masks[r] for r in hyps.rep] if use_masks else None
        iou = pair_ious(hm, p.boxes[hyps.rep].reshape(-1, 4), labels.masks, labels.boxes, use_masks)
        taken: set[int] = set()
        tops = [hyps.top_class(h) for h in range(len(hyps))]
        ev = [float(hyps.evidence[h, tops[h]]) for h in range(len(hyps))]
        for h in np.argsort(-np.asarray(ev), kind="stable"):
            c = tops[h]
            cand = [j for j in range(len(labels.classes)) if j not in taken and labels.classes[j] == c
                    and iou[h, j] >= 0.5]
            scores, correct, ious = per_class.setdefault(c, ([], [], []))
            if ev[h] <= 0:
                continue
            scores.append(ev[h])
            if cand:
                j = max(cand, key=lambda j: iou[h, j])
                taken.add(j)
                correct.append(True)
                ious.append(float(iou[h, j]))
            else:
                correct.append(False)
    out = Calibration(default_threshold=cfg.conf, default_iou=cfg.good_iou)
    for c in sorted(set(per_class) | set(n_labels)):
        scores, correct, ious = per_class.get(c, ([], [], []))
        out.classes[c] = _class_curve(scores, correct, n_labels.get(c, 0), cfg.conf, ious)
    return out
