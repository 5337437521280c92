"""HTTP download into a `.part` file, resumable with a Range request.

Why not write the final file directly: a half-written checkpoint under its real name would
be picked up by the next training run. The caller renames `.part` only after the file is
complete and verified; an interrupted download keeps its `.part` so the next try continues
where it stopped (HTTP Range) instead of starting over.

Why the network calls run on a helper thread: a socket read blocks until bytes come, so a
stalled server would hold a Cancel (SIGTERM) or a deadline for as long as the socket timeout.
The caller waits in `Limits.poll` slices instead and looks at `should_stop`, the stall clock and
the overall deadline between them; the helper is a daemon thread, so a read that never returns
cannot keep the process alive.
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import WeightsError

__all__ = ["DownloadCancelled", "DownloadError", "Limits", "download"]

CHUNK = 1 << 20
USER_AGENT = "dfine-studio (weights manager)"
CONNECT_TIMEOUT = 30.0   # s to connect and get the response headers
STALL_TIMEOUT = 60.0     # s without one byte -> 'interrupted' (the .part is kept)
DEADLINE = 3 * 3600.0    # s for the whole download (resumable, so a cut costs only time)
POLL = 0.25              # s between looks at should_stop and the clocks while a read blocks

ProgressFn = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class Limits:
    """Time limits of one download, in seconds. `Limits.defaults()` reads the module constants
    at call time (tests and callers can lower them)."""

    connect: float = CONNECT_TIMEOUT
    stall: float = STALL_TIMEOUT
    deadline: float = DEADLINE
    poll: float = POLL

    @classmethod
    def defaults(cls) -> Limits:
        return cls(CONNECT_TIMEOUT, STALL_TIMEOUT, DEADLINE, POLL)


class DownloadError(WeightsError):
    """A download that did not complete. `kind`: network (no connection: offline, DNS, refused,
    connect timeout), http (the server answered with an error status), interrupted (the connection
    broke, stalled or ran past the deadline; the bytes so far are kept for a resume)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class DownloadCancelled(WeightsError):
    """Stopped on request (GUI Cancel / SIGTERM); the `.part` file is kept for a resume."""


def _content_range_start(value: str | None) -> tuple[int | None, int | None]:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _open_resumable(url: str, part: Path, offset: int, timeout: float) -> tuple[Any, int]:
    """(response, offset it continues from); response None when `part` is already the whole file.
    A `part` longer than the file is not a prefix of it: deleted, fetched again from zero."""
    try:
        return _open(url, offset, timeout), offset
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        m = re.match(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range") or "")
        if m and int(m.group(1)) == offset:  # all there already (stopped before the rename)
            return None, offset
        part.unlink()
        return _open(url, 0, timeout), 0


def _set_read_timeout(resp: Any, seconds: float) -> None:
    """Give the response's socket the stall limit as its read timeout (urlopen set the connect
    timeout), so the helper thread's read ends soon after a stall is reported. Best effort: the
    socket sits behind private attributes of http.client; without it the connect timeout stays."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None and hasattr(sock, "settimeout"):
        sock.settimeout(seconds)


def _hang_up(resp: Any) -> None:
    """Shut the response's socket down after a give-up (Cancel, stall, deadline): the helper
    thread's blocked read then returns at once and the thread ends, instead of holding the socket
    (and the response's buffer lock) until the read timeout, possibly across interpreter exit."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the peer or by the helper
        pass


class _Helper:
    """One daemon thread that runs blocking network calls; `call` waits for one in `poll` slices
    and runs `check` between them (which raises to give up). After a give-up the helper is not
    used again: `close` lets it finish (and close the response) on its own."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="weights-download", daemon=True).start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._results.put((job(), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._results.put((None, exc))

    def call(self, job: Callable[[], Any], check: Callable[[], None], poll: float) -> Any:
        self._jobs.put(job)
        while True:
            try:
                value, exc = self._results.get(timeout=poll)
            except queue.Empty:
                check()
                continue
            if exc is not None:
                raise exc
            return value

    def close(self, last: Callable[[], Any] | None = None) -> None:
        if last is not None:
            self._jobs.put(last)
        self._jobs.put(None)


class _Clocks:
    """should_stop, the stall clock and the deadline of one download; `check` raises when one
    says stop. Messages name the URL, the bytes kept and how to resume."""

    def __init__(self, url: str, part: Path, limits: Limits, should_stop: Callable[[], bool] | None):
        self.url, self.part, self.limits, self.should_stop = url, part, limits, should_stop
        self.start = self.last_byte = time.monotonic()
        self.done = 0
        self.total: int | None = None
        self.reading = False  # the stall clock runs once the headers are in (before: connect timeout)

    def got(self, done: int) -> None:
        self.done, self.last_byte = done, time.monotonic()

    def remaining(self) -> float:
        return self.limits.deadline - (time.monotonic() - self.start)

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise DownloadCancelled(f"download of {self.url} cancelled; {self.done} bytes kept in "
                                    f"{self.part} for a resume")
        if self.remaining() <= 0:
            raise DownloadError(f"{self.url}: not finished within the {self.limits.deadline:g} s limit "
                                f"for a whole download ({_mb(self.done)} of {_mb(self.total)}); "
                                f"{self.part} is kept, run the same command again to resume", "interrupted")
        if self.reading and time.monotonic() - self.last_byte >= self.limits.stall:
            raise DownloadError(f"{self.url}: no data for {self.limits.stall:g} s (the connection "
                                f"stalled after {_mb(self.done)} of {_mb(self.total)}); {self.part} "
                                f"is kept, run the same command again to resume", "interrupted")


def download(url: str, part: Path, progress: ProgressFn | None = None,
             should_stop: Callable[[], bool] | None = None, timeout: float | None = None,
             limits: Limits | None = None) -> int:
    """Fetch `url` into `part`, continuing an existing `part`. Returns the file's byte count.

    Raises DownloadError (kind network/http/interrupted) or DownloadCancelled; `part` then
    holds a clean prefix of the file (never bytes from the middle), ready for the next try.
    `timeout` (connect) overrides `limits.connect`; `limits` default: `Limits.defaults()`.
    """
    part = Path(part)
    limits = limits or Limits.defaults()
    if timeout is not None:
        limits = Limits(timeout, limits.stall, limits.deadline, limits.poll)
    clocks = _Clocks(url, part, limits, should_stop)
    helper = _Helper()
    resp = None
    try:
        resp, offset = _connect(helper, clocks, part)
        if resp is None:
            return offset
        return _receive(helper, clocks, resp, offset, progress)
    except BaseException:
        if resp is not None:
            _hang_up(resp)
        raise
    finally:
        helper.close(resp.close if resp is not None else None)


def _connect(helper: _Helper, clocks: _Clocks, part: Path) -> tuple[Any, int]:
    """The response (None: nothing left to fetch) and the offset it starts at, or DownloadError."""
    url, limits = clocks.url, clocks.limits
    offset = part.stat().st_size if part.is_file() else 0
    clocks.done = offset
    connect = max(min(limits.connect, clocks.remaining()), 0.001)
    try:
        return helper.call(lambda: _open_resumable(url, part, offset, connect), clocks.check, limits.poll)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}", "http") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        host = urllib.parse.urlsplit(url).netloc or url
        raise DownloadError(f"no connection to {host} ({reason})", "network") from None


def _receive(helper: _Helper, clocks: _Clocks, resp: Any, offset: int, progress: ProgressFn | None) -> int:
    """Append the response body to the `.part` file; returns the file's byte count."""
    url, part, limits = clocks.url, clocks.part, clocks.limits
    total: int | None
    if offset and resp.status == 206:
        start, total = _content_range_start(resp.headers.get("Content-Range"))
        if start != offset:
            raise DownloadError(f"{url}: the server resumed at byte {start}, not {offset}", "interrupted")
        mode = "ab"
    else:  # 200: the server ignored the Range header, so the whole file comes again
        offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    _set_read_timeout(resp, limits.stall + 1.0)
    done = offset
    clocks.total, clocks.reading = total, True
    clocks.got(done)
    with open(part, mode) as out:
        try:
            while True:
                clocks.check()
                chunk = helper.call(lambda: resp.read1(CHUNK), clocks.check, limits.poll)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                clocks.got(done)
                if progress is not None:
                    progress(done, total)
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            raise DownloadError(
                f"{url}: the connection broke after {_mb(done)} of {_mb(total)} "
                f"({type(exc).__name__}); {part} is kept, run the same command again to "
                f"resume", "interrupted") from None
        finally:
            out.flush()
            os.fsync(out.fileno())
    if total is not None and done < total:
        raise DownloadError(f"{url}: the server stopped after {_mb(done)} of {_mb(total)}; {part} "
                            f"is kept, run the same command again to resume", "interrupted")
    return done


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"
