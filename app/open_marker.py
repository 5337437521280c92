""""This project is also open in another window": one small marker file per open window in
``.dfine/open/`` (host, pid, a per-window token, when), removed when the window closes the project.
A marker whose process is gone on this host (a crash) is stale and removed by the next window.
Edits of two windows are merged by the store (project lock + reload of changed files), but a
person should know that a second window is there. Qt-free."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from core.atomic_io import atomic_write_text
from core.bounded_input import load_json_file
from core.errors import UserFacingError
from core.project_paths import inside

OPEN_DIR = Path(".dfine") / "open"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def others(root: Path | str, mine: Path | None = None) -> list[dict]:
    """The other windows that have ``root`` open (stale markers of dead processes are removed)."""
    try:
        folder = inside(root, OPEN_DIR.as_posix(), "open-window markers")
    except UserFacingError:
        return []
    out = []
    host = socket.gethostname()
    try:
        entries = sorted(folder.glob("*.json"))
    except OSError:
        return []
    for path in entries[:1000]:
        if mine is not None and path == mine:
            continue
        try:
            info = load_json_file(path, dict, 4096)  # regular file, size bound: a FIFO never blocks
            pid = int(info["pid"])
        except (OSError, UserFacingError, ValueError, KeyError, TypeError):
            continue
        if info.get("host") == host and not _alive(pid):
            try:
                path.unlink()
            except OSError:
                pass
            continue
        out.append(info)
    return out


def register(root: Path | str) -> Path | None:
    """Write this window's marker; None when the folder cannot be written (read-only project)."""
    try:
        folder = inside(root, OPEN_DIR.as_posix(), "open-window markers")  # never through a link out
    except UserFacingError:
        return None
    info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%H:%M"),
            "token": uuid.uuid4().hex[:12]}
    path = folder / f"{info['host']}-{info['pid']}-{info['token']}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(info) + "\n")
    except OSError:
        return None
    return path


def unregister(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def describe(infos: list[dict]) -> str:
    """One line for the person."""
    if not infos:
        return ""
    here = socket.gethostname()
    who = ", ".join(("this computer" if i.get("host") == here else str(i.get("host")))
                    + f" (pid {i.get('pid')}, since {i.get('since', '?')})" for i in infos[:3])
    n = len(infos)
    return (f"This project is also open in {'another window' if n == 1 else f'{n} other windows'}: {who}. "
            "Edits are merged; an image changed in the other window is reloaded here.")
