"""Type-to-filter class picker (labelme-style) for projects with many classes.

Why: keys 1-9 reach nine classes; with 80 a person types a few letters instead. The popup
lists recently used classes first, then every class in id order; typing filters by
substring (or by id number), Up/Down move, Enter picks, Esc cancels. It is non-modal
(``picked`` signal) so the window and the tests never sit in a nested event loop.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, QSize, Qt, Signal
from PySide6.QtWidgets import QDialog, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout

from app.theme import class_color, swatch

MAX_RECENT = 5


def picker_order(names: list[str], recent: list[int], text: str = "") -> list[int]:
    """Class ids to list: recent first (most recent first), then the rest by id; filtered by
    ``text`` (case-insensitive substring of the name, or the 1-based number as typed)."""
    n = len(names)
    head = [k for k in dict.fromkeys(recent) if 0 <= k < n][:MAX_RECENT]
    order = head + [k for k in range(n) if k not in head]
    t = text.strip().lower()
    if not t:
        return order
    if t.isdigit():
        exact = [k for k in order if str(k + 1) == t]
        return exact + [k for k in order if t in names[k].lower() and k not in exact]
    starts = [k for k in order if names[k].lower().startswith(t)]
    return starts + [k for k in order if t in names[k].lower() and k not in starts]


def remember(recent: list[int], k: int) -> list[int]:
    """Most-recently-used list with ``k`` moved to the front."""
    return [k] + [r for r in recent if r != k][: MAX_RECENT * 2 - 1]


class ClassPicker(QDialog):
    picked = Signal(int)  # class id

    def __init__(self, names: list[str], recent: list[int], title: str = "Class", parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("classPicker")
        self.names = list(names)
        self.recent = list(recent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Type to filter classes…")
        self.filter.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.setIconSize(QSize(14, 14))
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # typing always goes to the filter
        self.hint = QLabel("Enter: pick · ↑/↓: move · Esc: cancel")
        self.hint.setObjectName("muted")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.filter)
        lay.addWidget(self.list, 1)
        lay.addWidget(self.hint)
        self.filter.textChanged.connect(self._refill)
        self.filter.returnPressed.connect(self._accept_current)
        self.filter.installEventFilter(self)
        self.list.itemActivated.connect(lambda _it: self._accept_current())
        self.list.itemClicked.connect(lambda _it: self._accept_current())
        self._refill("")
        self.resize(300, 360)

    def shown_ids(self) -> list[int]:
        return [self.list.item(r).data(Qt.ItemDataRole.UserRole) for r in range(self.list.count())]

    def _refill(self, text: str) -> None:
        self.list.clear()
        head = set(self.recent[:MAX_RECENT])
        for k in picker_order(self.names, self.recent, text):
            mark = "  ·  recent" if k in head and not text.strip() else ""
            it = QListWidgetItem(swatch(class_color(k)), f"{k + 1}. {self.names[k]}{mark}")
            it.setData(Qt.ItemDataRole.UserRole, k)
            self.list.addItem(it)
        if self.list.count():
            self.list.setCurrentRow(0)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if watched is self.filter and event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if key in (Qt.Key.Key_Down, Qt.Key.Key_Up, Qt.Key.Key_PageDown, Qt.Key.Key_PageUp):
                step = {Qt.Key.Key_Down: 1, Qt.Key.Key_Up: -1, Qt.Key.Key_PageDown: 8, Qt.Key.Key_PageUp: -8}[key]
                if self.list.count():
                    self.list.setCurrentRow(min(max(self.list.currentRow() + step, 0), self.list.count() - 1))
                return True
        return super().eventFilter(watched, event)

    def _accept_current(self) -> None:
        it = self.list.currentItem()
        if it is None:
            return
        k = int(it.data(Qt.ItemDataRole.UserRole))
        self.accept()
        self.picked.emit(k)

    def popup_at(self, pos: QPoint | None = None) -> None:
        """Show non-modally (near ``pos``, global coordinates) with the filter focused."""
        rows = min(self.list.count(), 12)
        self.resize(300, 96 + rows * max(22, self.list.sizeHintForRow(0) if rows else 22))
        if pos is not None:
            screen = self.screen().availableGeometry() if self.screen() else None
            if screen is not None:  # keep the whole popup on the screen
                pos = QPoint(min(max(pos.x(), screen.left()), screen.right() - self.width()),
                             min(max(pos.y(), screen.top()), screen.bottom() - self.height()))
            self.move(pos)
        self.show()
        self.raise_()
        self.activateWindow()
        self.filter.setFocus()
