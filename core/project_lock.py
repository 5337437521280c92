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
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from core.bounded_input import read_regular_bytes
from core.errors import LimitError, UserFacingError

LOCK_DIR = ".dfine"
LOCK_NAME = "project.lock"


class _Held:
    """Process-wide state of one lock file: a thread lock plus the OS lock's depth."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fh: IO[bytes] | None = None


_registry: dict[str, _Held] = {}
_registry_guard = threading.Lock()


def _state(path: Path) -> _Held:
    key = os.path.normcase(os.path.abspath(path))
    with _registry_guard:
        return _registry.setdefault(key, _Held())


def _os_lock(fh: IO[bytes], blocking: bool) -> bool:
    # sys.platform (not try-import) so the type checker knows which module each branch has
    if sys.platform == "win32":
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
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _os_unlock(fh: IO[bytes]) -> None:
    if sys.platform == "win32":
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_path(root: Path | str) -> Path:
    return Path(root) / LOCK_DIR / LOCK_NAME


# How long a writer waits for the lock before it gives up with a message naming the holder.
# A class edit of a large project holds it for seconds; nothing holds it for minutes.
LOCK_WAIT_S = float(os.environ.get("DFINE_LOCK_WAIT_S", "60"))
LOCK_NOTICE_S = 1.0  # then say once who we are waiting for
_POLL_S = 0.05


class LockBusyError(UserFacingError):
    """The project lock stayed held by another process (or thread) for the whole wait."""


def _open_lock_file(path: Path):
    """The lock file, opened without blocking: a FIFO planted as the lock file would hang open()."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LimitError(f"{path}: is not a regular file; remove it (dfine-studio recreates its lock file)")
    return os.fdopen(fd, "r+b")


def holder(root: Path | str) -> str:
    """Who holds the lock, as its holder wrote it (pid and command), or 'another process'."""
    try:
        text = read_regular_bytes(lock_path(root), 4096).decode("utf-8", "replace").strip()
    except (OSError, UserFacingError):
        text = ""
    return text.splitlines()[0][:200] if text else "another process"


def _record_holder(fh) -> None:
    """Write our pid and command into the lock file while we hold it (read by :func:`holder`)."""
    try:
        fh.seek(0)
        fh.truncate()
        cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:4]))
        fh.write(f"pid {os.getpid()} ({cmd or 'python'})\n".encode("utf-8", "replace"))
        fh.flush()
    except OSError:
        pass


def _acquire(st: _Held, path: Path, root: Path | str, timeout: float | None):
    """Thread lock then OS lock, polling until ``timeout`` (None = no wait). Returns the open
    lock file, or None when busy at the deadline."""
    deadline = None if timeout is None else time.monotonic() + timeout
    notice_at = time.monotonic() + LOCK_NOTICE_S
    told = False
    got_thread = st.rlock.acquire(timeout=timeout) if timeout else st.rlock.acquire(blocking=False)
    if not got_thread:
        return None
    if st.depth > 0:
        return st.fh
    fh = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = _open_lock_file(path)
        while not _os_lock(fh, False):
            now = time.monotonic()
            if deadline is None or now >= deadline:
                fh.close()
                st.rlock.release()
                return None
            if not told and now >= notice_at and on_wait is not None:
                on_wait(f"waiting for the project lock of {root}, held by {holder(root)} ...")
                told = True
            time.sleep(min(_POLL_S, max(deadline - now, 0.0)))
    except BaseException:  # Ctrl+C while waiting, a FIFO as the lock file, ...: nothing stays held
        if fh is not None:
            fh.close()
        st.rlock.release()
        raise
    _record_holder(fh)
    return fh


def _print_wait(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


on_wait = _print_wait  # the GUI never waits long enough to see it; CLI users see who holds it


@contextlib.contextmanager
def project_lock(root: Path | str, blocking: bool = True, timeout: float | None = None) -> Iterator[bool]:
    """Hold the project lock of ``root``; yields True, or False when ``blocking`` is off
    and another process (or another thread here) holds it. Re-entrant per thread.

    A blocking call waits at most ``timeout`` seconds (default LOCK_WAIT_S), telling the user
    after a second whom it waits for, then raises LockBusyError naming the holder."""
    path = lock_path(root)
    st = _state(path)
    wait = (LOCK_WAIT_S if timeout is None else timeout) if blocking else None
    fh = _acquire(st, path, root, wait)
    if fh is None:
        if blocking:
            raise LockBusyError(f"the project {root} is locked by {holder(root)} (waited {wait:g} s); "
                                f"wait for it to finish or close it, then try again")
        yield False
        return
    try:
        if st.depth == 0:
            st.fh = fh
        st.depth += 1
        try:
            yield True
        finally:
            st.depth -= 1
            if st.depth == 0:
                fh, st.fh = st.fh, None
                assert fh is not None  # set when depth went 0 -> 1
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
        fh = _open_lock_file(path)
    except (ImportError, OSError, LimitError):  # Windows, a read-only project or a planted FIFO: no marker
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

        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not hang open()
    except (ImportError, OSError):
        return False
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return False
    fh = os.fdopen(fd, "rb")
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
