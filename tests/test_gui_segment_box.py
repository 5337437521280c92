"""One-click masks in the editor: GrabCut box -> model-made polygon, refine with clicks (undoable),
and "segment with the project's model inside this box"."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_gui_editor import click, drag, key, vp
from test_gui_prelabel import FakePredictor

from app.canvas import Tool
from core.data.dataset import rasterize_instance
from core.grabcut import mask_iou


@pytest.fixture
def opened(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=2)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    return window, project


def square_mask() -> np.ndarray:  # make_project draws a light square at (80, 60)-(160, 120)
    m = np.zeros((240, 320), bool)
    m[60:121, 80:161] = True
    return m


def test_grabcut_tool_box_gives_model_polygon_and_clicks_refine_undoably(opened, qtbot):
    win, _ = opened
    key(win, Qt.Key.Key_2)
    key(win, Qt.Key.Key_G)
    assert win.canvas.tool == Tool.GRABCUT
    drag(win, vp(win, 66, 48), vp(win, 175, 134))
    assert len(win.doc.instances) == 1
    inst = win.doc.instances[0]
    assert inst.source == "model" and inst.class_id == 1 and not inst.is_box
    assert mask_iou(rasterize_instance(inst, 320, 240).astype(bool), square_mask()) >= 0.95
    assert win.canvas.selected == [0] and "model" in win.instance_panel.list.item(0).text()
    screenshot(win, "grabcut_result")
    # a click in the tool refines (positive); right click is a negative point; each one undoable
    n = win.doc.undo_stack.count()
    click(win, vp(win, 120, 90))
    assert win.doc.undo_stack.count() == n + 1 and win.doc.undo_stack.text(n) == "Refine GrabCut"
    assert win.canvas.prompt_points and win.canvas.prompt_points[0][2] is True
    QTest.mouseClick(win.canvas.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier,
                     vp(win, 100, 70))  # background inside the square's top-left: it is cut out
    refined = win.doc.instances[0]
    assert win.doc.undo_stack.count() == n + 2
    assert [p[2] for p in win.canvas.prompt_points] == [True, False]
    m = rasterize_instance(refined, 320, 240).astype(bool)
    assert not m[70, 100] and m[100, 140]
    screenshot(win, "grabcut_refined")
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.instances[0] is inst
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.instances == []
    # a click without a GrabCut result asks for a box first
    click(win, vp(win, 120, 90))
    assert "drag a box" in win.statusBar().currentMessage()


def test_model_box_keeps_the_models_mask_inside_the_box(opened, qtbot):
    win, _ = opened
    fake = FakePredictor()  # one square mask [60,140)x[100,180), class "dog"
    task = win.model_box((50.0, 90.0, 150.0, 150.0), predictor=fake)
    assert task is not None
    qtbot.waitUntil(lambda: len(win.doc.instances) == 1, timeout=10_000)
    inst = win.doc.instances[0]
    assert inst.source == "model" and inst.class_id == 1 and inst.score == pytest.approx(0.77)
    x0, y0, x1, y1 = inst.bbox()
    # the mask's pixels [60, 140) x [100, 150) as areas, clipped at the drawn box's bottom (150)
    assert (x0, y0, x1, y1) == pytest.approx((60.0, 100.0, 140.0, 150.0), abs=1e-9)
    # a box the model has nothing in: a message, no instance
    qtbot.waitUntil(lambda: win.task is None, timeout=5000)
    win.model_box((200.0, 10.0, 300.0, 60.0), predictor=fake)
    qtbot.waitUntil(lambda: win.task is None, timeout=10_000)
    assert len(win.doc.instances) == 1
    assert "no object in this box" in win.statusBar().currentMessage()


def test_model_box_without_a_model_says_so_and_tool_routes_boxes(opened, qtbot, monkeypatch):
    win, project = opened
    assert win.project_model() is None
    key(win, Qt.Key.Key_M)
    assert win.canvas.tool == Tool.MODEL_BOX
    drag(win, vp(win, 50, 50), vp(win, 150, 150))
    assert win.doc.instances == [] and "No model yet" in win.statusBar().currentMessage()
    run = project.root / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"x")
    assert win.project_model() == run / "best.pt"
    seen = []
    monkeypatch.setattr(win, "model_box", lambda box, predictor=None: seen.append(box))
    drag(win, vp(win, 50, 50), vp(win, 150, 150))
    assert len(seen) == 1 and seen[0][0] == pytest.approx(win.canvas.mapToScene(vp(win, 50, 50)).x())
