"""Errors a user can act on. The CLI prints them as one line (never a traceback)."""

from __future__ import annotations

from pathlib import Path


class UserFacingError(Exception):
    """Base of every error caused by the user's input (files, configs, arguments)."""


class LabelError(UserFacingError):
    """A malformed label/annotation file; names the file, the line (1-based) and the value."""

    def __init__(self, path: Path | str, line: int | None, message: str, value: object = None):
        self.path = Path(path)
        self.line = line
        self.value = value
        where = f"{self.path}" + (f":{line}" if line is not None else "")
        detail = f" (got {value!r})" if value is not None else ""
        super().__init__(f"{where}: {message}{detail}")


class ConfigError(UserFacingError):
    """A wrong project.yaml / CLI setting; the message names file, key path and allowed values."""


class ImageReadError(UserFacingError):
    """An image that cannot be decoded; names the file."""


class WeightsError(UserFacingError):
    """A missing or incompatible weights file; names the file and what it looks like."""


class ConflictError(UserFacingError):
    """A write refused because another writer changed the file (or the class list) since it
    was read; nothing was written, the caller reloads and tries again."""


class LimitError(UserFacingError):
    """An input over a safety bound (YAML aliases, JSON depth, regex time, image pixels,
    geometry values); names the file, the value and how to raise the bound if it can be."""


class ImageLimitError(LimitError, ImageReadError):
    """An image refused from its header, before decoding: too many pixels, or a file far too
    small for the pixels it claims (a decompression bomb). An ImageReadError too, so every
    reader that skips an unreadable image skips this one the same way."""
