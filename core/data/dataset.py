"""Training/validation Dataset over a project's split.

Polygons are rasterised to instance masks when a sample is loaded (pycocotools,
holes cut out, multi-part objects as one mask); box-only instances become filled
rectangles, so every geometric augmentation treats them alike and boxes are
always re-derived from masks (see core.data.augment).

A sample that cannot be read (broken image, malformed label) never stops an
epoch: it is reported by file name and replaced by the next readable sample
(deterministically, so batch sizes stay equal on every DDP rank and a resumed
run sees the same data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.annotation import ImageAnnotation, Instance
from core.data.augment import Sample, TrainAugment, boxes_from_masks, drop_empty, resize
from core.data.image_cache import DecodedImageCache, read_downscaled
from core.errors import UserFacingError
from core import rle

AnnotationLoader = Callable[[Path], ImageAnnotation]


@dataclass
class BadSample:
    """A sample that was skipped; ``message`` says why (it names the file)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def rasterize_instance(inst: Instance, width: int, height: int, sx: float = 1.0, sy: float = 1.0) -> np.ndarray:
    """uint8 (height, width) mask of one instance, its pixel coordinates scaled by (sx, sy).

    Uses the same pycocotools rasteriser as the evaluation (core.rle), so the masks the
    model learns are pixel for pixel the masks its F1/AP are measured against.
    """

    scale = np.array([sx, sy])
    if inst.is_box:
        x0, y0, x1, y1 = inst.bbox()
        r = rle.box_to_rle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), height, width)
    else:
        r = rle.polygons_to_rle([p * scale for p in inst.polygons], [h * scale for h in inst.holes],
                                height, width)
    return rle.decode([r])[0].astype(np.uint8)


def load_sample(
    image_path: Path,
    load_annotation: AnnotationLoader,
    num_classes: int,
    max_side: int | None = None,
    cache: DecodedImageCache | None = None,
) -> Sample:
    """Read image + labels into a :class:`Sample` (RGB), downscaled so its longest side is at most
    ``max_side`` (augmentation then never works on more pixels than the model can use); ``cache``
    (built for the same ``max_side``) serves the decoded, downscaled pixels from disk."""

    ann = load_annotation(image_path)
    bgr = cache.get(image_path) if cache is not None else read_downscaled(image_path, max_side)
    ih, iw = bgr.shape[:2]
    # labels live in the annotation's frame (ann.width x ann.height); map them onto the pixels we hold
    sx, sy = iw / ann.width, ih / ann.height
    masks = np.zeros((len(ann.instances), ih, iw), np.uint8)
    labels = np.zeros(len(ann.instances), np.int64)
    for k, inst in enumerate(ann.instances):
        if not 0 <= inst.class_id < num_classes:
            raise UserFacingError(
                f"{image_path}: instance {k} has class id {inst.class_id}, the project has {num_classes} classes"
            )
        masks[k] = rasterize_instance(inst, iw, ih, sx, sy)
        labels[k] = inst.class_id
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return drop_empty(Sample(rgb, masks, labels))


def sample_to_target(sample: Sample, with_masks: bool) -> dict[str, torch.Tensor]:
    """D-FINE target dict: labels int64 [N], boxes cxcywh normalised float32 [N,4], masks uint8 [N,H,W]."""
    h, w = sample.image.shape[:2]
    b = boxes_from_masks(sample.masks)
    cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                       (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], axis=1).astype(np.float32)
    target = {
        "labels": torch.from_numpy(sample.labels.astype(np.int64)),
        "boxes": torch.from_numpy(cxcywh.reshape(-1, 4)),
    }
    if with_masks:
        target["masks"] = torch.from_numpy(np.ascontiguousarray(sample.masks))
    return target


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 RGB uint8 -> 3xHxW float32 in [0, 1] (D-FINE uses no mean/std)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


class SegmentationDataset(Dataset):
    """Samples ``(image [3,S,S], target, bad: list[BadSample])`` for a list of images.

    ``augment`` None means validation-style loading (resize only). The augmentation RNG is
    seeded from (seed, epoch, index): call :meth:`set_epoch` before each epoch's iterator
    is created (workers must not be persistent, so they pick the epoch up).
    """

    def __init__(
        self,
        image_paths: Sequence[Path],
        load_annotation: AnnotationLoader,
        num_classes: int,
        image_size: int,
        task: str = "segment",
        augment: TrainAugment | None = None,
        seed: int = 0,
        max_side: int | None = None,
        max_fallbacks: int = 32,
        cache: DecodedImageCache | None = None,
    ) -> None:
        if not image_paths:
            raise UserFacingError("the split has no images")
        self.image_paths = [Path(p) for p in image_paths]
        self.load_annotation = load_annotation
        self.num_classes = num_classes
        self.image_size = image_size
        self.task = task
        self.augment = augment
        self.seed = seed
        self.max_side = max_side if max_side is not None else 2 * image_size
        self.max_fallbacks = max_fallbacks
        if cache is not None and cache.max_side != self.max_side:
            raise ValueError(f"image cache is for max_side {cache.max_side}, the dataset reads {self.max_side}")
        self.cache = cache
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.image_paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _load(self, idx: int, bad: list[BadSample]) -> Sample:
        """Sample ``idx``, or the next readable one; every failure is appended to ``bad``."""
        n = len(self.image_paths)
        for k in range(min(self.max_fallbacks, n)):
            path = self.image_paths[(idx + k) % n]
            try:
                return load_sample(path, self.load_annotation, self.num_classes, self.max_side, self.cache)
            except (UserFacingError, ValueError, OSError, cv2.error) as exc:
                msg = str(exc)
                bad.append(BadSample(str(path), msg if str(path) in msg else f"{path}: {msg}"))
        raise UserFacingError(
            f"{min(self.max_fallbacks, n)} samples in a row could not be read, e.g. {bad[-1] if bad else '?'}"
        )

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[BadSample]]:
        bad: list[BadSample] = []
        sample = self._load(idx, bad)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, idx])
            sample = self.augment(sample, rng, self.epoch,
                                  load_other=lambda i: self._load(i, bad), num_samples=len(self))
        else:
            sample = drop_empty(resize(sample, self.image_size, self.image_size))
        target = sample_to_target(sample, with_masks=self.task == "segment")
        target["image_id"] = torch.tensor(idx, dtype=torch.int64)
        return image_to_tensor(sample.image), target, bad


def collate(batch: list) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], list[BadSample]]:
    """Stack images (all the model size), keep per-image targets, gather skip reports."""
    images = torch.stack([b[0] for b in batch])
    targets = [b[1] for b in batch]
    bad = [x for b in batch for x in b[2]]
    return images, targets, bad
