"""Decoded, downscaled training images kept on disk between epochs, workers and runs.

Why: the loader decodes every image and shrinks it to at most twice the model size on every
read, and mosaic reads four images per sample. For camera-size JPEGs (4032x3024) that is the
larger part of the loader's time on a CPU, paid again each epoch for the same pixels
(benchmarks/loader_levers.py has the numbers). Cached as uncompressed ``.npy`` the pixels are
exactly those of a fresh decode, and any process (DataLoader workers are not persistent, so an
in-memory cache would die with them each epoch) reads them back in about a millisecond.

Opt-in (``train.cache_images``) because it costs disk: about ``3 x max_side^2 x aspect`` bytes
per image (1280x960: 3.7 MB). Entries are keyed by the image's path, size and modification
time and the downscale bound, so an edited image or another model size never reads stale
pixels. Deleting ``<project>/.dfine/cache/`` at any time is safe.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from core.data.images import image_size, read_image
from core.errors import UserFacingError

CACHE_DIR = Path(".dfine") / "cache" / "images"
DISK_MARGIN = 1 << 30  # keep 1 GiB free for checkpoints and labels


def downscaled_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) with the longest side at most ``max_side``, aspect kept."""
    if max_side is None or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def read_downscaled(path: Path, max_side: int | None) -> np.ndarray:
    """The image (BGR uint8, EXIF applied) shrunk with INTER_AREA so its longest side is at most
    ``max_side``: what the training loader works on."""
    bgr = read_image(path)
    h, w = bgr.shape[:2]
    size = downscaled_size(w, h, max_side)
    return bgr if size == (w, h) else cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


class DecodedImageCache:
    """``get(path)`` = ``read_downscaled(path, max_side)``, from disk after the first time.

    A failed write (full disk, read-only folder) turns the cache off for this process with one
    warning; training goes on reading the images themselves.
    """

    def __init__(self, root: Path, max_side: int | None) -> None:
        self.root = Path(root) / f"max{max_side or 'full'}"
        self.max_side = max_side
        self.enabled = True
        self.hits = self.misses = 0

    def entry_path(self, path: Path) -> Path:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.max_side}"
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    def get(self, path: Path) -> np.ndarray:
        path = Path(path)
        if not self.enabled:
            return read_downscaled(path, self.max_side)
        try:
            entry = self.entry_path(path)
        except OSError:
            return read_downscaled(path, self.max_side)  # read_image names the missing file
        try:
            # mapped first: a damaged header cannot make us allocate more than a cached image takes
            image = np.load(entry, mmap_mode="r", allow_pickle=False)
            if (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
                    and (self.max_side is None or max(image.shape[:2]) <= self.max_side)):
                self.hits += 1
                return np.array(image)
        except (OSError, ValueError, EOFError):
            pass  # absent, or half-written by a process that died: decode again
        self.misses += 1
        image = read_downscaled(path, self.max_side)
        self._write(entry, image)
        return image

    def _write(self, entry: Path, image: np.ndarray) -> None:
        tmp = entry.with_name(f"{entry.stem}.{os.getpid()}.tmp")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, image, allow_pickle=False)
            os.replace(tmp, entry)  # concurrent workers writing one entry: the last complete file wins
        except OSError as exc:
            self.enabled = False
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # the folder itself is the problem (not a folder, gone, read-only)
            warnings.warn(f"image cache {self.root} turned off: cannot write {entry.name} ({exc})", stacklevel=2)


def _downscaled_size(path: Path, max_side: int | None) -> tuple[int, int] | None:
    try:
        w, h = image_size(path)
    except (UserFacingError, OSError, ValueError):
        return None  # unreadable: the loader reports it by name when it gets there
    return downscaled_size(w, h, max_side)


def cache_for_training(project_root: Path, paths: Sequence[Path], max_side: int | None) -> tuple[
        DecodedImageCache | None, str | None]:
    """The project's cache, or None and why not (too little free disk for what is not cached yet)."""
    cache = DecodedImageCache(Path(project_root) / CACHE_DIR, max_side)
    need = 0
    for p in paths:
        try:
            if cache.entry_path(Path(p)).is_file():
                continue
        except OSError:
            continue
        size = _downscaled_size(Path(p), max_side)
        need += 0 if size is None else 3 * size[0] * size[1] + 128
    probe = cache.root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free - need < DISK_MARGIN:
        return None, (f"train.cache_images is on, but {probe} has {free / 2**30:.1f} GiB free and caching "
                      f"{len(paths)} images needs {need / 2**30:.1f} GiB more (+1 GiB kept free): "
                      "training without the cache")
    return cache, None
