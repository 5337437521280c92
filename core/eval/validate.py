"""The one validator: F1/P/R/IoU at a fixed threshold, the F1 curve and COCO AP of any model on a
project's labelled images.

Training's per-epoch validation, ``dfine val``, the export report (every format's row), INT8
accuracy control and ``dfine bench`` all call :func:`validate`, so "F1" is computed by one piece
of code: the model predicts every detection down to :data:`EVAL_FLOOR` (COCO AP and the F1 curve
need them), masks as RLE; ``core.eval.evaluator.Evaluator`` counts those at or above ``conf`` for
the fixed-threshold numbers. Images are predicted in batches of :data:`VAL_BATCH` whoever asks, so
the same model gives the same numbers everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserFacingError
from core.eval.evaluator import EvalSummary, Evaluator, Task
from core.eval.records import ImageGT, ImagePred, gt_from_annotation
from core.infer.detections import Detections

EVAL_FLOOR = 0.01  # the lowest score a validation keeps (COCO AP, the F1-vs-threshold curve)
VAL_BATCH = 4

#: ``predict(images)``: one Detections per BGR image, every detection scoring >= EVAL_FLOOR
Predict = Callable[[list[np.ndarray]], list[Detections]]


@dataclass
class ValItem:
    """One labelled image; the pixels are read when needed (val sets can be large)."""

    path: Path
    gt: ImageGT


def load_val_items(project, images: Sequence[Path], task: str, bad: list[str] | None = None) -> list[ValItem]:
    """The labelled ``images`` of ``project`` (e.g. ``project.split_images("val")``); an unreadable
    label file is left out and named in ``bad``, as training does."""
    items = []
    for path in images:
        try:
            ann = project.load_annotation(path)
        except UserFacingError as exc:
            if bad is not None:
                bad.append(str(exc))
            continue
        items.append(ValItem(Path(path), gt_from_annotation(ann, with_masks=task == "segment")))
    return items


def predictor_fn(predictor) -> Predict:
    """A ``core.infer.predictor.Predictor`` (any backend) as the validator's ``predict``."""
    return lambda images: predictor.predict(images, rle=True, conf=EVAL_FLOOR)


def validate(predict: Predict, items: Sequence[ValItem], class_names: list[str], task: Task, conf: float,
             bad: list[str] | None = None, progress: Callable[[int, int], None] | None = None) -> EvalSummary:
    """Evaluate ``predict`` on ``items`` at threshold ``conf``; an unreadable image is left out
    and named in ``bad``; ``progress(done, total)`` after each batch."""
    from core.data.images import read_image

    evaluator = Evaluator(len(class_names), class_names, task, conf=conf, coco_conf=EVAL_FLOOR)
    for start in range(0, len(items), VAL_BATCH):
        chunk, arrays = [], []
        for item in items[start:start + VAL_BATCH]:
            try:
                arrays.append(read_image(item.path))
                chunk.append(item)
            except UserFacingError as exc:
                if bad is not None:
                    bad.append(str(exc))
        if arrays:
            for item, det in zip(chunk, predict(arrays)):
                evaluator.add(item.gt, ImagePred.from_detections(det, str(item.path)))
        if progress is not None:
            progress(min(start + VAL_BATCH, len(items)), len(items))
    return evaluator.summary()


def validate_predictor(predictor, items: Sequence[ValItem], conf: float, bad: list[str] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> EvalSummary:
    """:func:`validate` of a ``Predictor`` (its meta gives the classes and the task)."""
    return validate(predictor_fn(predictor), items, predictor.class_names, predictor.meta.task, conf, bad, progress)
