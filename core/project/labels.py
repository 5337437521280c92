"""One label file: its size-checked text, the geometry a reader takes back, the files under labels/."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from core.bounded_input import read_regular_bytes
from core.data.formats.yolo_txt import decode_label_bytes
from core.errors import LabelError, LimitError


def _image_size(path: Path) -> tuple[int, int]:
    from core.data.images import image_size  # EXIF-aware, shared with the reader

    return image_size(path)


def shared_label_message(label: Path | str, images: Iterable[str]) -> str:
    """The one wording of "these images share a label file", for check, convert and import."""
    return (f"{label}: shared by images {', '.join(images)} (same name, another extension): they get the "
            "same labels, and an export writes one over the other; rename one of them")


def _check_geometry(inst, width: int, height: int, path: Path, k: int) -> None:
    """Refuse to write a row no reader would accept back: every reader rejects a file with one
    NaN, so writing it would lose the file's good rows to training (issue #35). A point may sit
    a little outside the image (it is clipped on write); one an image size away is a bug."""
    parts = [np.asarray(p, dtype=np.float64).reshape(-1) for p in (*inst.polygons, *inst.holes)]
    if inst.box is not None:
        parts.append(np.asarray(inst.box, dtype=np.float64).reshape(-1))
    if not parts:
        raise LabelError(path, None, f"instance {k + 1}: has neither a polygon nor a box; not saved")
    values = np.concatenate(parts)
    if not np.isfinite(values).all():
        raise LabelError(path, None, f"instance {k + 1}: a coordinate is not a finite number; not saved",
                         values[~np.isfinite(values)][0].item())
    limit = 2.0 * max(width, height)
    far = values[(values < -limit) | (values > limit + max(width, height))]
    if far.size:
        raise LabelError(path, None, f"instance {k + 1}: a coordinate lies far outside the {width}x{height} "
                         f"image; not saved", far[0].item())


def _read_label_text(lp: Path) -> str:
    try:
        return decode_label_bytes(read_regular_bytes(lp), lp)
    except LimitError as exc:  # a FIFO, device or huge file among the labels: one bad file, not a hang
        raise LabelError(lp, None, str(exc).removeprefix(f"{lp}: ")) from None
    except IsADirectoryError:
        raise LabelError(lp, None, "is a folder, not a label file") from None
    except PermissionError:
        raise LabelError(lp, None, "cannot be read (permission denied)") from None


def label_files(labels_dir: Path) -> list[Path]:
    """Every label txt under labels/ (hidden files skipped); a folder named *.txt is listed so
    the caller reports it instead of failing on it."""
    if not labels_dir.is_dir():
        return []
    return sorted(lp for lp in labels_dir.rglob("*.txt") if not lp.name.startswith("."))
