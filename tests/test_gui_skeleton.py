"""GUI skeleton: the main window opens the demo project and shows an image with its labels."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import subprocess
import sys

import numpy as np
from conftest_gui import gui_settings, screenshot, wait_image, window  # noqa: F401
from PySide6.QtGui import QImage

from app.image_list import Status


def _pixel_rgb(img: QImage, x: int, y: int) -> tuple[int, int, int]:
    c = img.pixelColor(x, y)
    return c.red(), c.green(), c.blue()


def test_opens_demo_project_and_draws_labels(window, qtbot, tmp_path):  # noqa: F811
    from core.demo import make_demo_project
    from core.project import Project

    root = make_demo_project(tmp_path / "demo")
    project = Project.open(root)
    assert window.open_project(root)
    wait_image(qtbot, window)
    # list: every demo image, all labelled
    assert window.list_model.rowCount() == len(project.image_paths()) >= 60
    assert window.list_model.counts()[Status.LABELLED] == len(project.image_paths())
    first = project.image_paths()[0]
    assert window.doc.image_path == first
    ann = project.load_annotation(first)
    assert len(window.canvas.items) == len(ann.instances) > 0
    assert window.instance_panel.list.count() == len(ann.instances)
    assert window.class_panel.list.count() == len(project.class_names)
    assert "batch00_0000.jpg" in window.windowTitle()
    shot = screenshot(window, "skeleton_demo")
    assert shot.stat().st_size > 10_000
    # the labels are drawn: inside the first instance the canvas pixel differs from
    # the raw image pixel (mask fill), outside all instances it does not.
    window.canvas.set_fill_opacity(0.6)
    qtbot.wait(50)
    grab = window.canvas.viewport().grab().toImage()
    inst = ann.instances[0]
    poly = inst.polygons[0] if not inst.is_box else None
    cx, cy = (poly.mean(axis=0) if poly is not None else np.array(inst.bbox()).reshape(2, 2).mean(axis=0))
    from app.canvas import geometry as geo

    if geo.point_in_instance(inst, cx, cy):
        vp = window.canvas.mapFromScene(float(cx), float(cy))
        window.canvas.set_fill_opacity(0.0)
        qtbot.wait(50)
        bare = window.canvas.viewport().grab().toImage()
        dpr = grab.devicePixelRatio()
        a = _pixel_rgb(grab, int(vp.x() * dpr), int(vp.y() * dpr))
        b = _pixel_rgb(bare, int(vp.x() * dpr), int(vp.y() * dpr))
        assert a != b


def test_light_theme_screenshot(window, qtbot, tmp_path):  # noqa: F811
    from app.theme import colors
    from core.demo import make_demo_project

    root = make_demo_project(tmp_path / "demo")
    window.set_theme("light")
    assert colors()["bg"] == "#f5f6f8"
    assert window.open_project(root)
    window.step(+3)
    wait_image(qtbot, window)
    assert window.doc.image_path.name == "batch00_0003.jpg"
    screenshot(window, "skeleton_demo_light")
    window.set_theme("dark")


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "app", "--version"], check=False, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    from app import __version__

    assert out.returncode == 0
    assert out.stdout.strip() == f"dfine-studio {__version__}"
