"""Intelligent scissors in the editor (tool I, issue #31): anchors snap the outline to the image's
edges, the pointer previews the snapped path, each anchor is one undo step while drawing, and
closing makes an editable polygon of the current class (the person's, not a proposal)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_gui_editor import click, key, vp
from test_gui_segment_box import opened  # noqa: F401

from app.canvas import Tool
from core.data.dataset import rasterize_instance
from core.grabcut import mask_iou

# make_project draws a light square filling pixels 80..160 x 60..120 (edges at x=80/161, y=60/121)
X0, Y0, X1, Y1 = 80, 60, 161, 121




def edge_distance(pts: np.ndarray) -> np.ndarray:
    """Distance of each point to the square's outline (pixel-centre paths sit <= 1 px inside/out)."""
    x, y = pts[:, 0], pts[:, 1]
    inside = (x >= X0) & (x <= X1) & (y >= Y0) & (y <= Y1)
    d_in = np.minimum.reduce([x - X0, X1 - x, y - Y0, Y1 - y])
    dx = np.maximum.reduce([X0 - x, np.zeros_like(x), x - X1])
    dy = np.maximum.reduce([Y0 - y, np.zeros_like(y), y - Y1])
    return np.where(inside, d_in, np.hypot(dx, dy))


def wait_ready(qtbot, win) -> None:
    qtbot.waitUntil(lambda: win.scissors.ready, timeout=10_000)


def test_scissors_snaps_to_the_square_with_preview_undo_per_anchor_and_close(opened, qtbot, monkeypatch):  # noqa: F811
    from core.scissors import Scissors

    threads: list[str] = []
    real_prepare = Scissors.prepare

    def prepare(self):
        threads.append(threading.current_thread().name)
        return real_prepare(self)

    monkeypatch.setattr(Scissors, "prepare", prepare)
    win, _ = opened
    key(win, Qt.Key.Key_3)
    key(win, Qt.Key.Key_I)
    assert win.canvas.tool == Tool.SCISSORS and win.act_scissors.isChecked()
    n_undo = win.doc.undo_stack.count()
    # anchors a few px off the corners: the paths between them must follow the square's edges
    corners = [(83, 58), (163, 63), (158, 123), (78, 118)]
    for x, y in corners[:2]:
        click(win, vp(win, x, y))
        assert win.scissors.anchors[-1] == pytest.approx(win.canvas.mapToScene(vp(win, x, y)).toTuple(), abs=0)
        wait_ready(qtbot, win)
    assert threads and all(t != threading.main_thread().name for t in threads)  # maps off the GUI thread
    # live preview: the pointer at the third corner shows the snapped path along the right edge
    QTest.mouseMove(win.canvas.viewport(), vp(win, 158, 123))
    path = win.scissors.preview(158.5, 123.5)
    assert len(path) > 10 and np.percentile(edge_distance(path), 90) <= 2.0
    screenshot(win, "scissors_preview")
    for x, y in corners[2:]:
        click(win, vp(win, x, y))
        wait_ready(qtbot, win)
    assert len(win.scissors.anchors) == 4 and win.doc.undo_stack.count() == n_undo  # drafts aren't edits
    # Ctrl+Z while drawing: one anchor per press, the document untouched
    assert win.act_undo.isEnabled() and "scissors" in win.act_undo.text()
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(win.scissors.anchors) == 3
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(win.scissors.anchors) == 2 and win.doc.instances == []
    for x, y in corners[2:]:
        click(win, vp(win, x, y))
        wait_ready(qtbot, win)
    click(win, vp(win, *corners[0]))  # on the first anchor: closes
    qtbot.waitUntil(lambda: len(win.doc.instances) == 1, timeout=10_000)
    inst = win.doc.instances[0]
    assert inst.class_id == 2 and inst.source != "model" and not inst.is_box
    verts = np.vstack(inst.polygons)
    assert np.all(edge_distance(verts) <= 4.0), verts  # the anchors' own offsets are <= ~3.6 px
    assert np.median(edge_distance(verts)) <= 1.0
    truth = np.zeros((240, 320), bool)
    truth[Y0:Y1, X0:X1] = True
    assert mask_iou(rasterize_instance(inst, 320, 240).astype(bool), truth) >= 0.93
    assert win.scissors.anchors == [] and win.canvas.selected == [0]
    screenshot(win, "scissors_closed")
    # after closing, Ctrl+Z undoes the polygon (one step), as for any drawn shape
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.instances == []


def test_scissors_enter_closes_esc_cancels_backspace_pops(opened, qtbot):  # noqa: F811
    win, _ = opened
    key(win, Qt.Key.Key_I)
    for x, y in [(83, 58), (163, 63), (158, 123)]:
        click(win, vp(win, x, y))
    # clicks made while maps are still being built are queued, never lost
    wait_ready(qtbot, win)
    assert len(win.scissors.anchors) == 3 and len(win.scissors.engine.anchors) == 3
    key(win, Qt.Key.Key_Backspace)
    assert len(win.scissors.anchors) == 2
    key(win, Qt.Key.Key_Escape)
    assert win.scissors.anchors == [] and win.canvas.tool == Tool.SCISSORS and win.doc.instances == []
    for x, y in [(83, 58), (163, 63), (158, 123), (78, 118)]:
        click(win, vp(win, x, y))
    key(win, Qt.Key.Key_Return)  # closes as soon as the last map is ready
    qtbot.waitUntil(lambda: len(win.doc.instances) == 1, timeout=10_000)
    assert win.doc.instances[0].class_id == 0
    # a switch of image drops the draft and the next image gets its own edge features
    for x, y in [(83, 58), (163, 63)]:
        click(win, vp(win, x, y))
    key(win, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: win.doc.image_path.name == "img_001.png", timeout=10_000)
    assert win.scissors.anchors == []
    wait_image(qtbot, win)
    win.canvas.setFocus()
    click(win, vp(win, 83, 58))
    wait_ready(qtbot, win)
    assert win.scissors.engine is not None and win.scissors._key == win.doc.image_path


def test_scissors_on_a_real_photo_in_the_window(window, qtbot, tmp_path, coco8_dir):  # noqa: F811
    """coco8-seg 000000000042.jpg (read from the shared folder, copied only into the test's tmp
    project): 12 clicks on the labelled outline, Enter -> a polygon near the object."""
    import shutil

    from shapely.geometry import Polygon

    from core.project import Project

    src = coco8_dir / "images" / "val" / "000000000042.jpg"
    if not src.is_file():
        pytest.skip("coco8-seg not in the shared folder")
    project = Project.create(tmp_path / "photo", ["object"], "segment")
    shutil.copy(src, project.image_dir / src.name)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.canvas.setFocus()
    w, h = window.doc.ann.width, window.doc.ann.height
    line = (coco8_dir / "labels" / "val" / "000000000042.txt").read_text().splitlines()[0].split()
    ring = np.array(line[1:], float).reshape(-1, 2) * (w, h)
    truth = Polygon(ring).buffer(0)
    key(window, Qt.Key.Key_I)
    for x, y in ring[::max(1, len(ring) // 12)]:
        click(window, vp(window, x, y))
    qtbot.waitUntil(lambda: window.scissors.ready, timeout=20_000)
    QTest.mouseMove(window.canvas.viewport(), vp(window, *ring[0]))
    window.canvas.viewport().repaint()
    screenshot(window, "scissors_photo_drawing")
    key(window, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(window.doc.instances) == 1, timeout=20_000)
    poly = Polygon(window.doc.instances[0].polygons[0])
    assert poly.is_valid and poly.intersection(truth).area / poly.union(truth).area >= 0.8
    # far more vertices than clicks: the outline follows the photo's edges between the anchors
    assert len(window.doc.instances[0].polygons[0]) > 2 * 12
    screenshot(window, "scissors_photo_closed")


def test_scissors_preview_is_straight_and_clicks_queue_while_a_map_is_built(opened, qtbot, monkeypatch):  # noqa: F811
    """The GUI never waits for an anchor's map: until the worker has it, the preview is the straight
    segment and further clicks are kept (and drawn straight), then snapped in order."""
    from core.scissors import Scissors

    gate = threading.Event()
    real_prepare = Scissors.prepare

    def slow_prepare(self):
        assert threading.current_thread() is not threading.main_thread()
        gate.wait(10)
        return real_prepare(self)

    monkeypatch.setattr(Scissors, "prepare", slow_prepare)
    win, _ = opened
    key(win, Qt.Key.Key_I)
    qtbot.waitUntil(lambda: win.scissors.engine is not None, timeout=10_000)
    click(win, vp(win, 83, 58))
    click(win, vp(win, 163, 63))  # while the first anchor's map is still being built
    sc = win.scissors
    assert not sc.ready and len(sc.anchors) == 2 and len(sc.engine.anchors) == 1
    assert len(sc.outline()) == 2  # drawn straight for now
    last = sc.anchors[-1]
    assert sc.preview(158.5, 123.5).tolist() == [list(last), [158.5, 123.5]]
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo works while the worker runs
    assert len(sc.anchors) == 1
    click(win, vp(win, 163, 63))
    gate.set()
    wait_ready(qtbot, win)
    assert sc.engine.anchors == sc.anchors and len(sc.outline()) > 50  # snapped along the top edge
    assert np.percentile(edge_distance(sc.outline()), 90) <= 2.0
