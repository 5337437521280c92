"""Undo commands for every label edit.

Every command stores full copies of the instances it touches (before/after),
which is simple, exact and cheap (an instance is a few arrays). Commands are
pushed on the document's own stack; the window keeps one stack per image in a
QUndoGroup, so undo still works after switching images and coming back.
Any edit of a model-made instance makes it the person's (source="human").
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from app.document import LabelDocument
from core.annotation import Instance


def touched(inst: Instance) -> Instance:
    """A copy marked as the person's: editing a model proposal accepts it."""
    out = inst.copy()
    out.source = "human"
    out.score = None
    return out


class AddInstance(QUndoCommand):
    def __init__(self, doc: LabelDocument, inst: Instance, index: int | None = None, text: str = "Add"):
        super().__init__(text)
        self.doc = doc
        self.inst = inst
        self.index = len(doc.instances) if index is None else index

    def redo(self) -> None:
        self.doc._insert(self.index, self.inst)

    def undo(self) -> None:
        self.doc._remove(self.index)


class AddInstances(QUndoCommand):
    """Several instances in one step (pre-labeling results, paste)."""

    def __init__(self, doc: LabelDocument, instances: list[Instance], text: str = "Add"):
        super().__init__(text)
        self.doc = doc
        self.instances = list(instances)
        self.start = len(doc.instances)

    def redo(self) -> None:
        for k, inst in enumerate(self.instances):
            self.doc.ann.instances.insert(self.start + k, inst)
        self.doc.structure_changed.emit()

    def undo(self) -> None:
        del self.doc.ann.instances[self.start:self.start + len(self.instances)]
        self.doc.structure_changed.emit()


class RemoveInstances(QUndoCommand):
    def __init__(self, doc: LabelDocument, indices: list[int], text: str = "Delete"):
        super().__init__(text)
        self.doc = doc
        self.indices = sorted(set(indices))
        self.removed = [doc.instances[i] for i in self.indices]

    def redo(self) -> None:
        for i in reversed(self.indices):
            del self.doc.ann.instances[i]
        self.doc.structure_changed.emit()

    def undo(self) -> None:
        for i, inst in zip(self.indices, self.removed):
            self.doc.ann.instances.insert(i, inst)
        self.doc.structure_changed.emit()


class ReplaceInstances(QUndoCommand):
    """Generic geometry/class edit: moved vertex, inserted/deleted vertex, moved
    instance, changed class, accepted proposal. ``after`` is applied on redo."""

    def __init__(self, doc: LabelDocument, changes: dict[int, tuple[Instance, Instance]], text: str):
        super().__init__(text)
        self.doc = doc
        self.changes = dict(changes)

    def redo(self) -> None:
        for i, (_, after) in self.changes.items():
            self.doc._replace(i, after)

    def undo(self) -> None:
        for i, (before, _) in self.changes.items():
            self.doc._replace(i, before)


def replace_one(doc: LabelDocument, index: int, after: Instance, text: str,
                before: Instance | None = None) -> ReplaceInstances:
    """Command replacing instance ``index`` with ``after`` (marked human)."""
    before = doc.instances[index] if before is None else before
    return ReplaceInstances(doc, {index: (before, touched(after))}, text)


def change_class(doc: LabelDocument, indices: list[int], class_id: int) -> ReplaceInstances | None:
    changes = {}
    for i in indices:
        old = doc.instances[i]
        if old.class_id != class_id:
            new = touched(old)
            new.class_id = class_id
            changes[i] = (old, new)
    return ReplaceInstances(doc, changes, "Change class") if changes else None


def accept(doc: LabelDocument, indices: list[int]) -> ReplaceInstances | None:
    """Accept model proposals as they are."""
    changes = {i: (doc.instances[i], touched(doc.instances[i]))
               for i in indices if doc.instances[i].source == "model"}
    return ReplaceInstances(doc, changes, "Accept proposal") if changes else None


def referenced_instances(command) -> list[Instance]:
    """Every Instance object a command holds (its before/after copies), for remapping class ids
    after a class edit without losing the history."""
    if isinstance(command, AddInstance):
        return [command.inst]
    if isinstance(command, AddInstances):
        return list(command.instances)
    if isinstance(command, RemoveInstances):
        return list(command.removed)
    if isinstance(command, ReplaceInstances):
        return [inst for pair in command.changes.values() for inst in pair]
    return []
