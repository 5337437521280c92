"""The class-edit journal (.dfine/class_edit.json + class_history/): a class edit that touches many
files is written here first, so a crash half-way is rolled back on the next open and the last
edits can be undone one by one."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from core.atomic_io import atomic_delete, atomic_write_text
from core.bounded_input import load_json_file, load_yaml, read_regular_bytes, read_regular_text
from core.config import CONFIG_FILE
from core.errors import ConfigError, LabelError, UserFacingError
from core.project.labels import _read_label_text, label_files
from core.project.remap import remap_text, undo_text
from core.project.template import _flow_list, set_top_level_value
from core.project_lock import held_here, project_lock
from core.project_paths import PathOutsideError, inside, is_within
from core.proposals import PROPOSALS_DIR, proposal_files, remap_proposals_text

log = logging.getLogger(__name__)

JOURNAL_DIR = ".dfine"


class ProjectFiles(Protocol):
    """What an undo needs of a project (core.project.Project)."""

    @property
    def config_path(self) -> Path: ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def labels_dir(self) -> Path: ...


HISTORY_DIR = "class_history"
HISTORY_LIMIT = 20  # class edits that can be undone, newest first
_HISTORY_NAME = re.compile(r"^[0-9]{1,12}\.json$")


def _is_proposals(root: Path, path: Path) -> bool:
    folder = Path(root) / PROPOSALS_DIR
    return path.suffix == ".json" and path.is_relative_to(folder) and path != folder


def _edit_error(exc: OSError, desc: str, outcome: str) -> OSError:
    """An OSError (errno kept: the CLI reports a full disk as one line) that says what became of
    the class edit as a whole; the inner error speaks of one file only."""
    where = f" ({exc.filename})" if exc.filename else ""
    return OSError(exc.errno, f"{exc.strerror or exc}{where} during the class edit '{desc}': {outcome}")


def check_journal(j: dict, root: Path, source: Path, record: bool = False) -> dict:
    """A class-edit journal (or history record) with the types the code relies on and every
    path inside the project: files[].path is project.yaml or a file under labels/, ``undoes``
    a record under .dfine/, ``history`` a record name. Else ConfigError / PathOutsideError
    naming the file and the field, and nothing of it is replayed."""

    def bad(field: str, value: object, want: str) -> ConfigError:
        return ConfigError(f"{source}: {field} must be {want}, got {value!r:.80}; the class-edit journal "
                           f"was not applied (delete {source} if it did not come from dfine-studio)")

    if not isinstance(j.get("id"), str) or not j["id"]:
        raise bad("id", j.get("id"), "a text")
    if not isinstance(j.get("description", ""), str):
        raise bad("description", j.get("description"), "a text")
    n2o = j.get("new_to_old")
    if not isinstance(n2o, dict) or not all(
            isinstance(k, str) and k.lstrip("-").isdigit() and isinstance(v, int) and not isinstance(v, bool)
            for k, v in n2o.items()):
        raise bad("new_to_old", n2o, "an object of class id -> class id")
    files = j.get("files")
    if not isinstance(files, list):
        raise bad("files", files, "a list")
    labels = root / "labels"
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            raise bad(f"files[{i}]", f, "an object")
        for key in ("old", "new"):
            if not isinstance(f.get(key), str):
                raise bad(f"files[{i}].{key}", f.get(key), "a text")
        rows = f.get("rows", [])
        if not isinstance(rows, list) or not all(
                isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], (str, type(None)))
                for r in rows):
            raise bad(f"files[{i}].rows", rows, "a list of [old row, new row or null]")
        path = inside(root, f.get("path"), f"{source}: files[{i}].path")
        if path != root / CONFIG_FILE and not (path.is_relative_to(labels) and path != labels) \
                and not _is_proposals(root, path):
            raise PathOutsideError(f"{source}: files[{i}].path {f['path']!r} is neither {CONFIG_FILE} nor a "
                                   f"label or proposals file; a class edit touches nothing else")
    if "undoes" in j:
        target = inside(root, j["undoes"], f"{source}: undoes")
        dot = root / JOURNAL_DIR
        if not (target == dot / "class_edit.json"
                or (target.parent == dot / HISTORY_DIR and _HISTORY_NAME.match(target.name))):
            raise PathOutsideError(f"{source}: undoes {j['undoes']!r} is not a class-edit record under "
                                   f"{JOURNAL_DIR}/{HISTORY_DIR}/")
    if "history" in j and not (isinstance(j["history"], str) and _HISTORY_NAME.match(j["history"])):
        raise bad("history", j["history"], "a record name like 000001.json")
    if record and ("undoes" in j):
        raise bad("undoes", j["undoes"], "absent in a history record")
    return j


class ClassEditJournal:
    """`.dfine/class_edit.json` holds the old and new text of every file a class edit touched
    (and, per file, the rows it changed); `.dfine/class_history/` keeps the completed edits
    for undo, newest = highest number.

    apply: journal (fsynced) -> files (atomic each) -> `.done` marker with the edit id ->
    history entry (or, for an undo, removal of the entry it undid).
    recover (on open): a journal without its marker = crash mid-edit -> restore every old text;
    with its marker but the history step missing -> finish that step.
    Callers hold the project lock (core.project_lock) around plan + apply.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.dir = self.root / JOURNAL_DIR
        self.path = self.dir / "class_edit.json"
        self.done = self.dir / "class_edit.done"
        self.history = self.dir / HISTORY_DIR

    def _contained(self, path: Path) -> Path:
        """``path`` (under .dfine/), refused when .dfine or class_history is a symlink out of the project."""
        return inside(self.root, path.relative_to(self.root).as_posix(), f"{path}")

    def _read(self) -> dict | None:
        """The journal, checked: a journal is replayed on open (files written, records deleted),
        so one from elsewhere must not reach outside the project or crash every verb."""
        try:
            j = load_json_file(self._contained(self.path))
        except FileNotFoundError:
            return None
        return check_journal(j, self.root, self.path)

    def _is_done(self, j: dict) -> bool:
        try:
            return read_regular_text(self.done, 1024).strip() == j["id"]
        except FileNotFoundError:
            return False

    def _lock(self, blocking: bool = True):
        """The project lock (kept under this name for callers that guard recovery with it)."""
        return project_lock(self.root, blocking)

    # -------------------------------------------------------------- history

    def _entries(self) -> list[Path]:
        if not self.history.is_dir() or not is_within(self.history, self.root):
            return []  # a class_history linked out of the project is not ours to read
        return sorted(p for p in self.history.glob("*.json") if p.stem.isdigit())

    def _last(self) -> tuple[Path, dict] | None:
        for p in reversed(self._entries()):
            try:
                return p, check_journal(load_json_file(p), self.root, p, record=True)
            except (OSError, UserFacingError) as exc:
                log.warning("damaged class-edit record skipped: %s", exc)
                continue
        j = self._read()  # a journal from before the history existed: still undoable once;
        # likewise an edit whose history record could not be written (disk full at the last step)
        if j is not None and not j.get("undoes") and self._is_done(j) and (
                "history" not in j or not (self.history / j["history"]).exists()):
            return self.path, j
        return None

    def _finish(self, j: dict) -> None:
        """The step after the `.done` marker: record the edit, or drop the record it undid."""
        if j.get("undoes"):
            target = inside(self.root, j["undoes"], f"{self.path}: undoes")  # checked by check_journal too
            if target != self.path:  # a pre-history journal was replaced by this undo's own
                atomic_delete(target)
            return
        name = j.get("history")
        if name and not (self.history / name).exists():
            self.history.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self._contained(self.history / name), json.dumps(j))
            for old in self._entries()[:-HISTORY_LIMIT]:
                atomic_delete(old)

    # -------------------------------------------------------------- apply / recover / undo

    def apply(self, desc: str, changes: dict[Path, tuple[str, str]], new_to_old: dict[int, int],
              redo: Callable[[Path, str], str] | None = None, rows: dict[Path, list] | None = None,
              undoes: str | None = None) -> None:
        with self._lock():
            self._apply_locked(desc, changes, new_to_old, redo, rows or {}, undoes)

    def _apply_locked(self, desc: str, changes: dict[Path, tuple[str, str]], new_to_old: dict[int, int],
                      redo: Callable[[Path, str], str] | None = None, rows: dict[Path, list] | None = None,
                      undoes: str | None = None) -> None:
        rows = rows or {}
        entries = self._entries()
        seq = int(entries[-1].stem) + 1 if entries else 1
        j: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "description": desc,
            "new_to_old": {str(k): v for k, v in new_to_old.items()},
            "files": [
                {"path": p.relative_to(self.root).as_posix(), "old": old, "new": new, "rows": rows.get(p, [])}
                for p, (old, new) in changes.items()
            ],
        }
        if undoes:
            j["undoes"] = undoes
        else:
            j["history"] = f"{seq:06d}.json"
        if "history" in j:  # every place the edit will write is checked before the first write
            self._contained(self.history / j["history"])
        try:
            atomic_write_text(self._contained(self.path), json.dumps(j))
        except OSError as exc:
            raise _edit_error(exc, desc, "nothing was changed") from exc
        try:
            self._write_files(j, changes, redo)
        except Exception as exc:  # a crash (or Ctrl+C) is rolled back by the next open instead
            restored = self._roll_back(j)
            if isinstance(exc, OSError) and exc.errno is not None:
                raise _edit_error(exc, desc, "every file was put back as it was" if restored else
                                  f"it is rolled back when the project is next opened with space free "
                                  f"(journal {self.path})") from exc
            raise
        try:
            self._finish(j)
        except OSError as exc:  # the edit is complete; undo still finds it in the journal (see _last)
            raise _edit_error(exc, desc, "the edit was applied; its undo record is kept in the journal") \
                from exc

    def _write_files(self, j: dict, changes: dict[Path, tuple[str, str]],
                     redo: Callable[[Path, str], str] | None) -> None:
        """Every file of the edit, then the `.done` marker (the edit's commit point)."""
        drifted = False
        for f, (p, (old, new)) in zip(j["files"], changes.items()):
            if redo is not None:
                # a writer that ignores the lock (another tool) changed the file after we read it:
                # apply the edit to what is there now rather than write back the stale copy
                try:
                    cur = read_regular_bytes(p).decode("utf-8-sig" if p.suffix == ".txt" else "utf-8")
                except (OSError, UnicodeDecodeError):
                    cur = old
                if cur != old:
                    f["old"], f["new"], drifted = cur, redo(p, cur), True
                    new = f["new"]
            atomic_write_text(p, new)
        if drifted:
            atomic_write_text(self.path, json.dumps(j))
        atomic_write_text(self.done, j["id"])

    def _roll_back(self, j: dict) -> bool:
        """After a failed write mid-edit: put back every file the edit changed (files it never
        reached are left alone, so a full disk needs no space for them) and drop the journal.
        False when that failed too; the journal then stays for the rollback on the next open."""
        try:
            if self._is_done(j):
                return False
            for f in j["files"]:
                target = inside(self.root, f["path"], f"{self.path}: files[].path")
                try:
                    current = read_regular_bytes(target).decode("utf-8-sig" if target.suffix == ".txt" else "utf-8")
                except (OSError, UnicodeDecodeError):
                    current = None
                if current != f["old"]:
                    atomic_write_text(target, f["old"])
            atomic_delete(self.path)
            return True
        except (OSError, UserFacingError):
            return False

    def recover(self) -> bool:
        """Roll back a half-applied edit; True if something was rolled back. Skipped while
        another process (or this thread, mid-edit) holds the project lock."""
        if not self.path.exists() or held_here(self.root):
            return False
        with self._lock(blocking=False) as mine:
            return mine and self._recover_locked()

    def _recover_locked(self) -> bool:
        j = self._read()
        if j is None:
            return False
        if self._is_done(j):
            self._finish(j)
            return False
        for f in j["files"]:
            atomic_write_text(inside(self.root, f["path"], f"{self.path}: files[].path"), f["old"])
        atomic_delete(self.path)
        log.warning("rolled back an interrupted class edit (%s)", j["description"])
        return True

    def undo(self, project: ProjectFiles) -> str:
        with self._lock():
            return self._undo_locked(project)

    def _undo_locked(self, project: ProjectFiles) -> str:
        last = self._last()
        if last is None:
            raise UserFacingError("nothing to undo: no class edit recorded")
        record_path, j = last
        inv = {int(k): v for k, v in j["new_to_old"].items()}
        journaled = {f["path"]: f for f in j["files"]}
        cfg_rel = project.config_path.relative_to(self.root).as_posix()
        writes: dict[Path, tuple[str, str]] = {}
        n_new = len(project.class_names)
        errors = []

        def undo_file(lp: Path, cur: str) -> str:
            f = journaled.get(lp.relative_to(self.root).as_posix())
            if _is_proposals(self.root, lp):  # JSON: the old text if untouched since, else remapped back
                return f["old"] if f is not None and cur == f["new"] else remap_proposals_text(cur, inv, lp)
            if f is not None:
                return undo_text(cur, f, inv, lp, n_new)
            return remap_text(cur, inv, lp, n_new)

        for pp in proposal_files(self.root):
            try:
                cur = read_regular_text(pp)
                new = undo_file(pp, cur)
            except (UserFacingError, OSError) as exc:
                errors.append(str(exc))
                continue
            if new != cur:
                writes[pp] = (cur, new)

        for lp in label_files(project.labels_dir):
            try:
                cur = _read_label_text(lp)
                new = undo_file(lp, cur)
            except LabelError as exc:
                errors.append(str(exc))
                continue
            if new != cur:
                writes[lp] = (cur, new)
        if errors:
            raise UserFacingError("cannot undo the class edit (nothing was changed):\n  " + "\n  ".join(errors))
        cfg = journaled[cfg_rel]
        cur_cfg = read_regular_text(project.config_path)
        old_classes = (load_yaml(cfg["old"], str(project.config_path)) or {}).get("classes", [])

        def undo_cfg(text: str) -> str:
            return cfg["old"] if text == cfg["new"] else set_top_level_value(text, "classes", _flow_list(old_classes))

        writes[project.config_path] = (cur_cfg, undo_cfg(cur_cfg))

        def redo(path: Path, current: str) -> str:
            return undo_cfg(current) if path == project.config_path else undo_file(path, current)

        # the undo is itself journaled, so a crash during undo rolls back to the edited state
        self._apply_locked(f"undo {j['description']}", writes, {}, redo,
                           undoes=record_path.relative_to(self.root).as_posix())
        return j["description"]


# ---------------------------------------------------------------------- YAML text edits
