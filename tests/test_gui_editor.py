"""Editing with simulated mouse and keyboard; the label files on disk are checked.

Coordinates: a click lands on a viewport pixel; the expected image coordinate is
``canvas.mapToScene`` of that pixel (what the canvas itself computes), so the
assertions are exact up to the YOLO file's 6 decimals (1e-6 x 320 px).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from app.canvas import Tool

TOL = 1e-6 * 320 * 1.01  # one unit of the 6th decimal of a normalised coordinate, in px


def vp(win, x: float, y: float) -> QPoint:
    """Viewport pixel showing image point (x, y)."""
    return win.canvas.mapFromScene(float(x), float(y))


def scene_of(win, p: QPoint) -> tuple[float, float]:
    s = win.canvas.mapToScene(p)
    return s.x(), s.y()


def key(win, k, mods=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.keyClick(win.canvas, k, mods)


def click(win, p: QPoint, mods=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.mouseClick(win.canvas.viewport(), Qt.MouseButton.LeftButton, mods, p)


def drag(win, a: QPoint, b: QPoint, steps: int = 4) -> None:
    view = win.canvas.viewport()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for k in range(1, steps + 1):
        QTest.mouseMove(view, QPoint(a.x() + (b.x() - a.x()) * k // steps, a.y() + (b.y() - a.y()) * k // steps))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def read_rows(path) -> list[list[float]]:
    return [[float(t) for t in line.split()] for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def opened(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=3)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    return window, project


def draw_polygon(win, pts_img) -> list[tuple[float, float]]:
    """Draw with clicks; close by clicking the first vertex. Returns the expected vertices."""
    key(win, Qt.Key.Key_P)
    assert win.canvas.tool == Tool.POLYGON
    clicks = [vp(win, x, y) for x, y in pts_img]
    for p in clicks:
        click(win, p)
    click(win, clicks[0])
    return [scene_of(win, p) for p in clicks]


def test_draw_edit_undo_switch_writes_expected_files(opened, qtbot):
    win, project = opened
    img0, img1 = project.image_paths()[:2]
    label0 = project.label_path(img0)
    W, H = 320, 240

    # --- polygon (class 1 = "cat", id 0), closed by clicking the first vertex
    expected_poly = draw_polygon(win, [(40, 40), (140, 50), (150, 150), (50, 140)])
    assert len(win.doc.instances) == 1
    inst = win.doc.instances[0]
    assert inst.class_id == 0 and not inst.is_box
    np.testing.assert_allclose(inst.polygons[0], expected_poly, atol=1e-9)
    assert win.isWindowModified()
    assert win.canvas.selected == [0]
    screenshot(win, "editor_polygon_selected")

    # --- box with class 2 ("dog", id 1): Esc back to select, Esc deselects, key 2 picks the class
    key(win, Qt.Key.Key_Escape)
    assert win.canvas.tool == Tool.SELECT and win.canvas.selected == [0]
    key(win, Qt.Key.Key_Escape)
    assert win.canvas.selected == []
    key(win, Qt.Key.Key_2)
    assert win.current_class == 1
    assert win.doc.instances[0].class_id == 0  # nothing selected: no relabel
    key(win, Qt.Key.Key_R)
    assert win.canvas.tool == Tool.BOX
    a, b = vp(win, 200, 60), vp(win, 280, 200)
    drag(win, a, b)
    assert len(win.doc.instances) == 2
    (ax, ay), (bx, by) = scene_of(win, a), scene_of(win, b)
    box = win.doc.instances[1]
    assert box.is_box and box.class_id == 1
    np.testing.assert_allclose(box.box, (ax, ay, bx, by), atol=1e-9)

    # --- edit a vertex of the polygon: select tool, select it, drag vertex 2
    key(win, Qt.Key.Key_V)
    assert win.canvas.tool == Tool.SELECT
    click(win, vp(win, 90, 90))  # inside the polygon
    assert win.canvas.selected == [0]
    v2 = vp(win, *expected_poly[2])
    target = vp(win, 170, 180)
    drag(win, v2, target)
    moved = list(expected_poly)
    moved[2] = scene_of(win, target)
    np.testing.assert_allclose(win.doc.instances[0].polygons[0], moved, atol=1e-9)
    screenshot(win, "editor_vertex_moved")

    # --- undo the vertex move; redo; undo again
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_allclose(win.doc.instances[0].polygons[0], expected_poly, atol=1e-9)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_allclose(win.doc.instances[0].polygons[0], moved, atol=1e-9)
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not label0.exists()  # nothing saved yet (idle timer is long in tests)

    # --- switch image (D): autosave writes image 0's labels
    key(win, Qt.Key.Key_D)
    assert win.doc.image_path == img1
    assert label0.exists()
    rows = read_rows(label0)
    assert len(rows) == 2
    assert rows[0][0] == 0 and len(rows[0]) == 1 + 8
    np.testing.assert_allclose(np.array(rows[0][1:]).reshape(-1, 2) * [W, H], expected_poly, atol=TOL)
    # a box in a file that also has polygons is stored as its 4 corners (Ultralytics reads a
    # file with any polygon row as all-polygons) and marked a box in the sidecar
    assert rows[1][0] == 1 and len(rows[1]) == 1 + 8
    np.testing.assert_allclose(np.array(rows[1][1:]).reshape(-1, 2) * [W, H],
                               [(ax, ay), (bx, ay), (bx, by), (ax, by)], atol=TOL)
    reloaded = project.load_annotation(img0)
    assert reloaded.instances[1].is_box
    np.testing.assert_allclose(reloaded.instances[1].box, (ax, ay, bx, by), atol=TOL)
    assert not win.isWindowModified()
    assert not project.label_path(img1).exists()  # just looking does not write

    # --- back (A): undo history survived the switch; undo the box; switch away saves again
    key(win, Qt.Key.Key_A)
    assert win.doc.image_path == img0
    assert len(win.doc.instances) == 2
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(win.doc.instances) == 1
    assert win.isWindowModified()
    key(win, Qt.Key.Key_D)
    rows = read_rows(label0)
    assert len(rows) == 1 and rows[0][0] == 0
    ann = project.load_annotation(img0)
    np.testing.assert_allclose(ann.instances[0].polygons[0], expected_poly, atol=TOL)


def test_close_polygon_with_enter_insert_delete_vertex_class_and_delete(opened, qtbot):
    win, project = opened
    img0 = project.image_paths()[0]
    key(win, Qt.Key.Key_P)
    pts = [(60, 60), (160, 60), (160, 160), (60, 160)]
    for x, y in pts:
        click(win, vp(win, x, y))
    QTest.mouseMove(win.canvas.viewport(), vp(win, 110, 190))
    screenshot(win, "editor_polygon_drawing")  # rubber band to the cursor, crosshair, first vertex
    click(win, vp(win, 120, 200))  # a stray point, removed with Backspace
    key(win, Qt.Key.Key_Backspace)
    assert len(win.canvas._draft) == 4
    key(win, Qt.Key.Key_Return)
    assert len(win.doc.instances) == 1 and len(win.doc.instances[0].polygons[0]) == 4
    poly = win.doc.instances[0].polygons[0].copy()
    key(win, Qt.Key.Key_V)
    click(win, vp(win, 100, 100))
    # insert: double-click the middle of the top edge
    mid = vp(win, (poly[0][0] + poly[1][0]) / 2, poly[0][1])
    QTest.mouseDClick(win.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, mid)
    after = win.doc.instances[0].polygons[0]
    assert len(after) == 5
    mx, _ = scene_of(win, mid)
    assert abs(after[1][0] - mx) < 1.0 and abs(after[1][1] - poly[0][1]) < 1e-9  # projected on the edge
    # delete it again with Shift+click
    click(win, vp(win, *after[1]), Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_allclose(win.doc.instances[0].polygons[0], poly, atol=1e-9)
    # relabel the selected instance with key 3
    key(win, Qt.Key.Key_3)
    assert win.doc.instances[0].class_id == 2
    # hide / show (view state only, not an edit)
    n_undo = win.doc.undo_stack.count()
    key(win, Qt.Key.Key_H)
    assert win.doc.is_hidden(0) and not win.canvas.items[0].isVisible()
    assert win.canvas.selected == []  # hiding drops the selection (#32)
    key(win, Qt.Key.Key_H)  # nothing selected: shows the hidden ones again
    assert not win.doc.is_hidden(0) and win.canvas.items[0].isVisible()
    assert win.doc.undo_stack.count() == n_undo
    click(win, vp(win, 110, 110))  # select it again
    # Ctrl+S writes class 2
    key(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert read_rows(project.label_path(img0))[0][0] == 2
    # Del deletes the selected instance; Ctrl+S writes an empty (labelled, no objects) file
    key(win, Qt.Key.Key_Delete)
    assert win.doc.instances == []
    key(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert read_rows(project.label_path(img0)) == []


def test_move_instance_and_box_corner(opened, qtbot):
    win, _ = opened
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 100, 80), vp(win, 200, 160))
    x0, y0, x1, y1 = win.doc.instances[0].box
    key(win, Qt.Key.Key_V)
    # move the whole box by dragging its inside
    a, b = vp(win, 150, 120), vp(win, 170, 100)
    drag(win, a, b)
    (ax, ay), (bx, by) = scene_of(win, a), scene_of(win, b)
    np.testing.assert_allclose(win.doc.instances[0].box, (x0 + bx - ax, y0 + by - ay, x1 + bx - ax, y1 + by - ay),
                               atol=1e-9)
    moved = win.doc.instances[0].box
    # drag the bottom-right corner: resizes against the top-left corner
    c = vp(win, moved[2], moved[3])
    t = vp(win, 260, 220)
    drag(win, c, t)
    tx, ty = scene_of(win, t)
    np.testing.assert_allclose(win.doc.instances[0].box, (moved[0], moved[1], tx, ty), atol=1e-9)
    # drag beyond the image: clamped to the image border
    drag(win, vp(win, tx, ty), vp(win, 400, 300))
    assert win.doc.instances[0].box[2] == pytest.approx(320) and win.doc.instances[0].box[3] == pytest.approx(240)


def test_external_change_is_reloaded_not_overwritten(opened, qtbot):
    win, project = opened
    img0 = project.image_paths()[0]
    label0 = project.label_path(img0)
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 20, 20), vp(win, 100, 100))
    key(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert len(read_rows(label0)) == 1
    # another program rewrites the file (different content, later mtime)
    time.sleep(0.01)
    other = "2 0.500000 0.500000 0.250000 0.250000\n1 0.100000 0.100000 0.050000 0.050000\n"
    label0.write_text(other)
    qtbot.waitUntil(lambda: len(win.doc.instances) == 2, timeout=5000)
    assert [i.class_id for i in win.doc.instances] == [2, 1]
    assert label0.read_text() == other
    # a local edit made *before* noticing a change must not overwrite it either:
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 200, 150), vp(win, 260, 200))
    assert len(win.doc.instances) == 3
    third = "0 0.200000 0.200000 0.100000 0.100000\n"
    win.autosaver.watcher.blockSignals(True)  # simulate a change the watcher missed
    time.sleep(0.01)
    label0.write_text(third)
    key(win, Qt.Key.Key_D)  # switching saves... or, here, reloads instead of overwriting
    win.autosaver.watcher.blockSignals(False)
    assert label0.read_text() == third


def test_save_refused_when_another_program_changed_the_class_list(opened, qtbot):
    """The ids on screen were made for the old class list: nothing is written, the edit stays
    on screen (not replaced), the message says why; an append-only change saves normally."""
    from core.project import Project

    win, project = opened
    img0 = project.image_paths()[0]
    label0 = project.label_path(img0)
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 20, 20), vp(win, 100, 100))
    Project.open(project.root).add_class("extra")  # ids unchanged: saving is still right
    key(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert len(read_rows(label0)) == 1
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 200, 150), vp(win, 260, 200))
    failures = []
    win.autosaver.failed.connect(lambda _doc, msg: failures.append(msg))
    Project.open(project.root).rename_class(win.project.class_names[0], "renamed")
    assert not win.autosaver.save_current()
    assert len(read_rows(label0)) == 1 and len(win.doc.instances) == 2 and win.doc.is_dirty()
    assert len(failures) == 1 and "the class list changed since this project was opened" in failures[0]


def test_close_window_saves_unsaved_changes(opened, qtbot):
    win, project = opened
    img0 = project.image_paths()[0]
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 30, 30), vp(win, 90, 70))
    assert win.isWindowModified() and "*" not in win.windowTitle().replace("[*]", "")
    win.close()
    rows = read_rows(project.label_path(img0))
    assert len(rows) == 1 and rows[0][0] == 0


def test_idle_timer_autosaves(opened, qtbot):
    win, project = opened
    win.autosaver.timer.setInterval(100)
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 30, 30), vp(win, 90, 70))
    label = project.label_path(project.image_paths()[0])
    qtbot.waitUntil(label.exists, timeout=3000)
    assert not win.isWindowModified()


def test_filter_search_and_status(opened, qtbot):
    from app.image_list import Status

    win, _ = opened
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 30, 30), vp(win, 90, 70))
    key(win, Qt.Key.Key_D)  # saves image 0
    win.status_filter.setCurrentIndex(win.status_filter.findData(int(Status.LABELLED)))
    assert win.proxy.rowCount() == 1
    win.status_filter.setCurrentIndex(win.status_filter.findData(int(Status.UNLABELLED)))
    assert win.proxy.rowCount() == 2
    win.status_filter.setCurrentIndex(0)
    win.search.setText("002")
    assert win.proxy.rowCount() == 1
    assert win.image_count.text() == "1 of 3 images"


def test_shortcuts_dialog_lists_every_action(window, qtbot):  # noqa: F811
    from app.shortcuts import GESTURES, SHORTCUTS, ShortcutsDialog

    dlg = ShortcutsDialog(window)
    qtbot.addWidget(dlg)
    dlg.show()
    assert dlg.table.rowCount() == len(SHORTCUTS) + len(GESTURES)
    keys = {dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount())}
    for must in ("D", "A", "P", "R", "Ctrl+Z", "Ctrl+Shift+Z, Ctrl+Y", "Ctrl+S", "F", "1 … 9"):
        assert must in keys
    screenshot(dlg, "shortcuts_dialog")


def test_zoom_to_cursor_pan_and_fit(opened, qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    win, _ = opened
    c = win.canvas
    fit_scale = c.scale_factor()
    c.zoom_by(3.0)  # image larger than the view both ways: anchoring is never limited by the scroll range
    cursor = vp(win, 200, 90)
    before = scene_of(win, cursor)
    for _ in range(3):  # wheel up at the cursor
        ev = QWheelEvent(QPointF(cursor), QPointF(c.viewport().mapToGlobal(cursor)), QPoint(0, 0), QPoint(0, 240),
                         Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(c.viewport(), ev)
    assert c.scale_factor() == pytest.approx(fit_scale * 3.0 * 1.0015 ** 720, rel=1e-6)
    after = scene_of(win, cursor)
    px = 1.0 / c.scale_factor()  # one viewport pixel in image pixels (scroll positions are integers)
    assert abs(after[0] - before[0]) <= 3 * px and abs(after[1] - before[1]) <= 3 * px  # point under cursor stays
    # Space + drag pans by the drag distance
    h0, v0 = c.horizontalScrollBar().value(), c.verticalScrollBar().value()
    QTest.keyPress(c, Qt.Key.Key_Space)
    drag(win, QPoint(400, 300), QPoint(340, 260))
    QTest.keyRelease(c, Qt.Key.Key_Space)
    assert (c.horizontalScrollBar().value() - h0, c.verticalScrollBar().value() - v0) == (60, 40)
    assert win.doc.instances == []  # panning drew nothing
    # middle button drag pans too
    h1 = c.horizontalScrollBar().value()
    QTest.mousePress(c.viewport(), Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(300, 300))
    QTest.mouseMove(c.viewport(), QPoint(330, 300))
    QTest.mouseRelease(c.viewport(), Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(330, 300))
    assert c.horizontalScrollBar().value() == h1 - 30
    screenshot(win, "editor_zoomed")
    key(win, Qt.Key.Key_F)
    assert c.scale_factor() == pytest.approx(fit_scale)


def test_switching_never_waits_for_pixels(opened, qtbot):
    """A slow decode (big image) happens in the worker: the switch returns at once with
    the labels, the pixels appear when ready."""
    import threading

    from app.image_cache import load_display_image

    win, project = opened
    gate = threading.Event()

    def slow_loader(task, path, fit_box=None):
        gate.wait(10)
        return load_display_image(task, path, fit_box)

    win.images.loader = slow_loader
    win.images.clear()
    t0 = time.perf_counter()
    key(win, Qt.Key.Key_D)
    assert time.perf_counter() - t0 < 1.0
    assert win.doc.image_path == project.image_paths()[1]
    assert win.canvas.image is None or win.canvas.image.path != win.doc.image_path
    gate.set()
    wait_image(qtbot, win)


def test_instance_list_synced_with_canvas(opened, qtbot):
    win, _ = opened
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 20, 20), vp(win, 80, 80))
    drag(win, vp(win, 150, 100), vp(win, 220, 180))
    lst = win.instance_panel.list
    assert lst.count() == 2 and [it.isSelected() for it in (lst.item(0), lst.item(1))] == [False, True]
    # list -> canvas
    lst.item(1).setSelected(False)
    lst.item(0).setSelected(True)
    assert win.canvas.selected == [0] and win.canvas.items[0].selected
    # canvas -> list
    key(win, Qt.Key.Key_V)
    click(win, vp(win, 180, 140))
    assert [lst.item(k).isSelected() for k in range(2)] == [False, True]
    # unchecking hides on the canvas (view state only)
    lst.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert win.doc.is_hidden(0) and not win.canvas.items[0].isVisible()
    click(win, vp(win, 50, 50))  # a hidden instance cannot be picked
    assert win.canvas.selected == []
    # class change shows in the list text
    win.canvas.set_selection([1])
    key(win, Qt.Key.Key_3)
    assert lst.item(1).text().startswith("2. car")


def test_image_list_keeps_letters_and_navigates_with_arrows(opened, qtbot):
    """A focused list keeps every plain key (type-ahead), so D/A there are letters, not shortcuts;
    the arrow keys move through the images; from the canvas D/A switch images."""
    win, project = opened
    win.image_view.setFocus()
    qtbot.waitUntil(lambda: win.image_view.hasFocus())
    QTest.keyClick(win.image_view, Qt.Key.Key_D)
    assert win.doc.image_path == project.image_paths()[0]
    QTest.keyClick(win.image_view, Qt.Key.Key_Down)
    assert win.doc.image_path == project.image_paths()[1]
    win.canvas.setFocus()
    qtbot.waitUntil(lambda: win.canvas.hasFocus())
    QTest.keyClick(win.canvas, Qt.Key.Key_D)
    assert win.doc.image_path == project.image_paths()[2]
    QTest.keyClick(win.canvas, Qt.Key.Key_A)
    assert win.doc.image_path == project.image_paths()[1]
    # typing in the search box is text, not shortcuts
    win.search.setFocus()
    QTest.keyClicks(win.search, "da")
    assert win.search.text() == "da" and win.doc.image_path == project.image_paths()[1]
