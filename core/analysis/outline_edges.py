"""Does a label's outline follow an edge in the image?

A model that finds nothing where a label is leaves two stories: the label is on background
(spurious), or the object is one the model misses (low contrast, half hidden). The model cannot
tell them apart; the pixels can, a little. A real object's outline tends to sit on a colour step,
while an outline drawn on background crosses only what the background has everywhere. So the
colour step across the outline is compared with the same outline moved onto unlabelled parts of
the same image (its own null: textured backgrounds have edges too), as a z-score.

**What z means is learnt from the project, not fixed** (:class:`EdgeCalibration`): on generated
shapes correct labels sit at z 15-135, on photos mostly at 0-4 (soft, textured, occluded
objects). Most labels of a project are right, so the z of the project's own labels is the
"on an object" distribution, and the z of the same outlines moved onto background (every
background placement against the others) the "on background" one. A label's z then gives
P(background | z) = N(z) / (N(z) + L(z)) (equal priors, kernel densities, made non-increasing in
z): near 1 where the project's labels never score that low, ~0.5 where the two overlap (photos:
the pixels say little and the score is left to the model), near 0 where background never scores
that high.

The same pixels arbitrate when label and model disagree about an outline: each outline's z is
read the same way (the label's against the project's labels, the model's against the model's
outlines on labelled objects), and P(the label is the one off) = P_bg(label) P_obj(model) /
(P_bg(label) P_obj(model) + P_obj(label) P_bg(model)) can veto the claim
(core.analysis.find_mistakes.label_off_outline). The share of each outline's length on an edge
(a step over twice the background's mean) is reported in the reason, not used in the score.

No verdict (the score stays as the model alone makes it) where the image cannot be read, the
label is a box, or too little unlabelled background is left for ``MIN_PLACEMENTS`` placements
(an object filling most of the frame). Bounded: the image is scaled to at most ``MAX_SIDE`` on
its long side; the calibration reads at most ``CALIBRATION_LABELS`` labels' images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.annotation import ImageAnnotation, Instance
from core import rle as rle_ops
from core.eval.records import gt_from_annotation

MAX_SIDE = 1024  # px: the check runs on the image scaled to this (z is scale-free)
BLUR_SIGMA = 1.0  # px: grain and JPEG noise are not edges
STEP_PX = 2.0  # colour is compared this far inside and outside the outline
GRID = 9  # GRID x GRID candidate placements of the outline over the image
MAX_OCCUPIED = 0.5  # a placement with more of its outline over labels than this is not background
# (of the others, only the points off the labels count: crowded photos leave few clean spots)
MIN_PLACEMENTS = 6  # fewer background placements than this: no verdict


@dataclass(frozen=True)
class EdgeEvidence:
    z: float  # (oriented step on the outline - mean of it on background placements) / their spread
    step: float  # median colour step across the outline (0-255 scale, after blur)
    background_step: float  # mean of the same over the background placements
    placements: int
    null_z: tuple[float, ...] = ()  # each background placement's z against the others (the null)
    side: float = 0.0  # sqrt of the outline's area at the check's scale, px


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


def oriented_steps(image: np.ndarray, points: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the colour step across the outline less the step along it, the step across) at each
    point: a boundary changes colour across, not along; texture and clutter change it every way."""
    tangents = np.stack([normals[:, 1], -normals[:, 0]], axis=1)
    along = np.linalg.norm(_sample(image, points - STEP_PX * tangents) - _sample(image, points + STEP_PX * tangents), axis=1)
    across = edge_steps(image, points, normals)
    return across - along, across


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
    (placements whose outline crosses ``occupied`` more than ``MAX_OCCUPIED`` are skipped, and
    of the others only the points off ``occupied`` are measured).
    ``image``: float32, blurred; None when too few background placements fit."""
    points, normals = outline_samples(polygons)
    if len(points) < 8:
        return None
    h, w = image.shape[:2]
    lo, hi = points.min(axis=0), points.max(axis=0)
    null, null_across = [], []
    for dx in np.linspace(-lo[0], w - 1 - hi[0], GRID):
        for dy in np.linspace(-lo[1], h - 1 - hi[1], GRID):
            moved = points + (dx, dy)
            q = np.round(moved).astype(int)
            q[:, 0] = q[:, 0].clip(0, w - 1)
            q[:, 1] = q[:, 1].clip(0, h - 1)
            free = occupied[q[:, 1], q[:, 0]] == 0
            if free.mean() < 1.0 - MAX_OCCUPIED:
                continue
            oriented, across = oriented_steps(image, moved[free], normals[free])
            null.append(float(np.median(oriented)))
            null_across.append(float(np.median(across)))
    if len(null) < MIN_PLACEMENTS:
        return None
    oriented, across = oriented_steps(image, points, normals)
    step, bg = float(np.median(oriented)), np.asarray(null)
    z = (step - bg.mean()) / max(float(bg.std()), 1.0)  # >= 1 grey level: a flat background is not infinitely sure
    n = len(bg)  # leave-one-out: each placement against the others, as the label is against all
    rest_mean = (bg.sum() - bg) / (n - 1)
    rest_var = np.maximum((np.sum(bg ** 2) - bg ** 2) / (n - 1) - rest_mean ** 2, 0.0) * (n - 1) / n
    null_z = (bg - rest_mean) / np.maximum(np.sqrt(rest_var), 1.0)
    area = sum(abs(float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))) / 2
               for p in (np.asarray(q, np.float64).reshape(-1, 2) for q in polygons) if len(p) >= 3)
    return EdgeEvidence(float(z), float(np.median(across)), float(np.mean(null_across)), len(null),
                        tuple(float(v) for v in null_z), float(np.sqrt(area)))


@dataclass(frozen=True)
class OutlineComparison:
    label_cover: float  # share of the label's outline on an edge
    model_cover: float  # share of the model's outline on an edge
    edge_level: float  # the colour step counted as an edge: 2x the background's typical step



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
        assert self._image is not None  # loaded by of()
        level = 2.0 * edge.background_step
        pts_l, nrm_l = outline_samples(self._outline(instance))
        pts_m, nrm_m = outline_samples(model)
        if len(pts_m) < 8:
            return None
        return OutlineComparison(float(np.mean(edge_steps(self._image, pts_l, nrm_l) > level)),
                                 float(np.mean(edge_steps(self._image, pts_m, nrm_m) > level)), level)

    def z_of(self, polygons: Sequence[np.ndarray]) -> EdgeEvidence | None:
        """Edge evidence for any outline in image pixels (the model's mask where nothing is labelled)."""
        if not self._ready:
            self._load()
        if self._image is None or self._occupied is None or not polygons:  # both set by _load
            return None
        return outline_edge_z(self._image, [np.asarray(p, np.float64).reshape(-1, 2) * self._scale for p in polygons],
                              self._occupied)

    def of(self, instance: int) -> EdgeEvidence | None:
        """Edge evidence for label ``instance`` (polygon labels only: a box's sides do not follow
        the object's outline)."""
        if not self._ready:
            self._load()
        if self._image is None or self._occupied is None or not self._ann.instances[instance].polygons:
            return None
        if instance not in self._cache:
            self._cache[instance] = outline_edge_z(self._image, self._outline(instance), self._occupied)
        return self._cache[instance]


CALIBRATION_LABELS = 200  # labels (spread over the images) whose outlines calibrate the edge z
SIZE_GROUPS = 4  # at most this many object-size groups, each with its own z distributions
SIZE_GROUP_MIN = 40  # outlines per size group at least
MIN_CALIBRATION_LABELS = 1  # fewer labels with a verdict: no calibration, no verdict


@dataclass
class EdgeCalibration:
    """The project's edge z over its own labels (``label_z``) and over the same outlines moved
    onto background (``null_z``): P(background | z) from the two (module docstring)."""

    label_z: np.ndarray
    null_z: np.ndarray
    model_z: np.ndarray | None = None  # the model's outlines on labelled objects (None: use label_z)
    label_side: np.ndarray | None = None  # each label's side (px), for z by object size
    null_side: np.ndarray | None = None  # the side of the outline each null_z was moved from
    model_side: np.ndarray | None = None
    _curves: dict = field(default_factory=dict)

    def _size_group(self, sides: np.ndarray | None, side: float | None) -> tuple[float, float]:
        """The side range (px) of the object outlines compared with one of this side: the
        project's outlines in SIZE_GROUPS quantile groups of at least SIZE_GROUP_MIN (a small
        outline's z is noisier: a 10 px label is judged against the project's small labels)."""
        if side is None or sides is None or not len(sides):
            return (0.0, np.inf)
        groups = int(np.clip(len(sides) // SIZE_GROUP_MIN, 1, SIZE_GROUPS))
        if groups == 1:
            return (0.0, np.inf)
        edges = np.quantile(sides, np.linspace(0, 1, groups + 1))
        edges[0], edges[-1] = 0.0, np.inf
        k = int(np.clip(np.searchsorted(edges, side, side="right") - 1, 0, groups - 1))
        return (float(edges[k]), float(edges[k + 1]))

    def background(self, z: float, model: bool = False, side: float | None = None) -> float:
        """P(an outline with this z lies on background), equal priors; monotone in z. ``model``:
        the outline is a model's mask, compared with the model's masks on labelled objects;
        ``side``: compared with outlines of about its size (and their background placements)."""
        model_z = self.model_z
        use_model = model and model_z is not None and len(model_z) >= 2
        objects, sides = (model_z, self.model_side) if use_model and model_z is not None else (self.label_z, self.label_side)
        lo_s, hi_s = self._size_group(sides, side)
        if sides is not None and (lo_s > 0 or np.isfinite(hi_s)):
            objects = objects[(sides >= lo_s) & (sides < hi_s)]
        null_z = self.null_z
        if self.null_side is not None and (lo_s > 0 or np.isfinite(hi_s)):
            near = (self.null_side >= lo_s) & (self.null_side < hi_s)
            if near.sum() >= MIN_PLACEMENTS:
                null_z = self.null_z[near]
        key = (use_model, lo_s, hi_s)
        if key not in self._curves:
            from scipy.stats import gaussian_kde

            # densities on a signed-log scale (z of real outlines runs to 100+ with a long tail that
            # would widen a kernel over everything; the ratio of two densities is the same on any
            # monotone rescaling of z)
            obj_t, null_t = _slog(objects), _slog(null_z)
            lo = min(obj_t.min(), null_t.min()) - 1.0
            hi = max(obj_t.max(), null_t.max()) + 1.0
            grid = np.linspace(lo, hi, 512)
            lab = _kde(obj_t, grid, gaussian_kde)
            null = _kde(null_t, grid, gaussian_kde)
            from scipy.optimize import isotonic_regression

            mass = null + lab
            p = np.where(mass > 1e-300, null / np.maximum(mass, 1e-300), 0.5)
            # more edge is never more "background": the nearest non-increasing curve, weighted by
            # where outlines are (the far tails, where neither density has data, count for little)
            fit = isotonic_regression(p, weights=mass / mass.sum() + 1e-12, increasing=False).x
            self._curves[key] = (grid, fit)
        grid, fit = self._curves[key]
        return float(np.interp(_slog(np.asarray([z]))[0], grid, fit))

    def summary(self) -> dict:
        q = (0.05, 0.25, 0.5, 0.75, 0.95)
        out = {"labels": len(self.label_z), "label_z_quantiles": [round(float(v), 2) for v in np.quantile(self.label_z, q)],
               "background_z_quantiles": [round(float(v), 2) for v in np.quantile(self.null_z, q)]}
        if self.model_z is not None and len(self.model_z):
            out["model_z_quantiles"] = [round(float(v), 2) for v in np.quantile(self.model_z, q)]
            out["model_outlines"] = len(self.model_z)
        return out


def _slog(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, float)
    return np.sign(z) * np.log1p(np.abs(z))


def _kde(x: np.ndarray, grid: np.ndarray, gaussian_kde) -> np.ndarray:
    """Density of ``x`` on ``grid`` (Scott's bandwidth; at least 0.5 wide: a handful of equal
    values is not a spike)."""
    x = np.asarray(x, float)
    if len(x) < 2 or float(np.std(x)) < 1e-6:
        sd = 0.5
        return np.exp(-0.5 * ((grid[:, None] - x[None, :]) / sd) ** 2).sum(1) / (len(x) * sd * np.sqrt(2 * np.pi))
    kde = gaussian_kde(x)
    bw = float(np.sqrt(kde.covariance[0, 0]))
    if bw < 0.5:
        kde.set_bandwidth(kde.factor * 0.5 / bw)
    return kde(grid)


def calibrate_edges(annotations: Sequence[ImageAnnotation], read: Callable[[Path], np.ndarray],
                    max_labels: int = CALIBRATION_LABELS, predictions: Sequence | None = None,
                    min_score: float = 0.05) -> EdgeCalibration | None:
    """The project's edge z distributions from up to ``max_labels`` polygon labels spread evenly
    over the images (None when fewer than ``MIN_CALIBRATION_LABELS`` give a verdict), and, given
    predictions with masks, from as many of the model's masks that overlap a label (IoU >= 0.5)."""
    slots = [(n, k) for n, a in enumerate(annotations) for k, inst in enumerate(a.instances) if inst.polygons]
    if len(slots) > max_labels:
        slots = [slots[int(i)] for i in np.linspace(0, len(slots) - 1, max_labels).round()]
    label_z, null_z, label_side, null_side = [], [], [], []
    current: tuple[int, ImageEdges] | None = None
    for n, k in slots:
        if current is None or current[0] != n:
            current = (n, ImageEdges(annotations[n], read))
        ev = current[1].of(k)
        if ev is not None and np.isfinite(ev.z):
            label_z.append(ev.z)
            null_z += list(ev.null_z)
            label_side.append(ev.side)
            null_side += [ev.side] * len(ev.null_z)
    if len(label_z) < MIN_CALIBRATION_LABELS or len(null_z) < MIN_PLACEMENTS:
        return None
    model = _model_outline_z(annotations, read, predictions, max_labels, min_score) if predictions is not None else None
    return EdgeCalibration(np.asarray(label_z), np.asarray(null_z), None if model is None else model[0],
                           np.asarray(label_side), np.asarray(null_side), None if model is None else model[1])


def _model_outline_z(annotations, read, predictions, max_outlines: int, min_score: float
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """z of the model's masks on labelled objects (mask IoU >= 0.5 with a label), spread over the images."""
    from core.geometry import mask_to_polygons

    rows = []
    for n, (ann, pred) in enumerate(zip(annotations, predictions)):
        if pred is None or pred.masks is None or not len(pred) or not ann.instances:
            continue
        keep = np.flatnonzero(pred.scores >= min_score)
        if not len(keep):
            continue
        gt = gt_from_annotation(ann, with_masks=True)
        assert gt.masks is not None  # with_masks=True
        iou = rle_ops.mask_iou([pred.masks[i] for i in keep], gt.masks)
        rows += [(n, int(keep[i])) for i in np.flatnonzero(iou.max(axis=1) >= 0.5)] if iou.size else []
    if len(rows) > max_outlines:
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, max_outlines).round()]
    out: list[float] = []
    sides: list[float] = []
    current: tuple[int, ImageEdges] | None = None
    for n, i in rows:
        if current is None or current[0] != n:
            current = (n, ImageEdges(annotations[n], read))
        outers, holes = mask_to_polygons(rle_ops.decode([predictions[n].masks[i]])[0], 0.7, 4.0)
        ev = current[1].z_of(list(outers) + list(holes))
        if ev is not None and np.isfinite(ev.z):
            out.append(ev.z)
            sides.append(ev.side)
    return (np.asarray(out), np.asarray(sides)) if len(out) >= MIN_CALIBRATION_LABELS else None
