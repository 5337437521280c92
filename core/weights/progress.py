"""Download progress for people and programs: a tqdm bar on a terminal, a plain line every 10 %
on a pipe (the GUI's log, CI logs), or `progress` events for `weights get --events -`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["DownloadProgress"]


class DownloadProgress:
    """The `progress(done_bytes, total_bytes)` callback of `core.weights.download`."""

    def __init__(self, name: str, emit: Callable[..., None] | None = None, stream=None) -> None:
        self.name, self.emit = name, emit
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self._bar: tqdm | None = None
        self._last_time = 0.0
        self._last_tenth = -1

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
        if self.emit is not None:
            now = time.monotonic()
            if now - self._last_time >= 0.2 or (total is not None and done >= total):
                self._last_time = now
                self.emit("progress", stage="download", name=self.name, done=done, total=total)
        elif hasattr(self.stream, "isatty") and self.stream.isatty():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=self.name, file=self.stream)
            self._bar.update(done - self._bar.n)  # a resume starts part-way
        elif total:
            tenth = int(10 * done / total)
            if tenth != self._last_tenth:
                self._last_tenth = tenth
                print(f"downloading {self.name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB ({10 * tenth}%)",
                      file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
