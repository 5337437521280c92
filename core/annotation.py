"""The in-memory label model shared by the store, the formats, the GUI and training.

Coordinates are image pixels (float), origin at the top-left corner of the
top-left pixel, so a polygon vertex at (w, h) touches the bottom-right corner.
Normalisation to [0, 1] happens only at the YOLO-txt boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Source = Literal["human", "model"]


def as_polygon(points: object) -> np.ndarray:
    """Return points as a float64 (N, 2) array; accepts flat [x1, y1, ...] or nested lists."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1:
        if arr.size % 2:
            raise ValueError(f"polygon has an odd number of coordinates ({arr.size})")
        arr = arr.reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"polygon must be (N, 2), got shape {arr.shape}")
    return arr


@dataclass
class Instance:
    """One labelled object.

    A segmentation instance has one or more outer ``polygons`` (several for a
    multi-part object, as COCO polygon lists allow) and optional ``holes``. A
    detection-only instance has no polygons and a ``box``. ``box`` is always
    available through :meth:`bbox` (derived from the polygons when not set).
    """

    class_id: int
    polygons: list[np.ndarray] = field(default_factory=list)
    holes: list[np.ndarray] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None  # xyxy pixels, for box-only instances
    group_id: int | None = None
    source: Source = "human"
    score: float | None = None  # model confidence when source == "model"
    iscrowd: bool = False

    def __post_init__(self) -> None:
        self.polygons = [as_polygon(p) for p in self.polygons]
        self.holes = [as_polygon(p) for p in self.holes]
        if self.box is not None:
            self.box = tuple(float(v) for v in self.box)  # type: ignore[assignment]
        if not self.polygons and self.box is None:
            raise ValueError("an instance needs a polygon or a box")

    @property
    def is_box(self) -> bool:
        return not self.polygons

    def bbox(self) -> tuple[float, float, float, float]:
        """xyxy in pixels: the given box, else the bounds of all polygon parts."""
        if self.box is not None and not self.polygons:
            return self.box
        pts = np.concatenate(self.polygons, axis=0)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return (float(x0), float(y0), float(x1), float(y1))

    def area(self) -> float:
        """Polygon area (shoelace, parts minus holes), or box area for box-only instances."""
        if self.is_box:
            x0, y0, x1, y1 = self.bbox()
            return max(0.0, x1 - x0) * max(0.0, y1 - y0)
        return sum(_shoelace(p) for p in self.polygons) - sum(_shoelace(h) for h in self.holes)

    def copy(self) -> Instance:
        return Instance(
            class_id=self.class_id,
            polygons=[p.copy() for p in self.polygons],
            holes=[h.copy() for h in self.holes],
            box=self.box,
            group_id=self.group_id,
            source=self.source,
            score=self.score,
            iscrowd=self.iscrowd,
        )

    def to_dict(self) -> dict:
        """JSON-safe copy (review decisions keep labels this way so a fix can be undone later)."""
        return {"class_id": int(self.class_id), "polygons": [p.ravel().tolist() for p in self.polygons],
                "holes": [h.ravel().tolist() for h in self.holes],
                "box": None if self.box is None else [float(v) for v in self.box],
                "group_id": self.group_id, "source": self.source, "score": self.score,
                "iscrowd": bool(self.iscrowd)}

    @classmethod
    def from_dict(cls, d: dict) -> Instance:
        """Inverse of :meth:`to_dict` (ValueError on a malformed record)."""
        try:
            return cls(class_id=int(d["class_id"]),
                       polygons=[np.asarray(p, np.float64).reshape(-1, 2) for p in d.get("polygons") or []],
                       holes=[np.asarray(h, np.float64).reshape(-1, 2) for h in d.get("holes") or []],
                       box=None if d.get("box") is None else tuple(d["box"]), group_id=d.get("group_id"),
                       source=d.get("source") or "human", score=d.get("score"), iscrowd=bool(d.get("iscrowd")))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a label record ({exc}): {str(d)[:80]!r}") from None

    def same_geometry(self, other: Instance, tol: float = 1e-6) -> bool:
        if self.class_id != other.class_id or len(self.polygons) != len(other.polygons):
            return False
        if self.is_box:
            return np.allclose(self.bbox(), other.bbox(), atol=tol)
        return all(
            a.shape == b.shape and np.allclose(a, b, atol=tol)
            for a, b in zip(self.polygons, other.polygons)
        )


def _shoelace(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


@dataclass
class ImageAnnotation:
    """All labels of one image. ``width``/``height`` are of the image as displayed
    (after EXIF orientation), which is the frame the pixel coordinates live in."""

    image_path: Path
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)
    group_id: str | None = None  # e.g. capture batch; splits never separate a group
    # True when ``instances`` holds the image's model proposals too (source="model", loaded for the
    # editor): saving then replaces the stored proposals with these. See core.proposals.
    proposals_included: bool = False

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{self.image_path}: image size must be positive, got {self.width}x{self.height}")

    def copy(self) -> ImageAnnotation:
        return ImageAnnotation(self.image_path, self.width, self.height,
                               [i.copy() for i in self.instances], self.group_id, self.proposals_included)
