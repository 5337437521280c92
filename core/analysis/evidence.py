"""What one image gives the label-mistake finder: its labels rasterised, and the model's
predictions grouped into per-query hypotheses whose evidence combines the plain and mirrored
views (core.analysis.find_mistakes explains the rules)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.annotation import ImageAnnotation
from core import rle as rle_ops
from core.eval.records import ImagePred, gt_from_annotation

SAME_QUERY_IOU = 0.97  # predictions with boxes this alike are one query's classes
FLIP_IOU = 0.5  # a mirrored prediction this close is the same object seen again


@dataclass
class Labels:
    """The evaluable labels of one image: ``index[j]`` is label j's instance index."""

    index: list[int]
    masks: list | None
    boxes: np.ndarray
    classes: np.ndarray
    crowd_masks: list | None
    crowd_boxes: np.ndarray


def pair_ious(a_masks, a_boxes, b_masks, b_boxes, use_masks: bool) -> np.ndarray:
    """IoU of every a with every b: masks (RLE) in segment mode, boxes in detect mode."""
    if use_masks:
        return rle_ops.mask_iou(a_masks, b_masks)
    return rle_ops.box_iou(a_boxes, b_boxes)


def evaluable_labels(ann: ImageAnnotation, degenerate: set[int], use_masks: bool) -> Labels:
    """Non-degenerate labels rasterised (degenerate ones never are: NaN or 2-point polygons);
    crowd regions are kept apart: they only excuse predictions."""
    ok = [k for k in range(len(ann.instances)) if k not in degenerate]
    gt = gt_from_annotation(ImageAnnotation(ann.image_path, ann.width, ann.height,
                                            [ann.instances[k] for k in ok]), with_masks=use_masks)
    plain = [j for j in range(len(gt)) if not gt.iscrowd[j]]
    crowd = [j for j in range(len(gt)) if gt.iscrowd[j]]
    masks = gt.masks  # set exactly when use_masks (with_masks above)
    return Labels([ok[j] for j in plain], [masks[j] for j in plain] if masks is not None else None,
                  gt.boxes[plain].reshape(-1, 4), gt.labels[plain],
                  [masks[j] for j in crowd] if masks is not None else None, gt.boxes[crowd].reshape(-1, 4))



@dataclass
class Hypotheses:
    """One row per decoder query: its best prediction (``rep``), class vector and evidence."""

    rep: np.ndarray  # index into the prediction of the row's top-class prediction
    vectors: np.ndarray  # [H, C] score per class (0 below the stored threshold)
    evidence: np.ndarray  # [H, C] score combined with mirrored agreement
    flip_box_iou: np.ndarray  # [H] box IoU with the best same-class mirrored prediction (1 without flips)
    flip_score: np.ndarray  # [H] that mirrored prediction's score (nan without flips)

    def __len__(self) -> int:
        return len(self.rep)

    def top_class(self, h: int) -> int:
        return int(np.argmax(self.evidence[h]))


def group_hypotheses(pred: ImagePred, flips: ImagePred | None, num_classes: int) -> Hypotheses:
    """Predictions with (nearly) the same box are one query's classes (see the module docstring)."""
    n = len(pred)
    order = np.argsort(-pred.scores, kind="stable")
    same = rle_ops.box_iou(pred.boxes, pred.boxes) if n else np.zeros((0, 0))
    owner = -np.ones(n, np.int64)
    reps: list[int] = []
    for p in order:
        if owner[p] >= 0:
            continue
        owner[(same[p] >= SAME_QUERY_IOU) & (owner < 0)] = len(reps)
        reps.append(int(p))
    vec = np.zeros((len(reps), max(num_classes, int(pred.labels.max()) + 1 if n else 0)))
    for p in range(n):
        hyp, cls_id = owner[p], int(pred.labels[p])
        vec[hyp, cls_id] = max(vec[hyp, cls_id], float(pred.scores[p]))
    rep = np.asarray(reps, np.int64)
    if flips is None:
        return Hypotheses(rep, vec, vec.copy(), np.ones(len(rep)), np.full(len(rep), np.nan))
    evidence = np.zeros_like(vec)
    fbox = np.zeros(len(rep))
    fscore = np.zeros(len(rep))
    near = rle_ops.box_iou(pred.boxes[rep], flips.boxes) if len(rep) and len(flips) else np.zeros((len(rep), 0))
    for h in range(len(rep)):
        for c in np.flatnonzero(vec[h]):
            cand = (flips.labels == c) & (near[h] >= FLIP_IOU) if near.shape[1] else np.zeros(0, bool)
            s_flip = float(flips.scores[cand].max()) if cand.any() else 0.0
            evidence[h, c] = np.sqrt(vec[h, c] * s_flip)
        c_top = int(np.argmax(vec[h]))
        same_c = (flips.labels == c_top) if len(flips) else np.zeros(0, bool)
        if same_c.any():
            best = int(np.flatnonzero(same_c)[np.argmax(near[h][same_c])])
            fbox[h], fscore[h] = float(near[h, best]), float(flips.scores[best])
    return Hypotheses(rep, vec, evidence, fbox, fscore)
