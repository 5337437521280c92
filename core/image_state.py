"""Per-image review state kept in the project: which images the person marked done/verified.

Why a file of its own (``.dfine/image_state.json``) and not the label files: "done" is about
the person's check, not the labels (an image with no objects can be done; a labelled one may
still need a look), and Ultralytics/COCO readers must keep seeing plain label files. Keys are
image paths relative to the image folder (``Project.rel_image``), so moving the project keeps
them. Writes are atomic; ``set_done`` is the one read-modify-write, under the project lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from core.atomic_io import atomic_write_text
from core.bounded_input import load_json_file
from core.errors import LabelError, UserFacingError
from core.project_lock import project_lock

STATE_FILE = Path(".dfine") / "image_state.json"
VERSION = 1
MAX_BYTES = 32 * 1024 * 1024  # a 1M-image project's list is ~40 MB of names at most; refuse worse


def state_path(root: Path | str) -> Path:
    return Path(root) / STATE_FILE


def read_done(root: Path | str) -> set[str]:
    """Relative image paths marked done (empty when the file does not exist yet)."""
    path = state_path(root)
    try:
        data = load_json_file(path, dict, MAX_BYTES)
    except FileNotFoundError:
        return set()
    except UserFacingError as exc:  # not JSON, too deep, too big, a FIFO, not an object
        raise LabelError(path, None, str(exc).removeprefix(f"{path}: ")) from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise LabelError(path, None, f"expected an object with \"version\": {VERSION}",
                         data.get("version") if isinstance(data, dict) else type(data).__name__)
    done = data.get("done", [])
    if not isinstance(done, list) or not all(isinstance(n, str) for n in done):
        raise LabelError(path, None, "\"done\" must be a list of image paths (strings)")
    return set(done)


def write_done(root: Path | str, done: Iterable[str]) -> None:
    """Replace the stored set atomically (sorted: stable diffs for projects under git)."""
    path = state_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"version": VERSION, "done": sorted(set(done))}, indent=1) + "\n")


def set_done(root: Path | str, images: Iterable[str], done: bool, lock_wait_s: float | None = None) -> set[str]:
    """Mark (or unmark) ``images`` done; returns the new set. The read-modify-write runs inside
    the project lock, like every other writer of the project's files, so two windows (or a window
    and a script) marking images never lose each other's marks."""

    images = set(images)
    with project_lock(root, timeout=lock_wait_s):
        current = read_done(root)
        new = current | images if done else current - images
        if new != current:
            write_done(root, new)
    return new
