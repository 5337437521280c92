"""Shared helpers for the training tests (no tests here): a tiny project from demo images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def tiny_project(root: Path, n_train: int = 4, n_val: int = 2, size: str = "n", image_size: int = 256,
                 first: int = 0) -> Path:
    """A segment project with demo images ``first..first+n_train+n_val``, splits written explicitly."""
    from core.annotation import ImageAnnotation
    from core.demo import CLASSES, HEIGHT, WIDTH, render_demo_image
    from core.project import Project

    proj = Project.create(root, CLASSES, "segment")
    text = proj.config_path.read_text(encoding="utf-8")
    text = text.replace("  size: s\n", f"  size: {size}\n", 1).replace("  image_size: 640\n", f"  image_size: {image_size}\n", 1)
    proj.config_path.write_text(text, encoding="utf-8")
    proj.reload_config()
    names = []
    for i in range(first, first + n_train + n_val):
        img, instances = render_demo_image(i)
        path = proj.image_dir / f"img{i:03d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        proj.save_annotation(ImageAnnotation(path, WIDTH, HEIGHT, instances))
        names.append(path.name)
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits" / "train.txt").write_text("".join(n + "\n" for n in names[:n_train]))
    (root / "splits" / "val.txt").write_text("".join(n + "\n" for n in names[n_train:]))
    return root


def env() -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", PYTHONHASHSEED="0", PYTHONPATH=str(REPO))
    return e


def dfine(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, "-m", "core", *args], cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"dfine {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def recorded_training(root: Path, epochs: int = 2, name: str = "r") -> list[str]:
    """The stdout lines (``--events -``) of a real tiny CPU training run of the project ``root``:
    what the engine really sends, for tests that feed the GUI and the plots."""
    proc = dfine("train", str(root), "--events", "-", "--name", name, "--no-progress", "--device", "cpu",
                 "--set", f"train.epochs={epochs}", "train.batch_size=2", "train.workers=0")
    return [line for line in proc.stdout.splitlines() if line.startswith("{")]
