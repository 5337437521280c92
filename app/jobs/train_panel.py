"""Train panel: configure a run, start `python -m core train ... --events -` in the
background, and follow it live (progress, ETA, loss and F1/AP curves, log).

Cancel sends SIGTERM: the trainer saves `last.pt` and exits 0, so the run resumes later.
"""

from __future__ import annotations

import bisect
import csv
import math
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.deploy_target import deploy_target_box
from app.jobs.process_job import ProcessJob
from app.jobs.weights_picker import WeightsPicker
from app.workers import run_task
from core.errors import ConfigError, UserFacingError
from core.messages import (
    TRAIN_METRICS_PLOTTED,
    ErrorEvent,
    TrainCheckpointEvent,
    TrainDoneEvent,
    TrainMetricsEvent,
    TrainStartEvent,
    TrainStepEvent,
    WarningEvent,
)
from core.project import Project, as_project
from core.train.events import RunHistory, read_run_history



def step_losses(ev: TrainStepEvent) -> dict[str, float]:
    """The losses of a step event that the loss plot draws: the total and every loss it has."""
    total = {} if ev.loss is None else {"loss": float(ev.loss)}
    return {**total, **ev.losses.present()}


def metric_values(ev: TrainMetricsEvent) -> dict[str, float]:
    """The validation numbers of a metrics event that the validation plot draws."""
    values = {key: getattr(ev.metrics, key) for key in TRAIN_METRICS_PLOTTED}
    return {key: float(value) for key, value in values.items() if value is not None}


def format_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "ETA —"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"ETA {h:d}:{m:02d}:{s:02d}" if h else f"ETA {m:d}:{s:02d}"


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a run's metrics.csv as floats (non-numeric cells dropped)."""
    rows: list[dict[str, float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                parsed = {}
                for key, value in row.items():
                    try:
                        parsed[key] = float(value)
                    except (TypeError, ValueError):
                        continue
                rows.append(parsed)
    except OSError:
        return []
    return rows


class CurvePlot(pg.PlotWidget):
    """A small multi-series line plot keyed by series name."""

    # one colour per curve: the total and the 8 declared losses (a run has at most 8 of these 9)
    PALETTE = ("#4C9BE8", "#E8804C", "#5BC88A", "#C85BB4", "#E8C84C", "#8A8AE8", "#E85B5B", "#4CD6D6",
               "#B0B0B0")

    def __init__(self, title: str, x_label: str):
        super().__init__()
        self.setBackground(None)
        # the x unit in the title, not an axis label: in a short dock every row of pixels is curve
        self.setTitle(f"{title} by {x_label}", size="9pt")
        self.plotItem.layout.setRowFixedHeight(0, 18)  # pyqtgraph keeps 30 px for a title
        self.showGrid(x=True, y=True, alpha=0.2)
        self.addLegend(offset=(-5, 5))
        self._series: dict[str, tuple[list[float], list[float], pg.PlotDataItem]] = {}

    SYMBOLS_UP_TO = 200  # points drawn as dots up to this many in a series (thousands of dots are slow)

    def _ensure(self, name: str) -> tuple[list[float], list[float], pg.PlotDataItem]:
        if name not in self._series:
            color = self.PALETTE[len(self._series) % len(self.PALETTE)]
            item = self.plot([], [], name=name, pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                             symbolBrush=color, symbolPen=None)
            self._series[name] = ([], [], item)
        return self._series[name]

    def _redraw(self, name: str) -> None:
        xs, ys, item = self._series[name]
        if len(xs) > self.SYMBOLS_UP_TO and item.opts.get("symbol") is not None:
            item.setSymbol(None)
        item.setData(xs, ys)
        self._fit_range()

    def add_point(self, name: str, x: float, y: float) -> None:
        """Append a point; one at or before the last x replaces the points from there on (a run
        resumed from an earlier checkpoint does those steps again)."""
        if not math.isfinite(y):
            return
        xs, ys, _ = self._ensure(name)
        if xs and x <= xs[-1]:
            cut = bisect.bisect_left(xs, x)
            del xs[cut:], ys[cut:]
        xs.append(x)
        ys.append(y)
        self._redraw(name)

    def put_history(self, name: str, xs: list[float], ys: list[float]) -> None:
        """Put a run's earlier points (in x order) before the series' live points: those before the
        first live point are kept (history read while the run already sends new points)."""
        live_xs, live_ys, _ = self._ensure(name)
        first_live = live_xs[0] if live_xs else math.inf
        old = [(x, y) for x, y in zip(xs, ys) if x < first_live and math.isfinite(y)]
        live_xs[:0] = [x for x, _ in old]
        live_ys[:0] = [y for _, y in old]
        self._redraw(name)

    def _fit_range(self) -> None:
        """pyqtgraph's auto-range of a single point is a degenerate −400…400 axis: pad explicitly."""
        xs = [x for s in self._series.values() for x in s[0]]
        ys = [y for s in self._series.values() for y in s[1]]
        if not xs:
            return
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        if x1 - x0 < 1e-9:
            x0, x1 = x0 - 1, x1 + 1
        if y1 - y0 < 1e-9:
            pad = max(abs(y0) * 0.1, 0.05)
            y0, y1 = y0 - pad, y1 + pad
        self.setXRange(x0, x1, padding=0.05)
        self.setYRange(y0, y1, padding=0.08)

    def series(self, name: str) -> list[float]:
        return list(self._series[name][1]) if name in self._series else []

    def xs(self, name: str) -> list[float]:
        return list(self._series[name][0]) if name in self._series else []

    def clear_series(self) -> None:
        for _, _, item in self._series.values():
            self.removeItem(item)
        self._series.clear()
        if self.plotItem.legend is not None:
            self.plotItem.legend.clear()


class TrainPanel(QWidget):
    """Start/cancel/resume training of the open project and watch it live."""

    run_finished = Signal(str, int)  # run name, exit code
    history_loaded = Signal(int)  # a run's earlier steps are drawn (how many)

    def __init__(self, project_root: Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.project_root: Path | None = None
        self.job: ProcessJob | None = None
        self.total_steps: int | None = None
        self.last_event: object | None = None  # the last core.messages event
        self.error_message: str | None = None
        self._pending_start: list[str] | None = None  # a start waiting for its weights download
        self._history_token = 0  # the newest history load (an older one landing late is dropped)
        self._build_ui()
        if project_root is not None:
            self.set_project(project_root)

    # ---- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        """One row of Start/Resume/Cancel, status, ETA and progress over a row of panes: the run
        settings and past runs (scrolling), the loss curves, the validation curves and the log.

        Laid out for the dock's first-start height (a fifth of the window, a short strip): the
        buttons and both plots are on screen at once; before, Start sat below the settings and
        the plots under each other, both out of sight until the person enlarged the dock."""
        top = self._top_row()
        settings = self._settings_group()
        self._build_views()
        panes = QSplitter(Qt.Orientation.Horizontal)
        panes.setChildrenCollapsible(False)
        panes.addWidget(self._settings_pane(settings))
        for view in (self.loss_plot, self.metric_plot, self.log_view):
            panes.addWidget(view)
        for index, stretch in enumerate((2, 3, 3, 2)):
            panes.setStretchFactor(index, stretch)
        self.panes = panes
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(panes, 1)

    def _settings_group(self) -> QGroupBox:
        """Model size, epochs, image size, start weights, device, image cache and run name."""
        self.size_box = QComboBox()
        self.size_box.addItems(["n", "s", "m", "l", "x"])
        self.epochs_box = QSpinBox()
        self.epochs_box.setRange(1, 10000)
        self.epochs_box.setValue(50)
        # "train for N minutes" (train.time_budget_min / --time): replaces the epoch count
        self.time_box = QCheckBox("Train for")
        self.time_box.setToolTip(
            "Train for a fixed time instead of a number of epochs: the run measures its speed, lays the "
            "learning-rate schedule, the final no-augmentation epochs and the weight average out for the time "
            "and ends on time with best.pt (dfine train --time).")
        self.minutes_box = QSpinBox()
        self.minutes_box.setRange(1, 7 * 24 * 60)
        self.minutes_box.setValue(15)
        self.minutes_box.setSuffix(" min")
        self.time_box.toggled.connect(self._time_toggled)
        self._time_toggled(False)
        self.image_size_box = QSpinBox()
        self.image_size_box.setRange(64, 2048)
        self.image_size_box.setSingleStep(32)
        self.image_size_box.setValue(640)
        self.weights_picker = WeightsPicker()
        self.weights_picker.combo.setMinimumContentsLength(16)  # the settings share the dock's width
        self.weights_picker.set_size(self.size_box.currentText())
        self.size_box.currentTextChanged.connect(self.weights_picker.set_size)
        self.weights_picker.download_finished.connect(self._after_download)
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", "cpu", "cuda"])
        # where the trained model will run (not where it trains): core.project.DEPLOY_TARGETS
        self.target_box = deploy_target_box()
        self.target_box.activated.connect(self._target_chosen)
        self.cache_box = QCheckBox("Keep decoded images on disk")
        self.cache_box.setToolTip(
            "train.cache_images: each training image is decoded and shrunk once and kept in the project's "
            ".dfine/cache folder (about 3.7 MB per image at 640; safe to delete). Later epochs and runs skip "
            "the decode: worth it for camera-size photos on a CPU.")
        self.name_edit = QLineEdit("train")
        self.name_edit.textChanged.connect(lambda _t: self._update_resume())

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # narrow: the label above its field
        form.addRow("Model size", self.size_box)
        form.addRow("Epochs", self.epochs_box)
        time_row = QHBoxLayout()
        time_row.addWidget(self.time_box)
        time_row.addWidget(self.minutes_box, 1)
        form.addRow("Time limit", time_row)
        form.addRow("Image size", self.image_size_box)
        form.addRow("Start from", self.weights_picker)
        form.addRow("Device", self.device_box)
        form.addRow("Model will run on", self.target_box)
        form.addRow("Image cache", self.cache_box)
        form.addRow("Run name", self.name_edit)
        settings = QGroupBox("Run settings")
        settings.setLayout(form)
        return settings

    def _top_row(self) -> QHBoxLayout:
        """Start, resume and cancel, then the status text, ETA and progress bar."""
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("primaryButton")
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setMinimumWidth(120)
        self.status_label = QLabel("Idle")
        self.status_label.setMinimumWidth(80)
        self.eta_label = QLabel(format_eta(None))
        row = QHBoxLayout()
        for button in (self.start_button, self.resume_button, self.cancel_button):
            row.addWidget(button)
        row.addSpacing(8)
        row.addWidget(self.status_label, 3)
        row.addWidget(self.eta_label)
        row.addWidget(self.progress, 2)
        return row

    def _build_views(self) -> None:
        """The loss and validation curves, the log and the past runs list."""
        self.loss_plot = CurvePlot("Losses", "step")
        self.metric_plot = CurvePlot("Validation", "epoch")
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setPlaceholderText("Log")
        self.runs_list = QListWidget()
        self.runs_list.setMinimumHeight(48)
        for plot in (self.loss_plot, self.metric_plot):
            plot.setMinimumSize(180, 100)
        self.log_view.setMinimumSize(120, 60)
        self.runs_list.itemSelectionChanged.connect(self._show_selected_run)

    def _settings_pane(self, settings: QGroupBox) -> QScrollArea:
        """The run settings over the past runs, scrolling on their own: the buttons and plots
        beside them stay on screen however short the dock is."""
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(settings)
        column.addWidget(QLabel("Past runs"))
        column.addWidget(self.runs_list, 1)
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setWidget(inner)
        area.setMinimumSize(inner.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width(), 60)
        self.settings_pane = area
        return area

    # ---- project / runs ---------------------------------------------------------------------
    def set_project(self, project: object) -> None:
        """Accepts a core.project.Project or a project folder."""
        self.project_root = Path(as_project(project).root)
        self._load_defaults()
        self.refresh_runs()

    def _load_defaults(self) -> None:
        try:
            from core.config import load_config

            cfg = load_config(self.project_root / "project.yaml")
        except ConfigError:  # a broken config is reported by the editor; keep the widget defaults
            self.weights_picker.set_context(self.project_root, self.size_box.currentText())
            return
        self.size_box.setCurrentText(str(cfg.model.size))
        self.target_box.setCurrentIndex(self.target_box.findData("cpu" if cfg.model.mask_head == "cpu" else "gpu"))
        self.weights_picker.set_context(self.project_root, str(cfg.model.size), cfg.model.weights)
        self.epochs_box.setValue(int(cfg.train.epochs))
        self.image_size_box.setValue(int(cfg.model.image_size))
        self.cache_box.setChecked(bool(cfg.train.cache_images))
        budget = cfg.train.time_budget_min
        if budget:
            self.minutes_box.setValue(max(1, round(budget)))
        self.time_box.setChecked(bool(budget))

    def _target_chosen(self, _index: int) -> None:
        """The person picked GPU/CPU: project.yaml gets that target's mask head and export queries."""
        if self.project_root is None:
            return
        target = self.target_box.currentData()
        try:
            project = Project.open(self.project_root)
            project.set_deploy_target(target)
        except UserFacingError as exc:
            self.status_label.setText(f"Not changed: {exc}")
            self._load_defaults()
            return
        cfg = project.config
        queries = cfg.export.queries or "all"
        self.status_label.setText(f"Model will run on {target.upper()}: mask head {cfg.model.mask_head}, "
                                  f"{queries} decoder queries in exports (project.yaml)")

    def _time_toggled(self, on: bool) -> None:
        self.minutes_box.setEnabled(on)
        self.epochs_box.setEnabled(not on)

    def run_name(self) -> str:
        return self.name_edit.text().strip() or "train"

    def resumable(self, name: str | None = None) -> bool:
        """runs/<name>/last.pt exists: there is something to resume."""
        return self.project_root is not None and (self.project_root / "runs" / (name or self.run_name())
                                                  / "last.pt").is_file()

    def free_run_name(self, base: str) -> str:
        """``base``, or base_2, base_3 … : a new run never collides with an old one."""
        runs = self.project_root / "runs" if self.project_root is not None else None
        if runs is None or not (runs / base).exists():
            return base
        k = 2
        while (runs / f"{base}_{k}").exists():
            k += 1
        return f"{base}_{k}"

    def _update_resume(self) -> None:
        running = self.job is not None and self.job.is_running()
        self.resume_button.setEnabled(not running and self.resumable())
        self.resume_button.setToolTip("" if self.resumable() else
                                      f"runs/{self.run_name()}/last.pt does not exist: nothing to resume")

    def refresh_runs(self) -> None:
        self._update_resume()
        self.runs_list.clear()
        if self.project_root is None:
            return
        runs_dir = self.project_root / "runs"
        for run in sorted(runs_dir.glob("*/"), key=lambda p: p.stat().st_mtime, reverse=True):
            rows = read_metrics_csv(run / "metrics.csv")
            best = max((r.get("f1", float("nan")) for r in rows), default=float("nan"))
            status = "resumable" if (run / "last.pt").exists() else "no checkpoint"
            text = f"{run.name} — {len(rows)} epochs, best F1 {best:.3f}" if rows else f"{run.name} — {status}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, str(run))
            self.runs_list.addItem(item)

    def _show_selected_run(self) -> None:
        items = self.runs_list.selectedItems()
        if not items or self.is_running():
            return
        run = Path(items[0].data(Qt.ItemDataRole.UserRole))
        self.name_edit.setText(run.name)
        self.metric_plot.clear_series()
        self.loss_plot.clear_series()
        for row in read_metrics_csv(run / "metrics.csv"):
            epoch = row.get("epoch", float(len(self.metric_plot.series("f1"))))
            for key in TRAIN_METRICS_PLOTTED:
                if key in row:
                    self.metric_plot.add_point(key, epoch, row[key])
        self._load_history(run, with_metrics=False)  # its losses, from events.jsonl

    def _load_history(self, run: Path, with_metrics: bool) -> None:
        """Draw what ``run`` did before (every attempt of it, from its events.jsonl) under the
        curves, read in a worker: a long run's file has a line per step."""
        self._history_token += 1
        token = self._history_token

        def read(_task, run_dir: Path):
            return token, with_metrics, read_run_history(run_dir)

        run_task(read, Path(run), on_done=self._history_loaded)

    def _history_loaded(self, result: tuple[int, bool, RunHistory]) -> None:
        token, with_metrics, history = result
        if token != self._history_token:
            return
        for plot, points in ((self.loss_plot, [(ev.step, step_losses(ev)) for ev in history.steps]),
                             (self.metric_plot, [(ev.epoch, metric_values(ev)) for ev in history.metrics]
                              if with_metrics else [])):
            series: dict[str, tuple[list[float], list[float]]] = {}
            for x, values in points:
                for key, value in values.items():
                    xs, ys = series.setdefault(key, ([], []))
                    xs.append(float(x))
                    ys.append(value)
            for key, (xs, ys) in series.items():
                plot.put_history(key, xs, ys)
        self.history_loaded.emit(len(history.steps))

    # ---- job control ------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def build_args(self, resume: bool) -> list[str]:
        assert self.project_root is not None
        args = ["train", str(self.project_root), "--events", "-", "--name", self.name_edit.text().strip() or "train"]
        if resume:
            args.append("--resume")
        else:
            for override in (f"model.size={self.size_box.currentText()}", f"train.epochs={self.epochs_box.value()}",
                             f"model.image_size={self.image_size_box.value()}",
                             f"train.cache_images={str(self.cache_box.isChecked()).lower()}"):
                args += ["--set", override]
            if self.time_box.isChecked():
                args += ["--time", f"{self.minutes_box.value()}m"]
            else:  # explicit, so that a budget in project.yaml does not override the epochs shown
                args += ["--set", "train.time_budget_min=null"]
            # explicit, so that what the picker shows wins over project.yaml's model.weights
            selection = self.weights_picker.selection()
            if selection is None:
                args += ["--set", "model.weights=null", "--set", "model.backbone_weights=null"]
            elif selection[0] == "--backbone-weights":
                args += ["--set", "model.weights=null", *selection]
            else:
                args += list(selection)
        if self.device_box.currentText() != "auto":
            args += ["--device", self.device_box.currentText()]
        return args

    def start(self, resume: bool = False, extra_args: list[str] | None = None) -> None:
        if self.project_root is None or self.is_running() or self.weights_picker.is_downloading():
            return
        if not resume and self.weights_picker.needs_download():
            # fetch the starting checkpoint first (progress + Cancel in the picker), then train
            self._pending_start = list(extra_args or [])
            self.status_label.setText("Downloading the starting weights…")
            self.weights_picker.download()
            return
        if resume and not self.resumable():
            self.status_label.setText(f"Nothing to resume: runs/{self.run_name()}/last.pt does not exist")
            return
        if not resume and self.project_root is not None and (self.project_root / "runs" / self.run_name()).exists():
            new_name = self.free_run_name(self.run_name())  # never fail on "run exists" half a minute later
            self.log_view.appendPlainText(f"run '{self.run_name()}' exists (Resume continues it): "
                                          f"starting a new run '{new_name}'")
            self.name_edit.setText(new_name)
        self.loss_plot.clear_series()
        self.metric_plot.clear_series()
        self._history_token += 1  # a past run's history still being read is not drawn over this one
        if resume:  # the curves go on from where the run stopped, not from an empty plot
            self._load_history(self.project_root / "runs" / self.run_name(), with_metrics=True)
        self.progress.setValue(0)
        self.total_steps = None
        self.error_message = None
        self.job = ProcessJob(self.build_args(resume) + list(extra_args or []), cwd=self.project_root, parent=self)
        self.job.event.connect(self.handle_event)
        self.job.log.connect(self.log_view.appendPlainText)
        self.job.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.resume_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status_label.setText("Starting…")
        self.job.start()

    def _after_download(self, name: str, ok: bool) -> None:
        pending, self._pending_start = self._pending_start, None
        if pending is None:
            return
        if ok:
            self.start(resume=False, extra_args=pending)
        else:
            self.status_label.setText(f"Not started: {name} could not be downloaded "
                                      f"({self.weights_picker.last_error or 'cancelled'})")

    def cancel(self) -> None:
        if self.weights_picker.is_downloading():
            self._pending_start = None
            self.weights_picker.cancel()
            return
        if self.is_running():
            self.status_label.setText("Cancelling — saving last.pt…")
            self.job.cancel()

    def handle_event(self, ev: object) -> None:
        """Turn one trainer event (a ``core.messages`` model, parsed by ProcessJob) into progress,
        plots and status."""
        self.last_event = ev
        if isinstance(ev, TrainStartEvent):
            self.total_steps = ev.total_steps
            self.status_label.setText(f"Training {ev.run} on {ev.device}")
        elif isinstance(ev, TrainStepEvent):
            total = ev.total_steps or self.total_steps
            if total:
                self.progress.setValue(int(1000 * min(1.0, ev.step / float(total))))
            self.eta_label.setText(format_eta(ev.eta_s))
            for key, value in step_losses(ev).items():
                self.loss_plot.add_point(key, ev.step, value)
            speed = "—" if ev.img_per_s is None else f"{ev.img_per_s:.1f}"
            self.status_label.setText(f"epoch {ev.epoch} · step {ev.step}/{total} · {speed} img/s · lr {ev.lr:.2e}")
        elif isinstance(ev, TrainMetricsEvent):
            for key, value in metric_values(ev).items():
                self.metric_plot.add_point(key, float(ev.epoch), value)
        elif isinstance(ev, TrainCheckpointEvent):
            self.log_view.appendPlainText(f"checkpoint saved: {ev.path}")
        elif isinstance(ev, WarningEvent):
            self.log_view.appendPlainText(f"warning: {ev.message}")
        elif isinstance(ev, TrainDoneEvent):
            if ev.stopped == "signal":
                self.status_label.setText("Cancelled — last.pt saved; press Resume to continue")
            else:
                self.progress.setValue(1000)
                self.status_label.setText("Finished" if ev.best_value is None else
                                          f"Finished — best {ev.best_metric} {ev.best_value:.3f}")
        elif isinstance(ev, ErrorEvent):
            self.error_message = ev.message
            self.status_label.setText("Training failed")

    def _on_finished(self, code: int, crashed: bool) -> None:
        self.eta_label.setText(format_eta(None))
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        name = self.name_edit.text().strip() or "train"
        if self.error_message or code != 0 or crashed:
            message = self.error_message or f"the training process exited with code {code}"
            self.status_label.setText(f"Training failed: {message}")
            self.log_view.appendPlainText(f"ERROR: {message}")
        elif self.status_label.text().startswith(("Cancelling", "Cancelled")):
            self.status_label.setText("Cancelled — last.pt saved; press Resume to continue")
        self.refresh_runs()
        self.run_finished.emit(name, code)

    def confirm_close(self) -> bool:
        """Ask before closing while training; cancel cleanly (resumable) when the user agrees."""
        self.weights_picker.stop_and_wait()
        if not self.is_running():
            return True
        answer = QMessageBox.question(
            self, "Training is running",
            "Training is still running. Stop it now? It saves last.pt and can be resumed later.")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.job.cancel()
        if not self.job.wait(60000):
            self.job.kill()
        return True
