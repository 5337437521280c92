"""Crash-safe file writes: a reader sees the old file or the new one, never a torn mix.

Why: labels are the user's work. A power cut, SIGKILL or full disk in the middle
of a save must not leave half a file. The recipe is the standard one: write a temp
file in the *same* folder (so ``os.replace`` is a same-filesystem rename, atomic on
POSIX and Windows), flush, fsync, rename over the target, then fsync the folder so
the rename itself survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
TEMP_PREFIX = "."


def fsync_dir(folder: Path | str) -> None:
    """Persist a rename/unlink in ``folder`` (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: Path | str, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` atomically with what ``write`` puts into the open temp file
    (streams large payloads such as checkpoints without holding them in memory)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            # keep the permissions the user gave the file (mkstemp creates 0600)
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:
            # The error names the temp file; the user needs the file they were saving, and to know
            # that it is intact (e.g. a full disk while a checkpoint is written).
            kept = "the previous version is unchanged" if path.exists() else "nothing was written"
            raise OSError(exc.errno, f"{exc.strerror} while writing {path} ({kept})", str(path)) from exc
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (parent folder must exist)."""
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Text version of :func:`atomic_write_bytes`; newlines are written as given (``\\n``)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_delete(path: Path | str) -> bool:
    """Remove ``path`` if present and persist the removal; returns whether it existed."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def is_temp_file(path: Path | str) -> bool:
    """True for the leftovers of a write killed before its rename (safe to ignore or delete)."""
    name = Path(path).name
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def remove_stale_temps(folder: Path | str) -> int:
    """Delete temp files a killed writer left in ``folder``; returns how many."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        if p.is_file() and is_temp_file(p):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
