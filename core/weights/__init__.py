"""Weights manager: the official D-FINE checkpoints by name, a verified local cache.

`dfine weights list | get NAME | add FILE`; `resolve_weights(spec, folder)` turns a
`--weights` value (a path or a name such as `dfine_s_coco`) into a file, downloading it
once into `weights_dir()` when needed. Names are imported lazily: listing the cache (the
GUI's picker) must not import torch; only checking a file does.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "WEIGHTS_DIR_ENV": "cache", "cached_file": "cache", "default_weights_dir": "cache",
    "weights_dir": "cache",
    "DownloadCancelled": "download", "DownloadError": "download",
    "CacheRow": "manager", "add_file": "manager", "cache_rows": "manager", "fetch": "manager",
    "resolve_weights": "manager",
    "MIRROR_ENV": "registry", "WeightsEntry": "registry", "entries": "registry", "find_entry": "registry",
    "verify_file": "verify",
}
__all__ = [  # noqa: RUF022 (grouped as _EXPORTS)
    "WEIGHTS_DIR_ENV", "cached_file", "default_weights_dir", "weights_dir",
    "DownloadCancelled", "DownloadError",
    "CacheRow", "add_file", "cache_rows", "fetch", "resolve_weights",
    "MIRROR_ENV", "WeightsEntry", "entries", "find_entry",
    "verify_file",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'core.weights' has no attribute {name!r}")
    return getattr(importlib.import_module(f"core.weights.{_EXPORTS[name]}"), name)
