"""The one image reader of the project: labeller, training, review, export calibration
and inference all see exactly the same pixels.

Why one reader: a photo taken in portrait is stored landscape plus an EXIF
orientation tag. If the labeller applied the tag and training did not, every
polygon would be rotated against its image. So decoding (OpenCV) and the
orientation (read with PIL from the header) are done here once, and
:func:`image_size` uses the same orientation code, so a label's ``width x height``
always matches the pixels :func:`read_image` returns.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from core.bounded_input import PNG_HEAD_BYTES, check_image_bytes, check_image_pixels
from core.errors import ImageReadError

# What a project lists as images (the formats OpenCV and Ultralytics both read).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# Users label their own large images (aerial, microscopy, scans), not untrusted uploads,
# so PIL's decompression-bomb guard (~89 MP warning, ~179 MP error) is lifted on purpose.
# PIL reads headers here; every header goes through _checked_header (MAX_PIXELS, and a file
# big enough for its pixels) before anything decodes pixels.
Image.MAX_IMAGE_PIXELS = None

# OpenCV refuses to decode more than 2**30 pixels (CV_IO_MAX_IMAGE_PIXELS); we check first
# so the user gets the file name and the size instead of a bare `None` from cv2. Below that, a
# 300 MP aerial image is legitimate: what refuses a tiny file claiming 30000x30000 is the check
# that the file is big enough for its pixels (core.bounded_input.check_image_bytes).
MAX_PIXELS_SETTING = "OPENCV_IO_MAX_IMAGE_PIXELS"
MAX_PIXELS: int = int(os.environ.get(MAX_PIXELS_SETTING, str(1 << 30)))

_EXIF_ORIENTATION = 0x0112
# Orientations 5..8 swap width and height.
_SWAPS_AXES = frozenset({5, 6, 7, 8})


def is_image_file(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8 from an opened (lazy) PIL image; 1 when absent or invalid.
    A PNG without an eXIf chunk before its pixels has none: asking PIL would decode the whole
    image to look behind them, which image_size must never do."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except (OSError, ValueError, TypeError, AttributeError, SyntaxError, KeyError, struct.error):
        # a broken EXIF block must not make a readable image unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into displayed pixels for an EXIF orientation (same as PIL's
    ``ImageOps.exif_transpose``); returns a contiguous array."""
    if orientation == 2:
        out = image[:, ::-1]
    elif orientation == 3:
        out = image[::-1, ::-1]
    elif orientation == 4:
        out = image[::-1]
    elif orientation == 5:
        out = np.swapaxes(image, 0, 1)
    elif orientation == 6:
        out = np.rot90(image, k=-1)
    elif orientation == 7:
        out = np.swapaxes(image, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        out = np.rot90(image, k=1)
    else:
        return image
    return np.ascontiguousarray(out)


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG has no end-of-image marker after its first scan.

    Older OpenCV builds decode a truncated JPEG with a warning and grey-fill the
    rest; training on half-grey images is worse than an error. An EOI (FFD9) cannot
    occur inside entropy-coded data, and the one in an EXIF thumbnail sits before the
    first SOS, so the search starts at the first SOS found by walking the segments.
    """
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            # stray bytes between segments: libjpeg skips them with a warning, so do we
            i = data.find(b"\xff", i)
            if i < 0:
                return True
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", i) < 0
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg_len = (data[i + 2] << 8) | data[i + 3]
        i += 2 + seg_len
    return True


def _to_bgr_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    """Any decoded depth/channel layout -> BGR uint8 HxWx3."""
    if img.dtype == np.uint16:
        # 65535 -> 255 exactly, 257 -> 1: the inverse of the usual 8->16 bit widening (x*257).
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return img
    if channels == 4:
        # Alpha is dropped, not composited: this is what OpenCV/Ultralytics training does,
        # so a model trained elsewhere sees the same pixels.
        return np.ascontiguousarray(img[:, :, :3])
    raise ImageReadError(f"{path}: unsupported channel count {channels}")


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ImageReadError(f"{path}: image file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    try:
        data = path.read_bytes()  # Python's open(): non-ASCII paths work on every OS
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageReadError(f"{path}: image file is empty (0 bytes)")
    return data


def check_header(source: Path | str, width: int, height: int, head: bytes, size: int) -> None:
    """ImageLimitError (an ImageReadError) when the header's size must not be decoded: over
    MAX_PIXELS, or more pixels than a file of ``size`` bytes can hold (PNG)."""
    check_image_pixels(source, width, height, MAX_PIXELS, MAX_PIXELS_SETTING)
    check_image_bytes(source, width, height, head, size)


def _checked_header(im: Image.Image, path: Path, head: bytes, size: int) -> tuple[int, int, int]:
    """(stored width, stored height, orientation); the size is checked before the EXIF read,
    which makes PIL decode a whole PNG."""
    w, h = im.size
    check_header(path, w, h, head, size)
    return w, h, _orientation(im)


def _header(data: bytes, path: Path) -> tuple[int, int, int] | None:
    """(stored width, stored height, orientation) from the header, or None if PIL can't parse it."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _checked_header(im, path, data[:PNG_HEAD_BYTES], len(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def read_image(path: Path | str) -> np.ndarray:
    """Decode an image file to BGR uint8 HxWx3 with its EXIF orientation applied.

    Grayscale, RGBA, palette and 16-bit images are converted; a missing, empty,
    corrupt, truncated or oversized file raises :class:`ImageReadError` naming it.
    """
    path = Path(path)
    data = _read_bytes(path)
    header = _header(data, path)  # refuses an oversized or impossible size before any decode
    if data[:2] == b"\xff\xd8" and _jpeg_is_truncated(data):
        raise ImageReadError(f"{path}: JPEG file is truncated or damaged (no end-of-image marker)")
    # IMREAD_UNCHANGED keeps depth/alpha and ignores EXIF, so the orientation below is
    # the single place it is applied (and image_size agrees with it by construction).
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        img = _decode_with_pil(data)  # formats OpenCV lacks (e.g. GIF, some TIFF variants)
    if img is None or img.size == 0:
        raise ImageReadError(f"{path}: cannot decode image (corrupt, truncated or unsupported format)")
    img = _to_bgr_uint8(img, path)
    orientation = header[2] if header is not None else 1
    return apply_orientation(img, orientation)


def _decode_with_pil(data: bytes) -> np.ndarray | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, TypeError, struct.error):
        return None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the header only."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with open(path, "rb") as f:
            head = f.read(PNG_HEAD_BYTES)
            size = os.fstat(f.fileno()).st_size
            f.seek(0)
            with Image.open(f) as im:
                w, h, orientation = _checked_header(im, path, head, size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        h, w = read_image(path).shape[:2]  # a format only OpenCV knows, or a clear error
        return int(w), int(h)
    if w <= 0 or h <= 0:
        raise ImageReadError(f"{path}: image header gives size {w}x{h}")
    return (h, w) if orientation in _SWAPS_AXES else (w, h)
