"""Turn a flagged item's suggested fix into new labels (pure: labels in, labels out).

Why the label is found again by box and class rather than trusted by index: the index the
analysis recorded shifts when any label of the image is deleted; a fix applied to the wrong
label would relabel silently, so a label that no longer fits gives StaleIssueError instead.
"""

from __future__ import annotations

import numpy as np

from core.annotation import ImageAnnotation, Instance
from core.errors import UserFacingError

BOX_TOL = 0.6  # px: the analysis rounds boxes to 0.01 px; a label moved by more is a different label

ACTION_TEXT = {
    "add": "Add the model's label",
    "set_class": "Change the class",
    "replace_geometry": "Use the model's outline",
    "delete": "Delete this label",
    "clip": "Clip to the image",
}


class StaleIssueError(UserFacingError):
    """The labels changed since the analysis; the suggestion no longer fits them."""


def _polygons(fix: dict) -> list[np.ndarray]:
    out = []
    for p in fix.get("polygons") or []:
        arr = np.asarray(p, np.float64).reshape(-1, 2)
        if len(arr) >= 3:
            out.append(arr)
    return out


def _new_geometry(fix: dict, class_id: int, like: Instance | None = None) -> Instance:
    polys = _polygons(fix)
    box = fix.get("box")
    group = like.group_id if like else None
    if polys and not (like is not None and like.is_box):
        return Instance(class_id, polygons=polys, holes=_holes(fix), group_id=group)
    if box:
        if len(box) != 4:  # (a hand-edited review.json): refuse, never store a broken box label
            raise UserFacingError(f"the suggestion's box needs 4 numbers (x1, y1, x2, y2), got {box}")
        x1, y1, x2, y2 = (float(v) for v in box)
        return Instance(class_id, box=(x1, y1, x2, y2), group_id=group)
    if polys:  # a box-only label with only an outline suggested: keep it a box, around the outline
        pts = np.concatenate(polys)
        return Instance(class_id, box=(*pts.min(0), *pts.max(0)), group_id=group)
    raise UserFacingError(f"the suggestion has no geometry (fix {fix})")


def _holes(fix: dict) -> list[np.ndarray]:
    return [np.asarray(h, np.float64).reshape(-1, 2) for h in fix.get("holes") or [] if len(h) >= 6]


def locate_instance(ann: ImageAnnotation, issue: dict) -> int:
    """Index of the label the issue is about: its recorded index when that label still has the
    recorded box and class, else the one label that does; StaleIssueError when none does."""
    box = [float(v) for v in issue.get("box", [0, 0, 0, 0])]
    cid = issue.get("class_id")

    def fits(k: int) -> bool:
        inst = ann.instances[k]
        if cid is not None and inst.class_id != cid:
            return False
        try:
            b = inst.bbox()
        except ValueError:
            return False
        if not np.isfinite(b).all():  # degenerate labels are recorded with a zero box
            return box == [0.0, 0.0, 0.0, 0.0]
        return max(abs(x - y) for x, y in zip(b, box, strict=True)) <= BOX_TOL

    k = issue.get("instance")
    if k is not None and 0 <= int(k) < len(ann.instances) and fits(int(k)):
        return int(k)
    hits = [j for j in range(len(ann.instances)) if fits(j)]
    if len(hits) == 1:
        return hits[0]
    raise StaleIssueError(
        f"{ann.image_path.name}: the label this item is about has changed since the analysis "
        "(run the analysis again)"
    )


def apply_fix(ann: ImageAnnotation, issue: dict) -> tuple[ImageAnnotation, str]:
    """New labels with the issue's suggested fix applied (``ann`` is not changed) and a
    one-line description for the undo list."""
    fix = dict(issue.get("fix") or {})
    action = fix.get("action")
    out = ann.copy()
    if action == "add":
        inst = _new_geometry(fix, int(fix["class_id"]))
        out.instances.append(inst)
        return out, f"add {issue.get('kind', '')} label"
    k = locate_instance(ann, issue)
    old = out.instances[k]
    if action == "delete":
        del out.instances[k]
        return out, f"delete label {k + 1}"
    if action == "set_class":
        new = old.copy()
        new.class_id = int(fix["class_id"])
        new.source = "human"
        new.score = None
        out.instances[k] = new
        return out, f"label {k + 1}: class {old.class_id} -> {new.class_id}"
    if action in ("replace_geometry", "clip"):
        new = _new_geometry(fix, old.class_id, like=old)
        new.iscrowd = old.iscrowd
        out.instances[k] = new
        return (
            out,
            f"label {k + 1}: {'clipped to the image' if action == 'clip' else 'outline from the model'}",
        )
    raise UserFacingError(f"unknown fix action {action!r} (expected {', '.join(ACTION_TEXT)})")


def same_labels(a: ImageAnnotation, b: ImageAnnotation, tol: float = 0.02) -> bool:
    """Equal up to the YOLO txt rounding (which the store applies on save)."""
    if len(a.instances) != len(b.instances):
        return False
    return all(x.same_geometry(y, tol) for x, y in zip(a.instances, b.instances, strict=True))
