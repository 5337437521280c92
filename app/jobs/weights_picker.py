"""Starting-weights picker of the Train panel: the official checkpoints for the chosen size
(which are downloaded), a file of the user's own, or random initialisation; downloads run as
`python -m core weights get NAME --events -` in the background with progress and Cancel.

Why a child process and not a thread: Cancel is the same SIGTERM as for training (the `.part`
stays and the next Download resumes it), and a stalled network never blocks the GUI.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.jobs.process_job import ProcessJob
from core.errors import ConfigError
from core.messages import CancelledEvent, ErrorEvent, ProgressEvent, ResultEvent
from core.weights import cache_rows, cached_file, find_entry, weights_dir

RANDOM = "random initialisation"


class WeightsPicker(QWidget):
    """Pick what training starts from. `selection()` -> (flag, value) or None (random)."""

    download_finished = Signal(str, bool)  # name, ok

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project_root: Path | None = None
        self.size = "s"
        self.custom_file: str | None = None
        self.job: ProcessJob | None = None
        self.downloading: str | None = None
        self.last_error: str | None = None
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(28)
        self.combo.currentIndexChanged.connect(self._update_buttons)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(lambda: self.download())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        browse = QPushButton("File…")
        browse.setToolTip("start from a .pth/.pt file of your own")
        browse.clicked.connect(self._browse)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setVisible(False)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.refresh()

    # ---- list -------------------------------------------------------------------------------
    def set_context(self, project_root: Path | None, size: str, configured: str | None = None) -> None:
        """A project (for its weights cache) and size; `configured` is its model.weights."""
        self.project_root = Path(project_root) if project_root is not None else None
        self.size = size
        if configured:

            entry = find_entry(configured)
            if entry is None:
                self.custom_file = configured
        self.refresh(select=configured)

    def set_size(self, size: str) -> None:
        if size != self.size:
            self.size = size
            self.refresh()

    def cache_folder(self) -> Path:

        try:
            return weights_dir(self.project_root)
        except ConfigError:  # a broken project.yaml: the editor reports it; use the default cache
            return weights_dir(None)

    def refresh(self, select: str | None = None) -> None:
        """Rebuild the list (presence re-read from the cache). Keeps the current choice when it
        still fits the size; otherwise `select`, else the size's COCO checkpoint when present."""

        current = select or self.current_value()
        if current is not None and current != self.custom_file:
            entry = find_entry(current)
            if entry is not None and self.size not in entry.sizes:
                current = None
        rows = [r for r in cache_rows(self.cache_folder()) if self.size in r.entry.sizes]
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(RANDOM, None)
        for r in rows:
            e = r.entry
            what = f"{e.dataset}, AP {e.ap:.1f}" if e.kind == "detector" else f"{e.dataset} backbone only"
            state = ("downloaded" if r.present else
                     f"{r.partial / 1e6:.0f} MB downloaded, resumable" if r.partial else "not downloaded")
            self.combo.addItem(f"{e.name} — {what} ({state})", e.name)
            self.combo.setItemData(self.combo.count() - 1, str(r.path), Qt.ItemDataRole.ToolTipRole)
        if self.custom_file:
            self.combo.addItem(f"file: {self.custom_file}", self.custom_file)
        if current is None:
            coco = next((r for r in rows if r.entry.dataset == "COCO" and r.present), None)
            current = coco.entry.name if coco else None
        index = self.combo.findData(current) if current is not None else 0
        self.combo.setCurrentIndex(max(index, 0))
        self.combo.blockSignals(False)
        self._update_buttons()

    def current_value(self) -> str | None:
        return self.combo.currentData() if self.combo.count() else None

    def entry(self):
        """The registry entry selected, or None (random / own file)."""

        value = self.current_value()
        return find_entry(value) if value and value != self.custom_file else None

    def needs_download(self) -> bool:
        entry = self.entry()
        if entry is None:
            return False

        return not cached_file(entry, self.cache_folder()).is_file()

    def selection(self) -> tuple[str, str] | None:
        """The train flag and value: ('--weights', 'dfine_s_coco'), ('--backbone-weights',
        'hgnetv2_b0'), ('--weights', '/path/own.pth') or None for random initialisation."""
        value = self.current_value()
        if value is None:
            return None
        entry = self.entry()
        return ("--backbone-weights" if entry is not None and entry.kind == "backbone" else "--weights", value)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Starting weights", "", "PyTorch (*.pth *.pt)")
        if path:
            self.custom_file = path
            self.refresh(select=path)

    def _update_buttons(self) -> None:
        busy = self.is_downloading()
        self.download_button.setVisible(not busy)
        self.download_button.setEnabled(self.needs_download())
        self.cancel_button.setVisible(busy)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))  # no empty row under the list when idle

    # ---- download ---------------------------------------------------------------------------
    def is_downloading(self) -> bool:
        return self.job is not None and self.job.is_running()

    def download(self, name: str | None = None) -> bool:
        """Start `weights get` for `name` (default: the selected checkpoint); False when nothing
        to do or a download is already running."""
        entry = self.entry()
        name = name or (entry.name if entry else None)
        if name is None or self.is_downloading():
            return False
        args = ["weights", "get", name, "--events", "-"]
        if self.project_root is not None:
            args += ["--project", str(self.project_root)]
        self.downloading, self.last_error = name, None
        self.job = ProcessJob(args, cwd=self.project_root, parent=self)
        self.job.event.connect(self.handle_event)
        self.job.finished.connect(self._on_finished)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self._set_status(f"Downloading {name}…")
        self.job.start()
        self._update_buttons()
        return True

    def cancel(self) -> None:
        if self.is_downloading():
            self._set_status(f"Cancelling {self.downloading}…")
            self.job.cancel()

    def handle_event(self, msg: object) -> None:
        """One `dfine weights get --events -` event (a core.messages model, parsed by ProcessJob)."""
        if isinstance(msg, ProgressEvent) and msg.stage == "start":
            if msg.resume_from:
                self._set_status(f"Resuming {msg.name} at {msg.resume_from / 1e6:.1f} MB…")
        elif isinstance(msg, ProgressEvent):
            done, total = int(msg.done or 0), msg.total
            if total:
                self.progress.setValue(int(1000 * (msg.fraction() or 0.0)))
                self._set_status(f"Downloading {msg.name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
            else:
                self._set_status(f"Downloading {msg.name}: {done / 1e6:.1f} MB")
        elif isinstance(msg, ResultEvent):
            self.progress.setValue(1000)
            self._set_status(f"{msg.name} ready ({msg.check or ''})")
        elif isinstance(msg, CancelledEvent):
            self._set_status(f"Cancelled — {(msg.bytes or 0) / 1e6:.1f} MB kept; Download resumes it")
        elif isinstance(msg, ErrorEvent):
            self.last_error = msg.message or "download failed"
            self._set_status(f"Download failed: {self.last_error}")

    def _on_finished(self, code: int, crashed: bool) -> None:
        name = self.downloading or ""
        ok = code == 0 and not crashed and self.last_error is None
        if not ok and self.last_error is None and not self.status.text().startswith("Cancel"):
            self.last_error = self.job.last_error if self.job else None
            self._set_status(f"Download failed (exit code {code})")
        self.progress.setVisible(False)
        self.downloading = None
        self.refresh()
        self.download_finished.emit(name, ok)

    def stop_and_wait(self, msecs: int = 10000) -> None:
        """On close: cancel a running download (its `.part` stays for next time)."""
        if self.is_downloading():
            self.job.cancel()
            if not self.job.wait(msecs):
                self.job.kill()
