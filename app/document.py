"""One image's labels being edited: the annotation, its undo stack and its on-disk state.

Why a separate object: the canvas, the instances list, autosave and the undo
commands all look at the same annotation; they stay in sync by listening to this
object's signals instead of to each other. A document outlives an image switch
(kept by the session cache) so undo still works when the person comes back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from core.annotation import ImageAnnotation, Instance

FileSignature = tuple[int, str] | None  # (size, sha1) of the label file, None = absent


def file_signature(path: Path) -> FileSignature:
    """What we compare to notice that another program rewrote a label file: its content.
    (mtime is not enough: two writes within one clock tick of the file system, same size,
    look the same, and the second writer would then overwrite the first one's rows.)"""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None
    return (len(data), hashlib.sha1(data).hexdigest())


class LabelDocument(QObject):
    """The editable labels of one image.

    Signals carry instance indices into ``ann.instances``; indices are stable
    between structural changes because every edit goes through the undo stack.
    """

    structure_changed = Signal()  # instances added/removed/reordered, or reloaded
    instance_changed = Signal(int)  # geometry / class / source of one instance
    visibility_changed = Signal()

    def __init__(self, ann: ImageAnnotation, label_path: Path, parent: QObject | None = None):
        super().__init__(parent)
        self.ann = ann
        self.label_path = Path(label_path)
        self.disk_signature: FileSignature = file_signature(self.label_path)
        self.undo_stack = QUndoStack(self)
        self.hidden: set[int] = set()  # ids (id(Instance)) hidden on the canvas; view state, not an edit
        self.locked: set[int] = set()  # ids locked against edits (finished shapes), for this session

    @property
    def image_path(self) -> Path:
        return self.ann.image_path

    @property
    def instances(self) -> list[Instance]:
        return self.ann.instances

    def is_dirty(self) -> bool:
        return not self.undo_stack.isClean()

    # --- raw mutations used by the undo commands only -------------------------------
    def _insert(self, index: int, inst: Instance) -> None:
        self.ann.instances.insert(index, inst)
        self.structure_changed.emit()

    def _remove(self, index: int) -> Instance:
        inst = self.ann.instances.pop(index)
        self.structure_changed.emit()
        return inst

    def _replace(self, index: int, inst: Instance) -> None:
        old = self.ann.instances[index]
        for state in (self.hidden, self.locked):
            if id(old) in state:
                state.discard(id(old))
                state.add(id(inst))
        self.ann.instances[index] = inst
        self.instance_changed.emit(index)

    # --- view state -----------------------------------------------------------------
    def is_hidden(self, index: int) -> bool:
        return id(self.ann.instances[index]) in self.hidden

    def is_locked(self, index: int) -> bool:
        """Locked (as in CVAT): shown, but the canvas will not select it, so no edit reaches it."""
        return id(self.ann.instances[index]) in self.locked

    def set_locked(self, indices: list[int], locked: bool) -> None:
        for i in indices:
            key = id(self.ann.instances[i])
            self.locked.add(key) if locked else self.locked.discard(key)
        self.visibility_changed.emit()

    def set_hidden(self, index: int, hidden: bool) -> None:
        key = id(self.ann.instances[index])
        if hidden:
            self.hidden.add(key)
        else:
            self.hidden.discard(key)
        self.visibility_changed.emit()

    # --- disk -----------------------------------------------------------------------
    def mark_saved(self) -> None:
        self.disk_signature = file_signature(self.label_path)
        self.undo_stack.setClean()

    def changed_on_disk(self) -> bool:
        """True when the label file is not what we last loaded or saved."""
        return file_signature(self.label_path) != self.disk_signature

    def reload(self, ann: ImageAnnotation) -> None:
        """Replace everything with the disk version; old undo history refers to the old
        labels, so it is dropped."""
        self.ann = ann
        self.hidden.clear()
        self.locked.clear()
        self.undo_stack.clear()
        self.disk_signature = file_signature(self.label_path)
        self.structure_changed.emit()
