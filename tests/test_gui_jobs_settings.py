"""Settings: recent projects (order, dedupe, cap, vanished folders), window layout round
trip, device/backend validation; always on a temporary INI file, never the user's."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


import pytest


@pytest.fixture
def ini(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def reopen(ini):
    """A second QSettings on the same file: what the next app start reads."""
    from PySide6.QtCore import QSettings

    from app.settings import AppSettings

    ini.sync()
    return AppSettings(QSettings(ini.fileName(), QSettings.Format.IniFormat))


def test_recent_projects(ini, tmp_path):
    from app.settings import MAX_RECENT, AppSettings

    s = AppSettings(ini)
    assert s.recent_projects() == [] and s.last_project is None
    roots = [tmp_path / f"p{i}" for i in range(MAX_RECENT + 2)]
    for r in roots:
        s.add_recent_project(r)
    s.add_recent_project(roots[3])  # re-opening moves it to the front, no duplicate
    expected = [roots[3], roots[9], roots[8], roots[7], roots[6], roots[5], roots[4], roots[2]]
    assert s.recent_projects() == expected
    again = reopen(ini)
    assert again.recent_projects() == expected and again.last_project == roots[3]
    # one entry is stored as a plain string by INI files: still a list
    one = AppSettings(type(ini)(str(tmp_path / "one.ini"), type(ini).Format.IniFormat))
    one.add_recent_project(roots[0])
    assert reopen(one.qsettings).recent_projects() == [roots[0]]
    # only folders that still hold a project
    (roots[9]).mkdir()
    (roots[9] / "project.yaml").write_text("classes: [a]\n")
    assert s.recent_projects(existing_only=True) == [roots[9]]
    s.remove_recent_project(roots[3])
    assert roots[3] not in s.recent_projects() and s.last_project is None


def test_window_layout_round_trip(ini, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow

    from app.settings import AppSettings

    def make():
        win = QMainWindow()
        win.setCentralWidget(QLabel("centre"))
        dock = QDockWidget("Review")
        dock.setObjectName("reviewDock")
        dock.setWidget(QLabel("dock"))
        win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        qtbot.addWidget(win)
        return win, dock

    win, dock = make()
    win.resize(700, 500)
    win.show()
    win.removeDockWidget(dock)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.show()
    assert not AppSettings(ini).restore_window(win), "nothing saved yet"
    AppSettings(ini).save_window(win)
    win2, dock2 = make()
    assert reopen(ini).restore_window(win2)
    assert win2.dockWidgetArea(dock2) == Qt.DockWidgetArea.RightDockWidgetArea
    assert (win2.width(), win2.height()) == (700, 500)


def test_device_backend_and_model(ini, tmp_path):
    from app.settings import AppSettings

    s = AppSettings(ini)
    assert (s.device, s.backend) == ("auto", "auto")
    s.device = "cuda:1"
    s.backend = "openvino"
    with pytest.raises(ValueError, match="device must be one of"):
        s.device = "tpu"
    with pytest.raises(ValueError, match="backend must be one of"):
        s.backend = "coreml"
    s.set_model_for(tmp_path / "p", tmp_path / "p" / "runs" / "a" / "best.pt")
    s.live_source = "/videos/belt.mp4"
    again = reopen(ini)
    assert (again.device, again.backend) == ("cuda:1", "openvino")
    assert again.model_for(tmp_path / "p") == tmp_path / "p" / "runs" / "a" / "best.pt"
    assert again.model_for(tmp_path / "q") is None
    assert again.live_source == "/videos/belt.mp4"
    # a hand-edited bad value falls back to the default instead of breaking the app
    ini.setValue("infer/backend", "???")
    assert AppSettings(ini).backend == "auto"
    ini.setValue("infer/backend", "onnxruntime")  # the name older versions stored
    assert AppSettings(ini).backend == "onnx" and ini.value("infer/backend") == "onnx"


def test_default_settings_use_the_organisation(qapp, tmp_path):
    from PySide6.QtCore import QSettings, QStandardPaths

    from app.settings import ORGANISATION, default_settings

    before = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path))
    try:
        s = default_settings()
        assert s.organizationName() == ORGANISATION
        assert s.fileName().startswith(str(tmp_path))
    finally:  # later tests in this process must not write into this tmp dir
        QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, before)


def test_app_settings_is_the_only_way_to_qsettings():
    """Issue #34: one settings layer. No module of the app but app/settings.py names QSettings;
    every key is spelled there."""
    import re
    from pathlib import Path

    app = Path(__file__).resolve().parents[1] / "app"
    found = [f"{p.relative_to(app.parent)}:{n}" for p in sorted(app.rglob("*.py")) if p.name != "settings.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if re.search(r"\bQSettings\b", line)]
    assert not found, f"use app.settings.AppSettings instead: {found}"


def test_display_and_class_memory_round_trip(ini):
    from app.settings import AppSettings

    s = AppSettings(ini)
    assert (s.show_class_names, s.ask_class_after_draw, s.fill_opacity, s.theme) == (True, False, 35, "system")
    s.show_class_names, s.ask_class_after_draw, s.fill_opacity, s.theme = False, True, 60, "dark"
    s.set_recent_classes("/p", [3, 1, 7])
    s.sync()
    again = reopen(ini)
    assert (again.show_class_names, again.ask_class_after_draw, again.fill_opacity, again.theme) == (False, True, 60,
                                                                                                   "dark")
    assert again.recent_classes_for("/p", 5) == [3, 1]  # class 7 no longer exists
