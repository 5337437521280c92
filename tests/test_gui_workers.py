"""run_task's `owner`: a job that ends after its window was closed never calls into the deleted
window (a SAM embedding finishing after the test's window was gone raised
"Internal C++ object (MainWindow) already deleted" in the Qt event loop)."""

from __future__ import annotations

import threading

import shiboken6
from PySide6.QtWidgets import QWidget

from app.workers import run_task


def test_callbacks_run_while_the_owner_lives_and_not_after_it_is_deleted(qtbot):
    calls: list[str] = []
    alive = QWidget()
    run_task(lambda _t: 7, on_done=lambda v: calls.append(f"done {v}"), owner=alive)
    qtbot.waitUntil(lambda: calls == ["done 7"], timeout=5000)

    gone = QWidget()
    release = threading.Event()
    task = run_task(lambda _t: release.wait(5) and 8, on_done=lambda v: calls.append(f"late {v} {gone.width()}"),
                    owner=gone)
    finished = []
    task.signals.finished.connect(lambda _v: finished.append(True))
    shiboken6.delete(gone)  # the window closes while the job runs
    release.set()
    qtbot.waitUntil(lambda: finished == [True], timeout=5000)
    qtbot.wait(50)
    assert calls == ["done 7"]  # the late callback did not run (it would raise on the deleted widget)
    alive.deleteLater()
