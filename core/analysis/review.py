"""Review of the analysis (engine side, no widgets): the flagged items joined with the person's
decisions in review/decisions.json, and accept / dismiss / reopen / undo. The GUI's Review panel
and `dfine review` both call :class:`Review`, so every review action is also a headless command.

Why decisions are keyed by image + kind + class + rounded box and not by the analysis' own id:
that id includes the instance index, which shifts when any label of the image is deleted, and a
re-analysis with another model moves predicted boxes by a pixel or two. A key plus an IoU
fallback (same image, kind and class, boxes overlapping > 0.7) keeps a dismissed item dismissed
after re-analysis.

An accepted fix stores the image's labels from before and after it in its decision, so undo
works later and from another process, and only while the file still holds what the fix wrote:
later edits are never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

from core.analysis.review_fixes import ACTION_TEXT, StaleIssueError, apply_fix, locate_instance, same_labels
from core.annotation import ImageAnnotation, Instance
from core.atomic_io import atomic_write_text
from core.errors import UserFacingError
from core.geometry import box_iou_xyxy
from core.messages import LabelIssuesFile, ReviewDecision, ReviewDecisionsFile, read_model_file

__all__ = [
    "ACTION_TEXT", "DECISIONS", "DecisionStore", "Review", "ReviewItem", "StaleIssueError", "apply_fix",
    "decision_key", "flagged_image_names", "flagged_images", "load_review", "locate_instance", "read_issues",
    "same_labels",
]

ISSUES_FILE = "label_issues.json"
DECISIONS_FILE = "decisions.json"
DECISIONS = ("accepted", "dismissed")
SAME_ITEM_IOU = 0.7


class AnnotationStore(Protocol):
    def load_annotation(self, image: Path) -> ImageAnnotation: ...

    def save_annotation(self, ann: ImageAnnotation) -> Any: ...


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
        doc = read_model_file(path, LabelIssuesFile, "an analysis result")
    except ValueError as exc:
        detail = str(exc).removeprefix(f"{path}: ")
        raise UserFacingError(f"{path}: not a readable analysis result ({detail}); run the analysis again") from exc
    meta = doc.model_dump(exclude={"issues"})
    return meta, [i.model_dump() for i in doc.issues]


class DecisionStore:
    """review/decisions.json (:class:`core.messages.ReviewDecisionsFile`)."""

    def __init__(self, review_dir: Path):
        self.path = Path(review_dir) / DECISIONS_FILE
        self.decisions: dict[str, dict] = {}
        self.load()

    def load(self) -> None:
        if not self.path.is_file():
            self.decisions = {}
            return
        try:
            doc = read_model_file(self.path, ReviewDecisionsFile, "review decisions")
        except ValueError as exc:
            # never overwrite the person's decisions with an empty set because of one bad byte
            detail = str(exc).removeprefix(f"{self.path}: ")
            raise UserFacingError(f"{self.path}: unreadable review decisions ({detail}); fix or delete the file") from exc
        self.decisions = {k: d.model_dump(exclude_none=True) for k, d in doc.decisions.items()}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = ReviewDecisionsFile(decisions={k: ReviewDecision(**v) for k, v in self.decisions.items()})
        atomic_write_text(self.path, json.dumps(doc.model_dump(exclude_none=True), indent=1))

    def find(self, key: str, rel_image: str, issue: dict) -> dict | None:
        """The decision on this item: same key, else the same image/kind/class with a box
        overlapping > 0.7."""
        hit = self.decisions.get(key)
        if hit is not None:
            return hit
        box = [float(v) for v in issue.get("box", [0, 0, 0, 0])]
        best, best_iou = None, SAME_ITEM_IOU
        for d in self.decisions.values():
            if (d.get("image") != rel_image or d.get("kind") != issue.get("kind")
                    or d.get("class_id") != issue.get("class_id")):
                continue
            iou = box_iou_xyxy(box, [float(v) for v in d.get("box") or [0, 0, 0, 0]])
            if iou > best_iou:
                best, best_iou = d, iou
        return best

    def set(self, key: str, rel_image: str, issue: dict, decision: str, **extra: Any) -> None:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        seq = 1 + max((int(d.get("seq", 0)) for d in self.decisions.values()), default=0)
        self.decisions[key] = {
            "decision": decision, "image": rel_image, "kind": issue.get("kind"),
            "class_id": issue.get("class_id"), "box": issue.get("box"), "issue_id": issue.get("id", ""),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seq": seq, **extra,
        }
        self.save()

    def clear(self, key: str) -> None:
        if self.decisions.pop(key, None) is not None:
            self.save()


def load_review(review_dir: Path, rel_image: Callable[[Path], str]) -> tuple[dict, list[ReviewItem], DecisionStore]:
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


def _labels(records: list[dict] | None, like: ImageAnnotation) -> ImageAnnotation:
    try:
        instances = [Instance.from_dict(r) for r in records or []]
    except ValueError as exc:
        raise UserFacingError(f"{like.image_path.name}: the stored labels of this decision are damaged ({exc})") from exc
    return ImageAnnotation(like.image_path, like.width, like.height, instances, like.group_id)


class Review:
    """The review of one project: items in rank order with their decisions, and the actions.

    ``store`` loads/saves labels (the project, or the GUI's editor-aware store) and may offer
    ``lock()`` (the project writer lock) so read-fix-write is one step for every other writer."""

    def __init__(self, review_dir: Path, rel_image: Callable[[Path], str], store: AnnotationStore):
        self.review_dir = Path(review_dir)
        self.rel_image = rel_image
        self.store = store
        self.meta: dict = {}
        self.items: list[ReviewItem] = []
        self.decisions: DecisionStore | None = None
        self.reload()

    @classmethod
    def of_project(cls, project: Any, store: AnnotationStore | None = None) -> Review:
        return cls(project.review_dir, project.rel_image, store or project)

    def reload(self) -> None:
        self.meta, self.items, self.decisions = load_review(self.review_dir, self.rel_image)

    def _locked(self):
        lock = getattr(self.store, "lock", None)
        return lock() if callable(lock) else contextlib.nullcontext()

    def find(self, ref: str | int) -> ReviewItem:
        """An item by its rank (as `dfine review list` numbers them) or a prefix of its key or id."""
        text = str(ref).strip().lstrip("#")
        if text.isdigit():
            n = int(text)
            if not 1 <= n <= len(self.items):
                raise UserFacingError(f"no item #{n} in the review (it has {len(self.items)})")
            return self.items[n - 1]
        hits = [it for it in self.items if it.key.startswith(text) or str(it.data.get("id", "")).startswith(text)]
        if len(hits) != 1:
            raise UserFacingError(f"{'no' if not hits else len(hits)} review items match {ref!r}; "
                                  "give the rank shown by `dfine review <project> list`")
        return hits[0]

    def _decide(self, it: ReviewItem, decision: str, **extra: Any) -> None:
        assert self.decisions is not None
        self.decisions.set(it.key, self.rel_image(it.image), it.data, decision, **extra)
        it.decision = decision

    def accept(self, it: ReviewItem) -> str:
        """Apply the item's suggested fix to its label file; returns the change in one line."""
        if not it.is_open:
            raise UserFacingError(f"item #{it.rank} is already {it.decision}")
        with self._locked():
            before = self.store.load_annotation(it.image)
            after, text = apply_fix(before, it.data)
            self.store.save_annotation(after)
            written = self.store.load_annotation(it.image)
            self._decide(it, "accepted", change=text, before=[i.to_dict() for i in before.instances],
                         after=[i.to_dict() for i in written.instances])
        return text

    def dismiss(self, it: ReviewItem) -> None:
        """The label is right: the item stays hidden, now and after re-analysis."""
        if not it.is_open:
            raise UserFacingError(f"item #{it.rank} is already {it.decision}")
        self._decide(it, "dismissed")

    def reopen(self, it: ReviewItem) -> None:
        """Forget a dismissal (an accepted fix is reverted with :meth:`undo`)."""
        if it.decision != "dismissed":
            raise UserFacingError(f"item #{it.rank} is not dismissed ({it.decision or 'open'})")
        assert self.decisions is not None
        self.decisions.clear(it.key)
        it.decision = None

    def last_accepted(self) -> ReviewItem | None:
        """The most recently accepted item that can still be undone."""
        assert self.decisions is not None
        best, best_seq = None, -1
        for it in self.items:
            d = self.decisions.decisions.get(it.key)
            if it.decision == "accepted" and d is not None and d.get("before") is not None:
                if int(d.get("seq", 0)) > best_seq:
                    best, best_seq = it, int(d.get("seq", 0))
        return best

    def undo(self, it: ReviewItem | None = None) -> tuple[ReviewItem, str]:
        """Revert an accepted fix (default: the newest) and reopen its item; the labels are put back
        only while the file still holds what the fix wrote."""
        it = it or self.last_accepted()
        if it is None:
            raise UserFacingError("nothing to undo in the review")
        assert self.decisions is not None
        d = self.decisions.decisions.get(it.key)
        if it.decision != "accepted" or d is None:
            raise UserFacingError(f"item #{it.rank} has no accepted fix to undo ({it.decision or 'open'})")
        if d.get("before") is None:
            raise UserFacingError(f"item #{it.rank}: this fix was accepted without its old labels; undo in the editor")
        text = str(d.get("change", ""))
        with self._locked():
            current = self.store.load_annotation(it.image)
            if not same_labels(current, _labels(d.get("after"), current)):
                raise UserFacingError(f"{it.image.name}: the labels were edited after the fix ({text}); "
                                      "undo there instead")
            self.store.save_annotation(_labels(d["before"], current))
            self.decisions.clear(it.key)
        it.decision = None
        return it, text
