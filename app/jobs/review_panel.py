"""Review panel: find likely label mistakes and walk the ranked list; accept the model's
suggestion, open the label in the editor, or dismiss. Decisions persist in
review/decisions.json through core.analysis.review.Review, the same code `dfine review` runs.

"Find label mistakes" runs `python -m core analyze <project> --folds K --events -` (out-of-fold:
K models trained with the project's recipe, each judging the images it never saw) with
progress per fold; Cancel stops it (finished folds are kept, the next run resumes). "Quick
check" runs `--weights <model>` (in-sample: fast, but blind to mistakes the model learned).
Both are ProcessJobs, so a crash in the model never takes the window down. Crops are drawn by
the analysis' own tile renderer (red = label, green = suggestion), thumbnails in a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.jobs.process_job import ProcessJob
from app.settings import default_model
from app.theme import show_status
from core.analysis.issues import LabelIssue
from core.analysis.folds import estimate_folds
from core.analysis.review import (
    ACTION_TEXT,
    Review,
    ReviewItem,
    StaleIssueError,
    flagged_images,
    locate_instance,
)
from core.errors import UserFacingError
from core.messages import CancelledEvent, ProgressEvent, WarningEvent
from core.project import as_project

KIND_TEXT = {
    "missing_label": "missing label",
    "wrong_class": "wrong class",
    "bad_geometry": "bad outline",
    "duplicate_label": "duplicate",
    "spurious_label": "label not found by model",
    "out_of_image": "outside image",
    "degenerate_geometry": "degenerate",
}
THUMB = 72
TILE = 360
COLUMNS = ("", "#", "kind", "class", "score", "image", "status", "why")
MODE_TEXT = {
    "out-of-fold": "out-of-fold: each image judged by a model that never saw it",
    "in-sample": "in-sample (quick check): the model trained on these labels and may have learned their mistakes",
    "given": "from a predictions file",
}


def render_crop(
    item: ReviewItem, image: np.ndarray, ann: Any, class_names: list[str], tile: int
) -> np.ndarray:
    """The analysis' tile (crop around the item, label red, suggestion green, caption)."""
    from core.analysis.report import render_tile

    d = item.data
    issue = LabelIssue(
        d["kind"],
        d["image"],
        d.get("instance"),
        d["box"],
        d.get("class_id"),
        d.get("score", 0.0),
        d.get("evidence") or {},
        d.get("fix") or {},
        d.get("message", ""),
        d.get("id", ""),
    )
    return render_tile(image, issue, ann, item.rank, class_names, tile)


def bgr_to_qimage(bgr: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def suggestion_text(item: ReviewItem, class_names: list[str]) -> str:
    fix = item.fix
    action = fix.get("action", "")
    if action in ("set_class", "add") and fix.get("class_id") is not None:
        cid = int(fix["class_id"])
        name = class_names[cid] if 0 <= cid < len(class_names) else f"class {cid}"
        return f"Set class to “{name}”" if action == "set_class" else f"Add “{name}” label"
    return ACTION_TEXT.get(action, "Accept suggestion")


class ReviewPanel(QWidget):
    """The review list of one project. Signals for the main window:

    ``open_in_editor(Path image, int instance)`` (-1 for a missing label; the box is in
    ``last_opened_box``), ``labels_changed(Path image)`` after a fix or its undo wrote the
    label file, ``flagged_changed(set[str])`` file names with open items (for the image list).
    """

    open_in_editor = Signal(object, int)
    labels_changed = Signal(object)
    flagged_changed = Signal(object)
    analysis_finished = Signal(int)

    def __init__(
        self,
        project: Any | None = None,
        store: Any | None = None,
        settings: Any | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.settings = settings  # app.settings.AppSettings: the model last used with the project
        self.project = None
        self.store = store  # load_annotation/save_annotation; default: the project
        self.review: Review | None = None
        self._accepted: list[str] = []  # keys accepted in this session, newest last (Undo reverts them)
        self.job: ProcessJob | None = None
        self._model_warning: str | None = None  # from the analysis's warning event (about="model")
        self.last_opened_box: list[float] | None = None
        self.last_message = ""
        self._thumbs: dict[str, QIcon] = {}
        self._thumb_task = None
        self._build_ui()
        if project is not None:
            self.set_project(project)

    # ---- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_run_row())
        # right under the button that caused it: in a short dock the bottom is below the fold
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self._build_list())
        split.addWidget(self._build_preview())
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setMaximumHeight(72)
        layout.addWidget(self.log_view)
        self._add_shortcuts()
        self._update_buttons()

    def _build_run_row(self) -> QHBoxLayout:
        """Find label mistakes (out-of-fold, K folds) | quick check with a model | cancel, progress."""
        self.find_button = QPushButton("Find label mistakes")
        self.find_button.setObjectName("primaryButton")
        self.find_button.setToolTip("train K models with the project's recipe, each on all but one fold, and "
                                    "judge every image by the model that never saw it (resumes a cancelled run)")
        self.find_button.clicked.connect(lambda: self.find_mistakes())
        self.folds_spin = QSpinBox()
        self.folds_spin.setRange(2, 20)
        self.folds_spin.setValue(5)
        self.folds_spin.setSuffix(" folds")
        self.folds_spin.valueChanged.connect(lambda _k: self._show_cost())
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("model: checkpoint (.pt) or export folder")
        self.model_edit.textChanged.connect(self._model_chosen)
        browse = QPushButton("Model…")
        browse.clicked.connect(self._browse_model)
        self.analyze_button = QPushButton("Quick check")
        self.analyze_button.setToolTip("in-sample: run this model over the labelled images it was trained on "
                                       "(fast, but it may have learned the mistakes)")
        self.analyze_button.clicked.connect(lambda: self.run_analysis())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.busy = QProgressBar()
        self.busy.setRange(0, 1)
        self.busy.setMaximumWidth(140)
        self.busy.setTextVisible(False)
        top = QHBoxLayout()
        for w in (self.find_button, self.folds_spin, QLabel("Model")):
            top.addWidget(w)
        top.addWidget(self.model_edit, 1)
        for w in (browse, self.analyze_button, self.cancel_button, self.busy):
            top.addWidget(w)
        return top

    def _build_list(self) -> QWidget:
        """Kind filter, 'show decided', counts, and the ranked table."""
        self.kind_filter = QComboBox()
        self.kind_filter.addItem("All kinds", None)
        for kind, text in KIND_TEXT.items():
            self.kind_filter.addItem(text.capitalize(), kind)
        self.kind_filter.currentIndexChanged.connect(self.refresh_table)
        self.show_decided = QCheckBox("Show decided")
        self.show_decided.toggled.connect(self.refresh_table)
        self.count_label = QLabel("No analysis yet")
        self.count_label.setObjectName("muted")
        filters = QHBoxLayout()
        filters.addWidget(self.kind_filter)
        filters.addWidget(self.show_decided)
        filters.addStretch(1)
        filters.addWidget(self.count_label)
        self.table = self._build_table()
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(filters)
        ll.addWidget(self.table, 1)
        return left

    def _build_table(self) -> QTableWidget:
        table = QTableWidget(0, len(COLUMNS))
        table.setHorizontalHeaderLabels(list(COLUMNS))
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setIconSize(QSize(THUMB, THUMB))
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COLUMNS.index("why"), QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Fixed)
        header.setMinimumSectionSize(24)
        table.setColumnWidth(0, THUMB + 10)
        table.itemSelectionChanged.connect(self._show_selected)
        table.cellDoubleClicked.connect(lambda *_: self.open_selected())
        return table

    def _build_preview(self) -> QWidget:
        """The selected item's crop, its numbers, and the decision buttons."""
        self.crop_label = QLabel("Select an item")
        self.crop_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.crop_label.setMinimumSize(TILE, TILE + 34)
        self.crop_label.setObjectName("emptyHint")
        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setMaximumHeight(120)
        self.accept_button = QPushButton("Accept suggestion")
        self.accept_button.setObjectName("primaryButton")
        self.accept_button.clicked.connect(lambda: self.accept_selected())
        self.open_button = QPushButton("Open in editor")
        self.open_button.clicked.connect(lambda: self.open_selected())
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.setToolTip("the label is right; keep this item hidden after re-analysis")
        self.dismiss_button.clicked.connect(lambda: self.dismiss_selected())
        self.undo_button = QPushButton("Undo")
        self.undo_button.setEnabled(False)
        self.undo_button.clicked.connect(lambda: self.undo())
        actions = QHBoxLayout()
        for b in (self.accept_button, self.open_button, self.dismiss_button, self.undo_button):
            actions.addWidget(b)
        legend = QLabel("red = current label · green = model's suggestion")
        legend.setObjectName("muted")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addWidget(self.crop_label, 1)
        rl.addWidget(legend)
        rl.addWidget(self.detail)
        rl.addLayout(actions)
        return right

    def _add_shortcuts(self) -> None:
        for seq, slot in (
            ("A", self.accept_selected),
            ("D", self.dismiss_selected),
            ("E", self.open_selected),
            (QKeySequence.StandardKey.Undo, self.undo),
        ):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)

    def _browse_model(self) -> None:
        start = str(self.project.runs_dir) if self.project is not None else ""
        path, _ = QFileDialog.getOpenFileName(
            self, "Model for the analysis", start, "Models (*.pt *.pth *.onnx *.xml *.engine);;All (*)"
        )
        if path:
            self.model_edit.setText(path)

    def _model_chosen(self, text: str) -> None:
        """A model now chosen: the "Choose a model first" error is answered, so it goes."""
        if text.strip() and getattr(self, "last_message", "").startswith("Choose a model first"):
            self._set_status("")

    def _set_status(self, text: str, error: bool = False) -> None:
        self.last_message = text
        show_status(self.status_label, text, error)

    # ---- project ----------------------------------------------------------------------------
    def set_project(self, project: Any) -> None:
        """A core.project.Project or its root folder."""
        project = as_project(project)
        self.project = project
        if self.store is None or self.store is getattr(self, "_default_store", None):
            self.store = self._default_store = project
        self._accepted = []
        self.model_edit.setText(default_model(project, self.settings))
        self.reload()
        self._show_cost()

    def fold_cost(self, k: int | None = None) -> str:
        """How long `--folds K` will take on this project, said before it starts (core.analysis.folds)."""
        if self.project is None:
            return ""
        k = int(k or self.folds_spin.value())
        n = sum(1 for p in self.project.image_paths() if self.project.label_path(p).is_file())
        text = estimate_folds(self.project, n, k).describe()
        three = estimate_folds(self.project, n, 3)
        if k > 3 and three.seconds is not None:  # the label-mistake benchmark's setting
            text += f"; 3 folds: {three.describe().split(':')[0]}"
        return text

    def _show_cost(self) -> None:
        try:
            self.folds_spin.setToolTip(self.fold_cost())
        except Exception as exc:  # an estimate never blocks the panel
            self.folds_spin.setToolTip(f"no time estimate ({exc})")

    def runs_changed(self) -> None:
        """A training run finished: propose its model when none is chosen yet."""
        from app.settings import refresh_model_field

        refresh_model_field(self.model_edit, self.project, self.settings)

    @property
    def class_names(self) -> list[str]:
        return list(self.project.class_names) if self.project is not None else []

    def reload(self) -> None:
        """Read review/label_issues.json and decisions.json again."""
        if self.project is None:
            return
        try:
            self.review = Review.of_project(self.project, self.store)
        except UserFacingError as exc:
            self.review = None
            self._set_status(str(exc), error=True)
        self._thumbs.clear()
        self.refresh_table()
        self._emit_flagged()
        self._start_thumbnails()

    @property
    def items(self) -> list[ReviewItem]:
        return self.review.items if self.review is not None else []

    @property
    def meta(self) -> dict:
        return self.review.meta if self.review is not None else {}

    def flagged_images(self) -> set[Path]:
        """Images with at least one open item (the image list marks these)."""
        return flagged_images(self.items)

    def _emit_flagged(self) -> None:
        self.flagged_changed.emit({p.name for p in self.flagged_images()})

    # ---- analysis job -----------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def analysis_args(self, model: str | None = None, predictions: str | None = None,
                      folds: int | None = None) -> list[str]:
        assert self.project is not None
        args = ["analyze", str(self.project.root)]
        if folds:
            args += ["--folds", str(int(folds))]
        elif predictions:
            args += ["--predictions", str(predictions)]
        else:
            args += ["--weights", str(model or self.model_edit.text().strip())]
        return args + ["--out", str(self.project.review_dir), "--events", "-"]

    def find_mistakes(self, folds: int | None = None) -> bool:
        """Start the out-of-fold analysis (`dfine analyze --folds K`); finished folds of an
        earlier (cancelled) run are reused."""
        if self.project is None or self.is_running():
            return False
        k = int(folds or self.folds_spin.value())
        try:
            cost = self.fold_cost(k)
        except Exception:  # an estimate never blocks the run
            cost = ""
        self._start_job(self.analysis_args(folds=k), f"Finding label mistakes with {k} folds"
                        + (f" ({cost})" if cost else "") + "…")
        return True

    def run_analysis(self, model: str | None = None, predictions: str | None = None) -> bool:
        """Start the quick in-sample check (`dfine analyze --weights`) or read a predictions file."""
        if self.project is None or self.is_running():
            return False
        if not predictions and not (model or self.model_edit.text().strip()):
            self._set_status("Choose a model first (a trained checkpoint or an export).", error=True)
            return False
        if self.settings is not None and not predictions:
            self.settings.set_model_for(self.project.root, model or self.model_edit.text().strip())
        self._start_job(self.analysis_args(model, predictions), "Analysing the labelled images…")
        return True

    def _start_job(self, args: list[str], status: str) -> None:
        self.job = ProcessJob(args, cwd=self.project.root, parent=self)
        self.job.log.connect(self.log_view.appendPlainText)
        self.job.event.connect(self._on_event)
        self.job.finished.connect(self._analysis_done)
        self._model_warning = None
        self._cancel_message: str | None = None
        self.busy.setRange(0, 0)
        self.analyze_button.setEnabled(False)
        self.find_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._set_status(status)
        self.job.start()

    def _on_event(self, msg: object) -> None:
        """`dfine analyze --events -` (a core.messages model, parsed by ProcessJob): per-fold and
        per-image progress, the model warning, and the cancelled event of a stopped fold."""
        self.log_view.appendPlainText(msg.model_dump_json(exclude_none=True))
        if isinstance(msg, ProgressEvent):
            self._show_progress(msg)
        elif isinstance(msg, CancelledEvent):
            self._cancel_message = msg.message
        elif isinstance(msg, WarningEvent) and msg.about == "model":
            self._model_warning = msg.message

    def _show_progress(self, msg: ProgressEvent) -> None:
        done, total = int(msg.done or 0), int(msg.total or 0)
        if total:
            self.busy.setRange(0, total)
            self.busy.setValue(done)
        else:
            self.busy.setRange(0, 0)
        if msg.fold is not None:
            unit = "steps" if msg.phase == "train" else "images"
            doing = "training" if msg.phase == "train" else "predicting its held-out images"
            self._set_status(f"Fold {msg.fold} of {msg.folds}: {doing}… {done} of {total} {unit}" if total
                             else f"Fold {msg.fold} of {msg.folds}: {doing}…")
        elif msg.stage == "images" and total:
            self._set_status(f"Analysing the labelled images… {done} of {total}")
        elif msg.stage == "rank":
            self._set_status("Ranking the labels…")

    def shutdown(self, wait_ms: int = 10000) -> None:
        """End a running analysis before the window closes (SIGTERM, then kill)."""
        if self.is_running():
            self.job.cancel()
            if not self.job.wait(wait_ms):
                self.job.kill()
                self.job.wait(wait_ms)
        if getattr(self, "_thumb_task", None) is not None:
            self._thumb_task.cancel()

    def cancel(self) -> None:
        if self.is_running():
            self.job.cancel()
            self._set_status("Cancelling the analysis…")

    def _analysis_done(self, code: int, crashed: bool) -> None:
        self.busy.setRange(0, 1)
        self.analyze_button.setEnabled(True)
        self.find_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if getattr(self, "_cancel_message", None):
            self._set_status(f"Cancelled: {self._cancel_message}")
        elif code == 0 and not crashed:
            self.reload()
            n_open = sum(it.is_open for it in self.items)
            done = f"Analysis done: {len(self.items)} items, {n_open} to review"
            if self.meta.get("mode") == "in-sample":  # say it where the person looks
                done += " (in-sample quick check: mistakes the model learned stay hidden)"
            # e.g. an undertrained model: its misses would pass for label mistakes
            warning = self._model_warning
            if warning:  # the whole sentence is in the log; the status line keeps its gist
                self._set_status(f"{done}. Warning: {warning.split(', so ')[0]} (see the log)", error=True)
            else:
                self._set_status(done)
        else:
            lines = self.log_view.toPlainText().strip().splitlines()
            reason = self.job.last_error or (lines[-1] if lines else f"exit code {code}")
            self._set_status(f"Analysis failed: {reason}", error=True)
        self.analysis_finished.emit(code)

    # ---- table ------------------------------------------------------------------------------
    def visible_items(self) -> list[ReviewItem]:
        kind = self.kind_filter.currentData()
        return [
            it
            for it in self.items
            if (kind is None or it.kind == kind) and (it.is_open or self.show_decided.isChecked())
        ]

    def refresh_table(self) -> None:
        keep = self.selected_item()
        shown = self.visible_items()
        self.table.setRowCount(len(shown))
        names = self.class_names
        for row, it in enumerate(shown):
            cid = it.class_id
            cells = [
                "",
                str(it.rank),
                KIND_TEXT.get(it.kind, it.kind),
                names[cid] if cid is not None and 0 <= cid < len(names) else "—",
                f"{it.score:.2f}",
                it.image.name,
                it.decision or "open",
                it.data.get("message", ""),
            ]
            for col, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                if col == 0:
                    cell.setData(Qt.ItemDataRole.UserRole, it.key)
                    icon = self._thumbs.get(it.key)
                    if icon is not None:
                        cell.setIcon(icon)
                if col in (1, 4):
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if not it.is_open:
                    cell.setForeground(self.palette().placeholderText())
                cell.setToolTip(it.data.get("message", ""))
                self.table.setItem(row, col, cell)
        n_open = sum(i.is_open for i in self.items)
        mode = MODE_TEXT.get(str(self.meta.get("mode")), "")
        suffix = f" · {mode.split(':')[0]}" if mode else ""
        if self.items:
            text = f"{n_open} open · {len(self.items) - n_open} decided{suffix}"
        elif self.meta:  # an analysis ran and flagged nothing (or a useless model made no claims)
            text = f"No likely mistakes flagged{suffix}"
        else:
            text = "No analysis yet — press Find label mistakes"
        self.count_label.setText(text)
        self.count_label.setToolTip(mode)
        # Re-selecting the row that is already selected emits nothing, yet its item may be a new
        # one (a re-analysis): select quietly, then always redraw the preview once.
        self.table.blockSignals(True)
        try:
            if keep is not None:
                self.select_key(keep.key)
            elif shown:
                self.table.selectRow(0)
        finally:
            self.table.blockSignals(False)
        self._show_selected()

    def select_key(self, key: str) -> bool:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == key:
                self.table.selectRow(row)
                return True
        return False

    def selected_item(self) -> ReviewItem | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return self.item_by_key(self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole))

    def item_by_key(self, key: str) -> ReviewItem | None:
        return next((it for it in self.items if it.key == key), None)

    def _update_buttons(self) -> None:
        it = self.selected_item() if hasattr(self, "table") else None
        self.accept_button.setEnabled(it is not None and it.is_open and bool(it.fix.get("action")))
        self.dismiss_button.setEnabled(it is not None and it.decision != "accepted")
        self.dismiss_button.setText("Reopen" if it is not None and it.decision == "dismissed" else "Dismiss")
        self.open_button.setEnabled(it is not None)
        self.undo_button.setEnabled(bool(self._accepted))
        if it is not None:
            self.accept_button.setText(suggestion_text(it, self.class_names))

    def _load_ann(self, image: Path) -> Any:
        try:
            return self.store.load_annotation(image)
        except UserFacingError:
            return None

    def _show_selected(self) -> None:
        it = self.selected_item()
        self._update_buttons()
        if it is None:
            self.crop_label.setPixmap(QPixmap())
            self.crop_label.setText("Nothing to review" if not self.visible_items() else "Select an item")
            self.detail.setPlainText("")
            return
        from core.data.images import read_image

        try:
            tile = render_crop(it, read_image(it.image), self._load_ann(it.image), self.class_names, TILE)
            self.crop_label.setPixmap(QPixmap.fromImage(bgr_to_qimage(tile)))
        except (UserFacingError, OSError) as exc:
            self.crop_label.setPixmap(QPixmap())
            self.crop_label.setText(f"cannot show the image:\n{exc}")
        ev = it.data.get("evidence") or {}
        ev_text = ", ".join(f"{k} {v}" for k, v in ev.items())
        self.detail.setPlainText(
            f"#{it.rank} {KIND_TEXT.get(it.kind, it.kind)} · score {it.score:.3f}"
            f" · {it.decision or 'open'}\n{it.data.get('message', '')}\n{ev_text}\n{it.image}"
        )

    # ---- thumbnails (worker) ----------------------------------------------------------------
    def _start_thumbnails(self) -> None:
        if not self.items:
            return
        from app.workers import run_task

        if self._thumb_task is not None:
            self._thumb_task.cancel()
        items = list(self.items)
        names = self.class_names
        store = self.project  # a worker thread: read files directly, never a custom (GUI) store
        results: dict[str, np.ndarray] = {}

        def work(task):
            from core.data.images import read_image

            cache: dict[Path, tuple[np.ndarray | None, Any]] = {}
            for n, it in enumerate(items):
                if task.cancelled:
                    break
                if it.image not in cache:
                    cache.clear()  # items are mostly grouped by score, not image: keep memory flat
                    try:
                        img = read_image(it.image)
                    except (UserFacingError, OSError):
                        img = None
                    try:
                        ann = store.load_annotation(it.image)
                    except (UserFacingError, OSError):
                        ann = None
                    cache[it.image] = (img, ann)
                img, ann = cache[it.image]
                if img is not None:
                    results[it.key] = render_crop(it, img, ann, names, THUMB * 2)[: THUMB * 2]
                    task.progress(n + 1, len(items), it.key)
            return len(results)

        def progress(_done: int, _total: int, key: str) -> None:
            tile = results.get(key)
            if tile is None:
                return
            self._thumbs[key] = QIcon(QPixmap.fromImage(bgr_to_qimage(tile)))
            for row in range(self.table.rowCount()):
                cell = self.table.item(row, 0)
                if cell is not None and cell.data(Qt.ItemDataRole.UserRole) == key:
                    cell.setIcon(self._thumbs[key])

        self._thumb_task = run_task(work, on_progress=progress)

    def wait_thumbnails(self, timeout_s: float = 30.0) -> bool:
        return self._thumb_task is None or self._thumb_task.done.wait(timeout_s)

    # ---- actions ------------------------------------------------------------------------------
    def _next_open_after(self, it: ReviewItem) -> str | None:
        shown = self.visible_items()
        later = [x for x in shown if x.rank > it.rank and x.is_open] + [x for x in shown if x.is_open]
        return later[0].key if later else None

    def accept_selected(self) -> bool:
        """Apply the model's suggestion to the label file (undoable with Undo)."""
        it = self.selected_item()
        if it is None or not it.is_open or self.review is None:
            return False
        try:
            change = self.review.accept(it)
        except UserFacingError as exc:
            self._set_status(str(exc), error=True)
            return False
        self._accepted.append(it.key)
        self._after_decision(it)
        self._set_status(f"Applied: {change} ({it.image.name}) — Undo to revert")
        self.labels_changed.emit(it.image)
        return True

    def dismiss_selected(self) -> bool:
        """The label is right: hide this item, now and after re-analysis. On a dismissed
        item (Show decided) the same button reopens it."""
        it = self.selected_item()
        if it is None or self.review is None:
            return False
        try:
            if it.decision == "dismissed":
                self.review.reopen(it)
                self.refresh_table()
                self._emit_flagged()
                self._set_status(f"Reopened #{it.rank} ({it.image.name})")
                return True
            if not it.is_open:
                return False
            self.review.dismiss(it)
        except UserFacingError as exc:
            self._set_status(str(exc), error=True)
            return False
        self._after_decision(it)
        self._set_status(f"Dismissed #{it.rank} ({it.image.name})")
        return True

    def _after_decision(self, it: ReviewItem) -> None:
        nxt = self._next_open_after(it)
        self.table.clearSelection()
        self.refresh_table()
        if nxt is not None:
            self.select_key(nxt)
        self._emit_flagged()
        self._update_buttons()

    def open_selected(self) -> bool:
        it = self.selected_item()
        if it is None:
            return False
        index = -1
        if it.instance is not None:
            ann = self._load_ann(it.image)
            if ann is not None:
                try:
                    index = locate_instance(ann, it.data)
                except StaleIssueError:
                    index = -1
        self.last_opened_box = it.box
        self.open_in_editor.emit(it.image, index)
        return True

    def undo(self) -> bool:
        """Revert the last fix accepted in this session (and reopen its item)."""
        if self.review is None or not self._accepted:
            return False
        it = self.item_by_key(self._accepted[-1])
        try:
            if it is None:
                raise UserFacingError("the item of the last fix is no longer in the analysis")
            it, change = self.review.undo(it)
        except UserFacingError as exc:
            self._set_status(str(exc), error=True)
            return False
        self._accepted.pop()
        self.refresh_table()
        self.select_key(it.key)
        self._emit_flagged()
        self._update_buttons()
        self._set_status(f"Undone: {change} ({it.image.name})")
        self.labels_changed.emit(it.image)
        return True
