"""Dock the job panels (train, review, export, live) into the main window and connect them.

Kept apart from main_window.py so the editor and the jobs stay independent rooms: the
window only offers `add_panel`, `project_opened`, `goto_image` and `refresh_review_flags`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QWidget

from app.jobs.export_panel import ExportPanel
from app.jobs.live_view import LiveView
from app.jobs.review_panel import ReviewPanel
from app.jobs.train_panel import TrainPanel
from core.annotation import ImageAnnotation


class EditorAwareStore:
    """The review panel's label store, routed through the editor's open documents: unsaved
    edits are saved before a fix reads the file, and the open document reloads after it."""

    def __init__(self, window: Any):
        self.window = window

    def _doc(self, image_path: Path):
        return self.window.docs.get(Path(image_path))

    def lock(self):
        """The project's writer lock (the review's read-fix-write runs inside it)."""
        return self.window.project.lock()  # bounded on the GUI thread: the window set project.lock_wait_s

    def load_annotation(self, image_path: Path) -> ImageAnnotation:
        doc = self._doc(image_path)
        if doc is not None and doc.is_dirty():
            self.window.autosaver.save(doc)
        return self.window.project.load_annotation(Path(image_path))

    def save_annotation(self, ann: ImageAnnotation) -> None:
        self.window.project.save_annotation(ann)
        doc = self._doc(ann.image_path)
        if doc is not None:
            doc.reload(self.window._load_ann(Path(ann.image_path)))  # with its proposals, as the editor shows it
        if getattr(self.window, "list_model", None) is not None:
            self.window.list_model.refresh(Path(ann.image_path))
        # the window's status line says what happened (a fix or its undo) from the panel's own
        # message (labels_changed), not "fix applied" for both


@dataclass
class JobPanels:
    train: TrainPanel
    review: ReviewPanel
    export: ExportPanel
    live: LiveView

    def all(self) -> tuple:
        return (self.train, self.review, self.export, self.live)


class _CloseGuard(QObject):
    """Asks before closing while training runs (the run stays resumable), then stops the
    other panels' threads/processes so nothing is destroyed while running."""

    def __init__(self, panels: JobPanels, parent: QObject):
        super().__init__(parent)
        self.panels = panels

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close:
            if not self.panels.train.confirm_close():
                event.ignore()
                return True
            for panel in (self.panels.review, self.panels.export, self.panels.live):
                panel.shutdown()
        return False


def _scrollable(panel: QWidget) -> QScrollArea:
    """Panels scroll inside their dock instead of forcing the dock (and so the canvas) to
    their full minimum height."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(panel)
    return area


def first_start_dock_height(window_height: int) -> int:
    """Height of the bottom job panels before the person resizes them: a fifth of the window, at
    least 210 px, the dock's title, the Train panel's button row and its plots ~140 px tall (at
    180 px a 1024x700 window left the plots 30 px and hid Start)."""
    return max(210, window_height // 5)


def size_job_docks(window: Any) -> None:
    """The job docks at their first-start height. The canvas stays the main thing on screen: the
    panels get a fifth of the window (a third hid half the image). Takes effect only on a window
    shown at its size (before, Qt shares the height out again when the window is resized):
    ``app.main.show_window`` calls it after ``show``; a saved layout is restored instead."""
    if window.job_docks:
        window.resizeDocks([window.job_docks[0]], [first_start_dock_height(window.height())],
                           Qt.Orientation.Vertical)


def attach_job_panels(window: Any) -> JobPanels:
    settings = window.settings
    panels = JobPanels(
        train=TrainPanel(),
        review=ReviewPanel(store=EditorAwareStore(window), settings=settings),
        export=ExportPanel(),
        live=LiveView(settings=settings),
    )
    bottom = Qt.DockWidgetArea.BottomDockWidgetArea
    docks = [window.add_panel(title, _scrollable(panel), bottom) for title, panel in
             (("Train", panels.train), ("Review", panels.review), ("Export", panels.export),
              ("Live", panels.live))]
    for dock in docks[1:]:
        window.tabifyDockWidget(docks[0], dock)
    docks[0].raise_()
    size_job_docks(window)

    def follow(project) -> None:
        for panel in panels.all():
            panel.set_project(project)

    window.project_opened.connect(follow)
    if window.project is not None:
        follow(window.project)

    def open_in_editor(image_path: Path, instance_index: int) -> None:
        if window.goto_image(Path(image_path)) and instance_index >= 0:
            window.canvas.set_selection([instance_index])

    def runs_changed(_name: str = "", _code: int = 0) -> None:
        for panel in (panels.review, panels.export, panels.live):
            panel.runs_changed()  # the new run's model is offered without reopening the project

    panels.train.run_finished.connect(runs_changed)
    panels.review.open_in_editor.connect(open_in_editor)
    panels.review.labels_changed.connect(
        lambda _image: window.statusBar().showMessage(f"Review: {panels.review.last_message}", 5000))
    panels.review.flagged_changed.connect(lambda _names: window.refresh_review_flags())
    panels.live.frame_added.connect(window.add_image)  # listed at once; the editor is not reopened
    guard = _CloseGuard(panels, window)
    window.installEventFilter(guard)
    window._job_panels = panels  # keep the panels (and the guard) alive with the window
    window._job_close_guard = guard
    return panels
