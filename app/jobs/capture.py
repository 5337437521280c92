"""The capture thread: reads frames from a source (camera index, video file, image folder,
via core.infer.sources) and runs the Predictor on them.

Cameras and videos are read by a grabber thread of their own (core.infer.live_pipeline), and
inference always takes the newest frame: a model slower than the camera drops stale frames
instead of showing ever older ones. Folders and un-paced files are processed frame by frame.

Why a "latest result" slot instead of a queue: a live view must show *now*. The
thread overwrites one slot and the GUI takes whatever is newest when it repaints, so
a slow GUI or a slow model drops frames instead of falling ever further behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QThread, Signal

from core.errors import UserFacingError
from core.infer.detections import Detections
from core.infer.live_pipeline import FrameGrabber


class SourceError(UserFacingError):
    """A source that cannot be opened (no camera, unreadable video, empty folder)."""


class FrameReader:
    """Pull-style wrapper over core.infer.sources (the iterator the CLI and benchmark use):
    ``read()`` gives the next BGR frame or None at the end; ``current`` is the image file of
    the last frame for folder sources."""

    def __init__(self, source: Any):
        self.source = source
        self.kind = source.kind  # camera | video | folder | image
        self.is_live = self.kind == "camera"  # a camera runs on its own clock; files are paced by us
        spec = Path(source.spec)
        self.name = f"camera {source.spec}" if self.is_live else spec.name
        self.fps = float(source.fps or 0.0)
        self.folder = spec if self.kind == "folder" else spec.parent
        self.current: Path | None = None
        self._frames = iter(source)

    def read(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        self.current = self.folder / frame.name if self.kind in ("folder", "image") else None
        return frame.image

    @property
    def skipped(self) -> list[str]:
        return list(self.source.skipped)

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()  # runs the generator's finally: releases the capture
        cap = getattr(self.source, "capture", None)
        if cap is not None:
            cap.release()


def open_source(spec: str | int | Path) -> FrameReader:
    """The source ``spec`` names (camera index, video file, image folder or one image);
    raises SourceError with a message a person can act on."""
    from core.infer.sources import open_source as open_core_source

    text = str(spec).strip()
    if not text:
        raise SourceError("no source given: enter a camera index (0, 1, …), a video file or an image folder")
    if not text.isdigit():
        text = str(Path(text).expanduser())
    try:
        return FrameReader(open_core_source(text))
    except SourceError:
        raise
    except UserFacingError as exc:
        raise SourceError(str(exc)) from exc


class PredictorLike(Protocol):
    def predict(self, images: list[np.ndarray]) -> list[Any]: ...


@dataclass
class FrameResult:
    """One processed frame: the pixels, what the model found and how long it took."""

    index: int
    frame: np.ndarray
    detections: Any | None
    latency_ms: float  # end-to-end: image in memory -> Detections (preprocess + forward + postprocess)
    fps: float  # processed frames per second (moving average)
    source_name: str = ""
    image_path: Path | None = None  # for folder sources: the file the frame came from
    timestamp: float = field(default_factory=time.monotonic)
    captured_at: float = field(default_factory=time.monotonic)  # when the frame was read (monotonic)


def filter_detections(det: Any, threshold: float) -> Any:
    """Keep detections scoring >= threshold (a predictor loaded with a lower conf stays reusable)."""
    if det is None or not len(det.scores):
        return det
    keep = np.asarray(det.scores) >= threshold
    if keep.all():
        return det
    from dataclasses import is_dataclass, replace

    masks = det.masks[keep] if getattr(det, "masks", None) is not None else None
    kwargs = {
        "boxes": det.boxes[keep],
        "scores": det.scores[keep],
        "labels": det.labels[keep],
        "masks": masks,
    }
    rles = getattr(det, "rles", None)
    if is_dataclass(det):
        if hasattr(det, "rles"):
            kwargs["rles"] = None if rles is None else [r for r, k in zip(rles, keep, strict=True) if k]
        return replace(det, **kwargs)

    h, w = det.image_size
    return Detections(image_size=(h, w), class_names=list(getattr(det, "class_names", []) or []), **kwargs)


class CaptureThread(QThread):
    """Reads frames from a source, runs the predictor, publishes the newest result.

    ``result_ready`` fires only when the GUI has taken the previous result (so signals
    never pile up in the event loop); the GUI calls :meth:`take_latest`.
    """

    result_ready = Signal()
    model_loaded = Signal(object)
    failed = Signal(str)
    ended = Signal(str)  # why the stream stopped (end of video, last image, camera lost, stopped)

    def __init__(
        self,
        source: FrameReader,
        predictor: PredictorLike | None = None,
        threshold: float = 0.5,
        max_fps: float | None = None,
        loader: Callable[[], PredictorLike] | None = None,
        parent=None,
    ):  # noqa: ANN001
        super().__init__(parent)
        self.source = source
        self.predictor = predictor
        self.loader = loader  # loads the model inside the thread: a big model never freezes the window
        self._threshold = float(threshold)
        self.max_fps = max_fps  # pacing for files: a 3-image folder should not flash by
        self._lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._pending = False
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self.frames_read = 0
        self.frames_dropped = 0  # processed but replaced before the GUI took them
        self.frames_stale = 0  # captured but replaced by a newer frame before inference took them
        self._fps = 0.0
        self._grabber = None

    # ---- controls (any thread) ------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._threshold

    def set_threshold(self, value: float) -> None:
        self._threshold = float(value)

    def pause(self, paused: bool = True) -> None:
        if paused:
            self._resume.clear()
        else:
            self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def stop(self, wait_ms: int = 5000) -> None:
        self._stop.set()
        self._resume.set()
        if self.isRunning() and QThread.currentThread() is not self:
            self.wait(wait_ms)

    def take_latest(self) -> FrameResult | None:
        """The newest result (None if nothing new since the last call)."""
        with self._lock:
            res, self._latest, self._pending = self._latest, None, False
        return res

    # ---- thread body ----------------------------------------------------------------------
    def _predict(self, frame: np.ndarray) -> tuple[Any | None, float]:
        if self.predictor is None:
            return None, 0.0
        thr = self._threshold
        if hasattr(self.predictor, "conf"):
            try:
                self.predictor.conf = thr
            except (AttributeError, TypeError):
                pass
        t0 = time.perf_counter()
        det = self.predictor.predict([frame])[0]
        latency = (time.perf_counter() - t0) * 1000.0
        return filter_detections(det, thr), latency

    def _pace(self) -> float | None:
        """Frames per second a file is played at live (its own rate, else max_fps); None: every
        frame as fast as possible (no grabber, nothing dropped)."""
        if self.source.is_live:
            return None
        if self.source.kind == "video" and self.max_fps:
            return self.source.fps or self.max_fps
        return None

    def _start_grabber(self):

        if self.source.is_live or self._pace():
            self._grabber = FrameGrabber(self.source.read, self._pace()).start()
        return self._grabber

    def _next_frame(self) -> tuple[np.ndarray | None, float]:
        """(frame, monotonic capture time); None at the end of the source."""
        if self._grabber is None:
            return self.source.read(), time.monotonic()
        while not self._stop.is_set():
            grabbed = self._grabber.take(timeout=0.5)
            if grabbed is not None:
                self.frames_read = self._grabber.frames_read
                self.frames_stale = self._grabber.frames_stale
                return grabbed.image, grabbed.captured_at
            if self._grabber.ended:
                self.frames_read = self._grabber.frames_read
                self.frames_stale = self._grabber.frames_stale
                return None, time.monotonic()
        return None, time.monotonic()

    def run(self) -> None:
        reason = "stopped"
        last = None
        try:
            if self.predictor is None and self.loader is not None:
                self.predictor = self.loader()
                self.model_loaded.emit(self.predictor)
            self._start_grabber()
            while not self._stop.is_set():
                self._resume.wait()
                if self._stop.is_set():
                    break
                t_start = time.perf_counter()
                frame, captured_at = self._next_frame()
                if frame is None:
                    if self._stop.is_set():
                        break
                    reason = (
                        f"camera stopped delivering frames ({self.source.name})"
                        if self.source.is_live
                        else f"end of {self.source.name} ({self.frames_read} frames)"
                    )
                    break
                if self._grabber is None:
                    self.frames_read += 1
                det, latency = self._predict(frame)
                now = time.perf_counter()
                if last is not None:
                    inst = 1.0 / max(1e-6, now - last)
                    self._fps = inst if self._fps == 0.0 else 0.8 * self._fps + 0.2 * inst
                last = now
                result = FrameResult(
                    self.frames_read - 1,
                    frame,
                    det,
                    latency,
                    self._fps,
                    self.source.name,
                    getattr(self.source, "current", None),
                    captured_at=captured_at,
                )
                with self._lock:
                    if self._latest is not None:
                        self.frames_dropped += 1
                    self._latest = result
                    notify = not self._pending
                    self._pending = True
                if notify:
                    self.result_ready.emit()
                if self.max_fps and self._grabber is None and not self.source.is_live:
                    rest = 1.0 / self.max_fps - (time.perf_counter() - t_start)
                    if rest > 0:
                        self._stop.wait(rest)
        except UserFacingError as exc:
            reason = "error"
            self.failed.emit(str(exc))
        except Exception as exc:  # never let a model or codec error kill the GUI
            reason = "error"
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            if self._grabber is not None:
                self._grabber.stop()
            self.source.close()
            self.ended.emit(reason)
