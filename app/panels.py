"""Side panels: the class list (pick/add/rename/merge/delete) and the instances list
(selection and visibility synced with the canvas)."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.theme import class_color, icon, swatch
from core.annotation import Instance


def instance_text(k: int, inst: Instance, names: list[str]) -> str:
    name = names[inst.class_id] if 0 <= inst.class_id < len(names) else f"class {inst.class_id}"
    if inst.is_box:
        shape = "box"
    else:
        n = sum(len(p) for p in inst.polygons)
        shape = f"{n} pts" + (f" · {len(inst.polygons)} parts" if len(inst.polygons) > 1 else "")
    tag = f" · model {inst.score:.2f}" if inst.source == "model" and inst.score is not None else (
        " · model" if inst.source == "model" else "")
    return f"{k + 1}. {name} · {shape}{tag}"


class ClassPanel(QWidget):
    class_picked = Signal(int)
    add_requested = Signal()
    rename_requested = Signal(int)
    merge_requested = Signal(int)
    delete_requested = Signal(int)
    visibility_changed = Signal(set)  # class ids now hidden on the canvas

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("classList")
        self.list.setIconSize(QSize(14, 14))
        self.list.currentRowChanged.connect(self._picked)
        self.list.itemDoubleClicked.connect(lambda it: self.rename_requested.emit(self.list.row(it)))
        self.list.itemChanged.connect(lambda _it: self.visibility_changed.emit(self.hidden_classes()))
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        self.buttons = {}
        for name, tip, slot in (("add", "Add class", lambda: self.add_requested.emit()),
                                ("rename", "Rename class", lambda: self._emit(self.rename_requested)),
                                ("merge", "Merge into another class", lambda: self._emit(self.merge_requested)),
                                ("delete", "Delete class", lambda: self._emit(self.delete_requested))):
            b = QToolButton()
            b.setIcon(icon(name))
            b.setProperty("icon_name", name)
            b.setToolTip(tip)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
            bar.addWidget(b)
            self.buttons[name] = b
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.list)
        lay.addLayout(bar)

    def _emit(self, sig) -> None:
        if self.list.currentRow() >= 0:
            sig.emit(self.list.currentRow())

    def _picked(self, row: int) -> None:
        if row >= 0:
            self.class_picked.emit(row)

    def set_classes(self, names: list[str], current: int = 0, hidden: set[int] | None = None) -> None:
        """Fill the list; each row's checkbox shows/hides that class on the canvas."""
        with QSignalBlocker(self.list):
            self.list.clear()
            for i, n in enumerate(names):
                key = f"{i + 1}  " if i < 9 else "    "
                it = QListWidgetItem(swatch(class_color(i)), f"{key}{n}")
                it.setToolTip(f"{n} (id {i})" + (f" — key {i + 1}" if i < 9 else "")
                              + "\nuncheck to hide this class on the canvas")
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                it.setCheckState(Qt.CheckState.Unchecked if hidden and i in hidden else Qt.CheckState.Checked)
                self.list.addItem(it)
            self.list.setCurrentRow(min(current, len(names) - 1))

    def hidden_classes(self) -> set[int]:
        return {r for r in range(self.list.count())
                if self.list.item(r).checkState() != Qt.CheckState.Checked}

    def set_class_visible(self, k: int, visible: bool) -> None:
        it = self.list.item(k)
        if it is not None:
            it.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    def set_current(self, row: int) -> None:
        with QSignalBlocker(self.list):
            self.list.setCurrentRow(row)


class InstancePanel(QWidget):
    selection_changed = Signal(list)
    visibility_toggled = Signal(int, bool)  # index, hidden

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("instanceList")
        self.list.setIconSize(QSize(14, 14))
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.itemSelectionChanged.connect(self._selection)
        self.list.itemChanged.connect(self._checked)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.list)

    def set_instances(self, instances: list[Instance], names: list[str], hidden: list[bool],
                      selected: list[int]) -> None:
        with QSignalBlocker(self.list):
            self.list.clear()
            for k, inst in enumerate(instances):
                it = QListWidgetItem(swatch(class_color(inst.class_id)), instance_text(k, inst, names))
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                it.setCheckState(Qt.CheckState.Unchecked if hidden[k] else Qt.CheckState.Checked)
                it.setToolTip("uncheck to hide on the canvas")
                self.list.addItem(it)
            self._select(selected)

    def update_row(self, k: int, inst: Instance, names: list[str]) -> None:
        it = self.list.item(k)
        if it is not None:
            with QSignalBlocker(self.list):
                it.setText(instance_text(k, inst, names))
                it.setIcon(swatch(class_color(inst.class_id)))

    def set_selection(self, rows: list[int]) -> None:
        with QSignalBlocker(self.list):
            self._select(rows)

    def _select(self, rows: list[int]) -> None:
        self.list.clearSelection()
        for r in rows:
            it = self.list.item(r)
            if it is not None:
                it.setSelected(True)
        if rows and self.list.item(rows[-1]) is not None:
            self.list.scrollToItem(self.list.item(rows[-1]))

    def _selection(self) -> None:
        self.selection_changed.emit(sorted(self.list.row(it) for it in self.list.selectedItems()))

    def _checked(self, item: QListWidgetItem) -> None:
        self.visibility_toggled.emit(self.list.row(item), item.checkState() != Qt.CheckState.Checked)
