"""Validation F1/P/R/IoU of any predictor (or raw runner) on a project's val split.

Shared by the export report, INT8 accuracy control and the benchmark, so that "F1" means
the same thing (core.eval, the paper's fixed-threshold rules) in all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserFacingError
from core.infer.detections import Detections


@dataclass
class ValItem:
    """One labelled image; the pixels are read when needed (val sets can be large)."""

    path: Path
    gt: object  # core.eval.records.ImageGT

    def image(self) -> np.ndarray:
        from core.data.images import read_image

        return read_image(self.path)


def load_val_items(project, split: str = "val", limit: int | None = None, task: str = "segment") -> list[ValItem]:
    """Labelled images of ``split`` (unreadable labels are skipped, as training does)."""
    from core.eval.records import gt_from_annotation

    items = []
    for path in project.split_images(split)[:limit]:
        try:
            ann = project.load_annotation(path)
        except UserFacingError:
            continue
        items.append(ValItem(Path(path), gt_from_annotation(ann, with_masks=task == "segment")))
    return items


def evaluate(predict: Callable[[list[np.ndarray]], list[Detections]], items: Sequence[ValItem],
             class_names: list[str], task: str, conf: float, batch_size: int = 1) -> dict[str, float]:
    """{"f1", "precision", "recall", "iou"} of ``predict`` over ``items`` at threshold ``conf``."""
    from core.eval.evaluator import Evaluator
    from core.eval.records import ImagePred

    ev = Evaluator(len(class_names), class_names, task, conf=conf, coco=False)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        for item, det in zip(chunk, predict([it.image() for it in chunk])):
            ev.add(item.gt, ImagePred.from_detections(det, str(item.path)))
    fixed = ev.summary().fixed
    return {"f1": fixed.f1, "precision": fixed.precision, "recall": fixed.recall, "iou": fixed.iou}
