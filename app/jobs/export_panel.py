"""Export panel: one button for the whole INT8 OpenVINO chain (ONNX -> OpenVINO -> NNCF INT8
calibrated on the project's images, accuracy control optional), other formats/precisions
from checkboxes, progress from `dfine export --events -` (core.messages), then exports/<name>/report.json
as a table (format, precision, size, e2e/raw latency, F1, F1 diff) and "Open folder".

The export runs as `python -m core export ...` (ProcessJob): NNCF calibration can take
minutes and lots of memory, and must never freeze or crash the window.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.jobs.process_job import ProcessJob
from app.theme import show_status
from core.errors import UserFacingError
from core.messages import ExportReport, ProgressEvent, ReportRow, ResultEvent, read_export_report
from core.project import as_project

REPORT_FILE = "report.json"
FORMATS = ("onnx", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
COLUMNS = ("format", "precision", "size (MB)", "e2e (ms)", "raw (ms)", "F1", "F1 diff")


# ------------------------------------------------------------------------------ report reading


def read_report(path: Path) -> ExportReport:
    """The export report (``core.messages.ExportReport``, what core.export.report writes); a bad
    file raises UserFacingError naming it and the first wrong field."""
    try:
        report = read_export_report(Path(path))
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    if not report.results:
        raise UserFacingError(f"{path}: the report lists no exported models")
    return report


def report_cells(row: ReportRow) -> list[str]:
    """The table's cells for one row (COLUMNS)."""
    return [row.format, row.precision, _fmt(row.size_mb, 1), _fmt(row.e2e_p50_ms, 1),
            _fmt(row.raw_p50_ms, 1), _fmt(row.val_f1, 3), _fmt(row.f1_delta_vs_torch, 3, signed=True)]


def _fmt(v: float | None, digits: int, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


# ------------------------------------------------------------------------------ progress

STAGE_TEXT = {  # core.export.pipeline.STAGES
    "onnx": "Exporting ONNX",
    "openvino": "Converting to OpenVINO",
    "int8": "INT8 calibration (NNCF)",
    "accuracy": "INT8 accuracy control",
    "tensorrt": "Building TensorRT engines",
    "measure": "Measuring latency and F1",
    "report": "Writing the report",
}


def plan_stages(formats: list[str], precisions: list[str], accuracy_control: bool) -> list[str]:
    """The stages `dfine export` will announce for this request, in order."""
    stages = ["onnx"]
    if "openvino" in formats:
        stages.append("openvino")
        if "int8" in precisions:
            stages.append("int8")
            if accuracy_control:
                stages.append("accuracy")
    if "tensorrt" in formats:
        stages.append("tensorrt")
    return stages + ["measure", "report"]


class ExportProgress:
    """`dfine export --events -` progress events -> a fraction done and a stage name. Stages are
    equal slices; a stage only moves forward; done/total within a stage fills its slice."""

    def __init__(self, stages: list[str]):
        self.stages = stages
        self.index = 0
        self.within = 0.0
        self.finished = False

    @property
    def stage(self) -> str:
        return self.stages[self.index]

    @property
    def fraction(self) -> float:
        if self.finished:
            return 1.0
        return min(0.999, (self.index + self.within) / len(self.stages))

    def feed(self, msg: Any) -> None:
        """One parsed event (``core.messages``); kinds other than progress/result are ignored."""
        if isinstance(msg, ResultEvent):
            self.finished = True
        if not isinstance(msg, ProgressEvent) or msg.stage not in self.stages:
            return
        i = self.stages.index(msg.stage)
        if i > self.index:
            self.index, self.within = i, 0.0
        if i == self.index and msg.fraction() is not None:
            self.within = max(self.within, msg.fraction() * 0.99)


# ------------------------------------------------------------------------------ the panel


class ExportPanel(QWidget):
    """Export the project's trained model. ``export_finished(Path report or None, exit code)``."""

    export_finished = Signal(object, int)

    def __init__(self, project: Any | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.job: ProcessJob | None = None
        self.progress_model: ExportProgress | None = None
        self.report_path: Path | None = None
        self.export_dir: Path | None = None
        self.report: ExportReport | None = None
        self.last_message = ""
        self._started_at = 0.0
        self._build_ui()
        if project is not None:
            self.set_project(project)

    # ---- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        """Top to bottom: what to export, the one-click INT8 action, other formats, progress,
        the report table and the log."""
        src = self._source_row()
        one = self._one_click_row()
        other_group = self._other_formats_group()
        prog = self._progress_row()
        rep = self._report_row()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setMaximumHeight(140)

        layout = QVBoxLayout(self)
        layout.addLayout(src)
        layout.addLayout(one)
        layout.addWidget(other_group)
        layout.addLayout(prog)
        layout.addLayout(rep)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.log_view)

    def _source_row(self) -> QHBoxLayout:
        """Checkpoint (a combo of the project's runs, editable) and the export name."""
        self.checkpoint_box = QComboBox()
        self.checkpoint_box.setEditable(True)
        self.checkpoint_box.setMinimumWidth(320)
        self.checkpoint_box.lineEdit().setPlaceholderText("runs/<name>/best.pt")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("export name (default: the run's name)")
        src = QHBoxLayout()
        src.addWidget(QLabel("Checkpoint"))
        src.addWidget(self.checkpoint_box, 1)
        src.addWidget(browse)
        src.addWidget(QLabel("Name"))
        src.addWidget(self.name_edit)
        return src

    def _one_click_row(self) -> QHBoxLayout:
        """The one-click INT8 OpenVINO export, with optional accuracy control."""
        self.int8_button = QPushButton("Export INT8 OpenVINO")
        self.int8_button.setObjectName("primaryButton")
        self.int8_button.setMinimumHeight(40)
        # palette() follows the theme when it switches; bold + accent marks the one-click action
        self.int8_button.setStyleSheet(
            "QPushButton { background: palette(highlight); color: palette(highlighted-text);"
            " font-weight: bold;"
            " padding: 6px 18px; border-radius: 4px; } QPushButton:disabled { background: palette(mid); }"
        )
        self.int8_button.setToolTip(
            "ONNX → OpenVINO → NNCF INT8 calibrated on this project's images, then latency and F1 per format"
        )
        self.int8_button.clicked.connect(lambda: self.export_int8())
        self.accuracy_box = QCheckBox("Accuracy control")
        self.accuracy_box.setToolTip(
            "nncf.quantize_with_accuracy_control: keep the val F1 drop under the limit"
        )
        self.max_drop = QDoubleSpinBox()
        self.max_drop.setRange(0.001, 0.2)
        self.max_drop.setSingleStep(0.005)
        self.max_drop.setDecimals(3)
        self.max_drop.setValue(0.01)
        self.max_drop.setPrefix("max F1 drop ")
        self.max_drop.setEnabled(False)
        self.accuracy_box.toggled.connect(self.max_drop.setEnabled)
        one = QHBoxLayout()
        one.addWidget(self.int8_button)
        one.addWidget(self.accuracy_box)
        one.addWidget(self.max_drop)
        one.addStretch(1)
        return one

    def _other_formats_group(self) -> QGroupBox:
        """Any formats x precisions, exported on demand."""
        self.format_boxes = {
            f: QCheckBox({"onnx": "ONNX", "openvino": "OpenVINO", "tensorrt": "TensorRT"}[f]) for f in FORMATS
        }
        self.precision_boxes = {p: QCheckBox(p.upper()) for p in PRECISIONS}
        self.format_boxes["onnx"].setChecked(True)
        self.format_boxes["openvino"].setChecked(True)
        self.precision_boxes["fp32"].setChecked(True)
        self.custom_button = QPushButton("Export selected")
        self.custom_button.clicked.connect(lambda: self.export_selected())
        other = QHBoxLayout()
        other.addWidget(QLabel("Formats"))
        for b in self.format_boxes.values():
            other.addWidget(b)
        other.addSpacing(16)
        other.addWidget(QLabel("Precisions"))
        for b in self.precision_boxes.values():
            other.addWidget(b)
        other.addStretch(1)
        other.addWidget(self.custom_button)
        other_group = QGroupBox("Other formats")
        other_group.setLayout(other)
        return other_group

    def _progress_row(self) -> QHBoxLayout:
        """Stage text, progress bar and Cancel."""
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.stage_label = QLabel("Idle")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        prog = QHBoxLayout()
        prog.addWidget(self.stage_label, 1)
        prog.addWidget(self.progress, 2)
        prog.addWidget(self.cancel_button)
        return prog

    def _report_row(self) -> QHBoxLayout:
        """The report table (built here, placed by _build_ui) and its summary line."""
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.report_label = QLabel("No export yet")
        self.report_label.setObjectName("muted")
        self.open_button = QPushButton("Open folder")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_folder)
        rep = QHBoxLayout()
        rep.addWidget(self.report_label, 1)
        rep.addWidget(self.open_button)
        return rep

    def _browse(self) -> None:
        start = str(self.project.runs_dir) if self.project is not None else ""
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint to export", start, "Checkpoints (*.pt *.pth)")
        if path:
            self.checkpoint_box.setEditText(path)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.last_message = text
        show_status(self.stage_label, text, error)

    # ---- project ----------------------------------------------------------------------------
    def set_project(self, project: Any) -> None:
        project = as_project(project)
        self.project = project
        self.runs_changed()
        cfg_export = getattr(self.project.config, "export", None)
        if cfg_export is not None:
            self.accuracy_box.setChecked(bool(getattr(cfg_export, "accuracy_control", False)))
            self.max_drop.setValue(float(getattr(cfg_export, "max_drop", 0.01)))
        latest = sorted(self.project.exports_dir.glob(f"*/{REPORT_FILE}"), key=lambda p: p.stat().st_mtime)
        if latest:
            self.show_report(latest[-1])

    def runs_changed(self) -> None:
        """List the project's checkpoints again (a run just finished), best.pt first, newest first;
        the checkpoint the person had chosen stays chosen."""
        if self.project is None:
            return
        chosen = self.checkpoint()
        self.checkpoint_box.clear()
        runs = sorted(
            self.project.runs_dir.glob("*/*.pt"), key=lambda p: (p.name != "best.pt", -p.stat().st_mtime)
        )
        for ckpt in runs:
            self.checkpoint_box.addItem(str(ckpt))
        if chosen and self.checkpoint_box.findText(chosen) >= 0:
            self.checkpoint_box.setCurrentText(chosen)

    def checkpoint(self) -> str:
        return self.checkpoint_box.currentText().strip()

    def export_name(self) -> str:
        name = self.name_edit.text().strip()
        if name:
            return name
        ckpt = Path(self.checkpoint())
        return ckpt.parent.name if ckpt.parent.name and ckpt.parent.name != "." else ckpt.stem

    # ---- job --------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def build_args(self, formats: list[str], precisions: list[str], accuracy_control: bool) -> list[str]:
        assert self.project is not None
        args = [
            "export",
            self.checkpoint(),
            "--project",
            str(self.project.root),
            "--formats",
            ",".join(formats),
            "--precision",
            ",".join(precisions),
            "--name",
            self.export_name(),
            "--events",
            "-",
        ]
        if accuracy_control and "int8" in precisions:
            args += ["--accuracy-control", "--max-drop", f"{self.max_drop.value():g}"]
        return args

    def export_int8(self) -> bool:
        """The one-click chain: ONNX -> OpenVINO -> NNCF INT8 (+ accuracy control if ticked)."""
        return self.start(["onnx", "openvino"], ["int8"], self.accuracy_box.isChecked())

    def export_selected(self) -> bool:
        formats = [f for f, b in self.format_boxes.items() if b.isChecked()]
        precisions = [p for p, b in self.precision_boxes.items() if b.isChecked()]
        if not formats or not precisions:
            self._set_status("Tick at least one format and one precision.", error=True)
            return False
        return self.start(formats, precisions, self.accuracy_box.isChecked())

    def start(self, formats: list[str], precisions: list[str], accuracy_control: bool = False) -> bool:
        if self.project is None or self.is_running():
            return False
        if not self.checkpoint():
            self._set_status("Choose a checkpoint to export (train a model first).", error=True)
            return False
        if not Path(self.checkpoint()).exists():
            self._set_status(f"{self.checkpoint()}: no such checkpoint", error=True)
            return False
        self.export_dir = self.project.exports_dir / self.export_name()
        self.report_path = None
        self.progress_model = ExportProgress(plan_stages(formats, precisions, accuracy_control))
        self.progress.setValue(0)
        self.log_view.clear()
        self._started_at = time.time()
        self.job = ProcessJob(
            self.build_args(formats, precisions, accuracy_control), cwd=self.project.root, parent=self
        )
        self.job.log.connect(self._on_log)
        self.job.event.connect(self._on_event)
        self.job.finished.connect(self._on_finished)
        self._set_buttons(running=True)
        self._set_status(STAGE_TEXT[self.progress_model.stage] + "…")
        self.job.start()
        return True

    def shutdown(self, wait_ms: int = 10000) -> None:
        """End a running export before the window closes (SIGTERM, then kill)."""
        if self.is_running():
            self.job.cancel()
            if not self.job.wait(wait_ms):
                self.job.kill()
                self.job.wait(wait_ms)

    def cancel(self) -> None:
        if self.is_running():
            self._set_status("Cancelling…")
            self.job.cancel()

    def _set_buttons(self, running: bool) -> None:
        self.int8_button.setEnabled(not running)
        self.custom_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _update_progress(self) -> None:
        pm = self.progress_model
        self.progress.setValue(int(1000 * pm.fraction))
        if self.is_running():
            self.stage_label.setText(
                f"{STAGE_TEXT.get(pm.stage, pm.stage)}… ({pm.index + 1}/{len(pm.stages)})"
            )

    def _on_log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _on_event(self, msg: object) -> None:
        """One `dfine export --events -` event (a core.messages model, parsed by ProcessJob; a line
        that breaks the contract reaches the log instead)."""
        self.log_view.appendPlainText(msg.model_dump_json(exclude_none=True))
        if self.progress_model is not None:
            self.progress_model.feed(msg)
            self._update_progress()
        if isinstance(msg, ResultEvent) and "report" in msg.paths:
            self.report_path = Path(msg.paths["report"])

    def _find_report(self) -> Path | None:
        for path in (self.report_path, self.export_dir / REPORT_FILE if self.export_dir else None):
            if path is not None and path.is_file():
                return path
        return None

    def _on_finished(self, code: int, crashed: bool) -> None:
        self._set_buttons(running=False)
        report = self._find_report() if code == 0 and not crashed else None
        if code == 0 and not crashed and report is not None:
            self.progress_model.finished = True
            self.progress.setValue(1000)
            self.show_report(report)
            self._set_status(f"Done in {time.time() - self._started_at:.0f} s")
        elif code == 0 and not crashed:
            self._set_status("The export finished but wrote no report.json (see the log)", error=True)
        else:
            lines = [ln for ln in self.log_view.toPlainText().strip().splitlines() if ln.strip()]
            reason = self.job.last_error or (lines[-1] if lines else f"exit code {code}")
            self._set_status(f"Export failed: {reason}", error=True)
        self.export_finished.emit(report, code)

    # ---- report -----------------------------------------------------------------------------
    def show_report(self, path: Path) -> bool:
        try:
            report = read_report(path)
        except UserFacingError as exc:
            self._set_status(str(exc), error=True)
            return False
        self.report_path = Path(path)
        self.export_dir = self.report_path.parent
        self.report = report
        self.table.setRowCount(len(report.results))
        for r, row in enumerate(report.results):
            for c, text in enumerate(report_cells(row)):
                item = QTableWidgetItem(text)
                if c >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self._fit_table_height()
        self.report_label.setText(
            f"{self.export_dir.name}: {len(report.results)} model(s) — {self.report_path}")
        self.open_button.setEnabled(True)
        return True

    def _fit_table_height(self, max_rows: int = 8) -> None:
        """Every row of the report (up to ``max_rows``, then it scrolls) stays visible: in a short
        dock the panel scrolls instead of squeezing the table to one row."""
        rows = min(max(self.table.rowCount(), 1), max_rows)
        row_h = self.table.verticalHeader().defaultSectionSize()
        if self.table.rowCount():
            row_h = max(row_h, self.table.rowHeight(0))
        frame = 2 * self.table.frameWidth()
        scroll = self.table.horizontalScrollBar().sizeHint().height() if self.table.horizontalScrollBar().isVisible() else 0
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height() + rows * row_h + frame + scroll)

    def open_folder(self) -> bool:
        if self.export_dir is None or not self.export_dir.is_dir():
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.export_dir)))
