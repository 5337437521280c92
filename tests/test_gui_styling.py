"""Defect 7 (styling/layout): disabled buttons look disabled, spin-box arrows render, View → Panels
toggles every dock (job panels included), the job panels take a fifth of the window on first start."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from conftest_gui import gui_settings, window  # noqa: F401
from PySide6.QtCore import QSize
from PySide6.QtGui import QColor, QIcon


def _rgba(image) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = image.convertToFormat(QImage.Format.Format_RGBA8888)
    buf = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    return buf.reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width()].copy()


@pytest.mark.parametrize("mode", ["dark", "light"])
def test_disabled_icons_are_drawn_muted_and_faint(qapp, mode):
    from app.theme import apply_theme, colors, icon

    apply_theme(qapp, mode)
    ico = icon("save")
    normal = _rgba(ico.pixmap(QSize(24, 24), QIcon.Mode.Normal).toImage())
    disabled = _rgba(ico.pixmap(QSize(24, 24), QIcon.Mode.Disabled).toImage())
    fg, muted = QColor(colors()["fg"]), QColor(colors()["muted"])
    opaque = normal[..., 3] == 255
    assert opaque.sum() >= 10
    assert np.abs(normal[opaque][:, :3].astype(int) - [fg.red(), fg.green(), fg.blue()]).max() <= 1
    assert disabled[..., 3].max() <= round(0.45 * 255) + 1  # faint
    core = disabled[..., 3] == disabled[..., 3].max()
    assert np.abs(disabled[core][:, :3].astype(int) - [muted.red(), muted.green(), muted.blue()]).max() <= 2


@pytest.mark.parametrize("mode", ["dark", "light"])
def test_spin_box_has_both_arrows(qtbot, qapp, mode):
    from PySide6.QtWidgets import QSpinBox

    from app.theme import apply_theme, colors

    apply_theme(qapp, mode)
    box = QSpinBox()
    box.setRange(0, 100)
    box.setValue(50)
    box.resize(120, 30)
    qtbot.addWidget(box)
    box.show()
    qtbot.waitExposed(box)
    px = _rgba(box.grab().toImage())
    h, w = px.shape[:2]
    button = px[h // 2, w - 3, :3].astype(int)  # the buttons' background, right of the chevrons
    assert np.abs(button - [QColor(colors()["alt"]).red(), QColor(colors()["alt"]).green(),
                            QColor(colors()["alt"]).blue()]).max() <= 2
    stroke = np.abs(px[..., :3].astype(int) - button).sum(-1) >= 60
    up, down = stroke[3:h // 2, w - 16:w - 4], stroke[h // 2:h - 3, w - 16:w - 4]
    assert up.sum() >= 6 and down.sum() >= 6  # an up and a down chevron
    ys = np.nonzero(up)[0]
    assert ys.min() < ys.max()  # a shape (several rows), not a single line


def test_view_menu_toggles_every_panel_and_job_docks_start_small(window, qtbot):  # noqa: F811
    from app.jobs.wiring import attach_job_panels, first_start_dock_height

    attach_job_panels(window)
    names = [a.text() for a in window.panels_menu.actions() if not a.isSeparator()]
    assert names == ["Images", "Classes", "Instances", "Train", "Review", "Export", "Live"]
    train = window.job_docks[0]
    toggle = window.panels_menu.actions()[-4]
    qtbot.waitUntil(train.isVisible, timeout=3000)
    window._sync_panel_actions()
    assert toggle.text() == "Train" and toggle.isChecked() and toggle.isEnabled()
    toggle.trigger()
    assert not train.isVisible()
    toggle.trigger()
    assert train.isVisible()
    images = window.panels_menu.actions()[0]
    images.trigger()
    assert not window.files_dock.isVisible()
    window._sync_panel_actions()
    assert not images.isChecked()
    images.trigger()
    assert window.files_dock.isVisible()
    assert first_start_dock_height(800) == 210 and first_start_dock_height(1400) == 280
    window.resize(1280, 1000)
    qtbot.wait(50)
    assert train.height() <= window.height() // 4
