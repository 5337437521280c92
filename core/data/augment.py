"""Training augmentations for instance masks: mosaic, photometric, zoom-out, IoU crop, flip, resize.

Masks are the single source of truth for geometry: every geometric step moves the
image and the instance masks together, and boxes are *recomputed from the
transformed masks* at the end (and wherever a step needs them). That keeps
boxes, masks and (rasterised) polygons consistent by construction, including
after rotation in mosaic, where transformed boxes would otherwise grow.

The op list and probabilities follow D-FINE's COCO recipe (Mosaic,
RandomPhotometricDistort p=.5, RandomZoomOut side 1..4, RandomIoUCrop p=.8,
RandomHorizontalFlip, Resize to the square model size) and its `stop_epoch`
policy: mosaic never on the same sample as zoom-out / IoU crop, and all heavy ops
off for the last ``no_aug_epochs`` epochs. Photometric and the mosaic affine use
albumentations; the mask-aware geometric ops are small numpy/cv2 code because
albumentations has no zoom-out or torchvision-style IoU crop.

All randomness comes from the ``np.random.Generator`` passed in, so a sample's
augmentation depends only on (seed, epoch, index): results are the same with
any number of workers and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from core.geometry import box_iou

_CV_MAX_CHANNELS = 512  # cv2 warps/resizes at most this many channels in one call


@dataclass
class Sample:
    """An RGB uint8 image (H, W, 3) with instance masks uint8 (N, H, W) and class ids (N,)."""

    image: np.ndarray
    masks: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        if self.masks.ndim != 3 or self.masks.shape[1:] != (h, w):
            raise ValueError(f"masks {self.masks.shape} do not match image {self.image.shape}")
        if len(self.labels) != len(self.masks):
            raise ValueError(f"{len(self.labels)} labels for {len(self.masks)} masks")


@dataclass
class AugmentConfig:
    image_size: int = 640
    mosaic_prob: float = 0.5
    photometric_prob: float = 0.5
    zoom_out_prob: float = 0.5
    zoom_out_max: float = 4.0
    iou_crop_prob: float = 0.8
    flip_prob: float = 0.5
    mosaic_rotate: float = 10.0
    mosaic_translate: float = 0.1
    mosaic_scale: tuple[float, float] = (0.5, 1.5)
    epochs: int = 1
    no_aug_epochs: int = 0
    # DEIM's dense one-to-one phase (train.matching: deim): epochs [dense_start, dense_end) compose a
    # mosaic with probability mosaic_prob whatever the no-aug setting; mosaic never outside it and the
    # other heavy ops not before it. None: D-FINE's policy (mosaic wherever the heavy ops are on).
    dense_start: int | None = None
    dense_end: int | None = None


# ---------------------------------------------------------------- mask helpers


def map_masks(masks: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an image-space cv2 op ``fn`` (HxWxC -> H'xW'xC) to (N, H, W) masks in channel chunks."""
    n = len(masks)
    if n == 0:
        probe = fn(np.zeros(masks.shape[1:] + (1,), np.uint8))
        return np.zeros((0,) + probe.shape[:2], np.uint8)
    out = []
    for start in range(0, n, _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(masks[start:start + _CV_MAX_CHANNELS].transpose(1, 2, 0))
        res = fn(chunk)
        if res.ndim == 2:  # cv2 drops a single channel
            res = res[:, :, None]
        out.append(res.transpose(2, 0, 1))
    return np.ascontiguousarray(np.concatenate(out, axis=0))


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """xyxy pixel-edge boxes (float32, (N, 4)) of each mask's nonzero pixels; zeros for empty masks."""
    n = len(masks)
    boxes = np.zeros((n, 4), np.float32)
    if n == 0:
        return boxes
    cols = np.asarray(masks.any(axis=1))  # (N, W)
    rows = np.asarray(masks.any(axis=2))  # (N, H)
    nonempty = cols.any(axis=1)
    w, h = cols.shape[1], rows.shape[1]
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = h - rows[:, ::-1].argmax(axis=1)
    boxes[:] = np.stack([x0, y0, x1, y1], axis=1)
    boxes[~nonempty] = 0
    return boxes


def drop_empty(sample: Sample, min_size: float = 1.0) -> Sample:
    """Remove instances whose mask vanished (cropped away, shrunk below a pixel)."""
    boxes = boxes_from_masks(sample.masks)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    if keep.all():
        return sample
    return Sample(sample.image, sample.masks[keep], sample.labels[keep])


def resize(sample: Sample, width: int, height: int) -> Sample:
    """Stretch to (width, height): bilinear for the image (the same call as
    core.infer.preprocess, so training sees inference's pixels), nearest for masks (they stay binary;
    NEAREST_EXACT because plain INTER_NEAREST is shifted by up to half a pixel)."""
    h, w = sample.image.shape[:2]
    if (w, h) == (width, height):
        return sample
    image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_LINEAR)
    masks = map_masks(sample.masks, lambda m: cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST_EXACT))
    return Sample(image, masks, sample.labels)


def hflip(sample: Sample) -> Sample:
    return Sample(
        np.ascontiguousarray(sample.image[:, ::-1]),
        np.ascontiguousarray(sample.masks[:, :, ::-1]),
        sample.labels,
    )


def zoom_out(sample: Sample, rng: np.random.Generator, max_side: float, fill: int = 0) -> Sample:
    """torchvision RandomZoomOut: put the image on a canvas ``r`` times larger (r in [1, max_side]).

    Implemented as "shrink by r into a canvas of the original size", identical after the
    final resize but never allocating masks r^2 times the image area.
    """
    h, w = sample.image.shape[:2]
    r = float(rng.uniform(1.0, max_side))
    cw, ch = max(1, round(w / r)), max(1, round(h / r))
    left = int((w - cw) * rng.random())
    top = int((h - ch) * rng.random())
    small = resize(sample, cw, ch)
    image = np.full_like(sample.image, fill)
    image[top:top + ch, left:left + cw] = small.image
    masks = np.zeros((len(sample.masks), h, w), np.uint8)
    masks[:, top:top + ch, left:left + cw] = small.masks
    return drop_empty(Sample(image, masks, sample.labels))


def iou_crop(
    sample: Sample,
    rng: np.random.Generator,
    min_scale: float = 0.3,
    max_scale: float = 1.0,
    aspect: tuple[float, float] = (0.5, 2.0),
    options: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    trials: int = 40,
    max_rounds: int = 50,
) -> Sample:
    """SSD / torchvision RandomIoUCrop: a crop whose IoU with some kept object is >= a sampled
    minimum; objects whose box centre falls outside the crop are dropped."""
    if len(sample.masks) == 0:
        return sample
    h, w = sample.image.shape[:2]
    boxes = boxes_from_masks(sample.masks)
    for _ in range(max_rounds):
        min_jaccard = options[int(rng.integers(len(options)))]
        if min_jaccard >= 1.0:
            return sample
        for _ in range(trials):
            r = min_scale + (max_scale - min_scale) * rng.random(2)
            new_w, new_h = int(w * r[0]), int(h * r[1])
            if new_w == 0 or new_h == 0 or not (aspect[0] <= new_w / new_h <= aspect[1]):
                continue
            r = rng.random(2)
            left, top = int((w - new_w) * r[0]), int((h - new_h) * r[1])
            right, bottom = left + new_w, top + new_h
            cx = (boxes[:, 0] + boxes[:, 2]) / 2
            cy = (boxes[:, 1] + boxes[:, 3]) / 2
            inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
            if not inside.any():
                continue
            crop = np.array([left, top, right, bottom], np.float32)
            if box_iou(boxes[inside], crop)[:, 0].max() < min_jaccard:
                continue
            cropped = Sample(
                np.ascontiguousarray(sample.image[top:bottom, left:right]),
                np.ascontiguousarray(sample.masks[inside, top:bottom, left:right]),
                sample.labels[inside],
            )
            return drop_empty(cropped)
    return sample


class Photometric:
    """D-FINE's RandomPhotometricDistort ranges through albumentations' ColorJitter (RGB input)."""

    def __init__(self, p: float) -> None:
        self._tf = A.Compose([
            A.ColorJitter(brightness=(0.875, 1.125), contrast=(0.5, 1.5), saturation=(0.5, 1.5),
                          hue=(-0.05, 0.05), p=1.0),
        ])
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        self._tf.set_random_seed(int(rng.integers(2**31)))
        return Sample(self._tf(image=sample.image)["image"], sample.masks, sample.labels)


class MosaicAffine:
    """2x2 mosaic (each image fitted into a quarter of the model-size canvas) followed by a random
    affine (rotation, translation, scale) on image and masks together, as D-FINE's Mosaic op."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.size = cfg.image_size
        self._affine = A.Compose([
            A.Affine(rotate=(-cfg.mosaic_rotate, cfg.mosaic_rotate),
                     translate_percent=(-cfg.mosaic_translate, cfg.mosaic_translate),
                     scale=cfg.mosaic_scale, interpolation=cv2.INTER_LINEAR,
                     # bilinear on 0/1 uint8 rounds = thresholds at 0.5: unbiased, unlike
                     # warpAffine NEAREST, which shifts masks ~0.2 px against the image
                     mask_interpolation=cv2.INTER_LINEAR, fill=0, fill_mask=0, p=1.0),
        ])

    def __call__(self, samples: list[Sample], rng: np.random.Generator) -> Sample:
        assert len(samples) == 4
        s = self.size // 2
        size = 2 * s
        image = np.zeros((size, size, 3), np.uint8)
        masks, labels = [], []
        for k, smp in enumerate(samples):
            h, w = smp.image.shape[:2]
            scale = s / max(h, w)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            small = resize(smp, nw, nh)
            # place each picture against the canvas centre so the four meet in the middle
            x0 = s - nw if k % 2 == 0 else s
            y0 = s - nh if k < 2 else s
            image[y0:y0 + nh, x0:x0 + nw] = small.image
            m = np.zeros((len(small.masks), size, size), np.uint8)
            m[:, y0:y0 + nh, x0:x0 + nw] = small.masks
            masks.append(m)
            labels.append(small.labels)
        mosaic = Sample(image, np.concatenate(masks, axis=0), np.concatenate(labels, axis=0))
        self._affine.set_random_seed(int(rng.integers(2**31)))
        if len(mosaic.masks):
            out = self._affine(image=mosaic.image, masks=mosaic.masks)
            mosaic = Sample(out["image"], np.ascontiguousarray(np.asarray(out["masks"], np.uint8)),
                            mosaic.labels)
        else:
            mosaic = Sample(self._affine(image=mosaic.image)["image"], mosaic.masks, mosaic.labels)
        return drop_empty(mosaic)


class TrainAugment:
    """The full training pipeline with D-FINE's epoch policy. ``load_other(i)`` returns dataset
    sample ``i`` un-augmented (for mosaic); ``num_samples`` is the dataset length."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg
        self.photometric = Photometric(cfg.photometric_prob)
        self.mosaic = MosaicAffine(cfg)

    def heavy_ops_on(self, epoch: int) -> bool:
        """False during the last ``no_aug_epochs`` epochs (D-FINE's stop_epoch policy) and, with a
        dense phase, before it (DEIM's first stage)."""
        if self.cfg.dense_start is not None and epoch < self.cfg.dense_start:
            return False
        return epoch < self.cfg.epochs - self.cfg.no_aug_epochs

    def dense_on(self, epoch: int) -> bool:
        """Inside DEIM's dense one-to-one phase (mosaic and batch mixup)."""
        c = self.cfg
        return c.dense_start is not None and c.dense_end is not None and c.dense_start <= epoch < c.dense_end

    def __call__(
        self,
        sample: Sample,
        rng: np.random.Generator,
        epoch: int,
        load_other: Callable[[int], Sample] | None = None,
        num_samples: int = 0,
    ) -> Sample:
        cfg = self.cfg
        heavy = self.heavy_ops_on(epoch)
        may_mosaic = self.dense_on(epoch) if cfg.dense_start is not None else heavy
        with_mosaic = may_mosaic and load_other is not None and num_samples > 0 and rng.random() < cfg.mosaic_prob
        if with_mosaic and load_other is not None:
            others = [load_other(int(i)) for i in rng.integers(num_samples, size=3)]
            sample = self.mosaic([sample, *others], rng)
        if heavy:
            sample = self.photometric(sample, rng)
            if not with_mosaic:
                if rng.random() < cfg.zoom_out_prob:
                    sample = zoom_out(sample, rng, cfg.zoom_out_max)
                if rng.random() < cfg.iou_crop_prob:
                    sample = iou_crop(sample, rng)
        if rng.random() < cfg.flip_prob:
            sample = hflip(sample)
        sample = resize(sample, cfg.image_size, cfg.image_size)
        return drop_empty(sample)


def mixup_batch(images, targets: list[dict], beta: float):
    """DEIM's batch mixup (engine/data/dataloader.py, BatchImageCollateFunction.apply_mixup): image i
    becomes ``beta * image_i + (1 - beta) * image_{i-1}`` (the batch rolled by one) and keeps the
    instances of both. Per-instance target tensors (labels, boxes, masks, has_mask) are concatenated;
    anything else (image_id) stays the image's own. Returns new images and targets."""
    import torch

    n = len(targets)
    if n < 2:
        return images, targets
    mixed = images.roll(shifts=1, dims=0).mul(1.0 - beta).add_(images.mul(beta))
    out = []
    for i, t in enumerate(targets):
        other = targets[i - 1]
        k = len(t["labels"])
        merged = {}
        for key, value in t.items():
            if isinstance(value, torch.Tensor) and value.ndim >= 1 and len(value) == k and key in other \
                    and len(other[key]) == len(other["labels"]):
                merged[key] = torch.cat([value, other[key]], dim=0)
            else:
                merged[key] = value
        out.append(merged)
    return mixed, out


def eval_transform(sample: Sample, image_size: int) -> Sample:
    """Validation: only the stretch-resize to the square model input (as D-FINE's val Resize)."""
    return drop_empty(resize(sample, image_size, image_size))
