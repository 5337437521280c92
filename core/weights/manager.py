"""Get, add, list and resolve weights by name: what `dfine weights` and training call.

A file enters the cache only complete and verified (downloaded to `<file>.part`, checked,
then renamed; `add` verifies, copies to a temp file, then renames), so every file in the
cache is one that `load_weights` accepts for its name.
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.atomic_io import atomic_write_with
from core.errors import WeightsError
from core.weights.cache import cached_file
from core.weights.download import DownloadError, ProgressFn, download
from core.weights.lock import download_lock
from core.weights.registry import WeightsEntry, entries, find_entry

__all__ = ["CacheRow", "add_file", "cache_rows", "fetch", "offline_advice", "resolve_weights"]


@dataclass(frozen=True)
class CacheRow:
    """One line of `dfine weights list` (and of the GUI's picker)."""

    entry: WeightsEntry
    path: Path
    present: bool
    bytes: int | None
    partial: int = 0  # bytes of an interrupted download waiting to be resumed


def partial_file(final: Path) -> Path:
    return final.with_name(final.name + ".part")


def cache_rows(folder: Path) -> list[CacheRow]:
    rows = []
    for entry in entries():
        path = cached_file(entry, folder)
        present = path.is_file()
        part = partial_file(path)
        partial = part.stat().st_size if not present and part.is_file() else 0
        rows.append(CacheRow(entry, path, present, path.stat().st_size if present else None, partial))
    return rows


def offline_advice(entry: WeightsEntry, folder: Path) -> str:
    return (f"on a machine with internet download {entry.download_url()} , bring the file here and "
            f"run `dfine weights add {entry.file}` (it is checked, then copied to {folder})")


def fetch(entry: WeightsEntry, folder: Path, progress: ProgressFn | None = None,
          should_stop: Callable[[], bool] | None = None) -> tuple[Path, str]:
    """(the cached file of `entry`, what the check found), downloaded (or resumed) and
    verified when missing; a file already in the cache was verified when it entered it."""
    final = cached_file(entry, folder)
    if final.is_file():
        return final, "already in the cache"
    final.parent.mkdir(parents=True, exist_ok=True)
    with download_lock(final):
        if final.is_file():  # another process finished it while we waited for the lock
            return final, "already in the cache"
        return _download_and_verify(entry, folder, final, progress, should_stop)


def _download_and_verify(entry: WeightsEntry, folder: Path, final: Path, progress: ProgressFn | None,
                         should_stop: Callable[[], bool] | None) -> tuple[Path, str]:
    part = partial_file(final)
    url = entry.download_url()
    try:
        download(url, part, progress, should_stop)
    except DownloadError as exc:
        if exc.kind in ("network", "http"):  # offline, proxy, 404 ...: say how to get it by hand
            raise DownloadError(f"cannot download {entry.name}: {exc}; {offline_advice(entry, folder)}",
                                exc.kind) from None
        raise
    from core.weights.verify import verify_file  # torch: only when a file is checked

    try:
        check = verify_file(part, entry, label=url)
    except WeightsError as exc:
        part.unlink(missing_ok=True)
        raise WeightsError(f"refused {entry.name} (the download was deleted, not kept): {exc}") from None
    os.replace(part, final)
    return final, check


def add_file(source: Path | str, folder: Path, name: str | None = None) -> tuple[WeightsEntry, Path]:
    """Copy a file downloaded elsewhere into the cache under its release name, after the same
    verification as a download. `name` says what it is when the file was renamed."""
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"{source}: file not found")
    entry = find_entry(name or source.name)
    if entry is None:
        raise WeightsError(f"{name or source.name}: not a known weights name; pass --name with one of "
                           f"`dfine weights list` (e.g. --name dfine_s_coco)")
    from core.weights.verify import verify_file  # torch: only when a file is checked

    verify_file(source, entry)
    final = cached_file(entry, folder)
    folder.mkdir(parents=True, exist_ok=True)
    if final.exists() and final.resolve() == source.resolve():
        return entry, final
    with open(source, "rb") as src:
        atomic_write_with(final, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))
    return entry, final


def resolve_weights(spec: str, folder: Path, project_root: Path | None = None, size: str | None = None,
                    allow_download: bool = True, progress: ProgressFn | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Path:
    """A `--weights` / `model.weights` value -> a file: an existing path (as given, else relative
    to the project folder), else a known name from the cache, downloaded when missing and
    `allow_download`. `size` (the project's model size) is checked before any download;
    `should_stop` (e.g. training's SIGTERM flag) cancels the download, keeping its `.part`."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if project_root is not None and not path.is_absolute() and (Path(project_root) / path).is_file():
        return Path(project_root) / path
    entry = find_entry(spec)
    if entry is None or (len(path.parts) > 1 and not path.is_file()):
        known = [e.name for e in entries()]
        close = difflib.get_close_matches(Path(spec).stem.lower(), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else " (names: `dfine weights list`)"
        raise WeightsError(f"{spec}: no such file, and not a known weights name{hint}")
    if size is not None and size not in entry.sizes:
        fits = [e.name for e in entries() if e.kind == entry.kind and size in e.sizes]
        raise WeightsError(f"{entry.name} is for size {'/'.join(entry.sizes) or '(none)'}, the project "
                           f"trains size {size}" + (f"; use {' or '.join(fits)}" if fits else ""))
    cached = cached_file(entry, folder)
    if cached.is_file():
        return cached
    if not allow_download:
        raise WeightsError(f"{entry.name} is not in the weights cache {folder} and downloads are off "
                           f"(model.download_weights: false): run `dfine weights get {entry.name}`, or "
                           f"{offline_advice(entry, folder)}")
    return fetch(entry, folder, progress, should_stop)[0]
