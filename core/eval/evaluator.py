"""Streaming evaluator: ``add(gt, pred)`` image by image, then ``summary()``.

Holds only counters, the F1 sweep counters and COCOeval's small per-image match
records, never masks, so memory stays flat however many images are evaluated.
Crowd GTs (``iscrowd``) are never FNs; an unmatched prediction that lies mostly
inside a crowd region (intersection / prediction area > IoU threshold) is not an
FP. COCO AP handles crowd the standard COCO way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core import rle as rle_ops
from core.eval.coco_ap import CocoAccumulator
from core.eval.matching import greedy_match
from core.eval.metrics import (
    DEFAULT_THRESHOLDS,
    FixedThresholdCounter,
    FixedThresholdResult,
    ThresholdCurve,
    ThresholdSweep,
)
from core.eval.records import ImageGT, ImagePred
from core.messages import TrainMetrics, plain

Task = Literal["segment", "detect"]


@dataclass
class EvalSummary:
    task: str
    conf: float
    images: int
    fixed: FixedThresholdResult
    curve: ThresholdCurve
    coco: dict  # {"segm"/"bbox": {...}} or {} when COCO AP is off

    def to_dict(self) -> dict:
        return {"task": self.task, "conf": self.conf, "images": self.images, **self.fixed.to_dict(),
                "curve": self.curve.to_dict(), "coco": self.coco}

    def headline(self) -> TrainMetrics:
        """The flat numbers of a validation (``core.messages.TrainMetrics``: metrics events,
        metrics.csv, the plots, ``dfine val``)."""
        out = {"f1": self.fixed.f1, "precision": self.fixed.precision, "recall": self.fixed.recall,
               "iou": self.fixed.iou, "best_threshold": self.curve.best_threshold}
        for t, v in self.coco.items():
            prefix = "mask" if t == "segm" else "box"
            out[f"{prefix}_map"] = v["map"]
            out[f"{prefix}_map50"] = v["map50"]
        return TrainMetrics.model_validate(plain(out))


def pairwise_iou(gt: ImageGT, pred: ImagePred, use_masks: bool, crowd: bool = False) -> np.ndarray:
    """IoU [P,G] between predictions and GT (mask IoU when use_masks, else box IoU);
    with crowd=True every GT is treated as a crowd region (intersection / pred area)."""
    flags = [crowd] * len(gt)
    if use_masks:
        if pred.masks is None or gt.masks is None:
            raise ValueError("mask IoU needs masks on both the predictions and the ground truth")
        return rle_ops.mask_iou(pred.masks, gt.masks, flags)
    return rle_ops.box_iou(pred.boxes, gt.boxes, flags)


class Evaluator:
    """Fixed-threshold F1/P/R/IoU (+ confusion), the F1-vs-threshold curve and COCO mAP."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, task: Task = "segment",
                 conf: float = 0.5, iou_thresh: float = 0.5, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
                 coco: bool = True, coco_conf: float = 0.01, max_dets: int = 100):
        if task not in ("segment", "detect"):
            raise ValueError(f"task must be 'segment' or 'detect', got {task!r}")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.task = task
        self.conf = conf
        self.iou_thresh = iou_thresh
        self.counter = FixedThresholdCounter(num_classes)
        self.sweep = ThresholdSweep(num_classes, thresholds, iou_thresh)
        self.coco = (CocoAccumulator(num_classes, ("segm", "bbox") if task == "segment" else ("bbox",),
                                     coco_conf, max_dets, self.class_names) if coco else None)
        self.images = 0

    def add(self, gt: ImageGT, pred: ImagePred) -> None:
        use_masks = self.task == "segment"
        if use_masks and (gt.masks is None or pred.masks is None):
            raise ValueError(f"{gt.image_id or 'image'}: segment evaluation needs masks on GT and predictions")
        self.images += 1
        if self.coco is not None:
            self.coco.add(gt, pred)

        floor = min(float(self.sweep.thresholds.min()), self.conf)
        p = pred.top(floor)  # sorted by score: greedy ties go to the more confident prediction
        keep_gt = np.nonzero(~gt.iscrowd)[0]
        crowd_gt = np.nonzero(gt.iscrowd)[0]
        normal = _subset_gt(gt, keep_gt)
        ious = pairwise_iou(normal, p, use_masks)
        if len(crowd_gt):
            in_crowd = pairwise_iou(_subset_gt(gt, crowd_gt), p, use_masks, crowd=True).max(axis=1) > self.iou_thresh
        else:
            in_crowd = np.zeros(len(p), bool)

        keep = np.nonzero(p.scores >= self.conf)[0]
        m = greedy_match(ious[keep], self.iou_thresh)
        m.unmatched_preds = [i for i in m.unmatched_preds if not in_crowd[keep[i]]]
        self.counter.update(m, p.labels[keep], normal.labels)
        self.sweep.update(ious, p.scores, p.labels, normal.labels, in_crowd)

    def summary(self) -> EvalSummary:
        return EvalSummary(self.task, self.conf, self.images, self.counter.result(self.class_names),
                           self.sweep.curve(self.class_names), self.coco.compute() if self.coco else {})


def _subset_gt(gt: ImageGT, idx: np.ndarray) -> ImageGT:
    return ImageGT(gt.height, gt.width, gt.boxes[idx], gt.labels[idx],
                   None if gt.masks is None else [gt.masks[i] for i in idx], gt.iscrowd[idx], gt.image_id)


def evaluate(pairs, num_classes: int, **kwargs) -> EvalSummary:
    """Convenience: run an :class:`Evaluator` over an iterable of (gt, pred)."""
    ev = Evaluator(num_classes, **kwargs)
    for gt, pred in pairs:
        ev.add(gt, pred)
    return ev.summary()
