"""`train.matching: deim`: the dense one-to-one phase (where it lies in the run, mosaic inside it
whatever the no-aug tail, batch mixup) and a real run that trains with MAL."""

from __future__ import annotations

import numpy as np
import torch
from test_train_helpers import dfine, events_of, tiny_project

from core.data.augment import AugmentConfig, Sample, TrainAugment, mixup_batch
from core.train.budget import layout_run


def _square(size: int = 64) -> Sample:
    image = np.full((size, size, 3), 90, np.uint8)
    masks = np.zeros((1, size, size), np.uint8)
    masks[0, 20:44, 20:44] = 1
    return Sample(image, masks, np.array([1]))


def test_dense_phase_spans_4_of_72_to_the_end_of_the_flat_lr():
    lay = layout_run(60, 11, 2000, None, 60, 0.99, 20, budgeted=False, dense=True)
    assert (lay.dense_start, lay.dense_end) == (3, 30)
    lay = layout_run(72, 5, 2000, 40, None, 0.99, 20, budgeted=False, dense=True)
    assert (lay.dense_start, lay.dense_end) == (4, 40)
    assert layout_run(60, 11, 2000, None, 60, 0.99, 20, budgeted=False).dense_start is None  # dfine


def test_mosaic_only_inside_the_dense_phase_even_when_the_no_aug_tail_is_the_whole_run():
    cfg = AugmentConfig(image_size=64, mosaic_prob=1.0, epochs=60, no_aug_epochs=60, dense_start=3, dense_end=30,
                        flip_prob=0.0)
    aug = TrainAugment(cfg)
    counts = {}
    for epoch in (0, 2, 3, 29, 30, 59):
        out = aug(_square(), np.random.default_rng([0, epoch]), epoch, load_other=lambda i: _square(), num_samples=4)
        counts[epoch] = len(out.labels)
    assert counts[0] == counts[2] == counts[30] == counts[59] == 1
    assert counts[3] > 1 and counts[29] > 1  # four pictures' instances (some may leave the canvas)
    # D-FINE's policy is unchanged: no mosaic anywhere in a whole-run no-aug tail
    plain = TrainAugment(AugmentConfig(image_size=64, mosaic_prob=1.0, epochs=60, no_aug_epochs=60))
    assert len(plain(_square(), np.random.default_rng(0), 5, lambda i: _square(), 4).labels) == 1


def test_mixup_batch_blends_each_image_with_its_neighbour_and_keeps_both_instance_sets():
    images = torch.stack([torch.full((3, 4, 4), float(v)) for v in (0.0, 1.0, 0.5)])
    targets = [{"labels": torch.tensor([i] * (i + 1)), "boxes": torch.rand(i + 1, 4),
                "masks": torch.zeros(i + 1, 4, 4, dtype=torch.uint8), "image_id": torch.tensor(i)} for i in range(3)]
    mixed, out = mixup_batch(images, targets, 0.5)
    assert torch.allclose(mixed[0], torch.full((3, 4, 4), 0.25))  # 0.5 * 0 + 0.5 * 0.5 (rolled: last -> first)
    assert torch.allclose(mixed[1], torch.full((3, 4, 4), 0.5))
    assert out[0]["labels"].tolist() == [0, 2, 2, 2] and out[1]["labels"].tolist() == [1, 1, 0]
    assert out[1]["boxes"].shape == (3, 4) and out[1]["masks"].shape == (3, 4, 4)
    assert int(out[2]["image_id"]) == 2 and torch.equal(images[0], torch.zeros(3, 4, 4))  # inputs untouched
    one, same = mixup_batch(images[:1], targets[:1], 0.5)
    assert one is images[:1] or torch.equal(one, images[:1])


def test_a_deim_run_trains_with_mal_and_mixup(tmp_path):
    root = tiny_project(tmp_path / "p", n_train=4, n_val=1)
    proc = dfine("train", str(root), "--events", "-", "--name", "deim", "--device", "cpu", "--set",
                 "train.matching=deim", "train.epochs=2", "train.flat_epochs=2", "train.batch_size=2",
                 "train.workers=0", "train.mixup_prob=1.0", "train.val_every=100", "train.warmup_iters=1")
    steps = [e for e in events_of(proc.stdout) if e["event"] == "step"]
    assert len(steps) == 4 and all("loss_mal" in e["losses"] and "loss_vfl" not in e["losses"] for e in steps)
    assert all(np.isfinite(e["loss"]) for e in steps)
    assert (root / "runs" / "deim" / "best.pt").is_file()
