"""Class colours bound to the class NAME, kept in the project (``.dfine/class_colors.json``).

A colour that followed the class index changed for every later class after a merge or delete, so
the colours a person had learned for 80 classes were lost. Here a name keeps its colour for good:
a new name gets the colour farthest (CIE ΔE2000) from every colour already in the file
(``app.palette.assign_colors``), a rename carries the colour to the new name, and a merge or
delete leaves every other class as it was. Reopening the project reads the same file, and a name
restored by "Undo class edit" finds its old colour there. Qt-free; the one read-modify-write runs
under the project lock.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.palette import assign_colors
from core.atomic_io import atomic_write_text
from core.bounded_input import load_json_file
from core.errors import UserFacingError
from core.project_lock import LockBusyError, project_lock
from core.project_paths import inside

COLORS_FILE = Path(".dfine") / "class_colors.json"
VERSION = 1
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")

RGB = tuple[int, int, int]


def colors_path(root: Path | str) -> Path:
    """The colours file; PathOutsideError when .dfine is a symlink out of the project."""
    return inside(root, COLORS_FILE.as_posix(), "class colours file")


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def read_colors(root: Path | str) -> dict[str, RGB]:
    """Stored colours by class name ({} when there is no file yet). A malformed file raises a
    UserFacingError naming the file and the bad entry."""
    path = colors_path(root)
    try:
        data = load_json_file(path, dict, 4 * 1024 * 1024)
    except FileNotFoundError:
        return {}
    colors = data.get("colors") if data.get("version") == VERSION else None
    if not isinstance(colors, dict):
        raise UserFacingError(f"{path}: expected {{\"version\": {VERSION}, \"colors\": {{name: \"#rrggbb\"}}}}")
    out: dict[str, RGB] = {}
    for name, value in colors.items():
        if not isinstance(value, str) or not _HEX.match(value):
            raise UserFacingError(f"{path}: colour of class {name!r} is {value!r}, expected \"#rrggbb\"")
        out[name] = (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
    return out


def project_colors(root: Path | str, names: list[str], renamed: dict[str, str] | None = None,
                   lock_wait_s: float | None = None) -> tuple[list[RGB], str | None]:
    """The colour of each of ``names`` (in order) and a message when something went wrong (the
    colours are then computed in memory and the file is left untouched). ``renamed`` maps an
    old name to its new name: the new name takes the old one's colour (the old entry stays, so
    undoing the rename gives it back too)."""
    try:
        with project_lock(root, timeout=lock_wait_s):
            known = read_colors(root)
            before = dict(known)
            for old, new in (renamed or {}).items():
                if old in known and new not in known:
                    known[new] = known[old]
            known = assign_colors(names, known)
            if known != before:
                path = colors_path(root)
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(
                    {"version": VERSION, "colors": {n: _hex(c) for n, c in known.items()}}, indent=1) + "\n")
        return [known[n] for n in names], None
    except (LockBusyError, UserFacingError, OSError) as exc:
        known = assign_colors(names, {})
        return [known[n] for n in names], f"{exc} — class colours shown for this session only"
