"""One download per file at a time, across processes (GUI download, `dfine train`, a shell).

Why an OS lock (flock / msvcrt) and not a marker file: the OS drops it when the process dies,
so a crash or kill -9 never leaves a stale lock that blocks the next try.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import WeightsError

__all__ = ["download_lock"]


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # (not os.name: the type checker knows sys.platform)
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def download_lock(target: Path) -> Iterator[None]:
    """Hold the lock of `target` (a cache file) or raise WeightsError when another process
    is downloading it."""
    lock = target.with_name("." + target.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise WeightsError(f"{target.name}: another process is downloading it into {target.parent} "
                               f"right now; wait for it to finish (or stop it), then try again")
        try:
            yield
        finally:
            try:
                lock.unlink()  # tidy cache; a waiting process then locks a fresh file
            except OSError:
                pass
    finally:
        os.close(fd)
