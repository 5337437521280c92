"""Does a label's outline follow an edge in the image?

A model that finds nothing where a label is leaves two stories: the label is on background
(spurious), or the object is one the model misses (low contrast, half hidden). The model cannot
tell them apart; the pixels can. A real object's outline sits on a colour step almost all the way
round, while an outline drawn on background crosses only what the background has everywhere. So
the colour step across the outline is compared with the same outline moved onto unlabelled parts
of the same image (its own null: textured backgrounds have edges too), as a z-score. On the label
mistakes benchmark every spurious label scores z < 2 and all but the moved outlines of real
objects z > 7 (benchmarks/README.md, "Label mistakes").

The same pixels arbitrate when label and model disagree about an outline: the share of each
outline's length that lies on an edge (a colour step over twice the background's typical step)
says which of the two follows the object. On the benchmark's fold models, a weak model's blobby
mask lies on the edge for 10-90 % of its length where the correct label does for 72-100 %; a
label moved off its object does for 7-15 % against the model's 89-100 %.

No verdict (the score stays as the model alone makes it) where the image cannot be read, the
label is a box, or too little unlabelled background is left for ``MIN_PLACEMENTS`` placements
(an object filling most of the frame). Bounded: the image is scaled to at most ``MAX_SIDE`` on
its long side, and only images with a label the model does not support or outlines differently
are read at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.annotation import ImageAnnotation, Instance

MAX_SIDE = 1024  # px: the check runs on the image scaled to this (z is scale-free)
BLUR_SIGMA = 1.0  # px: grain and JPEG noise are not edges
STEP_PX = 2.0  # colour is compared this far inside and outside the outline
GRID = 9  # GRID x GRID candidate placements of the outline over the image
MAX_OCCUPIED = 0.1  # a placement whose outline runs over labels more than this is not background
MIN_PLACEMENTS = 6  # fewer background placements than this: no verdict


@dataclass(frozen=True)
class EdgeEvidence:
    z: float  # (step on the outline - mean step on background placements) / their spread
    step: float  # median colour step across the outline (0-255 scale, after blur)
    background_step: float  # mean of the same over the background placements
    placements: int


def outline_samples(polygons: Sequence[np.ndarray], spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``spacing`` px along closed polygons and their unit normals ([N, 2] each)."""
    pts, normals = [], []
    for poly in polygons:
        a = np.asarray(poly, np.float64).reshape(-1, 2)
        d = np.roll(a, -1, axis=0) - a
        length = np.hypot(d[:, 0], d[:, 1])
        for start, step, n_len in zip(a, d, length):
            if n_len < 1e-9:
                continue
            n = max(1, int(n_len / spacing))
            t = (np.arange(n) + 0.5) / n
            pts.append(start + t[:, None] * step)
            normals.append(np.repeat([[-step[1] / n_len, step[0] / n_len]], n, axis=0))
    if not pts:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.concatenate(pts), np.concatenate(normals)


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    got = cv2.remap(image, xy[:, 0].astype(np.float32)[None], xy[:, 1].astype(np.float32)[None],
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return got.reshape(len(xy), -1)


def edge_steps(image: np.ndarray, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Colour distance between the two sides of the outline at each point."""
    inside, outside = _sample(image, points - STEP_PX * normals), _sample(image, points + STEP_PX * normals)
    return np.linalg.norm(inside - outside, axis=1)


def edge_step(image: np.ndarray, points: np.ndarray, normals: np.ndarray) -> float:
    """Median colour step across the outline (median: a stripe crossing the outline here and
    there is not an edge along it)."""
    return float(np.median(edge_steps(image, points, normals)))


def occupied_mask(instances: Sequence[Instance], height: int, width: int, scale: float) -> np.ndarray:
    """Where labels are (their filled outer polygons, or boxes), at the check's scale."""
    occ = np.zeros((height, width), np.uint8)
    for inst in instances:
        polys = [np.asarray(p, np.float64).reshape(-1, 2) for p in inst.polygons]
        if not polys and inst.box is not None:
            x0, y0, x1, y1 = inst.box
            polys = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)]
        for p in polys:
            if len(p) >= 3 and np.isfinite(p).all():
                cv2.fillPoly(occ, [np.round(p * scale).astype(np.int32)], 1)
    return occ


def outline_edge_z(image: np.ndarray, polygons: Sequence[np.ndarray], occupied: np.ndarray) -> EdgeEvidence | None:
    """The outline's edge strength against the same outline placed on a grid of background spots
    (placements whose outline crosses ``occupied`` more than ``MAX_OCCUPIED`` are skipped).
    ``image``: float32, blurred; None when too few background placements fit."""
    points, normals = outline_samples(polygons)
    if len(points) < 8:
        return None
    h, w = image.shape[:2]
    lo, hi = points.min(axis=0), points.max(axis=0)
    null = []
    for dx in np.linspace(-lo[0], w - 1 - hi[0], GRID):
        for dy in np.linspace(-lo[1], h - 1 - hi[1], GRID):
            moved = points + (dx, dy)
            q = np.round(moved).astype(int)
            q[:, 0] = q[:, 0].clip(0, w - 1)
            q[:, 1] = q[:, 1].clip(0, h - 1)
            if occupied[q[:, 1], q[:, 0]].mean() > MAX_OCCUPIED:
                continue
            null.append(edge_step(image, moved, normals))
    if len(null) < MIN_PLACEMENTS:
        return None
    step, bg = edge_step(image, points, normals), np.asarray(null)
    z = (step - bg.mean()) / max(float(bg.std()), 1.0)  # >= 1 grey level: a flat background is not infinitely sure
    return EdgeEvidence(float(z), step, float(bg.mean()), len(null))


@dataclass(frozen=True)
class OutlineComparison:
    label_cover: float  # share of the label's outline on an edge
    model_cover: float  # share of the model's outline on an edge
    edge_level: float  # the colour step counted as an edge: 2x the background's typical step

    def outline_factor(self) -> float:
        """How much of a "bad outline" claim the pixels leave standing: all of it unless the
        label's outline follows the edges better than the model's, none when better by 0.4 of its
        length or more; all of it too when neither follows edges (no verdict: objects told apart
        by texture, not colour)."""
        if max(self.label_cover, self.model_cover) < 0.5:
            return 1.0
        return float(np.clip(1.0 - (self.label_cover - self.model_cover) / 0.4, 0.0, 1.0))


class ImageEdges:
    """The edge check for one image's labels, reading the image only when first asked; an image
    that cannot be read (or does not match its label file's size) gives no verdict."""

    def __init__(self, ann: ImageAnnotation, read: Callable[[Path], np.ndarray]):
        self._ann, self._read = ann, read
        self._ready = False
        self._image: np.ndarray | None = None
        self._occupied: np.ndarray | None = None
        self._scale = 1.0
        self._cache: dict[int, EdgeEvidence | None] = {}
        self.skipped: str | None = None  # why there is no verdict for this image

    def _load(self) -> None:
        self._ready = True
        try:
            img = self._read(Path(self._ann.image_path))
        except Exception as exc:  # an unreadable image only costs this check
            self.skipped = f"image not readable ({exc})"
            return
        if img.shape[:2] != (self._ann.height, self._ann.width):
            self.skipped = f"image is {img.shape[1]}x{img.shape[0]}, labels say {self._ann.width}x{self._ann.height}"
            return
        self._scale = min(1.0, MAX_SIDE / max(img.shape[:2]))
        if self._scale < 1.0:
            img = cv2.resize(img, None, fx=self._scale, fy=self._scale, interpolation=cv2.INTER_AREA)
        self._image = cv2.GaussianBlur(img.astype(np.float32), (0, 0), BLUR_SIGMA)
        self._occupied = occupied_mask(self._ann.instances, img.shape[0], img.shape[1], self._scale)

    def _outline(self, instance: int) -> list[np.ndarray]:
        inst = self._ann.instances[instance]
        return [np.asarray(p, np.float64).reshape(-1, 2) * self._scale for p in list(inst.polygons) + list(inst.holes)]

    def compare(self, instance: int, model_polygons: Sequence[np.ndarray]) -> OutlineComparison | None:
        """Which of label ``instance``'s outline and the model's (image pixels) lies on the
        image's edges; None without a verdict (no polygons, unreadable image, crowded image)."""
        edge = self.of(instance)
        model = [np.asarray(p, np.float64).reshape(-1, 2) * self._scale for p in model_polygons]
        if edge is None or not model:
            return None
        level = 2.0 * edge.background_step
        pts_l, nrm_l = outline_samples(self._outline(instance))
        pts_m, nrm_m = outline_samples(model)
        if len(pts_m) < 8:
            return None
        return OutlineComparison(float(np.mean(edge_steps(self._image, pts_l, nrm_l) > level)),
                                 float(np.mean(edge_steps(self._image, pts_m, nrm_m) > level)), level)

    def of(self, instance: int) -> EdgeEvidence | None:
        """Edge evidence for label ``instance`` (polygon labels only: a box's sides do not follow
        the object's outline)."""
        if not self._ready:
            self._load()
        if self._image is None or not self._ann.instances[instance].polygons:
            return None
        if instance not in self._cache:
            self._cache[instance] = outline_edge_z(self._image, self._outline(instance), self._occupied)
        return self._cache[instance]
