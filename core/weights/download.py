"""HTTP download into a `.part` file, resumable with a Range request.

Why not write the final file directly: a half-written checkpoint under its real name would
be picked up by the next training run. The caller renames `.part` only after the file is
complete and verified; an interrupted download keeps its `.part` so the next try continues
where it stopped (HTTP Range) instead of starting over.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from core.errors import WeightsError

__all__ = ["DownloadCancelled", "DownloadError", "download"]

CHUNK = 1 << 20
USER_AGENT = "dfine-studio (weights manager)"

ProgressFn = Callable[[int, "int | None"], None]


class DownloadError(WeightsError):
    """A download that did not complete. `kind`: network (no connection: offline, DNS, refused),
    http (the server answered with an error status), interrupted (the connection broke; the
    bytes so far are kept for a resume)."""

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


def download(url: str, part: Path, progress: ProgressFn | None = None,
             should_stop: Callable[[], bool] | None = None, timeout: float = 30.0) -> int:
    """Fetch `url` into `part`, continuing an existing `part`. Returns the file's byte count.

    Raises DownloadError (kind network/http/interrupted) or DownloadCancelled; `part` then
    holds a clean prefix of the file (never bytes from the middle), ready for the next try.
    """
    part = Path(part)
    offset = part.stat().st_size if part.is_file() else 0
    try:
        try:
            resp = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not offset:
                raise
            m = re.match(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range") or "")
            if m and int(m.group(1)) == offset:  # all there already (stopped before the rename)
                return offset
            part.unlink()  # longer than this file: not a prefix of it, start again
            offset = 0
            resp = _open(url, 0, timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}", "http") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        host = urllib.parse.urlsplit(url).netloc or url
        raise DownloadError(f"no connection to {host} ({reason})", "network") from None

    with resp:
        total: int | None
        if offset and resp.status == 206:
            start, total = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(f"{url}: the server resumed at byte {start}, not {offset}",
                                    "interrupted")
            mode = "ab"
        else:  # 200: the server ignored the Range header, so the whole file comes again
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        done = offset
        with open(part, mode) as out:
            try:
                while True:
                    if should_stop is not None and should_stop():
                        raise DownloadCancelled(f"download of {url} cancelled; {done} bytes kept "
                                                f"in {part} for a resume")
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            except (TimeoutError, http.client.HTTPException, OSError) as exc:
                out.flush()
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
