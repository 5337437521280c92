"""Keys never relabel by accident (issue: labeling that never relabels silently).

Rule: a text field or list that has focus keeps every key; canvas shortcuts (tools, class keys,
Del, H, F) act only when the canvas has focus; switching images clears the selection. Each test
reproduces a defect seen with the real window (xdotool) before the fix.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, wait_image, window  # noqa: F401
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from core.annotation import ImageAnnotation, Instance


def vp(win, x: float, y: float) -> QPoint:
    return win.canvas.mapFromScene(float(x), float(y))


def labelled_project(root, n_images: int = 3):
    """Every image has a box (class 2) then a 5-vertex polygon (class 2), saved on disk."""
    project = make_project(root, n_images=n_images)
    for path in project.image_paths():
        poly = np.array([[150, 40], [250, 40], [280, 100], [250, 160], [150, 160]], float)
        project.save_annotation(ImageAnnotation(path, 320, 240, [
            Instance(2, box=(20.0, 20.0, 100.0, 100.0)), Instance(2, polygons=[poly])]))
    return project


@pytest.fixture
def opened(window, qtbot, tmp_path):  # noqa: F811
    project = labelled_project(tmp_path / "proj")
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    return window, project


def classes_on_disk(project, path) -> list[int]:
    return [int(line.split()[0]) for line in project.label_path(path).read_text().splitlines() if line.strip()]


def test_switching_images_clears_the_selection(opened, qtbot):
    """Defect 1: select #2, press D, press 1 -> the next image's #2 was relabelled and saved."""
    win, project = opened
    first, second = project.image_paths()[:2]
    win.canvas.set_selection([1])
    QTest.keyClick(win.canvas, Qt.Key.Key_D)
    assert win.doc.image_path == second
    assert win.canvas.selected == []
    assert win.instance_list.selectedItems() == [] if hasattr(win, "instance_list") else True
    QTest.keyClick(win.canvas, Qt.Key.Key_1)  # picks class 1 for drawing, relabels nothing
    win.save_now()
    assert classes_on_disk(project, second) == [2, 2]
    assert [i.class_id for i in win.doc.instances] == [2, 2]
    # and back: the first image's selection is gone too
    QTest.keyClick(win.canvas, Qt.Key.Key_A)
    assert win.doc.image_path == first and win.canvas.selected == []


def test_search_box_keeps_every_key_even_when_it_filters_the_image_out(opened, qtbot):
    """Defect 2: the first letter filtered the current image out, focus jumped to the canvas and
    the next keys were shortcuts ("zzd" switched image, "196" relabelled the selection)."""
    win, project = opened
    win.canvas.set_selection([1])
    win.search.setFocus()
    qtbot.waitUntil(lambda: win.search.hasFocus())
    # "1" leaves only img_001 in the list: the current image changes under the person's typing
    QTest.keyClicks(win.search, "1zzd196")
    assert win.doc.image_path == project.image_paths()[1]
    assert win.search.text() == "1zzd196"
    assert win.search.hasFocus()
    assert [i.class_id for i in win.doc.instances] == [2, 2]
    win.save_now()
    for path in project.image_paths():
        assert classes_on_disk(project, path) == [2, 2]
    # clearing the search brings the images back without moving focus either
    win.search.clear()
    assert win.search.hasFocus()


def test_class_list_keeps_letter_keys(opened, qtbot):
    """Defect 2 (class list): typing "dog" in the class list switched image."""
    win, project = opened
    shown = win.doc.image_path
    lst = win.class_panel.list
    lst.setFocus()
    qtbot.waitUntil(lambda: lst.hasFocus())
    QTest.keyClicks(lst, "dog")
    assert win.doc.image_path == shown
    assert lst.hasFocus()


@pytest.mark.parametrize("k", [Qt.Key.Key_1, Qt.Key.Key_Delete, Qt.Key.Key_H, Qt.Key.Key_P])
def test_canvas_shortcuts_need_the_canvas_focus(opened, qtbot, k):
    """A focused list or field never turns a key into a canvas edit."""
    win, project = opened
    win.canvas.set_selection([1])
    win.image_view.setFocus()
    qtbot.waitUntil(lambda: win.image_view.hasFocus())
    QTest.keyClick(win.image_view, k)
    assert len(win.doc.instances) == 2 and [i.class_id for i in win.doc.instances] == [2, 2]
    assert not win.doc.is_hidden(1) and win.doc.undo_stack.count() == 0
    # the same key on the canvas acts
    win.canvas.setFocus()
    qtbot.waitUntil(lambda: win.canvas.hasFocus())
    QTest.keyClick(win.canvas, k)
    changed = (win.doc.undo_stack.count() > 0 or win.doc.is_hidden(1)
               or win.canvas.tool.name == "POLYGON")
    assert changed


def test_delete_acts_on_the_selection_not_on_an_unselected_vertex_under_the_pointer(opened, qtbot):
    """#32: Del with the pointer on a vertex of an unselected polygon edited a shape the person
    had not selected. Now Del deletes the selection; the polygon is untouched."""
    win, project = opened
    win.canvas.set_selection([0])  # the box
    before = win.doc.instances[1].polygons[0].copy()
    QTest.mouseMove(win.canvas.viewport(), vp(win, 280, 100))  # a vertex of the (unselected) polygon
    QTest.keyClick(win.canvas, Qt.Key.Key_Delete)
    assert len(win.doc.instances) == 1 and not win.doc.instances[0].is_box  # the selected box went
    np.testing.assert_array_equal(win.doc.instances[0].polygons[0], before)
