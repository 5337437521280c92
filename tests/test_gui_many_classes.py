"""Many classes: distinct colours for 100 classes, the type-to-filter class picker (key L and
after drawing), class names on the canvas, per-class hide/show."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_gui_editor import click, drag, key, vp

from app.class_picker import picker_order, remember
from app.palette import class_rgb, palette_lab, srgb_to_lab

NAMES = [f"thing{k:02d}" for k in range(80)]


def min_pairwise_delta_e(lab: np.ndarray) -> float:
    d = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def test_palette_100_classes_pairwise_distinct_and_stable():
    # the old golden-ratio HSV hues: two of the first 100 classes were nearly the same colour
    import colorsys

    def old(k):
        return colorsys.hsv_to_rgb((0.61803398875 * k) % 1.0, 0.65, 0.95)
    assert min_pairwise_delta_e(srgb_to_lab(np.array([old(k) for k in range(16, 100)]))) < 3.0
    lab = palette_lab(100)
    assert min_pairwise_delta_e(lab) >= 15.0  # CIE76 ΔE; ~2.3 is just noticeable
    assert min_pairwise_delta_e(lab[:20]) >= 35.0
    assert class_rgb(0) == (0xE6, 0x9F, 0x00)
    assert lab[:, 0].min() >= 45.0 - 1 and lab[:, 0].max() <= 88.0 + 1  # readable on both canvases
    assert [class_rgb(k) for k in range(10)] == [class_rgb(k) for k in range(10)]  # stable after extending
    assert len({class_rgb(k) for k in range(200)}) == 200


def test_srgb_to_lab_reference_values():
    np.testing.assert_allclose(srgb_to_lab(np.array([1.0, 1.0, 1.0])), [100, 0, 0], atol=0.02)
    np.testing.assert_allclose(srgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.24, 80.09, 67.20], atol=0.05)


def test_picker_order_recent_first_and_filter():
    names = ["cat", "dog", "car", "catamaran", "bobcat"]
    assert picker_order(names, []) == [0, 1, 2, 3, 4]
    assert picker_order(names, [3, 1, 3, 99]) == [3, 1, 0, 2, 4]
    assert picker_order(names, [4], "cat") == [0, 3, 4]  # prefix matches before other substrings
    assert picker_order(names, [4], "CAT") == [0, 3, 4]
    assert picker_order(names, [], "3") == [2]  # the 1-based number shown in the list
    assert picker_order(names, [], "zebra") == []
    assert remember([1, 2, 3], 3) == [3, 1, 2]


def back_on_canvas(win, qtbot) -> None:
    """The picker closed: the window is active again with the canvas focused (the offscreen
    platform activates windows asynchronously)."""
    win.activateWindow()
    qtbot.waitUntil(lambda: win.canvas.hasFocus(), timeout=3000)


@pytest.fixture
def many(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=2, classes=tuple(NAMES))
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    return window, project


def test_key_l_opens_picker_typing_filters_enter_relabels_selection(many, qtbot):
    win, _project = many
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 40, 40), vp(win, 120, 100))
    assert win.doc.instances[0].class_id == 0 and win.canvas.selected == [0]
    key(win, Qt.Key.Key_L)
    picker = win.class_picker
    assert picker is not None and picker.isVisible()
    qtbot.waitUntil(lambda: picker.filter.hasFocus(), timeout=3000)
    QTest.keyClicks(picker.filter, "ing73")
    assert picker.shown_ids() == [73]
    screenshot(picker, "class_picker_filtered")
    QTest.keyClick(picker.filter, Qt.Key.Key_Return)
    assert not picker.isVisible()
    assert win.doc.instances[0].class_id == 73 and win.current_class == 73
    back_on_canvas(win, qtbot)
    # recent first next time; Down + Enter picks the second entry
    key(win, Qt.Key.Key_L)
    picker = win.class_picker
    assert picker.shown_ids()[:2] == [73, 0]
    QTest.keyClick(picker.filter, Qt.Key.Key_Down)
    QTest.keyClick(picker.filter, Qt.Key.Key_Return)
    assert win.doc.instances[0].class_id == 0
    # Esc cancels without a change
    back_on_canvas(win, qtbot)
    key(win, Qt.Key.Key_L)
    QTest.keyClicks(win.class_picker.filter, "thing5")
    QTest.keyClick(win.class_picker.filter, Qt.Key.Key_Escape)
    assert not win.class_picker.isVisible() and win.doc.instances[0].class_id == 0
    # the picker's keys never reached the canvas (no tool switch, no image switch from 'D'...)
    assert win.doc.image_path == _project.image_paths()[0]


def test_ask_class_after_drawing_opens_picker_on_new_shape(many, qtbot):
    win, _ = many
    win.act_ask_class.setChecked(True)
    key(win, Qt.Key.Key_P)
    for x, y in [(50, 50), (150, 50), (150, 150)]:
        click(win, vp(win, x, y))
    key(win, Qt.Key.Key_Return)
    picker = win.class_picker
    assert picker is not None and picker.isVisible() and picker.windowTitle() == "Class of the new shape"
    QTest.keyClicks(picker.filter, "thing42")
    QTest.keyClick(picker.filter, Qt.Key.Key_Return)
    assert win.doc.instances[0].class_id == 42
    back_on_canvas(win, qtbot)
    # off (the default): drawing opens nothing
    win.act_ask_class.setChecked(False)
    win.class_picker.close()
    win.class_picker = None
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 200, 40), vp(win, 260, 100))
    assert win.class_picker is None and len(win.doc.instances) == 2


def test_class_names_on_canvas_and_per_class_hide(many, qtbot):
    win, _ = many
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 40, 60), vp(win, 120, 120))
    key(win, Qt.Key.Key_Escape)  # select tool
    key(win, Qt.Key.Key_Escape)  # deselect
    key(win, Qt.Key.Key_3)  # current class 2 for the next box
    key(win, Qt.Key.Key_R)
    drag(win, vp(win, 180, 60), vp(win, 260, 120))
    assert [i.class_id for i in win.doc.instances] == [0, 2]
    win.act_show_names.setChecked(False)
    win.act_show_names.setChecked(True)
    assert [(i, t) for i, t, _p in win.canvas.name_anchors()] == [(0, "thing00"), (1, "thing02")]
    img = win.canvas.viewport().grab().toImage()
    tag = vp(win, 40, 60)  # the name chip sits just above the box's top-left corner
    px = img.pixelColor(tag.x() + 2, tag.y() - 3)
    assert (px.red(), px.green(), px.blue()) == class_rgb(0)
    screenshot(win, "canvas_class_names")
    # hide class 2 with its checkbox in the class panel: invisible and not clickable
    win.class_panel.set_class_visible(2, False)
    assert win.canvas.hidden_classes == {2}
    assert win.canvas.items[0].isVisible() and not win.canvas.items[1].isVisible()
    key(win, Qt.Key.Key_V)
    click(win, vp(win, 220, 90))
    assert win.canvas.selected == []
    assert [i for i, _t, _p in win.canvas.name_anchors()] == [0]
    win.class_panel.set_class_visible(2, True)
    click(win, vp(win, 220, 90))
    assert win.canvas.selected == [1]
    win.act_show_names.setChecked(False)
    img = win.canvas.viewport().grab().toImage()
    px = img.pixelColor(tag.x() + 2, tag.y() - 3)
    assert (px.red(), px.green(), px.blue()) != class_rgb(0)
