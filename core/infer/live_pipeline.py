"""A live view that keeps up: capture on its own thread, inference takes only the newest frame.

A camera delivers frames on its own clock and OpenCV buffers the ones nobody read, so a model
slower than the camera, read in one loop with it, shows frames that get older and older. Here a
grabber thread reads continuously and keeps one slot: a frame the model had no time for is
replaced by a newer one (counted as stale), so what is shown is at most one inference old.
A video file played "live" is paced at its own frame rate by the grabber and behaves the same.

No Qt here: the GUI's capture thread and ``benchmarks/live_pipeline.py`` use the same code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class GrabbedFrame:
    image: np.ndarray
    index: int  # position in the source (0-based, counting every frame read)
    captured_at: float  # time.monotonic() when the frame was read: the start of capture-to-display


class FrameGrabber:
    """Reads ``read()`` (next BGR frame or None at the end) on a daemon thread, newest-frame slot.

    ``pace_fps`` sleeps between reads to play a file at its own rate (a camera paces itself).
    """

    def __init__(self, read: Callable[[], np.ndarray | None], pace_fps: float | None = None):
        self._read = read
        self.pace_fps = pace_fps if pace_fps and pace_fps > 0 else None
        self._slot: GrabbedFrame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.ended = False
        self.error: BaseException | None = None
        self.frames_read = 0
        self.frames_stale = 0  # read but replaced by a newer frame before inference took them
        self._thread = threading.Thread(target=self._run, name="frame-grabber", daemon=True)

    def start(self) -> FrameGrabber:
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.pace_fps:
                    wait = t0 + self.frames_read / self.pace_fps - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                image = self._read()
                if image is None:
                    break
                grabbed = GrabbedFrame(image, self.frames_read, time.monotonic())
                self.frames_read += 1
                with self._cond:
                    if self._slot is not None:
                        self.frames_stale += 1
                    self._slot = grabbed
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which reports it)
            self.error = exc
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def take(self, timeout: float | None = None) -> GrabbedFrame | None:
        """The newest unread frame, waiting for one; None once the source ended (or on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._slot is None and not self.ended and not self._stop.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.1 if remaining is None else min(0.1, remaining))
            frame, self._slot = self._slot, None
        if frame is None and self.error is not None:
            raise self.error
        return frame

    def stop(self, wait_s: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(wait_s)
