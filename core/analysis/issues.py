"""`LabelIssue`: one likely annotation mistake, as the review list shows it."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Literal

IssueKind = Literal["missing_label", "wrong_class", "bad_geometry", "duplicate_label", "spurious_label",
                    "out_of_image", "degenerate_geometry"]
ISSUE_KINDS: tuple[str, ...] = ("missing_label", "wrong_class", "bad_geometry", "duplicate_label",
                                "spurious_label", "out_of_image", "degenerate_geometry")


@dataclass
class LabelIssue:
    """A ranked suspicion about one label (or a missing one).

    ``instance`` indexes ``ImageAnnotation.instances`` (None for a missing label);
    ``box`` is the region to look at (xyxy pixels); ``evidence`` carries the
    numbers behind the suspicion (prediction score, IoU, classes); ``fix`` is what
    applying the suggestion would do: {"action": "add" | "set_class" |
    "replace_geometry" | "delete" | "clip", plus "class_id", "polygons" (list of
    flat [x1, y1, ...] pixel lists) and/or "box"}. ``score`` in [0, 1] ranks issues.
    """

    kind: IssueKind
    image: str
    instance: int | None
    box: list[float]
    class_id: int | None
    score: float
    evidence: dict = field(default_factory=dict)
    fix: dict = field(default_factory=dict)
    message: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ISSUE_KINDS:
            raise ValueError(f"unknown issue kind {self.kind!r}; expected one of {ISSUE_KINDS}")
        self.box = [round(float(v), 2) for v in self.box]
        self.score = float(self.score)
        if not self.id:  # stable across runs so review decisions can refer to it
            key = f"{self.kind}|{self.image}|{self.instance}|{self.box}"
            self.id = hashlib.sha1(key.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return asdict(self)
