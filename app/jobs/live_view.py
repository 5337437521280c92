"""Live view: a model on a camera, a video file or an image folder, drawn as it runs.

The capture thread (app.jobs.capture) reads and predicts; this widget takes the newest
result whenever it is ready, draws masks/boxes/labels and shows FPS and end-to-end
latency. Pause, snapshot (PNG), record (MJPG .avi) and "send frame to project" (the
frame becomes a project image labelled with the model's instances, source="model",
for the person to correct) work on what is on screen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.jobs.capture import CaptureThread, FrameResult, SourceError, open_source
from app.settings import BACKENDS, default_model
from app.theme import show_status
from core.annotation import ImageAnnotation
from core.errors import UserFacingError
from core.project import as_project


def draw_overlay(frame: np.ndarray, det: Any, class_names: Sequence[str] = ()) -> np.ndarray:
    """A copy of ``frame`` with masks, boxes and "name score" tags: core.infer.overlay's drawing
    (the same picture `dfine infer --save` writes), with our class names when the detections
    carry none."""
    if det is None or not len(det.scores):
        return frame.copy()
    from dataclasses import is_dataclass, replace

    from core.infer.overlay import draw_detections

    if class_names and not getattr(det, "class_names", None) and is_dataclass(det):
        det = replace(det, class_names=list(class_names))
    return draw_detections(frame, det)


def to_qimage(bgr: np.ndarray) -> QImage:
    """A QImage that owns a copy of the pixels (the numpy buffer may be reused)."""
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class FrameView(QWidget):
    """Paints the current frame letterboxed, or a message when there is none."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: QImage | None = None
        self.message = "Choose a source and a model, then press Start."
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage | None) -> None:
        self.image = image
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#111214"))
        if self.image is not None and not self.image.isNull():
            iw, ih = self.image.width(), self.image.height()
            s = min(self.width() / iw, self.height() / ih)
            w, h = iw * s, ih * s
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h), self.image)
        if self.message and self.image is None:
            p.setPen(QColor("#c9ccd1"))
            p.drawText(
                self.rect().adjusted(20, 20, -20, -20),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.message,
            )
        p.end()


class LiveView(QWidget):
    """Source + model pickers, the frame view, and the controls."""

    frame_added = Signal(object)  # Path of an image sent to the project
    error = Signal(str)

    def __init__(
        self, project: Any | None = None, settings: Any | None = None, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.project = None
        self.settings = settings  # app.settings.AppSettings: last source/device/backend/model
        self.thread: CaptureThread | None = None
        self.current: FrameResult | None = None
        self.current_overlay: np.ndarray | None = None
        self.class_names: list[str] = []
        self.writer: cv2.VideoWriter | None = None
        self.record_path: Path | None = None
        self.frames_shown = 0
        self.display_latency_ms: float | None = None  # capture -> on screen, of the frame shown last
        self.frames_recorded = 0
        self.last_message = ""
        self.model_info = ""  # "openvino int8" once the model is loaded
        self.last_sent = None  # the ImageAnnotation last sent to the project (with source="model")
        self._build_ui()
        self._restore_settings()
        if project is not None:
            self.set_project(project)
        self._update_buttons()

    # ---- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.source_box = QComboBox()
        self.source_box.setEditable(True)
        self.source_box.addItems(["0", "1"])
        self.source_box.setToolTip("camera index (0, 1, …), a video file or an image folder")
        self.source_box.setMinimumWidth(160)
        video = QPushButton("Video…")
        video.clicked.connect(self._browse_video)
        folder = QPushButton("Folder…")
        folder.clicked.connect(self._browse_folder)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("checkpoint (.pt) or export folder / model.xml / model.onnx")
        self.model_edit.textChanged.connect(self._model_chosen)
        model_browse = QPushButton("Model…")
        model_browse.clicked.connect(self._browse_model)
        self.device_box = QComboBox()
        self.device_box.addItems(["cpu", "cuda"])
        self.backend_box = QComboBox()
        self.backend_box.addItems(list(BACKENDS))
        self.backend_box.setToolTip("which model of an export folder runs (auto: the fastest for the device)")
        top = QHBoxLayout()
        top.addWidget(QLabel("Source"))
        top.addWidget(self.source_box, 1)
        top.addWidget(video)
        top.addWidget(folder)
        top.addSpacing(12)
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_edit, 2)
        top.addWidget(model_browse)
        top.addWidget(self.device_box)
        top.addWidget(self.backend_box)

        self.view = FrameView()

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("primaryButton")
        self.start_button.clicked.connect(self.toggle_running)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self.set_paused)
        self.snapshot_button = QPushButton("Snapshot")
        self.snapshot_button.clicked.connect(lambda: self.snapshot())
        self.record_button = QPushButton("Record")
        self.record_button.setCheckable(True)
        self.record_button.toggled.connect(self._record_toggled)
        self.send_button = QPushButton("Send frame to project")
        self.send_button.setToolTip("add this frame to the project with the model's labels, for correction")
        self.send_button.clicked.connect(lambda: self.send_to_project())
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(1, 99)
        self.threshold_slider.setValue(50)
        self.threshold_slider.setMinimumWidth(120)
        self.threshold_slider.setMaximumWidth(200)
        self.threshold_slider.valueChanged.connect(self._threshold_changed)
        self.threshold_label = QLabel("conf 0.50")
        self.stats_label = QLabel("FPS —  ·  e2e — ms")
        self.stats_label.setObjectName("muted")
        controls = QHBoxLayout()
        for w in (
            self.start_button,
            self.pause_button,
            self.snapshot_button,
            self.record_button,
            self.send_button,
        ):
            controls.addWidget(w)
        controls.addSpacing(12)
        controls.addWidget(self.threshold_label)
        controls.addWidget(self.threshold_slider)
        controls.addStretch(1)
        controls.addWidget(self.stats_label)

        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        layout.addLayout(controls)
        layout.addWidget(self.status_label)

    def _browse_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Video file", "", "Videos (*.mp4 *.avi *.mkv *.mov *.webm);;All (*)"
        )
        if path:
            self.source_box.setEditText(path)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Image folder")
        if path:
            self.source_box.setEditText(path)

    def _browse_model(self) -> None:
        start = str(self.project.root) if self.project is not None else ""
        path, _ = QFileDialog.getOpenFileName(
            self, "Model", start, "Models (*.pt *.pth *.onnx *.xml *.engine);;All (*)"
        )
        if path:
            self.model_edit.setText(path)

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.start_button.setText("Stop" if running else "Start")
        self.pause_button.setEnabled(running)
        has_frame = self.current is not None
        self.snapshot_button.setEnabled(has_frame)
        self.record_button.setEnabled(running or self.writer is not None)
        self.record_button.setText("● Stop recording" if self.writer is not None else "Record")
        self.send_button.setEnabled(has_frame and self.project is not None)

    def _model_chosen(self, text: str) -> None:
        """A model now chosen: the "Choose a model first" error is answered, so it goes."""
        if text.strip() and getattr(self, "last_message", "").startswith("Choose a model first"):
            self._set_status("")

    def _set_status(self, text: str, error: bool = False) -> None:
        self.last_message = text
        show_status(self.status_label, text, error)
        if error:
            self.error.emit(text)

    # ---- project / model ------------------------------------------------------------------
    def set_project(self, project: Any) -> None:
        """A core.project.Project or a project root; its image folder is offered as a source."""
        if project is not None:
            project = as_project(project)
        self.project = project
        if project is not None:
            self.source_box.addItem(str(project.image_dir))
            self.class_names = list(project.class_names)
            self.model_edit.setText(default_model(project, self.settings))
        self._update_buttons()

    def runs_changed(self) -> None:
        """A training run finished: propose its model when none is chosen yet."""
        from app.settings import refresh_model_field

        refresh_model_field(self.model_edit, self.project, self.settings)
        self._update_buttons()

    def _restore_settings(self) -> None:
        if self.settings is None:
            return
        self.source_box.setEditText(self.settings.live_source)
        device = self.settings.device
        self.device_box.setCurrentText("cuda" if device.startswith("cuda") else "cpu")
        self.backend_box.setCurrentText(self.settings.backend)

    def _remember(self, source: str, model: str | None) -> None:
        if self.settings is None:
            return
        self.settings.live_source = source
        self.settings.device = self.device_box.currentText()
        self.settings.backend = self.backend_box.currentText()
        if model and self.project is not None:
            self.settings.set_model_for(self.project.root, model)

    @property
    def threshold(self) -> float:
        return self.threshold_slider.value() / 100.0

    def _threshold_changed(self, value: int) -> None:
        self.threshold_label.setText(f"conf {value / 100:.2f}")
        if self.thread is not None:
            self.thread.set_threshold(value / 100.0)

    # ---- run control ----------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def toggle_running(self) -> None:
        if self.is_running():
            self.stop()
        else:
            self.start()

    def start(
        self,
        source: str | int | Path | None = None,
        predictor: Any | None = None,
        max_fps: float | None = 30.0,
    ) -> bool:
        """Open the source and start the capture thread. ``predictor`` may be any object with
        ``predict([bgr]) -> [Detections]``; without it the model in the model field is loaded
        (inside the thread). Returns False, with the reason on screen, when nothing started."""
        if self.is_running():
            return True
        spec = self.source_box.currentText() if source is None else source
        if source is not None:
            self.source_box.setEditText(str(source))
        try:
            src = open_source(spec)
        except SourceError as exc:
            self.view.set_image(None)
            self.view.set_message(str(exc))
            self._set_status(str(exc), error=True)
            return False
        loader = None
        if predictor is None:
            model = self.model_edit.text().strip()
            if not model:
                src.close()
                self._set_status(
                    "Choose a model first (a checkpoint, an export folder or a model file).", error=True
                )
                return False
            device = self.device_box.currentText()
            backend = None if self.backend_box.currentText() == "auto" else self.backend_box.currentText()

            def loader():
                from core.infer.predictor import Predictor

                return Predictor.load(model, device=device, conf=0.01, backend=backend)
        else:
            self._adopt_class_names(predictor)
        self.current = None
        self.frames_shown = 0
        self.thread = CaptureThread(
            src, predictor, self.threshold, max_fps=max_fps, loader=loader, parent=self
        )
        self.thread.result_ready.connect(self._on_result)
        self.thread.model_loaded.connect(self._adopt_class_names)
        self.thread.failed.connect(lambda msg: self._set_status(msg, error=True))
        self.thread.ended.connect(self._on_ended)
        # isRunning() is still True while `ended` is emitted: refresh the buttons once it is not
        self.thread.finished.connect(self._update_buttons)
        self._remember(str(spec), None if predictor is not None else self.model_edit.text().strip())
        self.view.set_message(f"Loading the model and opening {src.name}…")
        self._set_status(f"Running on {src.name}")
        self.thread.start()
        self._update_buttons()
        return True

    def _adopt_class_names(self, predictor: Any) -> None:
        names = list(getattr(predictor, "class_names", []) or [])
        if names:
            self.class_names = names
        backend = getattr(predictor, "backend", None)
        if backend:
            self.model_info = f"{backend} {getattr(predictor, 'precision', '')}".strip()

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self._on_result()  # the last frame may still be in the slot
        self.stop_recording()
        self._update_buttons()

    def set_paused(self, paused: bool) -> None:
        if self.thread is not None:
            self.thread.pause(paused)
        self.pause_button.setText("Resume" if paused else "Pause")

    def _on_ended(self, reason: str) -> None:
        if reason not in ("error",):
            self._set_status(f"Stopped: {reason}")
        if self.pause_button.isChecked():
            self.pause_button.setChecked(False)
        self.stop_recording()
        self._update_buttons()

    def _on_result(self) -> None:
        if self.thread is None:
            return
        res = self.thread.take_latest()
        if res is None:
            return
        self.current = res
        overlay = draw_overlay(res.frame, res.detections, self.class_names)
        self.current_overlay = overlay
        self.view.set_image(to_qimage(overlay))
        self.frames_shown += 1
        n = len(res.detections.scores) if res.detections is not None else 0
        self.display_latency_ms = (time.monotonic() - res.captured_at) * 1000.0  # capture -> on screen
        dropped = self.thread.frames_dropped + self.thread.frames_stale
        self.stats_label.setText(
            (f"{self.model_info}  ·  " if self.model_info else "")
            + f"FPS {res.fps:.1f}  ·  e2e {res.latency_ms:.1f} ms  ·  capture→screen "
            f"{self.display_latency_ms:.0f} ms  ·  {n} objects  ·  dropped {dropped}"
        )
        if self.writer is not None:
            self._write_frame(overlay)
        if self.frames_shown == 1:
            self._update_buttons()

    # ---- snapshot / record / send -----------------------------------------------------------
    def _output_dir(self) -> Path:
        base = self.project.root / "live" if self.project is not None else Path.home() / "dfine-studio-live"
        base.mkdir(parents=True, exist_ok=True)
        return base

    def snapshot(self, path: Path | str | None = None) -> Path | None:
        """Save what is on screen (frame + overlay) as PNG; returns the file."""
        if self.current_overlay is None:
            self._set_status("No frame to save yet.", error=True)
            return None
        path = (
            Path(path)
            if path
            else self._output_dir()
            / f"snapshot_{time.strftime('%Y%m%d_%H%M%S')}_{self.current.index:06d}.png"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", self.current_overlay)
        if not ok:
            self._set_status(f"{path}: PNG encoding failed", error=True)
            return None
        path.write_bytes(buf.tobytes())
        self._set_status(f"Snapshot saved: {path}")
        return path

    def _record_toggled(self, on: bool) -> None:
        if on and self.writer is None:
            if self.start_recording() is None:
                self.record_button.setChecked(False)
        elif not on and self.writer is not None:
            self.stop_recording()

    def start_recording(self, path: Path | str | None = None, fps: float | None = None) -> Path | None:
        """Record the overlaid frames as shown (MJPG .avi) until stop_recording()."""
        if self.writer is not None:
            return self.record_path
        if self.current_overlay is None and not self.is_running():
            self._set_status("Start the source before recording.", error=True)
            return None
        self.record_path = (
            Path(path) if path else self._output_dir() / f"record_{time.strftime('%Y%m%d_%H%M%S')}.avi"
        )
        self._record_fps = fps or float(getattr(getattr(self.thread, "source", None), "fps", 0.0) or 15.0)
        self.frames_recorded = 0
        self.writer = _PendingWriter()  # the real writer opens on the first frame, when the size is known
        if not self.record_button.isChecked():
            self.record_button.blockSignals(True)
            self.record_button.setChecked(True)
            self.record_button.blockSignals(False)
        self._update_buttons()
        self._set_status(f"Recording to {self.record_path}")
        return self.record_path

    def _write_frame(self, frame: np.ndarray) -> None:
        if isinstance(self.writer, _PendingWriter):
            h, w = frame.shape[:2]
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(
                str(self.record_path), cv2.VideoWriter_fourcc(*"MJPG"), self._record_fps, (w, h)
            )
            if not writer.isOpened():
                self.writer = None
                self._set_status(f"{self.record_path}: cannot open a video writer (MJPG)", error=True)
                return
            self.writer = writer
            self._record_size = (w, h)
        if (frame.shape[1], frame.shape[0]) != self._record_size:  # a folder of mixed sizes
            frame = cv2.resize(frame, self._record_size)
        self.writer.write(frame)
        self.frames_recorded += 1

    def stop_recording(self) -> Path | None:
        if self.writer is None:
            return None
        if not isinstance(self.writer, _PendingWriter):
            self.writer.release()
        self.writer = None
        if self.record_button.isChecked():
            self.record_button.blockSignals(True)
            self.record_button.setChecked(False)
            self.record_button.blockSignals(False)
        self._set_status(f"Recorded {self.frames_recorded} frames to {self.record_path}")
        self._update_buttons()
        return self.record_path

    def send_to_project(self) -> Path | None:
        """The raw frame becomes a new project image; the model's instances (polygons from
        masks, source="model") its labels, ready for correction in the editor."""
        if self.current is None or self.project is None:
            self._set_status("Open a project and show a frame first.", error=True)
            return None
        from app.prelabel import class_mapping, detections_to_instances, keep_confident, proposal_floor

        res = self.current
        image_dir = self.project.image_dir
        image_dir.mkdir(parents=True, exist_ok=True)
        stem = f"live_{time.strftime('%Y%m%d_%H%M%S')}_{res.index:06d}"
        path = image_dir / f"{stem}.png"
        n = 1
        while path.exists():
            path = image_dir / f"{stem}_{n}.png"
            n += 1
        ok, buf = cv2.imencode(".png", res.frame)
        if not ok:
            self._set_status(f"{path}: PNG encoding failed", error=True)
            return None
        instances = []
        if res.detections is not None and len(res.detections.scores):
            mapping = class_mapping(self.class_names, self.project.class_names)
            as_boxes = getattr(self.project.config, "task", "segment") == "detect"
            instances = detections_to_instances(res.detections, mapping, as_boxes=as_boxes)
        floor = proposal_floor(self.project, self.threshold)
        instances, dropped = keep_confident(instances, floor)
        h, w = res.frame.shape[:2]
        ann = ImageAnnotation(path, w, h, instances)
        try:
            path.write_bytes(buf.tobytes())
            if instances:  # proposals to correct in the editor (model-made rows)
                self.project.save_annotation(ann)
            # nothing found: no label file, so the frame counts as unlabelled (an empty file
            # would mean "labelled: no objects here" and train it as pure background)
        except (OSError, UserFacingError) as exc:
            self._set_status(f"Could not add the frame: {exc}", error=True)
            return None
        self.last_sent = ann
        if instances:
            left = f"; {dropped} below {floor:.2f} or over the cap left out" if dropped else ""
            self._set_status(f"Added {path.name} with {len(instances)} model proposals (score >= {floor:.2f}) "
                             f"to review in the editor{left}")
        else:
            self._set_status(f"Added {path.name} unlabelled (the model found nothing at this threshold): "
                             "label it in the editor")
        self.frame_added.emit(path)
        return path

    def shutdown(self) -> None:
        """Stop the capture thread and close the recording (call before the window goes away:
        a QThread destroyed while running aborts the process)."""
        self.stop()

    def closeEvent(self, event) -> None:
        self.stop()
        super().closeEvent(event)


class _PendingWriter:
    """Placeholder until the first frame gives the video size."""
