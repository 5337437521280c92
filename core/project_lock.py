"""The one project lock: every writer of a label file or project.yaml holds it.

Why one lock: a class edit reads every label file, rewrites the ids and writes them
back; a GUI autosave, a review fix, an import or a live "send frame" reads one file
and writes it back. If any of those read-modify-writes runs outside a common lock,
one of them writes back a stale copy and a row is lost. So each writer takes this
lock around its whole read-modify-write.

The lock is an OS file lock on ``.dfine/project.lock`` (flock on POSIX, msvcrt on
Windows): it dies with its process, so a SIGKILLed writer never blocks the project.
It is re-entrant within a process (a class edit that saves, an autosave inside a
review fix): flock locks belong to an open file, so a second ``open`` in the same
process would deadlock against the first; one shared handle per folder avoids that.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

LOCK_DIR = ".dfine"
LOCK_NAME = "project.lock"


class _Held:
    """Process-wide state of one lock file: a thread lock plus the OS lock's depth."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fh = None


_registry: dict[str, _Held] = {}
_registry_guard = threading.Lock()


def _state(path: Path) -> _Held:
    key = os.path.normcase(os.path.abspath(path))
    with _registry_guard:
        return _registry.setdefault(key, _Held())


def _os_lock(fh, blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        fh.seek(0)
        mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
        while True:
            try:
                msvcrt.locking(fh.fileno(), mode, 1)
                return True
            except OSError:
                if not blocking:
                    return False  # LK_LOCK gives up after 10 s; keep waiting like flock does
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _os_unlock(fh) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_path(root: Path | str) -> Path:
    return Path(root) / LOCK_DIR / LOCK_NAME


@contextlib.contextmanager
def project_lock(root: Path | str, blocking: bool = True) -> Iterator[bool]:
    """Hold the project lock of ``root``; yields True, or False when ``blocking`` is off
    and another process (or another thread here) holds it. Re-entrant per thread."""
    path = lock_path(root)
    st = _state(path)
    if not st.rlock.acquire(blocking=blocking):
        yield False
        return
    try:
        if st.depth == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+b")  # noqa: SIM115 - held across the with-body below
            try:
                got = _os_lock(fh, blocking)
            except BaseException:
                fh.close()
                raise
            if not got:
                fh.close()
                yield False
                return
            st.fh = fh
        st.depth += 1
        try:
            yield True
        finally:
            st.depth -= 1
            if st.depth == 0:
                fh, st.fh = st.fh, None
                try:
                    _os_unlock(fh)
                finally:
                    fh.close()
    finally:
        st.rlock.release()


def held_here(root: Path | str) -> bool:
    """True while this thread holds the lock of ``root`` (for asserting writer discipline)."""
    st = _state(lock_path(root))
    return st.depth > 0 and st.rlock._is_owned()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- running jobs

TRAIN_LOCK_NAME = "training.lock"


@contextlib.contextmanager
def training_marker(root: Path | str) -> Iterator[None]:
    """Held (a shared OS lock) for the life of a training run, so a class edit can tell that a
    run is reading these labels. Dies with the process; several runs may hold it at once."""
    path = Path(root) / LOCK_DIR / TRAIN_LOCK_NAME
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+b")  # noqa: SIM115 - held across the with-body below
    except (ImportError, OSError):  # Windows or a read-only project: no marker, no warning
        yield
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        yield
    finally:
        fh.close()


def training_active(root: Path | str) -> bool:
    """True while some process holds :func:`training_marker` for ``root``."""
    path = Path(root) / LOCK_DIR / TRAIN_LOCK_NAME
    try:
        import fcntl

        fh = open(path, "rb")  # noqa: SIM115
    except (ImportError, OSError):
        return False
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
