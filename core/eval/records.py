"""Per-image ground truth and predictions as evaluation sees them.

Both hold masks as RLE (see ``rle.py``) so that an evaluator can keep thousands
of images around (or stream them) without dense masks. Converters from the
label model (``ImageAnnotation``) and from the inference contract
(``Detections``) live here so training, analysis and inference share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.annotation import ImageAnnotation, Instance
from core import rle as rle_ops
from core.rle import Rle


def _boxes(v: Any, name: str) -> np.ndarray:
    b = np.asarray(v, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4), np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must be [N,4] xyxy, got shape {b.shape}")
    return b


def _masks_to_rles(masks: Any, n: int, name: str) -> list[Rle] | None:
    if masks is None:
        return None
    if isinstance(masks, np.ndarray):
        if masks.ndim != 3 or masks.shape[0] != n:
            raise ValueError(f"{name} masks must be [{n},H,W], got shape {masks.shape}")
        return rle_ops.encode(masks)
    out = list(masks)
    if len(out) != n:
        raise ValueError(f"{name}: {len(out)} masks for {n} instances")
    return out


@dataclass
class ImageGT:
    """Ground truth of one image. ``masks`` None = box-only evaluation."""

    height: int
    width: int
    boxes: np.ndarray  # float64 [N,4] xyxy pixels
    labels: np.ndarray  # int64 [N]
    masks: list[Rle] | None = None
    # bool [N]; None (all False) is accepted on construction and replaced in __post_init__,
    # so readers always get an array
    iscrowd: np.ndarray = None  # type: ignore[assignment]
    image_id: str = ""

    def __post_init__(self) -> None:
        self.boxes = _boxes(self.boxes, "GT boxes")
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = len(self.labels)
        if len(self.boxes) != n:
            raise ValueError(f"{self.image_id}: {len(self.boxes)} GT boxes for {n} labels")
        self.iscrowd = (np.zeros(n, bool) if self.iscrowd is None
                        else np.asarray(self.iscrowd, dtype=bool).reshape(-1))
        if len(self.iscrowd) != n:
            raise ValueError(f"{self.image_id}: {len(self.iscrowd)} iscrowd flags for {n} labels")
        self.masks = _masks_to_rles(self.masks, n, f"{self.image_id} GT")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImagePred:
    """Predictions for one image; bool mask arrays are converted to RLE on entry."""

    boxes: np.ndarray  # float64 [K,4] xyxy pixels
    scores: np.ndarray  # float64 [K]
    labels: np.ndarray  # int64 [K]
    masks: list[Rle] | None = None
    image_id: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = _boxes(self.boxes, "predicted boxes")
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        k = len(self.scores)
        if len(self.boxes) != k or len(self.labels) != k:
            raise ValueError(f"{self.image_id}: boxes/scores/labels lengths differ: "
                             f"{len(self.boxes)}/{k}/{len(self.labels)}")
        self.masks = _masks_to_rles(self.masks, k, f"{self.image_id} predicted")

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, idx: np.ndarray) -> ImagePred:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return ImagePred(self.boxes[idx], self.scores[idx], self.labels[idx],
                         None if self.masks is None else [self.masks[i] for i in idx], self.image_id)

    def top(self, min_score: float, max_dets: int | None = None) -> ImagePred:
        """Predictions with score >= min_score, best first, at most max_dets."""
        order = np.argsort(-self.scores, kind="stable")
        order = order[self.scores[order] >= min_score]
        if max_dets is not None:
            order = order[:max_dets]
        return self.select(order)

    @classmethod
    def empty(cls, with_masks: bool = False, image_id: str = "") -> ImagePred:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), [] if with_masks else None, image_id)

    @classmethod
    def from_detections(cls, det: Any, image_id: str = "") -> ImagePred:
        """From ``core.infer.Detections`` (or anything with boxes/scores/labels and
        masks [K,H,W] bool or ``rles``)."""
        rles = getattr(det, "rles", None)
        masks = rles if rles is not None else getattr(det, "masks", None)
        return cls(det.boxes, det.scores, det.labels, masks, image_id)


def instance_to_rle(inst: Instance, height: int, width: int) -> Rle:
    """Pixel polygons (multi-part, holes subtracted) or a box -> RLE, clipped to the image."""
    if inst.is_box:
        return rle_ops.box_to_rle(inst.bbox(), height, width)
    return rle_ops.polygons_to_rle(inst.polygons, inst.holes, height, width)


def gt_from_annotation(ann: ImageAnnotation, with_masks: bool = True) -> ImageGT:
    """Evaluation GT of one labelled image (box-only instances become box-shaped masks)."""
    insts = ann.instances
    boxes = np.array([i.bbox() for i in insts], np.float64).reshape(-1, 4)
    labels = np.array([i.class_id for i in insts], np.int64)
    masks = [instance_to_rle(i, ann.height, ann.width) for i in insts] if with_masks else None
    crowd = np.array([i.iscrowd for i in insts], bool)
    return ImageGT(ann.height, ann.width, boxes, labels, masks, crowd, str(ann.image_path))


def pred_from_arrays(boxes: Sequence | np.ndarray, scores: Sequence | np.ndarray, labels: Sequence | np.ndarray,
                     masks: Any = None,
                     image_id: str = "") -> ImagePred:
    return ImagePred(np.asarray(boxes), np.asarray(scores), np.asarray(labels), masks, image_id)
