"""Per-image done/verified mark (Y) stored in the project, and the list filters: not done,
done, has model proposals, has class X."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json

import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_gui_editor import drag, key, vp
from test_gui_prelabel import FakePredictor

from core.image_state import state_path


@pytest.fixture
def opened(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=3)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    return window, project


def shown(win) -> list[str]:
    return [win.proxy.index(r, 0).data() for r in range(win.proxy.rowCount())]


def use_filter(win, data) -> None:
    i = win.status_filter.findData(data)
    assert i >= 0, data
    win.status_filter.setCurrentIndex(i)


def test_done_mark_is_stored_filtered_and_survives_reopen(opened, qtbot):
    win, project = opened
    img0 = project.image_paths()[0]
    key(win, Qt.Key.Key_Y)
    assert win.list_model.done == {img0}
    assert json.loads(state_path(project.root).read_text()) == {"version": 1, "done": ["img_000.png"]}
    deco = win.list_model.data(win.list_model.index(0), Qt.ItemDataRole.DecorationRole)
    assert deco.cacheKey() == win.list_model._done_icon.cacheKey()
    assert win.image_count.text() == "3 images · 1 done"
    use_filter(win, "not_done")
    assert shown(win) == ["img_001.png", "img_002.png"]
    use_filter(win, "done")
    assert shown(win) == ["img_000.png"]
    screenshot(win, "list_filter_done")
    use_filter(win, None)
    # the mark is project data: a reopened project shows it
    assert win.open_project(project.root)
    wait_image(qtbot, win)
    assert win.list_model.done == {img0}
    # Y typed into the search box is text, not a mark
    win.search.setFocus()
    QTest.keyClicks(win.search, "y")
    assert win.search.text() == "y" and win.list_model.done == {img0}
    win.search.clear()
    win.activateWindow()
    win.canvas.setFocus()
    key(win, Qt.Key.Key_Y)  # again: not done
    assert win.list_model.done == set() and json.loads(state_path(project.root).read_text())["done"] == []


def test_filters_has_class_and_has_model_proposals(opened, qtbot):
    win, project = opened
    assert [win.status_filter.itemText(i) for i in range(win.status_filter.count())][-3:] == [
        "Done", "Has model proposals", "Has class…"]  # a class is picked by typing (#33), not listed
    key(win, Qt.Key.Key_3)
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 40, 40), vp(win, 120, 100))
    key(win, Qt.Key.Key_D)  # saves img_000 with a "car"
    win.predict_current(predictor=FakePredictor())  # a "dog" proposal on img_001
    qtbot.waitUntil(lambda: len(win.doc.instances) == 1, timeout=10_000)
    qtbot.waitUntil(lambda: win.task is None, timeout=5000)
    key(win, Qt.Key.Key_D)  # saves img_001's proposal in proposals/, not in labels/
    win.filter_by_class(2)
    assert shown(win) == ["img_000.png"]
    win.filter_by_class(1)
    assert shown(win) == []  # "has class" means labelled with it: a proposal is not a label (#32)
    win.filter_by_class(0)
    assert shown(win) == []
    use_filter(win, "proposals")
    assert shown(win) == ["img_001.png"]
    # accepting the proposal and saving: no proposals left
    win.goto_image(project.image_paths()[1])
    win.canvas.setFocus()
    QTest.keyClick(win.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    win.save_now()
    assert shown(win) == []
    win.filter_by_class(1)
    assert shown(win) == ["img_001.png"]  # accepted: now a label
