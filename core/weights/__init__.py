"""Weights manager: the official D-FINE checkpoints by name, a verified local cache.

`dfine weights list | get NAME | add FILE`; `resolve_weights(spec, folder)` turns a
`--weights` value (a path or a name such as `dfine_s_coco`) into a file, downloading it
once into `weights_dir()` when needed.
"""

from core.weights.cache import WEIGHTS_DIR_ENV, cached_file, default_weights_dir, weights_dir
from core.weights.download import DownloadCancelled, DownloadError
from core.weights.manager import CacheRow, add_file, cache_rows, fetch, resolve_weights
from core.weights.registry import MIRROR_ENV, WeightsEntry, entries, find_entry
from core.weights.verify import verify_file

__all__ = [
    "MIRROR_ENV",
    "WEIGHTS_DIR_ENV",
    "CacheRow",
    "DownloadCancelled",
    "DownloadError",
    "WeightsEntry",
    "add_file",
    "cache_rows",
    "cached_file",
    "default_weights_dir",
    "entries",
    "fetch",
    "find_entry",
    "resolve_weights",
    "verify_file",
    "weights_dir",
]
