"""Frames to run a model on: one image, an image folder, a video file or a camera index.

One iterator type for all four so the CLI, the GUI's live view and the benchmark loop the
same way; images are read with the project's reader (EXIF orientation applied).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.data.images import IMAGE_EXTENSIONS, read_image
from core.errors import ImageReadError, UserFacingError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8
    name: str  # file name (image/folder), or frame_000123 (video/camera)
    index: int  # position in the source


class FrameSource:
    """Iterate `Frame`s; ``total`` is the frame count when known (None for cameras)."""

    def __init__(self, kind: str, spec: str, paths: list[Path] | None = None, capture=None,
                 total: int | None = None, fps: float = 0.0, max_frames: int | None = None):
        self.kind, self.spec, self.paths, self.capture, self.fps = kind, spec, paths, capture, fps
        self.max_frames = max_frames
        self.total = total if max_frames is None else min(total or max_frames, max_frames)
        self.skipped: list[str] = []  # unreadable images in a folder (named, not fatal)

    def __iter__(self) -> Iterator[Frame]:
        if self.paths is not None:
            yield from self._images()
        else:
            yield from self._video()

    def _images(self) -> Iterator[Frame]:
        n = 0
        for i, path in enumerate(self.paths or []):  # (called only when paths is set)
            if self.max_frames is not None and n >= self.max_frames:
                return
            try:
                image = read_image(path)
            except ImageReadError as exc:
                if self.kind == "image":
                    raise
                self.skipped.append(str(exc))
                continue
            n += 1
            yield Frame(image, path.name, i)

    def _video(self) -> Iterator[Frame]:
        i = 0
        try:
            while self.max_frames is None or i < self.max_frames:
                ok, image = self.capture.read()
                if not ok:
                    return
                yield Frame(image, f"frame_{i:06d}", i)
                i += 1
        finally:
            self.capture.release()


def open_source(spec: str | Path, max_frames: int | None = None) -> FrameSource:
    """Interpret ``spec``: digits = camera index; a folder; an image file; a video file."""
    text = str(spec)
    if text.isdigit():
        cap = cv2.VideoCapture(int(text))
        if not cap.isOpened():
            raise UserFacingError(f"camera {text} could not be opened (no such device, or in use)")
        return FrameSource("camera", text, capture=cap, fps=cap.get(cv2.CAP_PROP_FPS) or 0.0, max_frames=max_frames)
    path = Path(text)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise UserFacingError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return FrameSource("folder", text, paths=paths, total=len(paths), max_frames=max_frames)
    if not path.exists():
        raise UserFacingError(f"{path}: no such file or folder (nor a camera index)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return FrameSource("image", text, paths=[path], total=1, max_frames=max_frames)
    if suffix in VIDEO_EXTENSIONS:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise UserFacingError(f"{path}: OpenCV cannot open this video")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        return FrameSource("video", text, capture=cap, total=count, fps=cap.get(cv2.CAP_PROP_FPS) or 25.0,
                           max_frames=max_frames)
    raise UserFacingError(f"{path}: not an image ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                          f"or video ({', '.join(sorted(VIDEO_EXTENSIONS))}) file")
