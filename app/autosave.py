"""Nothing the person labels is lost, and nothing another program wrote is overwritten.

* The current document is saved through the project's atomic store when the person
  switches image, after a short idle pause (``idle_ms``), on Ctrl+S and on close.
* Before every save the label file's (mtime, size) is compared to what we last
  loaded/saved; if another program changed it, we reload instead of saving.
* A QFileSystemWatcher on the label folder notices such changes while the image is
  open (the folder, not the file: atomic writers replace the file, which drops a
  per-file watch) and reloads the document.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from app.document import LabelDocument
from core.annotation import ImageAnnotation
from core.errors import ConflictError, UserFacingError
from core.project_lock import LockBusyError

IDLE_MS = 1500


class AutoSaver(QObject):
    saved = Signal(object)  # LabelDocument
    reloaded = Signal(object, bool)  # LabelDocument, lost_local_edits
    failed = Signal(object, str)  # LabelDocument, message

    def __init__(self, save: Callable[[ImageAnnotation], None], load: Callable[[Path], ImageAnnotation],
                 idle_ms: int = IDLE_MS, parent: QObject | None = None,
                 lock: Callable[[], AbstractContextManager] | None = None):
        super().__init__(parent)
        self._save = save
        self._load = load
        # the project lock: "unchanged on disk?" + save + "remember what we wrote" is one step,
        # so a class edit or another writer cannot slip in between and be overwritten
        self._lock = lock or contextlib.nullcontext
        self.doc: LabelDocument | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(idle_ms)
        self.timer.timeout.connect(self.save_current)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self._disk_changed)
        self.watcher.fileChanged.connect(self._disk_changed)

    def track(self, doc: LabelDocument | None) -> None:
        """Follow ``doc`` (the image on screen); saves the previous one first."""
        if self.doc is not None and self.doc is not doc:
            self.save(self.doc)
            self.doc.undo_stack.indexChanged.disconnect(self._edited)
        self.doc = doc
        old = self.watcher.directories() + self.watcher.files()
        if old:
            self.watcher.removePaths(old)
        if doc is None:
            return
        doc.undo_stack.indexChanged.connect(self._edited)
        folder = doc.label_path.parent
        if folder.is_dir():
            self.watcher.addPath(str(folder))
        if doc.label_path.exists():
            self.watcher.addPath(str(doc.label_path))
        if doc.changed_on_disk():  # changed while we looked at other images
            self.reload(doc)

    def _edited(self, *_: object) -> None:
        self.timer.start()

    def save_current(self) -> bool:
        return self.doc is None or self.save(self.doc)

    def save(self, doc: LabelDocument) -> bool:
        """Save if dirty; returns False when the save failed or was refused because
        another program changed the file (then the disk version is loaded)."""
        if not doc.is_dirty():
            return True
        try:
            with self._lock():
                if doc.changed_on_disk():
                    stale = True
                else:
                    stale = False
                    self._save(doc.ann)
                    doc.mark_saved()
        except ConflictError as exc:
            # the class list changed in another program: the ids on screen are stale, so nothing is
            # written; the edit stays in memory (not replaced) and the message says to reload
            self.failed.emit(doc, str(exc))
            return False
        except LockBusyError as exc:
            # another process holds the project lock: keep the edit, say who, and try again
            self.failed.emit(doc, f"{exc} — your edits are kept and saved when the lock is free")
            if doc is self.doc:
                self.timer.start()
            return False
        except (OSError, UserFacingError) as exc:
            self.failed.emit(doc, str(exc))
            return False
        if stale:
            self.reload(doc)
            return False
        if doc is self.doc and str(doc.label_path) not in self.watcher.files() and doc.label_path.exists():
            self.watcher.addPath(str(doc.label_path))
        self.saved.emit(doc)
        return True

    def reload(self, doc: LabelDocument) -> None:
        lost = doc.is_dirty()
        try:
            ann = self._load(doc.image_path)
        except (OSError, UserFacingError) as exc:
            self.failed.emit(doc, str(exc))
            return
        doc.reload(ann)
        self.reloaded.emit(doc, lost)

    def _disk_changed(self, _path: str) -> None:
        doc = self.doc
        if doc is None:
            return
        if doc.label_path.exists() and str(doc.label_path) not in self.watcher.files():
            self.watcher.addPath(str(doc.label_path))
        if doc.changed_on_disk():
            self.reload(doc)
