"""The image list: file names with a status chip (unlabelled / labelled / flagged by
review / label error) or a green check when the person marked the image done, filtered by
status, done / not done, "has model proposals" or "has class X", and searched by name.

Lazy on purpose: a 10,000-image project must open in well under 2 s, so the model
holds only the path list; a row's status (one ``stat`` of its label file) is
computed when the row is first painted or a status filter needs it; the classes and
proposal marks of a row are read from its label file (and sidecar) only when a content
filter asks, and cached until the row is saved again.
"""

from __future__ import annotations

import enum
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

from app.theme import ERROR_COLOR, icon, swatch
from core.data.formats.yolo_txt import sidecar_path

DONE_COLOR = "#3fb950"


class Status(enum.IntEnum):
    UNLABELLED = 0
    LABELLED = 1
    FLAGGED = 2
    ERROR = 3


STATUS_TEXT = {Status.UNLABELLED: "unlabelled", Status.LABELLED: "labelled",
               Status.FLAGGED: "flagged by review", Status.ERROR: "label file has errors"}
STATUS_COLOR = {Status.UNLABELLED: QColor("#80858f"), Status.LABELLED: QColor("#3fb950"),
                Status.FLAGGED: QColor("#e3a008"), Status.ERROR: QColor(ERROR_COLOR)}

StatusRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2


def review_flagged(project) -> set[str]:
    """Image file names with open (undecided) review items; the review store is owned by
    the review panel (core.analysis.review). No review yet = no flags."""
    try:
        from core.analysis.review import flagged_image_names
    except ImportError:
        return set()
    return flagged_image_names(project)


class ImageListModel(QAbstractListModel):
    def __init__(self, paths: list[Path], label_path: Callable[[Path], Path], parent=None,
                 proposals_path: Callable[[Path], Path] | None = None):
        super().__init__(parent)
        self.paths = list(paths)
        self.label_path = label_path
        self.proposals_path = proposals_path  # core.proposals store (None: only legacy sidecar marks)
        self._status: dict[int, Status] = {}
        self.flagged: set[str] = set()
        self.errors: set[Path] = set()
        self._icons = {s: swatch(c, 10) for s, c in STATUS_COLOR.items()}
        self._row_of: dict[Path, int] | None = None  # built on first lookup
        self.done: set[Path] = set()  # images the person marked done / verified
        self._done_icon = icon("done-filled", DONE_COLOR)
        self._content: dict[int, tuple[frozenset[int], bool]] = {}  # row -> (class ids, has proposals)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.paths)

    def status(self, row: int) -> Status:
        st = self._status.get(row)
        if st is None:
            path = self.paths[row]
            if path in self.errors:
                st = Status.ERROR
            elif path.name in self.flagged:
                st = Status.FLAGGED
            else:
                st = Status.LABELLED if os.path.exists(self.label_path(path)) else Status.UNLABELLED
            self._status[row] = st
        return st

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = index.row()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.paths[row].name
        if role == Qt.ItemDataRole.DecorationRole:
            st = self.status(row)
            return self._done_icon if self.paths[row] in self.done and st != Status.ERROR else self._icons[st]
        if role == Qt.ItemDataRole.ToolTipRole:
            done = " · done" if self.paths[row] in self.done else ""
            return f"{self.paths[row]}\n{STATUS_TEXT[self.status(row)]}{done}"
        if role == StatusRole:
            return int(self.status(row))
        if role == PathRole:
            return str(self.paths[row])
        return None

    def row_of(self, path: Path) -> int:
        if self._row_of is None:
            self._row_of = {p: i for i, p in enumerate(self.paths)}
        return self._row_of.get(Path(path), -1)

    def add_path(self, path: Path) -> int:
        """Append a new image (a live frame sent to the project) without rebuilding the list, so
        the editor keeps its image, selection and undo history; returns its row."""
        path = Path(path)
        row = self.row_of(path)
        if row >= 0:
            self.refresh(path)
            return row
        row = len(self.paths)
        self.beginInsertRows(QModelIndex(), row, row)
        self.paths.append(path)
        if self._row_of is not None:
            self._row_of[path] = row
        self.endInsertRows()
        return row

    def refresh(self, path: Path, error: bool | None = None) -> None:
        """Recompute one row's status (after save, reload or a load error)."""
        path = Path(path)
        if error is True:
            self.errors.add(path)
        elif error is False:
            self.errors.discard(path)
        row = self.row_of(path)
        if row >= 0:
            self._status.pop(row, None)
            self._content.pop(row, None)
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)

    def set_flagged(self, names: set[str]) -> None:
        self.flagged = set(names)
        self._status.clear()
        if self.paths:
            self.dataChanged.emit(self.index(0), self.index(len(self.paths) - 1))

    def set_done(self, paths: list[Path], done: bool) -> None:
        for p in paths:
            (self.done.add if done else self.done.discard)(Path(p))
            row = self.row_of(p)
            if row >= 0:
                idx = self.index(row)
                self.dataChanged.emit(idx, idx)

    def content(self, row: int) -> tuple[frozenset[int], bool]:
        """(class ids in the label file, whether any row is a model proposal) — read lazily.
        An unreadable file counts as neither (its row shows the error status)."""
        got = self._content.get(row)
        if got is None:
            path = self.paths[row]
            got = read_label_content(self.label_path(path),
                                     self.proposals_path(path) if self.proposals_path else None)
            self._content[row] = got
        return got

    def counts(self) -> dict[Status, int]:
        out = {s: 0 for s in Status}
        for r in range(len(self.paths)):
            out[self.status(r)] += 1
        return out


def read_label_content(label_path: Path, proposals_file: Path | None = None) -> tuple[frozenset[int], bool]:
    """Class ids of a YOLO txt (first token of each row) and whether its sidecar marks a row
    as a model proposal. Cheap and forgiving: the editor reports malformed files itself."""
    classes: set[int] = set()
    has_proposals = proposals_file is not None and os.path.isfile(proposals_file)
    try:
        if not stat.S_ISREG(os.stat(label_path).st_mode):  # a FIFO would block open() on the GUI thread
            return frozenset(), has_proposals
        with open(label_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                head = line.split(maxsplit=1)
                if head and head[0].isdigit():
                    classes.add(int(head[0]))
    except OSError:
        return frozenset(), has_proposals
    if has_proposals:
        return frozenset(classes), True
    proposals = False
    side = sidecar_path(label_path)
    try:
        if side.stat().st_size < 64 * 1024 * 1024:
            rows = json.loads(side.read_text(encoding="utf-8")).get("rows", {})
            proposals = any(isinstance(v, dict) and v.get("source") == "model" for v in rows.values())
    except (OSError, ValueError, AttributeError):
        proposals = False
    return frozenset(classes), proposals


class ImageFilter(QSortFilterProxyModel):
    """Name search (case-insensitive substring) and one list filter: a status, "done",
    "not_done", "proposals" or ("class", k); None = all."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.status: Status | None = None
        self.kind: str | tuple[str, int] | None = None
        # the image on screen stays listed when its own change (a done mark, a label error found
        # on opening) would filter it out: the list must not jump under the person. Set while the
        # row is listed (no re-filter needed); the window drops it when the person moves on.
        self.keep: str | None = None  # a PathRole string

    def refilter(self) -> None:
        self._change(lambda: None)

    def set_text(self, text: str) -> None:
        self._change(lambda: (setattr(self, "text", text.strip().lower()), setattr(self, "keep", None)))

    def set_status(self, status: Status | None) -> None:
        self._change(lambda: (setattr(self, "status", status), setattr(self, "kind", None),
                              setattr(self, "keep", None)))

    def set_kind(self, kind: str | tuple[str, int] | None) -> None:
        """A content/done filter (replaces any status filter)."""
        self._change(lambda: (setattr(self, "kind", kind), setattr(self, "status", None),
                              setattr(self, "keep", None)))

    def _change(self, apply) -> None:
        """Qt >= 6.9 wants begin/endFilterChange around the change; older Qt invalidateFilter."""
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            apply()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            apply()
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:
        model: ImageListModel = self.sourceModel()  # type: ignore[assignment]
        if self.keep is not None and str(model.paths[row]) == self.keep:
            return True
        if self.text and self.text not in model.paths[row].name.lower():
            return False
        if self.kind is not None:
            if self.kind in ("done", "not_done"):
                return (model.paths[row] in model.done) == (self.kind == "done")
            classes, proposals = model.content(row)
            if self.kind == "proposals":
                return proposals
            return self.kind[1] in classes
        return self.status is None or model.status(row) == self.status
