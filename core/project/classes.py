"""Class edits of a project: planned inside the lock, applied to project.yaml, the label files and
the proposals through the class-edit journal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.bounded_input import read_regular_text
from core.config import check_class_name, parse_config_text
from core.errors import UserFacingError
from core.project.host import ProjectHost
from core.project.journal import ClassEditJournal, _is_proposals
from core.project.remap import _class_index, _delete_plan, changed_rows, remap_label_files, remap_text
from core.project.template import _flow_list, set_top_level_value
from core.proposals import remap_proposal_files, remap_proposals_text


class ClassEdits(ProjectHost):
    """Add, rename, merge, delete and undo classes (a mixin of :class:`core.project.Project`):
    planned from the files as they are now, applied through the journal."""


    def add_class(self, name: str) -> None:
        check_class_name(name)
        self._edit_classes(lambda names: ("add", [*names, name], {i: i for i in range(len(names))}, None))

    def rename_class(self, old: str, new: str) -> None:
        check_class_name(new)

        def plan(names: list[str]):
            i = _class_index(names, old)
            out = list(names)
            out[i] = new
            return "rename", out, {k: k for k in range(len(names))}, None
        self._edit_classes(plan)

    def merge_classes(self, source: str, target: str) -> None:
        """Relabel every `source` instance as `target` and remove `source` from the list."""
        def plan(names: list[str]):
            if _class_index(names, source) == _class_index(names, target):
                raise UserFacingError(f"cannot merge class {source!r} into itself")
            return _delete_plan(names, source, target)
        self._edit_classes(plan)

    def delete_class(self, name: str, relabel_to: str | None = None) -> None:
        """Remove a class; its instances are relabelled to `relabel_to` or deleted. Ids above shift down."""
        self._edit_classes(lambda names: _delete_plan(names, name, relabel_to))

    def undo_class_edit(self) -> str:
        """Undo the last class edit (one step; repeat for earlier ones); returns its description.
        Rows the edit changed or removed come back exactly; rows labelled since are kept."""
        with self.lock():
            desc = ClassEditJournal(self.root).undo(self)
            self.reload_config()
        return desc

    def _class_index(self, name: str) -> int:
        return _class_index(self.class_names, name)

    def _edit_classes(self, plan: Callable[[list[str]], tuple[str, list[str], dict[int, int | None], int | None]],
                      ) -> None:
        """Plan and apply a class edit inside the project lock, from the class list and label
        files as they are *now* (not as they were when this Project was opened), so two edits
        serialise and a label saved meanwhile is never overwritten with a stale copy."""
        with self.lock():
            self.reload_config()
            old_names = self.class_names
            op, new_names, mapping, removed = plan(old_names)
            text = read_regular_text(self.config_path)
            new_text = set_top_level_value(text, "classes", _flow_list(new_names))
            parse_config_text(new_text, str(self.config_path))  # duplicate/empty names -> ConfigError now
            identity = all(k == v for k, v in mapping.items())  # add/rename: no label changes
            n_old = len(old_names)
            # inverse for files labelled after the edit: the removed id has no pre-image,
            # a merged-into id maps back to the target (the class that kept its identity)
            new_to_old = {new: old for old, new in mapping.items() if new is not None and old != removed}
            changes = {} if identity else remap_label_files(self.labels_dir, mapping, n_old, new_to_old)
            if not identity:  # proposals carry class ids too: they must keep meaning the same class
                changes.update(remap_proposal_files(self.root, mapping))
            changes[self.config_path] = (text, new_text)

            def redo(path: Path, current: str) -> str:  # a file changed by a writer outside the lock
                if path == self.config_path:
                    return set_top_level_value(current, "classes", _flow_list(new_names))
                if _is_proposals(self.root, path):
                    return remap_proposals_text(current, mapping, path)
                return remap_text(current, mapping, path, n_old)

            desc = f"{op}: {', '.join(old_names)} -> {', '.join(new_names)}"
            ClassEditJournal(self.root).apply(desc, changes, new_to_old, redo=redo,
                                              rows={p: changed_rows(old, mapping, p, n_old, new_to_old)
                                                    for p, (old, _) in changes.items()
                                                    if p != self.config_path and not _is_proposals(self.root, p)})
            self.reload_config()
