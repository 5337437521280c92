"""What an import read, and what it could not: nothing is dropped silently.

Every reader returns a :class:`ImportResult`; per-item problems (an annotation
pointing at an unknown image, a polygon with two points, ...) are collected as
:class:`LabelError` objects naming file and value, and the rest is imported.
Damage that makes a whole file unreadable is raised instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.annotation import ImageAnnotation
from core.errors import LabelError


@dataclass
class ImportResult:
    class_names: list[str]
    annotations: list[ImageAnnotation] = field(default_factory=list)
    problems: list[LabelError] = field(default_factory=list)
    # things the user should know that are not errors (e.g. images without a label file)
    notes: list[str] = field(default_factory=list)
    # things imported that are likely wrong and need the user (printed as "warning:")
    warnings: list[str] = field(default_factory=list)
    # image path -> split name ("train" / "val") when the source says so
    splits: dict[Path, str] = field(default_factory=dict)
    # folder whose sub-folders are kept when images are copied into a project
    # (COCO: the folder file_names are relative to); None = the images' common folder
    source_root: Path | None = None

    @property
    def num_instances(self) -> int:
        return sum(len(a.instances) for a in self.annotations)

    def summary(self) -> str:
        """One line for the CLI: counts of what was read and what was skipped."""
        line = (f"{len(self.annotations)} images, {self.num_instances} instances, "
                f"{len(self.class_names)} classes")
        if self.problems:
            line += f"; skipped {len(self.problems)} item(s) (listed above)"
        return line


def class_histogram(annotations: list[ImageAnnotation]) -> Counter[int]:
    """Instances per class id; the round-trip tests compare these."""
    return Counter(inst.class_id for a in annotations for inst in a.instances)


OUTSIDE_TOLERANCE = 0.02  # fraction of the image size; beyond it a point is an error, not a rounding slip


def outside_image(points: list, width: int, height: int) -> tuple[float, float] | None:
    """The first point (x, y) lying clearly outside the image, or None.

    Why: the YOLO store clips to the image, so a polygon drawn in another image's
    coordinate frame would be silently squashed onto the border instead of reported.
    """
    for p in points:
        arr = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        tx, ty = OUTSIDE_TOLERANCE * width, OUTSIDE_TOLERANCE * height
        bad = (arr[:, 0] < -tx) | (arr[:, 0] > width + tx) | (arr[:, 1] < -ty) | (arr[:, 1] > height + ty)
        if bad.any():
            x, y = arr[int(np.flatnonzero(bad)[0])]
            return float(x), float(y)
    return None
