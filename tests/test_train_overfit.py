"""Proof that it learns: size N on CPU overfits 4 demo images to mask F1 >= 0.9 (fixed threshold).

Validation runs on byte-identical copies of the training images (a project split cannot list one
image twice). Slow (many CPU steps): run with `pytest -m slow tests/test_train_overfit.py`.
The run is stopped with SIGTERM as soon as the target is reached.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest
from test_train_helpers import PY, REPO, env, events_of, tiny_project

TARGET_F1 = 0.9
SETTINGS = ["--device", "cpu", "--set", "train.epochs=600", "--set", "train.batch_size=4",
            "--set", "train.workers=0", "--set", "train.no_aug_epochs=600", "--set", "train.lr=0.001",
            "--set", "train.backbone_lr=0.001", "--set", "train.warmup_iters=10", "--set", "train.ema_decay=0.9",
            "--set", "train.ema_warmups=10", "--set", "train.val_every=20", "--set", "train.weight_decay=0"]


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_overfits_four_demo_images(tmp_path):
    root = tiny_project(tmp_path / "p", n_train=4, n_val=0, image_size=256)
    train = (root / "splits" / "train.txt").read_text().split()
    for name in train:  # val = copies of the train images and their labels
        shutil.copy(root / "images" / name, root / "images" / f"val_{name}")
        stem = name.rsplit(".", 1)[0]
        shutil.copy(root / "labels" / f"{stem}.txt", root / "labels" / f"val_{stem}.txt")
    (root / "splits" / "val.txt").write_text("".join(f"val_{n}\n" for n in train))

    t0 = time.time()
    proc = subprocess.Popen([PY, "-m", "core", "train", str(root), "--events", "-", "--name", "overfit", *SETTINGS],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    best, history = 0.0, []
    assert proc.stdout is not None
    for line in proc.stdout:
        for e in events_of(line):
            if e["event"] == "metrics":
                history.append((e["epoch"], e["step"], round(e["metrics"]["f1"], 4),
                                round(e["metrics"].get("mask_map50", 0.0), 4), round(time.time() - t0)))
                print("metrics", history[-1], flush=True)
                best = max(best, e["metrics"]["f1"])
                if best >= TARGET_F1:
                    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=900) == 0, proc.stderr.read() if proc.stderr else ""
    assert best >= TARGET_F1, history
