"""The keyboard map (labelme / X-AnyLabeling habits) and the Help → Shortcuts dialog.
One table so the menus and the dialog can never disagree."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

# action id -> (keys, description); keys use QKeySequence portable text. Plain keys act only
# while the canvas (tools, edits) or the window (D/A) has focus: a focused field or list keeps them.
SHORTCUTS: dict[str, tuple[list[str], str]] = {
    "next": (["D"], "Next image"),
    "prev": (["A"], "Previous image"),
    "polygon": (["P"], "Polygon tool: click vertices; click the first one or press Enter to close"),
    "box": (["R"], "Draw box (drag)"),
    "grabcut": (["G"], "GrabCut: drag a box -> polygon; click object / right-click (Shift+click) background "
                       "to refine"),
    "model_box": (["M"], "Segment with the project's model inside a dragged box"),
    "scissors": (["I"], "Intelligent scissors: click points along an outline (it snaps to edges, the pointer "
                        "previews); click the first point or Enter closes; Ctrl+Z / Backspace / right click "
                        "removes the last point; Esc cancels"),
    "sam": (["S"], "Click-to-segment (SAM, Tools → Choose SAM model): click the object, right-click "
                   "(Shift+click) background, or drag a box -> a model proposal; Enter: next object"),
    "brush": (["B"], "Brush: paint onto the selected instance's mask (nothing selected: a new instance)"),
    "eraser": (["E"], "Eraser: erase from the selected instance's mask (holes and splits are kept)"),
    "brush_bigger": (["]"], "Bigger brush/eraser"),
    "brush_smaller": (["["], "Smaller brush/eraser"),
    "select": (["V", "Esc"], "Select / edit tool (Esc: cancel drawing, then deselect)"),
    "delete": (["Del", "Backspace"], "Delete the selected instances; with the pointer on a highlighted vertex "
                                     "of a selected polygon, that vertex (a box corner: the box)"),
    "undo": (["Ctrl+Z"], "Undo"),
    "redo": (["Ctrl+Shift+Z", "Ctrl+Y"], "Redo"),
    "save": (["Ctrl+S"], "Save now (also autosaved on image switch and when idle)"),
    "fit": (["F"], "Fit image to window"),
    "zoom_in": (["Ctrl++", "Ctrl+="], "Zoom in"),
    "zoom_out": (["Ctrl+-"], "Zoom out"),
    "hide": (["H"], "Hide the selected instances (they leave the selection); nothing selected: show all hidden"),
    "lock": (["Ctrl+L"], "Lock the selected instances against edits (shown, not selectable); nothing "
                         "selected: unlock all"),
    "pick_class": (["L"], "Class picker: type to filter, Enter picks (relabels the selection); recent first"),
    "names": (["Shift+L"], "Show/hide class names on the canvas"),
    "accept": (["Ctrl+Return"], "Accept model proposals (selected, or all)"),
    "predict": (["Ctrl+P"], "Predict this image with the chosen model"),
    "open": (["Ctrl+O"], "Open project"),
    "new": (["Ctrl+N"], "New project"),
    "search": (["Ctrl+F"], "Search images by name"),
    "done": (["Y"], "Mark the image done / verified (again: not done); the list can filter by it"),
    "shortcuts": (["F1"], "This list"),
}

# Canvas gestures that are not QActions (shown in the dialog only).
GESTURES: list[tuple[str, str]] = [
    ("1 … 9", "Pick class 1–9 (also relabels the selected instances)"),
    ("Space + drag / middle drag", "Pan"),
    ("Mouse wheel", "Zoom at the cursor"),
    ("Drag a vertex", "Move the vertex"),
    ("Double-click an edge", "Insert a vertex"),
    ("Shift + click a vertex", "Delete the vertex"),
    ("Drag inside an instance", "Move the instance"),
    ("Ctrl + click", "Add to / remove from the selection"),
    ("Backspace / right click while drawing", "Remove the last polygon (or scissors) point"),
    ("Esc while drawing", "Cancel the drawing"),
]


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = [(", ".join(keys), text) for keys, text in SHORTCUTS.values()] + GESTURES
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        for r, (keys, text) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(keys))
            table.setItem(r, 1, QTableWidgetItem(text))
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft)
        table.verticalHeader().setDefaultSectionSize(24)
        # a long description wraps onto more lines (it was cut with "…" in a 24 px row)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.setTextElideMode(Qt.TextElideMode.ElideNone)
        table.setWordWrap(True)
        table.setShowGrid(False)
        table.setAlternatingRowColors(True)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(table)
        lay.addWidget(buttons)
        self.resize(760, 640)
