"""Export panel: one button for the whole INT8 OpenVINO chain (ONNX -> OpenVINO -> NNCF INT8
calibrated on the project's images, accuracy control optional), other formats/precisions
from checkboxes, progress parsed from the exporter's output, then exports/<name>/report.json
as a table (format, precision, size, e2e/raw latency, F1, F1 diff) and "Open folder".

The export runs as `python -m core export ...` (ProcessJob): NNCF calibration can take
minutes and lots of memory, and must never freeze or crash the window.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
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
from core.errors import UserFacingError
from core.project import as_project

REPORT_FILE = "report.json"
FORMATS = ("onnx", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
COLUMNS = ("format", "precision", "size (MB)", "e2e (ms)", "raw (ms)", "F1", "F1 diff")


# ------------------------------------------------------------------------------ report reading


@dataclass
class ReportRow:
    format: str
    precision: str
    size_mb: float | None
    e2e_ms: float | None
    raw_ms: float | None
    f1: float | None
    f1_diff: float | None
    note: str = ""


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _pick(d: dict, *paths: str) -> Any:
    """First present value among dotted key paths ("latency.e2e_ms")."""
    for path in paths:
        cur: Any = d
        for key in path.split("."):
            cur = cur.get(key) if isinstance(cur, dict) else None
            if cur is None:
                break
        if cur is not None:
            return cur
    return None


def _latency(d: dict, kind: str) -> float | None:
    v = _pick(
        d,
        f"{kind}_ms",
        f"latency_{kind}_ms",
        f"{kind}_latency_ms",
        f"{kind}_p50_ms",
        f"latency.{kind}_ms",
        f"latency.{kind}.p50_ms",
        f"latency.{kind}.p50",
        f"latency.{kind}",
        f"latency_ms.{kind}",
        f"{kind}.p50_ms",
    )
    return _num(v)


def _precision(d: dict) -> str:
    """fp32/fp16/int8. A numeric "precision" is the val metric P (it shares the name), so the
    model's precision then comes from its file name (openvino_int8/model.xml), else fp32."""
    value = d.get("precision")
    if isinstance(value, str) and value.lower() in PRECISIONS:
        return value.lower()
    m = re.search(r"(fp32|fp16|int8)", str(d.get("file") or d.get("path") or ""), re.I)
    return m.group(1).lower() if m else "fp32"


def parse_row(d: dict) -> ReportRow:
    size = _num(_pick(d, "size_mb", "file_size_mb", "size.mb"))
    if size is None:
        size_bytes = _num(_pick(d, "size_bytes", "file_size_bytes", "file_size", "bytes", "size"))
        size = size_bytes / 1e6 if size_bytes is not None else None
    f1 = _num(_pick(d, "f1", "val_f1", "metrics.f1", "metrics.mask_f1", "mask_f1", "val.f1"))
    diff = _num(_pick(d, "f1_delta_vs_torch", "f1_diff", "f1_delta", "delta_f1", "metrics.f1_diff"))
    if diff is None and _num(_pick(d, "f1_drop")) is not None:
        diff = -_num(_pick(d, "f1_drop"))  # a drop is a negative difference
    note = str(_pick(d, "error", "skipped", "note") or "")
    return ReportRow(
        str(_pick(d, "format", "backend") or "?"),
        _precision(d),
        size,
        _latency(d, "e2e"),
        _latency(d, "raw"),
        f1,
        diff,
        note,
    )


def read_report(path: Path) -> tuple[dict, list[ReportRow]]:
    """(meta, rows) of an export report; a bad file raises UserFacingError naming it."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{path}: not a readable export report ({exc})") from exc
    if isinstance(doc, list):
        entries, meta = doc, {}
    elif isinstance(doc, dict):
        entries = next(
            (
                doc[k]
                for k in ("rows", "results", "entries", "models", "formats")
                if isinstance(doc.get(k), list)
            ),
            None,
        )
        if entries is None:  # {"openvino/int8": {...}, ...}
            entries = [
                {"format": k.split("/")[0], "precision": k.split("/")[-1], **v}
                for k, v in doc.items()
                if isinstance(v, dict) and "/" in k
            ]
        meta = {
            k: v for k, v in doc.items() if not isinstance(v, (list, dict)) or k in ("torch", "reference")
        }
    else:
        raise UserFacingError(f"{path}: expected a JSON object or list, got {type(doc).__name__}")
    rows = [parse_row(e) for e in entries if isinstance(e, dict)]
    if not rows:
        raise UserFacingError(f"{path}: the report lists no exported models")
    return meta, rows


def _fmt(v: float | None, digits: int, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


# ------------------------------------------------------------------------------ progress

STAGE_PATTERNS = [  # (stage id, what a line says when that stage starts)
    ("onnx", re.compile(r"\bonnx\b", re.I)),
    ("openvino", re.compile(r"openvino|\bIR\b", re.I)),
    ("int8", re.compile(r"int8|nncf|calibrat|quantiz", re.I)),
    ("accuracy", re.compile(r"accuracy control|accuracy[- ]aware|validation", re.I)),
    ("tensorrt", re.compile(r"tensorrt|trt", re.I)),
    ("measure", re.compile(r"latency|benchmark|measur", re.I)),
    ("report", re.compile(r"report", re.I)),
]
STAGE_TEXT = {
    "onnx": "Exporting ONNX",
    "openvino": "Converting to OpenVINO",
    "int8": "INT8 calibration (NNCF)",
    "accuracy": "INT8 accuracy control",
    "tensorrt": "Building TensorRT engines",
    "measure": "Measuring latency and F1",
    "report": "Writing the report",
}
PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s?%")
FRACTION = re.compile(r"\b(\d+)\s?/\s?(\d+)\b")


def plan_stages(formats: list[str], precisions: list[str], accuracy_control: bool) -> list[str]:
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
    """Turns the exporter's output into a fraction done and a stage name. Stages are equal
    slices; a stage only moves forward; a percentage or "i/n" on a line fills its slice.
    JSON events {"event": "stage"|"progress", "stage", "done"/"total" or "progress"} win."""

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

    def _enter(self, stage: str) -> bool:
        if stage in self.stages:
            i = self.stages.index(stage)
            if i > self.index:
                self.index, self.within = i, 0.0
                return True
        return False

    def feed_line(self, text: str) -> None:
        # `dfine export` announces each step as "<what> ..." (e.g. "OpenVINO INT8 (NNCF, 300
        # calibration images) ..."); other lines (the command summary naming every format,
        # file lists) must not move the stage. The furthest stage a step line names wins.
        if text.rstrip().endswith(("...", "…")):
            named = [
                self.stages.index(s)
                for s, pattern in STAGE_PATTERNS
                if s in self.stages and pattern.search(text)
            ]
            if named and max(named) > self.index:
                self._enter(self.stages[max(named)])
        m = PERCENT.search(text)
        if m:
            self.within = max(self.within, min(1.0, float(m.group(1)) / 100.0) * 0.99)
            return
        m = FRACTION.search(text)
        if m and int(m.group(2)) > 0 and int(m.group(1)) <= int(m.group(2)):
            self.within = max(self.within, int(m.group(1)) / int(m.group(2)) * 0.99)

    def feed_event(self, ev: dict) -> None:
        kind = ev.get("event")
        stage = str(ev.get("stage") or ev.get("step_name") or "")
        for key, pattern in STAGE_PATTERNS:
            if stage and (stage == key or pattern.search(stage)):
                self._enter(key)
                break
        done, total = _num(ev.get("done")), _num(ev.get("total"))
        if done is not None and total:
            self.within = max(self.within, min(1.0, done / total) * 0.99)
        elif _num(ev.get("progress")) is not None:
            self.within = max(self.within, min(1.0, float(ev["progress"])) * 0.99)
        if kind == "done":
            self.finished = True


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
        self.rows: list[ReportRow] = []
        self.last_message = ""
        self._started_at = 0.0
        self._build_ui()
        if project is not None:
            self.set_project(project)

    # ---- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
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

    def _browse(self) -> None:
        start = str(self.project.runs_dir) if self.project is not None else ""
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint to export", start, "Checkpoints (*.pt *.pth)")
        if path:
            self.checkpoint_box.setEditText(path)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.last_message = text
        self.stage_label.setText(text)
        self.stage_label.setStyleSheet("color: #f85149;" if error else "")

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
        if self.progress_model is not None and not text.startswith("$ "):
            self.progress_model.feed_line(text)
            self._update_progress()
        m = re.search(r"(\S*" + re.escape(REPORT_FILE) + r")", text)
        if m and Path(m.group(1)).is_file():
            self.report_path = Path(m.group(1))

    def _on_event(self, ev: dict) -> None:
        self.log_view.appendPlainText(json.dumps(ev))
        if self.progress_model is not None:
            self.progress_model.feed_event(ev)
            self._update_progress()
        for key in ("report", "report_path"):
            if isinstance(ev.get(key), str) and Path(ev[key]).is_file():
                self.report_path = Path(ev[key])

    def _find_report(self) -> Path | None:
        if self.report_path is not None and self.report_path.is_file():
            return self.report_path
        if self.export_dir is not None and (self.export_dir / REPORT_FILE).is_file():
            return self.export_dir / REPORT_FILE
        fresh = [
            p
            for p in self.project.exports_dir.glob(f"*/{REPORT_FILE}")
            if p.stat().st_mtime >= self._started_at - 1
        ]
        return max(fresh, key=lambda p: p.stat().st_mtime) if fresh else None

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
            meta, rows = read_report(path)
        except UserFacingError as exc:
            self._set_status(str(exc), error=True)
            return False
        self.report_path = Path(path)
        self.export_dir = self.report_path.parent
        self.rows = rows
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = [
                row.format,
                row.precision,
                _fmt(row.size_mb, 1),
                _fmt(row.e2e_ms, 1),
                _fmt(row.raw_ms, 1),
                _fmt(row.f1, 3),
                _fmt(row.f1_diff, 3, signed=True),
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if row.note:
                    item.setToolTip(row.note)
                self.table.setItem(r, c, item)
        self.report_label.setText(f"{self.export_dir.name}: {len(rows)} model(s) — {self.report_path}")
        self.open_button.setEnabled(True)
        return True

    def open_folder(self) -> bool:
        if self.export_dir is None or not self.export_dir.is_dir():
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.export_dir)))
