"""Dataset: rasterised targets in D-FINE format; unreadable samples are named and skipped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from core.annotation import ImageAnnotation, Instance
from core.data.dataset import SegmentationDataset, collate
from core.errors import LabelError


def _write(tmp: Path, name: str, w: int = 64, h: int = 48) -> Path:
    p = tmp / name
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.imwrite(str(p), img)
    return p


def test_targets_exact_for_a_square_and_a_box(tmp_path):
    img = _write(tmp_path, "a.png", 64, 48)
    ann = ImageAnnotation(img, 64, 48, [
        Instance(1, polygons=[[[8, 8], [24, 8], [24, 24], [8, 24]]]),
        Instance(0, box=(32, 16, 48, 40)),
    ])
    ds = SegmentationDataset([img], lambda p: ann, num_classes=2, image_size=32)
    image, target, bad = ds[0]
    assert bad == [] and image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert target["labels"].tolist() == [1, 0]
    # 64x48 -> 32x32: x scale 1/2, y scale 2/3; nearest-exact keeps pixel edges at these scales
    masks = target["masks"].numpy()
    assert masks.shape == (2, 32, 32) and masks.dtype == np.uint8
    _, xs = np.nonzero(masks[0])
    assert (xs.min(), xs.max() + 1) == (4, 12)
    b = target["boxes"].numpy()  # cxcywh normalised, equal to the mask bounds
    x0, x1 = (b[:, 0] - b[:, 2] / 2) * 32, (b[:, 0] + b[:, 2] / 2) * 32
    y0, y1 = (b[:, 1] - b[:, 3] / 2) * 32, (b[:, 1] + b[:, 3] / 2) * 32
    for k in range(2):
        yy, xx = np.nonzero(masks[k])
        np.testing.assert_allclose([x0[k], y0[k], x1[k], y1[k]], [xx.min(), yy.min(), xx.max() + 1, yy.max() + 1],
                                   atol=1e-5)
    np.testing.assert_allclose([x0[1], x1[1]], [16, 24], atol=1e-5)


def test_bad_samples_are_named_and_replaced(tmp_path):
    good = [_write(tmp_path, f"g{i}.png") for i in range(3)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    badlabel = _write(tmp_path, "badlabel.png")
    paths = [good[0], broken, badlabel, good[1], good[2]]

    def load(p: Path) -> ImageAnnotation:
        if p == badlabel:
            raise LabelError(p.with_suffix(".txt"), 3, "polygon has an odd number of coordinates", "0 0.1 0.2 0.3")
        return ImageAnnotation(p, 64, 48, [Instance(0, polygons=[[[4, 4], [30, 4], [30, 30]]])])

    ds = SegmentationDataset(paths, load, num_classes=1, image_size=32)
    batch = [ds[i] for i in range(len(ds))]
    images, targets, bad = collate(batch)
    assert images.shape == (5, 3, 32, 32)  # every slot filled: batches never shrink
    messages = [str(b) for b in bad]
    assert any("broken.jpg" in m for m in messages), messages
    assert any("badlabel.txt:3" in m and "odd number" in m for m in messages), messages
    # the replacement of a bad sample is the next readable one, deterministically
    assert torch.equal(targets[1]["masks"], targets[3]["masks"])
    assert all(len(t["labels"]) == 1 for t in targets)


def test_class_id_out_of_range_is_reported(tmp_path):
    img = _write(tmp_path, "a.png")
    ok = _write(tmp_path, "b.png")
    anns = {img: ImageAnnotation(img, 64, 48, [Instance(5, box=(1, 1, 10, 10))]),
            ok: ImageAnnotation(ok, 64, 48, [Instance(0, box=(1, 1, 10, 10))])}
    ds = SegmentationDataset([img, ok], anns.__getitem__, num_classes=2, image_size=32)
    _, target, bad = ds[0]
    assert len(bad) == 1 and "a.png" in str(bad[0]) and "class id 5" in str(bad[0])
    assert target["labels"].tolist() == [0]


def test_detect_task_has_no_masks_and_augmented_items_are_deterministic(tmp_path):
    from core.data.augment import AugmentConfig, TrainAugment

    paths = [_write(tmp_path, f"g{i}.png") for i in range(4)]
    load = lambda p: ImageAnnotation(p, 64, 48, [Instance(0, box=(4, 4, 40, 30)), Instance(0, box=(40, 20, 60, 44))])
    aug = TrainAugment(AugmentConfig(image_size=32, epochs=10))
    ds = SegmentationDataset(paths, load, 1, 32, task="detect", augment=aug, seed=7)
    ds.set_epoch(3)
    a, ta, _ = ds[2]
    b, tb, _ = ds[2]
    assert "masks" not in ta
    assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
    ds.set_epoch(4)
    c, tc, _ = ds[2]
    assert not (torch.equal(a, c) and torch.equal(ta["boxes"], tc["boxes"]))  # a new epoch, new draw
