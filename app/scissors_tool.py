"""The intelligent-scissors draft of the editor (tool I): anchors the person clicked, the snapped
outline between them and the live preview to the pointer, backed by ``core.scissors.Scissors``.

Why a separate object with its own worker: the engine's slow parts (the image's edge features,
~0.1 s, and each new anchor's distance map, 0.1-0.5 s) must never run on the GUI thread, and the
engine is not thread-safe. So ``self.anchors`` (what the person sees) is the truth, and the engine
is brought in line with it one step at a time whenever no job is running (``_pump``): clicks made
while a map is being built are queued and shown as straight segments until it is ready; the
preview (``preview``, a look-up) falls back to a straight segment meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.workers import run_task
from core.errors import UserFacingError


def _build(_task, path: Path):
    from core.data.images import read_image
    from core.scissors import Scissors

    return Scissors(read_image(path))


def _prepare(_task, engine):
    engine.prepare()
    return engine


class ScissorsDraft(QObject):
    changed = Signal()            # anchors, outline or readiness changed: repaint, sync Undo
    closed = Signal(list)         # polygons [(N, 2) float arrays] of the closed outline
    message = Signal(str)         # a status-bar line (building features, errors)

    def __init__(self, image_path: Callable[[], Path | None], parent=None):
        super().__init__(parent)
        self._image_path = image_path
        self.anchors: list[tuple[float, float]] = []
        self.engine = None
        self._key: Path | None = None   # the image the engine (or the job building it) belongs to
        self._busy = False              # a job holds the engine
        self._ready: tuple | None = None  # (n anchors, last anchor) whose map is built
        self._close_wanted = False
        self._preview_key = None
        self._preview = np.zeros((0, 2))
        self.jobs_done = 0              # maps/features built (tests)

    # ------------------------------------------------------------------ state
    @property
    def drawing(self) -> bool:
        return bool(self.anchors)

    @property
    def ready(self) -> bool:
        """The engine matches the anchors on screen and the last one's map is built."""
        e = self.engine
        return (e is not None and not self._busy and e.anchors == self.anchors and bool(self.anchors)
                and self._ready == (len(self.anchors), self.anchors[-1]))

    def warm(self) -> None:
        """Start building the edge features of the image on screen (tool chosen / image shown)."""
        path = self._image_path()
        if path is None or path == self._key:
            return
        self.cancel()
        self._key, self.engine, self._ready = path, None, None
        if self._busy:
            return  # the running job's end sees the new key and starts this one
        self._start_build(path)

    def _start_build(self, path: Path) -> None:
        self._busy = True
        self.message.emit("Intelligent scissors: finding the image's edges…")
        run_task(_build, path, on_done=lambda eng, p=path: self._built(p, eng),
                 on_error=lambda msg, p=path: self._failed(p, msg), owner=self)

    def _built(self, path: Path, engine) -> None:
        self._busy = False
        self.jobs_done += 1
        if path != self._key:  # another image came meanwhile
            self._after_job()
            return
        self.engine = engine
        self.message.emit("Intelligent scissors: click points along the outline; click the first point "
                          "or press Enter to close")
        self._pump()

    def _after_job(self) -> None:
        """A job for an image no longer on screen ended: build the features of the one that is."""
        if self.engine is None and self._key is not None and not self._busy:
            self._start_build(self._key)

    def _failed(self, path: Path, msg: str) -> None:
        self._busy = False
        if path == self._key:
            self._key, self.engine = None, None
            self.anchors = []
            self.message.emit(f"Intelligent scissors: {msg.splitlines()[0]}")
            self.changed.emit()

    # ------------------------------------------------------------------ person's actions
    def click(self, x: float, y: float) -> None:
        """One anchor (one undo step)."""
        self.warm()
        self.anchors.append((float(x), float(y)))
        self._pump()
        self.changed.emit()

    def pop(self) -> bool:
        """Undo the last anchor; False when there is none."""
        if not self.anchors:
            return False
        self.anchors.pop()
        self._close_wanted = False
        self._pump()
        self.changed.emit()
        return True

    def cancel(self) -> None:
        if self.anchors or self._close_wanted:
            self.anchors = []
            self._close_wanted = False
            self._pump()
            self.changed.emit()

    def close(self) -> bool:
        """Close back to the first anchor (done now, or as soon as the last map is built)."""
        if len(self.anchors) < 3:
            self.message.emit(f"Intelligent scissors: {len(self.anchors)} point(s) placed, closing needs 3")
            return False
        self._close_wanted = True
        self._pump()
        return True

    # ------------------------------------------------------------------ engine sync
    def _pump(self) -> None:
        """Bring the engine in line with ``anchors``: pops and appends are cheap look-ups; a map
        that is missing is built on a worker, and this runs again when it is."""
        e = self.engine
        if e is None or self._busy:
            return
        while e.anchors and (len(e.anchors) > len(self.anchors) or e.anchors != self.anchors[:len(e.anchors)]):
            e.pop()
        while True:
            have = len(e.anchors)
            ready = bool(e.anchors) and self._ready == (have, e.anchors[-1])
            if have < len(self.anchors) and (ready or not have):
                e.append(self.anchors[have])
                continue
            if have and not ready:
                self._busy = True
                run_task(_prepare, e, on_done=self._prepared,
                         on_error=lambda msg: self._failed(self._key, msg), owner=self)
                return
            break
        if self._close_wanted and self.ready:
            self._close_wanted = False
            try:
                polys = e.close()
            except UserFacingError as exc:
                self.message.emit(str(exc))
                return
            self.anchors = []
            self._ready = None
            self.changed.emit()
            if polys:
                self.closed.emit(polys)
            else:
                self.message.emit("Intelligent scissors: the outline encloses no area")

    def _prepared(self, engine) -> None:
        self._busy = False
        self.jobs_done += 1
        if engine is not self.engine:
            self._after_job()
            return
        if engine.anchors:
            self._ready = (len(engine.anchors), engine.anchors[-1])
        self._pump()
        self.changed.emit()

    # ------------------------------------------------------------------ drawing
    def outline(self) -> np.ndarray:
        """The outline on screen: snapped where the engine has it, straight where it is behind."""
        if not self.anchors:
            return np.zeros((0, 2))
        e = self.engine
        if e is not None and e.anchors and e.anchors == self.anchors[:len(e.anchors)]:
            done = e.outline()
            rest = np.asarray(self.anchors[len(e.anchors):], dtype=np.float64).reshape(-1, 2)
            return np.vstack([done, rest]) if len(rest) else done
        return np.asarray(self.anchors, dtype=np.float64)

    def preview(self, x: float, y: float) -> np.ndarray:
        """The path last anchor -> pointer: snapped when the map is ready (a look-up), else straight."""
        if not self.anchors:
            return np.zeros((0, 2))
        if not self.ready:
            return np.array([self.anchors[-1], (x, y)], dtype=np.float64)
        key = (len(self.anchors), self.anchors[-1], int(x), int(y))
        if key != self._preview_key:
            self._preview = self.engine.path_to((x, y))
            self._preview_key = key
        return self._preview
