"""One containment rule for every path that comes from a file or an argument.

Why: a project folder is data a user may receive from someone else. A journal that names
``../victim/notes.txt``, a run called ``../../x`` or a symlink ``exports/x -> /etc`` must never
make dfine-studio write, delete or read outside the folder it was given. Every such path goes
through :func:`inside` (a relative path under a root) or :func:`folder_name` (one name of a
run or export folder) and is refused with a clear error otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from core.errors import UserFacingError

NAME_MAX = 128
_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


class PathOutsideError(UserFacingError):
    """A path that would leave the folder it must stay in (``..``, absolute, a symlink out)."""


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` (following every symlink) lies in ``root`` (also following them)."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    return real == real_root or real.is_relative_to(real_root)


def inside(root: Path | str, rel: object, what: str, follow_links: bool = True) -> Path:
    """``root / rel`` when ``rel`` is a relative path that stays inside ``root`` after resolving
    ``..`` and symlinks; PathOutsideError naming ``what`` (where the path came from) otherwise.
    ``follow_links=False`` accepts a symlink inside ``root`` wherever it points (read-only
    sources such as an import's image folder, whose links are the user's own)."""
    root = Path(root)
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise PathOutsideError(f"{what}: expected a relative path inside {root}, got {rel!r}")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        raise PathOutsideError(f"{what}: {rel!r} is an absolute path; only paths inside {root} are allowed")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise PathOutsideError(f"{what}: {rel!r} goes up with '..'; only paths inside {root} are allowed")
    path = root / rel
    if follow_links and not is_within(path, root):
        raise PathOutsideError(f"{what}: {rel!r} leads outside {root} through a symbolic link "
                               f"({os.path.realpath(path)}); refused")
    return path


def folder_name(name: object, what: str) -> str:
    """A run or export name: one folder name (no separators, not '.' or '..', printable)."""
    if not isinstance(name, str) or not name.strip():
        raise PathOutsideError(f"{what}: a name is needed, got {name!r}")
    if name in (".", "..") or _BAD_NAME_CHARS.search(name) or name != name.strip():
        raise PathOutsideError(f"{what}: {name!r} is not a plain folder name (no '/', '\\', '..', "
                               f"control characters or surrounding spaces); e.g. 'run1'")
    if len(name) > NAME_MAX:
        raise PathOutsideError(f"{what}: name longer than {NAME_MAX} characters")
    return name


def child_folder(parent: Path | str, name: object, what: str) -> Path:
    """``parent / name`` for a run/export name, refused when the name or a symlink leads out."""
    parent = Path(parent)
    path = parent / folder_name(name, what)
    if not is_within(path, parent):
        raise PathOutsideError(f"{what}: {path} is a symbolic link to {os.path.realpath(path)}, "
                               f"outside {parent}; refused")
    return path
