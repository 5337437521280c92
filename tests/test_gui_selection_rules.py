"""The editor edits only what the person selected (#32): Del/Backspace, H and the lock.

Each test reproduces a defect seen with the real window: Del deleting a vertex of an
unselected shape, or with nothing selected; H-then-Del deleting a hidden instance; H with
nothing selected hiding everything; Del on a box corner doing nothing."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, wait_image, window  # noqa: F401
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from core.annotation import ImageAnnotation, Instance

BOX = (20.0, 20.0, 100.0, 100.0)
TRIANGLE = np.array([[150.0, 40.0], [250.0, 40.0], [200.0, 150.0]])


def vp(win, x: float, y: float) -> QPoint:
    return win.canvas.mapFromScene(float(x), float(y))


@pytest.fixture
def opened(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=2)
    for path in project.image_paths():
        project.save_annotation(ImageAnnotation(path, 320, 240, [
            Instance(0, box=BOX), Instance(1, polygons=[TRIANGLE.copy()])]))
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    qtbot.waitUntil(lambda: window.canvas.hasFocus())
    return window


def press(win, k, mods=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.keyClick(win.canvas, k, mods)


def hover(win, x: float, y: float) -> None:
    # via another point: Qt drops a move to where the (test) pointer already is
    QTest.mouseMove(win.canvas.viewport(), vp(win, x + 37, y + 23))
    QTest.mouseMove(win.canvas.viewport(), vp(win, x, y))


@pytest.mark.parametrize("k", [Qt.Key.Key_Delete, Qt.Key.Key_Backspace])
def test_del_with_nothing_selected_on_a_vertex_changes_nothing(opened, k):
    win = opened
    hover(win, 200, 150)  # the triangle's tip
    press(win, k)
    assert win.doc.undo_stack.count() == 0 and len(win.doc.instances) == 2
    np.testing.assert_allclose(win.doc.instances[1].polygons[0], TRIANGLE, atol=1e-3)  # as saved (6 decimals)
    assert "Nothing selected" in win.statusBar().currentMessage()


def test_del_on_the_highlighted_vertex_of_the_selected_polygon_deletes_that_vertex(opened):
    win = opened
    win.canvas.set_selection([1])
    hover(win, 200, 150)
    assert win.canvas._hover is not None and win.canvas._hover[0] == 1  # highlighted handle
    press(win, Qt.Key.Key_Backspace)
    # a triangle keeps its 3 vertices: the vertex stays, the status says why, nothing else moves
    assert len(win.doc.instances[1].polygons[0]) == 3 and "keeps at least 3" in win.statusBar().currentMessage()


def test_hidden_instances_leave_the_selection_and_are_never_deleted(opened):
    win = opened
    win.canvas.set_selection([0])
    press(win, Qt.Key.Key_H)
    assert win.doc.is_hidden(0) and win.canvas.selected == []
    press(win, Qt.Key.Key_Delete)
    assert len(win.doc.instances) == 2 and win.doc.undo_stack.count() == 0
    win.canvas.set_selection([0, 1])  # a hidden one cannot be selected, even by code
    assert win.canvas.selected == [1]
    press(win, Qt.Key.Key_2)  # relabels only what is selected and shown
    assert [i.class_id for i in win.doc.instances] == [0, 1]
    # H with nothing selected hides nothing: it shows the hidden ones again
    win.canvas.set_selection([])
    press(win, Qt.Key.Key_H)
    assert not win.doc.is_hidden(0) and not win.doc.is_hidden(1)
    press(win, Qt.Key.Key_H)
    assert not win.doc.is_hidden(0) and not win.doc.is_hidden(1)
    assert "nothing is hidden" in win.statusBar().currentMessage()


def test_del_on_a_box_corner_deletes_the_selected_box_as_anywhere_on_it(opened):
    win = opened
    win.canvas.set_selection([0])
    hover(win, 100, 100)  # the bottom-right corner handle
    press(win, Qt.Key.Key_Delete)
    assert len(win.doc.instances) == 1 and not win.doc.instances[0].is_box
    win.doc.undo_stack.undo()
    assert win.doc.instances[0].is_box and not win.doc.is_hidden(0)


def test_locked_instances_are_shown_but_never_selected_or_edited(opened, qtbot):
    win = opened
    win.canvas.set_selection([1])
    press(win, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.is_locked(1) and win.canvas.selected == []
    QTest.mouseClick(win.canvas.viewport(), Qt.MouseButton.LeftButton, pos=vp(win, 200, 80))
    assert win.canvas.selected == []  # a click on it selects nothing
    press(win, Qt.Key.Key_3)
    press(win, Qt.Key.Key_Delete)
    assert [i.class_id for i in win.doc.instances] == [0, 1] and win.doc.undo_stack.count() == 0
    assert "(locked)" in dict((i, t) for i, t, _ in win.canvas.name_anchors())[1]
    # Ctrl+L with nothing selected unlocks; then it can be selected and deleted
    press(win, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert not win.doc.is_locked(1)
    QTest.mouseClick(win.canvas.viewport(), Qt.MouseButton.LeftButton, pos=vp(win, 200, 80))
    assert win.canvas.selected == [1]
    press(win, Qt.Key.Key_Delete)
    assert len(win.doc.instances) == 1


def test_hiding_from_the_instance_list_drops_the_selection(opened):
    win = opened
    win.canvas.set_selection([0, 1])
    win._toggle_visibility(1, True)
    assert win.canvas.selected == [0]
