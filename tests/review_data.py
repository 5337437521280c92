"""A small segment project with known label mistakes and the analysis result `dfine analyze`
would write for it (shared by the Review panel and `dfine review` tests)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from core.annotation import ImageAnnotation, Instance
from core.project import Project

H, W = 64, 96


def SQ(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


OBJECTS = {  # image -> [(class, square)] as they really are
    "a.png": [(0, (10, 10, 30, 30)), (1, (50, 20, 80, 50))],
    "b.png": [(1, (5, 30, 25, 55)), (0, (60, 5, 85, 25))],
}


def make_project(tmp_path: Path, duplicate: bool = True) -> Project:
    """b.png: the dog at (5,30) is labelled cat and the cat at (60,5) is not labelled;
    a.png: the cat is labelled twice (duplicate) unless ``duplicate`` is False."""
    proj = Project.create(tmp_path / "p", ["cat", "dog"], task="segment")
    for name, objs in OBJECTS.items():
        img = np.full((H, W, 3), 90, np.uint8)
        for _, (x0, y0, x1, y1) in objs:
            img[y0:y1, x0:x1] = 200
        cv2.imwrite(str(proj.image_dir / name), img)
        insts = [Instance(c, polygons=[SQ(*b)]) for c, b in objs]
        if name == "b.png":
            insts = insts[:1]
            insts[0].class_id = 0
        elif duplicate:
            insts.append(Instance(0, polygons=[SQ(10, 10, 30, 30)]))
        proj.save_annotation(ImageAnnotation(proj.image_dir / name, W, H, insts))
    return proj


def issue(kind, image, instance, box, class_id, score, fix, message=""):
    return {
        "kind": kind,
        "image": str(image),
        "instance": instance,
        "box": box,
        "class_id": class_id,
        "score": score,
        "evidence": {"pred_score": 0.9},
        "fix": fix,
        "message": message or kind,
        "id": f"{kind}-{instance}-{Path(image).name}",
    }


def write_issues(proj: Project, shift: float = 0.0, reorder: bool = False) -> list[dict]:
    """A label_issues.json as `dfine analyze` writes it (shift moves predicted boxes, as a
    re-analysis with another model would)."""
    a, b = proj.image_dir / "a.png", proj.image_dir / "b.png"
    issues = [
        issue("wrong_class", b, 0, [5, 30, 25, 55], 0, 0.81, {"action": "set_class", "class_id": 1}),
        issue(
            "missing_label",
            b,
            None,
            [60 + shift, 5, 85 + shift, 25],
            0,
            0.72,
            {
                "action": "add",
                "class_id": 0,
                "polygons": [SQ(60 + shift, 5, 85 + shift, 25).ravel().tolist()],
                "box": [60 + shift, 5, 85 + shift, 25],
            },
        ),
        issue("duplicate_label", a, 2, [10, 10, 30, 30], 0, 0.70, {"action": "delete"}),
        issue("spurious_label", a, 1, [50, 20, 80, 50], 1, 0.30, {"action": "delete"}),
    ]
    if reorder:
        issues = issues[::-1]
    proj.review_dir.mkdir(exist_ok=True)
    (proj.review_dir / "label_issues.json").write_text(json.dumps({"version": 1, "issues": issues}))
    return issues


