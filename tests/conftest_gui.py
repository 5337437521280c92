"""Shared helpers of the GUI tests (imported by tests/test_gui_*.py; not a conftest).

Qt runs offscreen; settings go to a temporary ini file so tests never touch the
user's real settings; error dialogs become status-bar messages (no modal loops).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import cv2
import numpy as np
import pytest

SCREENSHOTS = Path(__file__).resolve().parents[1] / "tests_out" / "screenshots"


def make_project(root: Path, n_images: int = 3, size: tuple[int, int] = (320, 240),
                 classes: tuple[str, ...] = ("cat", "dog", "car"), task: str = "segment"):
    """A project with ``n_images`` plain images (gradient + a square) and no labels."""
    from core.project import Project

    project = Project.create(root, list(classes), task)
    w, h = size
    for i in range(n_images):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = np.linspace(40, 200, w, dtype=np.uint8)[None, :]
        img[..., 1] = np.linspace(60, 120, h, dtype=np.uint8)[:, None]
        img[..., 2] = (30 + 40 * i) % 256
        cv2.rectangle(img, (w // 4, h // 4), (w // 2, h // 2), (230, 230, 230), -1)
        cv2.imwrite(str(project.image_dir / f"img_{i:03d}.png"), img)
    return project


def screenshot(widget, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not save {path}"
    return path


@pytest.fixture
def gui_settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, qapp, gui_settings):
    from app.main import make_app
    from app.main_window import MainWindow
    from app.settings import AppSettings
    from app.theme import apply_theme

    make_app()
    qapp.setProperty("no_modal_errors", True)
    apply_theme(qapp, "dark")
    win = MainWindow(AppSettings(gui_settings))
    win.autosaver.timer.setInterval(60_000)  # tests save explicitly or by switching
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.task is not None:
        win.task.cancel()
        win.task.done.wait(10)
    win.close()


def wait_image(qtbot, win) -> None:
    """Until the current image's pixels are on the canvas (decoded in a worker)."""
    qtbot.waitUntil(lambda: win.canvas.image is not None and win.doc is not None
                    and win.canvas.image.path == win.doc.image_path, timeout=10_000)
