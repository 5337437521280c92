"""Brush / eraser on the selected instance's mask, converted back to polygons with holes and parts
kept, one undoable step each (core.mask_edit + the editor)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import Qt
from test_gui_editor import drag, key, vp

from app import commands
from app.canvas import Tool
from core.annotation import Instance
from core.mask_edit import instance_mask, paint_stroke


def test_paint_stroke_disc_and_line():
    m = np.zeros((40, 40), bool)
    disc = paint_stroke(m, [(20.5, 20.5)], 3.0, True)
    assert disc.sum() == 29 and disc[20, 20] and not disc[20, 24]  # centres within 3 px of (20.5, 20.5)
    line = paint_stroke(m, [(5.5, 10.5), (30.5, 10.5)], 2.0, True)
    assert line[10, 3:33].all() and not line[10, 2] and not line[13, 15] and line[:, 15].sum() == 5
    full = np.ones((40, 40), bool)
    assert (~paint_stroke(full, [(20.5, 20.5)], 3.0, False)).sum() == disc.sum()
    assert not m.any()  # the input is not modified
    with pytest.raises(ValueError, match="radius must be positive"):
        paint_stroke(m, [(1, 1)], 0.0, True)


@pytest.fixture
def boxed(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=2)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    doc = window.doc
    doc.undo_stack.push(commands.AddInstance(doc, Instance(class_id=2, box=(60, 60, 160, 140)), 0))
    window.canvas.set_selection([0])
    return window, project


def test_eraser_makes_a_hole_then_splits_brush_extends_undo_restores(boxed, qtbot):
    win, _ = boxed
    start = win.doc.instances[0]
    holed = win.apply_stroke([(110.0, 100.0)], 10.0, erase=True)
    assert len(holed.polygons) == 1 and len(holed.holes) == 1 and holed.class_id == 2
    assert holed.source == "human"
    assert holed.area() == pytest.approx(100 * 80 - np.pi * 100, rel=0.03)
    split = win.apply_stroke([(110.0, 50.0), (110.0, 150.0)], 5.0, erase=True)
    assert len(split.polygons) == 2
    xs = sorted(p[:, 0].max() for p in split.polygons)
    assert xs[0] == pytest.approx(105, abs=1.01)  # the left part ends at the stroke's edge
    grown = win.apply_stroke([(150.0, 100.0), (200.0, 100.0)], 6.0, erase=False)
    assert grown.bbox()[2] == pytest.approx(206, abs=1.01)
    screenshot(win, "brush_eraser")
    assert [win.doc.undo_stack.text(k) for k in range(1, 4)] == ["Erase", "Erase", "Brush"]
    for _ in range(3):
        key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.instances[0] is start


def test_brush_tool_by_mouse_and_guards(boxed, qtbot):
    win, _ = boxed
    key(win, Qt.Key.Key_B)
    assert win.canvas.tool == Tool.BRUSH
    r = win.canvas.brush_radius()
    assert r == pytest.approx(win.canvas.brush_px / win.canvas.scale_factor())
    key(win, Qt.Key.Key_BracketRight)
    assert win.canvas.brush_radius() == pytest.approx(r * 1.25)
    drag(win, vp(win, 150, 100), vp(win, 220, 100))
    inst = win.doc.instances[0]
    assert win.doc.undo_stack.text(win.doc.undo_stack.count() - 1) == "Brush"
    assert inst.bbox()[2] > 220 and not inst.is_box
    # eraser with nothing selected: a message, no change; brush with nothing selected: a new instance
    win.canvas.set_selection([])
    key(win, Qt.Key.Key_E)
    n = win.doc.undo_stack.count()
    drag(win, vp(win, 100, 100), vp(win, 120, 100))
    assert win.doc.undo_stack.count() == n and "select the instance" in win.statusBar().currentMessage()
    key(win, Qt.Key.Key_B)
    drag(win, vp(win, 260, 40), vp(win, 280, 60))
    assert len(win.doc.instances) == 2 and win.doc.instances[1].class_id == win.current_class
    # erasing everything is refused (Del deletes)
    win.canvas.set_selection([1])
    assert win.apply_stroke([(270.0, 50.0)], 60.0, erase=True) is None
    assert "press Del" in win.statusBar().currentMessage()
    m = instance_mask(win.doc.instances[1], 320, 240)
    assert m.sum() > 0
