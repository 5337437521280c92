"""Images for the canvas, decoded off the GUI thread and kept ready for D/A.

A 12 MP JPEG takes ~100 ms to decode, longer than an image switch may take, so
decoding happens in a worker and the neighbours of the current image are
prefetched. Each image also gets a pyramid of downscaled copies: at "fit" zoom the
canvas paints a ~2 MP level instead of smoothing 12 MP every repaint.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QImage

from app.workers import Task, run_task
from core.data.images import read_image

MIN_LEVEL_SIDE = 1024


class DisplayImage:
    """QImages (Format_RGB32 over BGRA numpy buffers, no copy) at full size and halves,
    plus, when the view size is known, a copy at exactly the "fit to window" size: the
    first paint after a switch is then a plain blit instead of a smooth downscale."""

    def __init__(self, path: Path, bgr: np.ndarray, fit_box: tuple[float, float, float] | None = None):
        self.path = Path(path)
        self.height, self.width = bgr.shape[:2]
        self._buffers: list[np.ndarray] = []
        self.levels: list[tuple[float, QImage]] = []  # (scale relative to full, image)
        self.fit: tuple[float, QImage] | None = None  # (device scale, image) for the fitted view
        level = bgr
        scale = 1.0
        while True:
            self.levels.append((scale, self._qimage(level)))
            h, w = level.shape[:2]
            if max(h, w) < 2 * MIN_LEVEL_SIDE:
                break
            level = cv2.resize(level, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            scale /= 2.0
        if fit_box is not None:
            avail_w, avail_h, dpr = fit_box
            s = min(avail_w / self.width, avail_h / self.height) * dpr
            if 0 < s < 1.0:
                size = (max(1, round(self.width * s)), max(1, round(self.height * s)))
                src = min((lv for lv in zip(self.levels, self._buffers) if lv[0][0] >= s), key=lambda lv: lv[0][0])
                small = cv2.resize(src[1], size, interpolation=cv2.INTER_AREA)
                self._buffers.append(small)
                self.fit = (s, QImage(small.data, size[0], size[1], small.strides[0], QImage.Format.Format_RGB32))

    def _qimage(self, bgr: np.ndarray) -> QImage:
        bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)  # RGB32 is BGRA in memory (little endian)
        self._buffers.append(bgra)  # QImage does not own the buffer
        h, w = bgra.shape[:2]
        return QImage(bgra.data, w, h, bgra.strides[0], QImage.Format.Format_RGB32)

    def level_for(self, device_scale: float) -> QImage:
        """The fit copy at the fit scale, else the smallest level that still has at least
        one image pixel per device pixel."""
        if self.fit is not None and abs(device_scale - self.fit[0]) <= 1e-3 * self.fit[0]:
            return self.fit[1]
        best = self.levels[0][1]
        for scale, img in self.levels:
            if scale >= device_scale:
                best = img
        return best

    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers)


def load_display_image(task: Task | None, path: Path, fit_box: tuple[float, float, float] | None = None
                       ) -> DisplayImage:
    return DisplayImage(path, read_image(path), fit_box)


class ImageCache(QObject):
    """LRU of decoded images with async loading; ``request`` answers via ``loaded``."""

    loaded = Signal(object, object)  # path, DisplayImage
    failed = Signal(object, str)  # path, message

    def __init__(self, capacity: int = 5, parent: QObject | None = None):
        super().__init__(parent)
        self.capacity = capacity
        self._cache: OrderedDict[Path, DisplayImage] = OrderedDict()
        self._pending: dict[Path, Task] = {}
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.loader: Callable[..., DisplayImage] = load_display_image
        self.fit_box: tuple[float, float, float] | None = None  # (width, height, dpr) the canvas fits into

    def get(self, path: Path) -> DisplayImage | None:
        img = self._cache.get(Path(path))
        if img is not None:
            self._cache.move_to_end(Path(path))
        return img

    def request(self, path: Path) -> DisplayImage | None:
        """The image now if cached, else None and ``loaded`` fires later."""
        path = Path(path)
        img = self.get(path)
        if img is None and path not in self._pending:
            self._pending[path] = run_task(self.loader, path, self.fit_box, pool=self.pool,
                                           on_done=lambda im, p=path: self._done(p, im),
                                           on_error=lambda msg, p=path: self._error(p, msg))
        return img

    def prefetch(self, paths: list[Path]) -> None:
        for p in paths:
            self.request(p)

    def _done(self, path: Path, img: DisplayImage) -> None:
        self._pending.pop(path, None)
        self._cache[path] = img
        self._cache.move_to_end(path)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.loaded.emit(path, img)

    def _error(self, path: Path, msg: str) -> None:
        self._pending.pop(path, None)
        self.failed.emit(path, msg)

    def is_pending(self, path: Path) -> bool:
        return Path(path) in self._pending

    def clear(self) -> None:
        self._cache.clear()
