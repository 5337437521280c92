"""Class actions of the main window: pick with 1-9 (relabelling the selection), and
add / rename / merge / delete / undo through ``core.project`` (the engine rewrites the
label files atomically and journals the edit), after which every open document is
reloaded from disk because class ids may have shifted."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QInputDialog, QMessageBox

from app import commands
from app.document import file_signature
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
        what = describe_class_edit(fn, args)
        self.autosaver.track(None)  # the edit rewrites label files: that is no "other program"
        self.set_busy(True)
        self.class_edit_last = None
        return self.start_task(lambda _task: fn(*args), title="Updating classes", cancellable=False,
                               on_done=lambda result: self._class_edit_done(what, result),
                               on_end=lambda: (self.set_busy(False),
                                               self._reload_all(current, names_before, aliases or {},
                                                                undo=fn == self.project.undo_class_edit)))

    def _class_edit_done(self, what: str | None, result) -> None:
        """After a class edit: Ctrl+Z (Edit → Undo) undoes it while it is the last thing done."""
        undone = getattr(self, "_last_class_edit", None)
        self._last_class_edit = what
        self.class_edit_last = what  # None after an undo: the next Ctrl+Z is the image's own undo
        self._class_edit_at = self._undo_position()
        if what is None:
            # the engine's description lists both 80-name class lists: name the edit in one line
            text = undone or (str(result).split(":")[0] if result else "the class edit")
            self.statusBar().showMessage(f"Undone: {text}", 8000)
        elif not self._undo_kept_message:
            self.statusBar().showMessage(f"Done: {what} (Ctrl+Z undoes it)", 8000)
        self._sync_undo_action()

    def set_busy(self, busy: bool) -> None:
        """Block every edit (canvas, panels, image switching, shortcuts) while the engine
        rewrites label files."""
        self.autosaver.timer.stop()
        for w in (self.canvas, self.files_dock, self.classes_dock, self.instances_dock):
            w.setEnabled(not busy)
        self._set_enabled(not busy)

    def _reload_all(self, current: Path | None, names_before: list[str] | None = None,
                    aliases: dict[str, str] | None = None, undo: bool = False) -> None:
        """After a class edit: open images keep their undo history with class ids remapped; an
        image whose history holds a deleted class, or whose file no longer matches, is reloaded."""
        self.autosaver.track(None)
        mapping = class_id_mapping(names_before, list(self.project.class_names), aliases or {})
        undone = getattr(self, "_class_snapshot", None) if undo else None
        snapshot: dict[Path, dict[int, tuple[object, int]]] = {}
        reset: list[str] = []
        kept = 0
        for path, doc in list(self.docs.items()):
            signature = file_signature(doc.label_path)  # before reading: a later writer still shows
            ids = class_ids(doc)
            if undone is not None and set(ids) <= set(undone.get(path, {})):
                # undoing a class edit: every instance (and its history) gets the class it had before
                ok = restore_class_ids(doc, undone[path]) and self._matches_disk(doc)
                if not ok:
                    restore_class_ids(doc, ids)
            else:
                ok = False
            if not ok and (mapping is None or not remap_document(doc, mapping) or not self._matches_disk(doc)):
                self.undo_group.removeStack(doc.undo_stack)
                del self.docs[path]
                if doc.undo_stack.count():
                    reset.append(path.name)
            else:
                # the remapped labels ARE the rewritten file: not "changed by another program"
                doc.disk_signature = signature
                kept += bool(doc.undo_stack.count())
                snapshot[path] = ids
        self._class_snapshot = None if undo else snapshot  # what "Undo class edit" gives back
        self._undo_kept_message = bool(reset)
        if reset:
            names = ", ".join(reset[:3]) + (f" and {len(reset) - 3} more" if len(reset) > 3 else "")
            self.statusBar().showMessage(
                f"Undo history reset on {len(reset)} image{'s' if len(reset) > 1 else ''} the class edit made "
                f"inconsistent ({names}); kept on {kept} other{'s' if kept != 1 else ''}", 10000)
        self.doc = None
        current_class_before = self.current_class
        self.apply_class_colors(aliases or {})  # colours follow the names: no other class changes colour
        self.class_panel.set_classes(self.project.class_names, min(self.current_class,
                                                                    len(self.project.class_names) - 1))
        self.canvas.class_names = list(self.project.class_names)
        self.fill_list_filters()  # "Has class: X" entries follow the new list
        self.canvas.set_hidden_classes(set())  # ids may have shifted: show every class again
        self.recent_classes = []
        self.current_class = max(0, min(self.current_class, len(self.project.class_names) - 1))
        if names_before and 0 <= current_class_before < len(names_before):
            # the class being drawn stays the same class (by name; a merged one: its target), not
            # whatever class now has its old index
            kept = (aliases or {}).get(names_before[current_class_before], names_before[current_class_before])
            if kept in self.project.class_names:
                self.current_class = self.project.class_names.index(kept)
        self.class_panel.set_current(self.current_class)
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


def describe_class_edit(fn, args) -> str | None:
    """What the Edit menu's Undo names (None for an undo itself)."""
    name = getattr(fn, "__name__", "")
    if name == "add_class":
        return f"add class {args[0]!r}"
    if name == "rename_class":
        return f"rename class {args[0]!r} to {args[1]!r}"
    if name == "merge_classes":
        return f"merge class {args[0]!r} into {args[1]!r}"
    if name == "delete_class":
        return f"delete class {args[0]!r}"
    return None


def class_id_mapping(before: list[str] | None, after: list[str], aliases: dict[str, str]) -> dict[int, int | None] | None:
    """Old class id -> new id (None: the class is gone), by name; ``aliases`` for renamed or merged
    names. None when the lists can't be related (no 'before')."""
    if before is None:
        return None
    index = {name: i for i, name in enumerate(after)}
    return {i: index.get(aliases.get(name, name)) for i, name in enumerate(before)}


def _objects(doc) -> dict[int, object]:
    stack = doc.undo_stack
    objects = {id(inst): inst for inst in doc.ann.instances}
    for k in range(stack.count()):
        objects.update({id(inst): inst for inst in commands.referenced_instances(stack.command(k))})
    return objects


def class_ids(doc) -> dict[int, tuple[object, int]]:
    """id(instance) -> (instance, class id) for every instance the document and its undo history
    hold (the instance is kept so that its id is not reused while the snapshot lives)."""
    return {key: (inst, inst.class_id) for key, inst in _objects(doc).items()}


def restore_class_ids(doc, ids: dict[int, tuple[object, int]]) -> bool:
    """Give every instance of the document and its history the class id in ``ids`` (a
    ``class_ids`` snapshot); False (nothing changed) when some instance is not in it."""
    objects = _objects(doc)
    if any(ids.get(key, (None,))[0] is not inst for key, inst in objects.items()):
        return False
    for key, inst in objects.items():
        inst.class_id = ids[key][1]
    doc.structure_changed.emit()
    return True


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
