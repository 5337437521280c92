"""Background work with progress and cancel, so the GUI thread never waits.

``run_task(fn, ...)`` runs ``fn(task, *args)`` on the global QThreadPool; ``fn``
reports with ``task.progress(done, total, text)`` and polls ``task.cancelled``.
Results come back to the GUI thread through queued signals.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QThreadPool, Signal

from core.errors import UserFacingError


class TaskSignals(QObject):
    progress = Signal(int, int, str)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal(object)  # whatever the job returned when it stopped early (partial result)


class Task:
    """One job; keep a reference to its ``signals`` object while you need them.

    Not a QRunnable: the pool is handed ``task.run`` (a plain callable). A QRunnable subclass
    passed to ``QThreadPool.start`` is kept alive by the binding after it ran (autoDelete off),
    so every image switch leaked a task (issue #35, found by paging 300 images)."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self.fn = fn
        self.args = args
        self.signals = TaskSignals()
        self._cancel = threading.Event()
        self.done = threading.Event()

    # API for fn
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def progress(self, done: int, total: int, text: str = "") -> None:
        self.signals.progress.emit(done, total, text)

    # API for the GUI
    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            result = self.fn(self, *self.args)
        except UserFacingError as exc:
            self._emit(self.signals.failed, str(exc))
        except Exception as exc:  # noqa: BLE001 - report, never kill the pool thread silently
            self._emit(self.signals.failed, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
        else:
            if self._cancel.is_set():
                self._emit(self.signals.cancelled, result)
            else:
                self._emit(self.signals.finished, result)
        finally:
            self.done.set()

    @staticmethod
    def _emit(signal, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the receiver side is gone (window closed during the job)
            pass


# Keeps tasks (and their signal objects) alive until they end. Keyed by id so the release slot
# holds no reference to its task: a closure over the task would make a cycle through the C++
# signal connection that Python's collector cannot see, and every task would leak (issue #35).
_live: dict[int, Task] = {}


def _while_alive(callback: Callable[..., None] | None, owner: QObject | None) -> Callable[..., None] | None:
    """`callback`, run only while `owner`'s C++ object exists: a job that ends after its window
    was closed (e.g. a SAM embedding) must not touch the deleted window."""
    if callback is None or owner is None:
        return callback

    def call(*args: Any) -> None:
        if shiboken6.isValid(owner):
            callback(*args)
    return call


def run_task(fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None] | None = None,
             on_error: Callable[[str], None] | None = None,
             on_progress: Callable[[int, int, str], None] | None = None,
             pool: QThreadPool | None = None, owner: QObject | None = None) -> Task:
    """Run ``fn(task, *args)`` on the pool; the callbacks run on the GUI thread, and with
    `owner` only while that object (the window or tool they close over) is alive."""
    on_done, on_error = _while_alive(on_done, owner), _while_alive(on_error, owner)
    on_progress = _while_alive(on_progress, owner)
    task = Task(fn, *args)
    if on_done:
        task.signals.finished.connect(on_done)
    if on_error:
        task.signals.failed.connect(on_error)
    if on_progress:
        task.signals.progress.connect(on_progress)
    key = id(task)
    _live[key] = task
    for sig in (task.signals.finished, task.signals.failed, task.signals.cancelled):
        sig.connect(lambda *_, key=key: _live.pop(key, None))
    (pool or QThreadPool.globalInstance()).start(task.run)
    return task
