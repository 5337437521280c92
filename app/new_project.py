"""File → New project…: the class names, the task and where the trained model will run, in one
dialog (after the folder is chosen)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

from app.deploy_target import deploy_target_box


class NewProjectDialog(QDialog):
    """``values()``: (class names, task, deploy target) once accepted."""

    def __init__(self, folder: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("New project")
        self.classes_edit = QLineEdit("object")
        self.classes_edit.setPlaceholderText("cat, dog, car")
        self.classes_edit.selectAll()
        self.task_box = QComboBox()
        self.task_box.addItem("Segment (polygons)", "segment")
        self.task_box.addItem("Detect (boxes)", "detect")
        self.target_box = deploy_target_box()
        folder_label = QLabel(str(folder))
        folder_label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        form = QFormLayout(self)
        form.addRow("Folder", folder_label)
        form.addRow("Classes (comma separated)", self.classes_edit)
        form.addRow("Task", self.task_box)
        form.addRow("Model will run on", self.target_box)
        form.addRow(buttons)
        self.setMinimumWidth(460)

    def values(self) -> tuple[list[str], str, str]:
        names = [c.strip() for c in self.classes_edit.text().split(",") if c.strip()]
        return names, str(self.task_box.currentData()), str(self.target_box.currentData())
