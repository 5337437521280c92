"""A tiny labelled project shared by the hostile-input and containment tests: two 40x30 images,
each with a triangle of class 0 and a box of class 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.project import Project


def two_image_project(root: Path, classes: list[str]) -> Project:
    p = Project.create(root, classes, "segment")
    for stem in ("a", "b"):
        Image.new("RGB", (40, 30)).save(p.image_dir / f"{stem}.png")
        p.save_annotation(ImageAnnotation(p.image_dir / f"{stem}.png", 40, 30, [
            Instance(0, polygons=[np.array([[1.0, 1.0], [20.0, 1.0], [20.0, 20.0]])]),
            Instance(2, box=(5.0, 5.0, 15.0, 12.0))]))
    return p
