"""Fixed-threshold instance metrics (the paper's practical F1/P/R/IoU) and the
F1-vs-confidence sweep used to pick an operating point.

Counting rules (paper; ArgoHA/D-FINE-seg validator semantics, Apache-2.0):
matched pair, same class -> TP with its IoU; matched pair, other class -> FN for
the GT's class and FP for the predicted class; unmatched prediction -> FP;
unmatched GT -> FN. "IoU" = sum of TP IoUs / (TP + FP + FN): FPs and FNs count 0.
The confusion matrix has rows = GT class, columns = predicted class, and a last
row/column for background (unmatched predictions / unmatched GTs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.eval.matching import MatchResult, greedy_match


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if (p + r) > 0 else 0.0


@dataclass
class ClassMetrics:
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    iou: float | None


@dataclass
class FixedThresholdResult:
    f1: float
    precision: float
    recall: float
    iou: float
    tp: int
    fp: int
    fn: int
    per_class: dict[str, ClassMetrics]
    confusion: np.ndarray  # int64 [C+1, C+1], rows GT, cols pred, last = background
    class_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "f1": self.f1, "precision": self.precision, "recall": self.recall, "iou": self.iou,
            "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "per_class": {k: vars(v).copy() for k, v in self.per_class.items()},
            "confusion": self.confusion.tolist(),
            "confusion_labels": list(self.class_names) + ["background"],
        }


class FixedThresholdCounter:
    """Accumulates TP/FP/FN/IoU per class and the confusion matrix, image by image."""

    def __init__(self, num_classes: int, with_confusion: bool = True):
        self.num_classes = num_classes
        self.tp = np.zeros(num_classes, np.int64)
        self.fp = np.zeros(num_classes, np.int64)
        self.fn = np.zeros(num_classes, np.int64)
        self.iou_sum = np.zeros(num_classes, np.float64)
        self.confusion = np.zeros((num_classes + 1, num_classes + 1), np.int64) if with_confusion else None

    def _check(self, labels: np.ndarray, what: str) -> None:
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
            raise ValueError(f"{what} class id {int(bad)} outside 0..{self.num_classes - 1}")

    def update(self, match: MatchResult, pred_labels: np.ndarray, gt_labels: np.ndarray) -> None:
        pred_labels = np.asarray(pred_labels, np.int64)
        gt_labels = np.asarray(gt_labels, np.int64)
        self._check(pred_labels, "predicted")
        self._check(gt_labels, "GT")
        bg = self.num_classes
        cm = self.confusion
        for p, g, iou in match.matches:
            pc, gc = int(pred_labels[p]), int(gt_labels[g])
            if cm is not None:
                cm[gc, pc] += 1
            if pc == gc:
                self.tp[gc] += 1
                self.iou_sum[gc] += iou
            else:
                self.fn[gc] += 1
                self.fp[pc] += 1
        for p in match.unmatched_preds:
            pc = int(pred_labels[p])
            self.fp[pc] += 1
            if cm is not None:
                cm[bg, pc] += 1
        for g in match.unmatched_gts:
            gc = int(gt_labels[g])
            self.fn[gc] += 1
            if cm is not None:
                cm[gc, bg] += 1

    def totals(self) -> tuple[float, float, float, float]:
        """(f1, precision, recall, iou) over all classes."""
        tp, fp, fn = int(self.tp.sum()), int(self.fp.sum()), int(self.fn.sum())
        p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        return _f1(p, r), p, r, _ratio(float(self.iou_sum.sum()), tp + fp + fn)

    def class_f1(self) -> np.ndarray:
        p = np.divide(self.tp, self.tp + self.fp, out=np.zeros(self.num_classes), where=(self.tp + self.fp) > 0)
        r = np.divide(self.tp, self.tp + self.fn, out=np.zeros(self.num_classes), where=(self.tp + self.fn) > 0)
        return np.divide(2 * p * r, p + r, out=np.zeros(self.num_classes), where=(p + r) > 0)

    def result(self, class_names: Sequence[str] | None = None) -> FixedThresholdResult:
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        per_class: dict[str, ClassMetrics] = {}
        for c, name in enumerate(names):
            tp, fp, fn = int(self.tp[c]), int(self.fp[c]), int(self.fn[c])
            if tp + fp + fn == 0:  # class absent from GT and predictions: nothing to say
                per_class[name] = ClassMetrics(0, 0, 0, None, None, None, None)
                continue
            p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
            per_class[name] = ClassMetrics(tp, fp, fn, p, r, _f1(p, r), _ratio(self.iou_sum[c], tp + fp + fn))
        f1, p, r, iou = self.totals()
        cm = self.confusion if self.confusion is not None else np.zeros((0, 0), np.int64)
        return FixedThresholdResult(f1, p, r, iou, int(self.tp.sum()), int(self.fp.sum()), int(self.fn.sum()),
                                    per_class, cm.copy(), names)


DEFAULT_THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)


@dataclass
class ThresholdCurve:
    thresholds: list[float]
    f1: list[float]
    precision: list[float]
    recall: list[float]
    best_threshold: float
    best_f1: float
    per_class_best: dict[str, dict]  # name -> {"threshold", "f1"} (None when the class never occurs)

    def to_dict(self) -> dict:
        return vars(self).copy()


def _best(values: np.ndarray, thresholds: np.ndarray) -> int:
    """Index of the highest value; on ties the highest threshold (fewest false positives)."""
    return int(len(values) - 1 - np.argmax(values[::-1]))


class ThresholdSweep:
    """The fixed-threshold counters at every confidence threshold of a grid.

    Matching is redone per threshold on the already-computed IoU matrix (cheap),
    so the curve uses exactly the same rules as the headline metric.
    """

    def __init__(self, num_classes: int, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS, iou_thresh: float = 0.5):
        self.thresholds = np.asarray(thresholds, np.float64)
        self.iou_thresh = iou_thresh
        self.counters = [FixedThresholdCounter(num_classes, with_confusion=False) for _ in self.thresholds]
        self.num_classes = num_classes

    def update(self, ious: np.ndarray, scores: np.ndarray, pred_labels: np.ndarray, gt_labels: np.ndarray,
               ignore_pred: np.ndarray | None = None) -> None:
        """ious [P,G] over non-crowd GTs; ``ignore_pred(keep)`` says which unmatched
        predictions to drop (inside crowd regions)."""
        for t, counter in zip(self.thresholds, self.counters):
            keep = np.nonzero(scores >= t)[0]
            m = greedy_match(ious[keep], self.iou_thresh)
            if ignore_pred is not None:
                m.unmatched_preds = [p for p in m.unmatched_preds if not ignore_pred[keep[p]]]
            counter.update(m, pred_labels[keep], gt_labels)

    def curve(self, class_names: Sequence[str] | None = None) -> ThresholdCurve:
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        tot = np.array([c.totals() for c in self.counters]).reshape(-1, 4)
        b = _best(tot[:, 0], self.thresholds)
        cls_f1 = np.stack([c.class_f1() for c in self.counters])  # [T, C]
        seen = np.asarray(np.stack([(c.tp + c.fp + c.fn) > 0 for c in self.counters]).any(axis=0))
        per_class: dict[str, dict[str, float | None]] = {}
        for k, name in enumerate(names):
            if not seen[k]:
                per_class[name] = {"threshold": None, "f1": None}
                continue
            i = _best(cls_f1[:, k], self.thresholds)
            per_class[name] = {"threshold": float(self.thresholds[i]), "f1": float(cls_f1[i, k])}
        return ThresholdCurve([float(t) for t in self.thresholds], tot[:, 0].tolist(), tot[:, 1].tolist(),
                              tot[:, 2].tolist(), float(self.thresholds[b]), float(tot[b, 0]), per_class)
