"""Probe run in a child process by tests/test_qt_refcounts.py: a refcount bug in a Qt binding
aborts the interpreter (Fatal Python error: none_dealloc), which must fail one test, not the run.

Mode ``void``: 100,000 void Qt calls. Mode ``paging PROJECT``: open the project in the real
main window and press D through every image with key events. Prints the change in None's
reference count (for paging: over the way back, when every image's document exists) (meaningful below Python 3.12, where None is not immortal)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def void_calls(n: int = 100_000) -> int:
    from PySide6.QtWidgets import QApplication, QWidget

    app = QApplication.instance() or QApplication(["probe"])
    w = QWidget()
    before = sys.getrefcount(None)
    for _ in range(n):
        w.update()
        app.processEvents()
    return sys.getrefcount(None) - before


def _wait_image(app, win, timeout: float = 10.0) -> None:
    """Until the current image's pixels are on the canvas (it is decoded in a worker)."""
    import time

    end = time.monotonic() + timeout
    while not (win.canvas.image is not None and win.doc is not None
               and win.canvas.image.path == win.doc.image_path):
        if time.monotonic() > end:
            raise AssertionError(f"image {win.doc and win.doc.image_path} not shown in {timeout} s")
        app.processEvents()
        time.sleep(0.002)


def paging(root: str, settings_ini: str) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from app.main import make_app
    from app.main_window import MainWindow
    from app.settings import AppSettings

    app = make_app()
    app.setProperty("no_modal_errors", True)
    win = MainWindow(AppSettings.in_file(settings_ini))
    win.resize(1000, 700)
    win.show()
    assert win.open_project(root), "project did not open"
    paths = win.project.image_paths()
    win.activateWindow()
    win.canvas.setFocus()
    _wait_image(app, win)
    before = sys.getrefcount(None)
    for i in range(1, len(paths)):
        QTest.keyClick(win.canvas, Qt.Key.Key_D)
        _wait_image(app, win)
        assert win.doc.image_path == paths[i], f"after {i} presses of D: {win.doc.image_path}"
    first_pass = sys.getrefcount(None) - before
    for i in range(len(paths) - 2, -1, -1):  # and back with A: per-image state already exists
        QTest.keyClick(win.canvas, Qt.Key.Key_A)
        _wait_image(app, win)
        assert win.doc.image_path == paths[i], f"going back: {win.doc.image_path}, not {paths[i]}"
    delta = sys.getrefcount(None) - before - first_pass
    print("pages", len(paths), "first_pass_delta", first_pass)
    win.close()
    return delta


if __name__ == "__main__":
    delta = void_calls() if sys.argv[1] == "void" else paging(sys.argv[2], sys.argv[3])
    print("none_refcount_delta", delta, flush=True)
    os._exit(0)  # skip interpreter teardown: only the probe's own calls are measured
