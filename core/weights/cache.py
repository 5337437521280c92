"""Where downloaded weights live.

Order: the `DFINE_WEIGHTS_DIR` environment variable, then the project's `model.weights_dir`
(relative to the project folder), then the platform's cache folder — so a lab can share one
folder between users and projects, and a single project can pin its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from core.config import CONFIG_FILE, load_config
from core.weights.registry import WeightsEntry

__all__ = ["WEIGHTS_DIR_ENV", "cached_file", "default_weights_dir", "weights_dir"]

WEIGHTS_DIR_ENV = "DFINE_WEIGHTS_DIR"
APP_DIR = "dfine-studio"


def default_weights_dir(platform: str | None = None, env: Mapping[str, str] | None = None,
                        home: Path | None = None) -> Path:
    """The platform cache: XDG_CACHE_HOME (or ~/.cache) on Linux, %LOCALAPPDATA% on Windows,
    ~/Library/Caches on macOS; always under ``dfine-studio/weights``."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if platform.startswith("win"):
        base = Path(env["LOCALAPPDATA"]) if env.get("LOCALAPPDATA") else home / "AppData" / "Local"
    elif platform == "darwin":
        base = home / "Library" / "Caches"
    else:
        base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else home / ".cache"
    return base / APP_DIR / "weights"


def weights_dir(project_root: Path | str | None = None, configured: str | None = None,
                env: Mapping[str, str] | None = None, read_config: bool = True) -> Path:
    """The cache folder to use (not created here). `configured` is the project's
    `model.weights_dir`; when it is None and `read_config`, it is read from the project.yaml
    in `project_root`."""
    env = os.environ if env is None else env
    if env.get(WEIGHTS_DIR_ENV, "").strip():
        return Path(env[WEIGHTS_DIR_ENV]).expanduser()
    if configured is None and project_root is not None and read_config:
        configured = _configured_dir(Path(project_root))
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() or project_root is None else Path(project_root) / path
    return default_weights_dir(env=env)


def _configured_dir(project_root: Path) -> str | None:

    cfg = load_config(project_root / CONFIG_FILE)  # a broken project.yaml is the user's error to see
    return cfg.model.weights_dir


def cached_file(entry: WeightsEntry, folder: Path) -> Path:
    """The path `entry` has (or will have) in the cache: the release's own file name."""
    return Path(folder) / entry.file
