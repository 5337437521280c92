"""The review's data side (no widgets): read the analysis result, remember the person's
decisions in review/decisions.json, and turn an issue's suggested fix into new labels.

Why decisions are keyed by image + kind + class + rounded box and not by the
analysis' own id: that id includes the instance index, which shifts when any label
of the image is deleted, and a re-analysis with another model moves predicted boxes
by a pixel or two. A key plus an IoU fallback (same image, kind and class, boxes
overlapping > 0.7) keeps a dismissed item dismissed after re-analysis.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.annotation import ImageAnnotation, Instance
from core.atomic_io import atomic_write_text
from core.bounded_input import loads_json
from core.errors import UserFacingError

ISSUES_FILE = "label_issues.json"
DECISIONS_FILE = "decisions.json"
DECISIONS = ("accepted", "dismissed")
SAME_ITEM_IOU = 0.7
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


class AnnotationStore(Protocol):
    def load_annotation(self, image: Path) -> ImageAnnotation: ...

    def save_annotation(self, ann: ImageAnnotation) -> Path: ...


@dataclass
class ReviewItem:
    """One issue of label_issues.json plus its decision (None = still open)."""

    data: dict
    key: str
    rank: int
    decision: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def image(self) -> Path:
        return Path(self.data["image"])

    @property
    def instance(self) -> int | None:
        v = self.data.get("instance")
        return None if v is None else int(v)

    @property
    def class_id(self) -> int | None:
        v = self.data.get("class_id")
        return None if v is None else int(v)

    @property
    def score(self) -> float:
        return float(self.data.get("score", 0.0))

    @property
    def box(self) -> list[float]:
        return [float(v) for v in self.data.get("box", [0, 0, 0, 0])]

    @property
    def fix(self) -> dict:
        return dict(self.data.get("fix") or {})

    @property
    def is_open(self) -> bool:
        return self.decision is None


def box_iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def decision_key(rel_image: str, issue: dict) -> str:
    """Stable id of an item: image (relative to the image folder) + kind + class + box to 1 px."""
    box = ",".join(str(round(float(v))) for v in issue.get("box", []))
    text = f"{rel_image}|{issue['kind']}|{issue.get('class_id')}|{box}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def read_issues(review_dir: Path) -> tuple[dict, list[dict]]:
    """(meta, issues) from review/label_issues.json; a missing file is an empty review."""
    path = Path(review_dir) / ISSUES_FILE
    if not path.is_file():
        return {}, []
    try:
        doc = loads_json(path.read_bytes(), path)
    except (OSError, ValueError, UserFacingError) as exc:
        raise UserFacingError(
            f"{path}: not a readable analysis result ({exc}); run the analysis again"
        ) from exc
    issues = doc.get("issues") if isinstance(doc, dict) else None
    if not isinstance(issues, list):
        raise UserFacingError(f"{path}: no 'issues' list; run the analysis again")
    for n, issue in enumerate(issues):
        if not isinstance(issue, dict) or not {"kind", "image", "box"} <= issue.keys():
            raise UserFacingError(f"{path}: issue #{n + 1} lacks kind/image/box (got {str(issue)[:80]!r})")
        if not isinstance(issue["box"], list) or len(issue["box"]) != 4:
            raise UserFacingError(
                f"{path}: issue #{n + 1} box must be [x0, y0, x1, y1], got {issue['box']!r}"
            )
    meta = {k: v for k, v in doc.items() if k != "issues"}
    return meta, issues


class DecisionStore:
    """review/decisions.json:
    {"version": 1, "decisions": {key: {decision, image, kind, class_id, box, time}}}."""

    def __init__(self, review_dir: Path):
        self.path = Path(review_dir) / DECISIONS_FILE
        self.decisions: dict[str, dict] = {}
        self.load()

    def load(self) -> None:
        if not self.path.is_file():
            self.decisions = {}
            return
        try:
            doc = loads_json(self.path.read_bytes(), self.path)
            decisions = doc["decisions"]
            if not isinstance(decisions, dict):
                raise TypeError("'decisions' is not an object")
        except (OSError, ValueError, KeyError, TypeError, UserFacingError) as exc:
            # never overwrite the person's decisions with an empty set because of one bad byte
            raise UserFacingError(
                f"{self.path}: unreadable review decisions ({exc}); fix or delete the file"
            ) from exc
        self.decisions = {str(k): v for k, v in decisions.items() if isinstance(v, dict)}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"version": 1, "decisions": self.decisions}, indent=1))

    def find(self, key: str, rel_image: str, issue: dict) -> dict | None:
        """The decision on this item: same key, else the same image/kind/class with a box
        overlapping > 0.7."""
        hit = self.decisions.get(key)
        if hit is not None:
            return hit
        box = [float(v) for v in issue.get("box", [0, 0, 0, 0])]
        best, best_iou = None, SAME_ITEM_IOU
        for d in self.decisions.values():
            if (
                d.get("image") != rel_image
                or d.get("kind") != issue.get("kind")
                or d.get("class_id") != issue.get("class_id")
            ):
                continue
            iou = box_iou(box, [float(v) for v in d.get("box", [0, 0, 0, 0])])
            if iou > best_iou:
                best, best_iou = d, iou
        return best

    def set(self, key: str, rel_image: str, issue: dict, decision: str, **extra: Any) -> None:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        self.decisions[key] = {
            "decision": decision,
            "image": rel_image,
            "kind": issue.get("kind"),
            "class_id": issue.get("class_id"),
            "box": issue.get("box"),
            "issue_id": issue.get("id", ""),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        }
        self.save()

    def clear(self, key: str) -> None:
        if self.decisions.pop(key, None) is not None:
            self.save()


def load_review(review_dir: Path, rel_image: Any) -> tuple[dict, list[ReviewItem], DecisionStore]:
    """The analysis result joined with the stored decisions, in rank order."""
    meta, issues = read_issues(review_dir)
    store = DecisionStore(review_dir)
    items = []
    for rank, issue in enumerate(issues, 1):
        rel = rel_image(Path(issue["image"]))
        key = decision_key(rel, issue)
        d = store.find(key, rel, issue)
        items.append(ReviewItem(issue, key, rank, d.get("decision") if d else None))
    return meta, items, store


def flagged_images(items: list[ReviewItem]) -> set[Path]:
    """Images with at least one open (undecided) item."""
    return {it.image for it in items if it.is_open}


def flagged_image_names(project: Any) -> set[str]:
    """File names the image list should mark for ``project`` (for a worker at project open);
    an unreadable review is no flags, not an error, here: the review panel reports it."""
    try:
        _, items, _ = load_review(project.review_dir, project.rel_image)
    except UserFacingError:
        return set()
    return {p.name for p in flagged_images(items)}


# ------------------------------------------------------------------------------ applying fixes


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
    if polys and not (like is not None and like.is_box):
        return Instance(class_id, polygons=polys, group_id=like.group_id if like else None)
    if box:
        return Instance(class_id, box=tuple(float(v) for v in box), group_id=like.group_id if like else None)
    if polys:  # a box-only label with only an outline suggested: keep it a box, around the outline
        pts = np.concatenate(polys)
        return Instance(class_id, box=(*pts.min(0), *pts.max(0)), group_id=like.group_id if like else None)
    raise UserFacingError(f"the suggestion has no geometry (fix {fix})")


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


@dataclass
class UndoEntry:
    image: Path
    before: ImageAnnotation
    after: ImageAnnotation  # as read back from the store after saving
    key: str
    description: str


class FixHistory:
    """Undo list of applied fixes. Undo restores the labels from before the fix, but only
    while the file still holds what the fix wrote: later edits are never overwritten."""

    def __init__(self, store: AnnotationStore):
        self.store = store
        self.entries: list[UndoEntry] = []

    def _locked(self):
        """The project lock around read-fix-write, so no other writer lands in between."""
        lock = getattr(self.store, "lock", None)
        return lock() if callable(lock) else contextlib.nullcontext()

    def apply(self, image: Path, issue: dict, key: str) -> UndoEntry:
        with self._locked():
            before = self.store.load_annotation(image)
            after, text = apply_fix(before, issue)
            self.store.save_annotation(after)
            entry = UndoEntry(Path(image), before, self.store.load_annotation(image), key, text)
        self.entries.append(entry)
        return entry

    def undo(self) -> UndoEntry:
        if not self.entries:
            raise UserFacingError("nothing to undo in the review")
        entry = self.entries[-1]
        with self._locked():
            current = self.store.load_annotation(entry.image)
            if not same_labels(current, entry.after):
                raise UserFacingError(
                    f"{entry.image.name}: the labels were edited after the fix "
                    f"({entry.description}); undo there instead"
                )
            self.store.save_annotation(entry.before)
        self.entries.pop()
        return entry
