"""Class actions of the main window: pick with 1-9 (relabelling the selection), and
add / rename / merge / delete / undo through ``core.project`` (the engine rewrites the
label files atomically and journals the edit), after which every open document is
reloaded from disk because class ids may have shifted."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QInputDialog, QMessageBox

from app import commands
from core.project_lock import training_active


class ClassActions:
    """Mixin for MainWindow (uses its project, docs, canvas, panels and autosaver)."""

    # ================================================================== classes
    def pick_class(self, k: int, relabel: bool = False) -> None:
        if self.project is None or not 0 <= k < len(self.project.class_names):
            return
        from app.class_picker import remember

        self.current_class = k
        self.canvas.current_class = k
        self.recent_classes = remember(self.recent_classes, k)
        self.settings.set_recent_classes(self.project.root, self.recent_classes)
        self.class_panel.set_current(k)
        if relabel and self.doc is not None and self.canvas.selected and not getattr(self.doc, "read_only", False):
            cmd = commands.change_class(self.doc, self.canvas.selected, k)
            if cmd is not None:
                self.doc.undo_stack.push(cmd)
        self.statusBar().showMessage(f"Class: {self.project.class_names[k]}", 2000)

    def _class_edit(self, fn, *args, aliases: dict[str, str] | None = None):
        """Class edits rewrite every affected label file (seconds on a big project), so
        they run in a worker while editing is blocked: save first, remap the open images after.
        ``aliases`` maps a class name that disappears to the one its instances now have (rename,
        merge)."""
        if getattr(fn, "__name__", "") != "add_class" and training_active(self.project.root):
            answer = QMessageBox.question(
                self, "Training is running",
                "A training run is reading this project's labels. It keeps the class list it started "
                "with, but images it has not read yet would get the new class ids.\n\n"
                "Change the classes anyway?")
            if answer != QMessageBox.StandardButton.Yes:
                return None
        if not self.autosaver.save_current():
            self._error("Could not save the current image; class edit not started.")
            return None
        current = self.doc.image_path if self.doc else None
        names_before = list(self.project.class_names)
        self.set_busy(True)
        return self.start_task(lambda _task: fn(*args), title="Updating classes", cancellable=False,
                               on_done=lambda _r: None,
                               on_end=lambda: (self.set_busy(False),
                                               self._reload_all(current, names_before, aliases or {})))

    def set_busy(self, busy: bool) -> None:
        """Block every edit (canvas, panels, image switching, shortcuts) while the engine
        rewrites label files."""
        self.autosaver.timer.stop()
        for w in (self.canvas, self.files_dock, self.classes_dock, self.instances_dock):
            w.setEnabled(not busy)
        self._set_enabled(not busy)

    def _reload_all(self, current: Path | None, names_before: list[str] | None = None,
                    aliases: dict[str, str] | None = None) -> None:
        """After a class edit: open images keep their undo history with class ids remapped; an
        image whose history holds a deleted class, or whose file no longer matches, is reloaded."""
        self.autosaver.track(None)
        mapping = class_id_mapping(names_before, list(self.project.class_names), aliases or {})
        dropped = 0
        for path, doc in list(self.docs.items()):
            if mapping is None or not remap_document(doc, mapping) or not self._matches_disk(doc):
                self.undo_group.removeStack(doc.undo_stack)
                del self.docs[path]
                dropped += 1
        if dropped and self.docs:
            self.statusBar().showMessage(f"Undo history kept for {len(self.docs)} open images, "
                                         f"reset for {dropped} whose labels the class edit changed", 8000)
        self.doc = None
        self.class_panel.set_classes(self.project.class_names, min(self.current_class,
                                                                    len(self.project.class_names) - 1))
        self.canvas.class_names = list(self.project.class_names)
        self.fill_list_filters()  # "Has class: X" entries follow the new list
        self.canvas.set_hidden_classes(set())  # ids may have shifted: show every class again
        self.recent_classes = []
        self.current_class = max(0, min(self.current_class, len(self.project.class_names) - 1))
        self.canvas.current_class = self.current_class
        if current is not None:
            self.list_model.refresh(current)
            self.show_image(current)

    def _matches_disk(self, doc) -> bool:
        """The remapped in-memory labels equal the rewritten file (else the file wins)."""
        try:
            disk = self._load_ann(doc.image_path)  # labels and proposals, as the document holds them
        except Exception:  # noqa: BLE001 (any unreadable file: reload and let the editor report it)
            return False
        return same_instances(doc.ann.instances, disk.instances)

    def add_class(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Name:")
        if ok and name.strip():
            self._class_edit(self.project.add_class, name.strip())

    def rename_class(self, k: int) -> None:
        old = self.project.class_names[k]
        name, ok = QInputDialog.getText(self, "Rename class", f"New name for {old!r}:", text=old)
        if ok and name.strip() and name.strip() != old:
            self._class_edit(self.project.rename_class, old, name.strip(), aliases={old: name.strip()})

    def merge_class(self, k: int) -> None:
        names = self.project.class_names
        others = [n for i, n in enumerate(names) if i != k]
        if not others:
            return
        target, ok = QInputDialog.getItem(self, "Merge class", f"Relabel every {names[k]!r} as:", others, 0, False)
        if ok:
            self._class_edit(self.project.merge_classes, names[k], target, aliases={names[k]: target})

    def delete_class(self, k: int) -> None:
        name = self.project.class_names[k]
        if len(self.project.class_names) <= 1:
            self._error("A project needs at least one class.")
            return
        answer = QMessageBox.question(
            self, "Delete class", f"Delete class {name!r} and every instance of it in all label files?\n"
            "(Edit → Undo last class edit restores it.)")
        if answer == QMessageBox.StandardButton.Yes:
            self._class_edit(self.project.delete_class, name)

    def undo_class_edit(self) -> None:
        self._class_edit(self.project.undo_class_edit)


def class_id_mapping(before: list[str] | None, after: list[str], aliases: dict[str, str]) -> dict[int, int | None] | None:
    """Old class id -> new id (None: the class is gone), by name; ``aliases`` for renamed or merged
    names. None when the lists can't be related (no 'before')."""
    if before is None:
        return None
    index = {name: i for i, name in enumerate(after)}
    return {i: index.get(aliases.get(name, name)) for i, name in enumerate(before)}


def remap_document(doc, mapping: dict[int, int | None]) -> bool:
    """Remap class ids in place in the document and every command of its undo stack; False (and
    nothing changed) when any of them holds a class that no longer exists."""
    stack = doc.undo_stack
    objects = {id(inst): inst for inst in doc.ann.instances}
    for k in range(stack.count()):
        objects.update({id(inst): inst for inst in commands.referenced_instances(stack.command(k))})
    if any(mapping.get(inst.class_id) is None for inst in objects.values()):
        return False
    for inst in objects.values():
        inst.class_id = mapping[inst.class_id]
    doc.structure_changed.emit()
    return True


def same_instances(a, b, tol: float = 0.01) -> bool:
    """Same classes and geometry (to ``tol`` px: the file stores 6 normalised decimals)."""
    import numpy as np

    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.class_id != y.class_id or x.is_box != y.is_box:
            return False
        if x.is_box:
            if not np.allclose(x.box, y.box, atol=tol):
                return False
        elif len(x.polygons) != len(y.polygons) or not all(
                p.shape == q.shape and np.allclose(p, q, atol=tol) for p, q in zip(x.polygons, y.polygons)):
            return False
    return True
