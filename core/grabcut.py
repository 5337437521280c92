"""Box -> object mask with OpenCV GrabCut, refined with positive/negative clicks.

Why GrabCut: it needs no model and no download, runs in tens of milliseconds on a crop,
and turns one dragged box into a mask good enough that a few clicks (not dozens of
polygon vertices) finish the object. Only a crop around the box is processed (a margin
gives the background model real background), large crops are downscaled to
``max_pixels`` first, and OpenCV's RNG is seeded so the same input always gives the
same mask. Pure numpy/OpenCV: the GUI turns the mask into polygons.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from core.errors import UserFacingError

MARGIN = 0.15  # crop margin around the box, fraction of the box size (at least 8 px)
MAX_PIXELS = 400_000  # larger crops are downscaled for GrabCut, the mask is scaled back
CLICK_RADIUS = 0.03  # radius of a refinement click, fraction of the box diagonal (at least 2 px)
ITERATIONS = 5  # GrabCut iterations per run
CORE = 0.0  # > 0: start from the box's inscribed ellipse (scaled by this) as probable object
KEEP_FRACTION = 0.05  # connected parts smaller than this x the largest are dropped (unless clicked)
_NO_RECT = (0, 0, 0, 0)  # grabCut reads rect only with GC_INIT_WITH_RECT (None is accepted too, not by the stubs)


def grabcut_mask(image: np.ndarray, box: Sequence[float], positive: Sequence[Sequence[float]] = (),
                 negative: Sequence[Sequence[float]] = (), iterations: int = ITERATIONS, seed: int = 0,
                 margin: float | None = None, core: float | None = None) -> np.ndarray:
    """Bool mask (image size) of the object inside ``box`` (xyxy pixels).

    ``positive``/``negative`` are (x, y) clicks that are object / not object; a positive
    click outside the box still counts (the box is a hint, the clicks are hard labels).
    ``margin`` (fraction of the box, default MARGIN) is the background the crop keeps around the
    box; ``core`` (default CORE), when set, starts GrabCut from the ellipse inscribed in the box
    scaled by ``core`` as probable object and the box's corners as probable background (instead
    of the whole box as probable object).
    """
    margin = MARGIN if margin is None else margin
    core = CORE if core is None else core
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UserFacingError(f"GrabCut needs a BGR uint8 image, got shape {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0.0), w), min(max(x1, 0.0), w)))
    y0, y1 = sorted((min(max(y0, 0.0), h), min(max(y1, 0.0), h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise UserFacingError(f"box {tuple(round(v, 1) for v in box)} is under 2 px inside the "
                              f"{w}x{h} image: drag a larger box")
    mx = max(8.0, margin * (x1 - x0))
    my = max(8.0, margin * (y1 - y0))
    cx0, cy0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    cx1, cy1 = int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my)))
    for px, py in positive:  # a positive click outside the margin widens the crop
        cx0, cy0 = min(cx0, int(max(0, px - 8))), min(cy0, int(max(0, py - 8)))
        cx1, cy1 = max(cx1, int(min(w, px + 9))), max(cy1, int(min(h, py + 9)))
    crop = image[cy0:cy1, cx0:cx1]
    scale = min(1.0, float(np.sqrt(MAX_PIXELS / max(1, crop.shape[0] * crop.shape[1]))))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    ch, cw = crop.shape[:2]

    def to_crop(x: float, y: float) -> tuple[float, float]:
        return (x - cx0) * scale, (y - cy0) * scale

    rx0, ry0 = to_crop(x0, y0)
    rx1, ry1 = to_crop(x1, y1)
    rect = (int(np.floor(rx0)), int(np.floor(ry0)),
            max(1, int(np.ceil(rx1)) - int(np.floor(rx0))), max(1, int(np.ceil(ry1)) - int(np.floor(ry0))))
    if rect[0] == 0 and rect[1] == 0 and rect[2] >= cw and rect[3] >= ch:
        rect = (1, 1, cw - 2, ch - 2)  # GrabCut needs some background: the box is the whole image
    mask = np.zeros((ch, cw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    if core:
        mask[rect[1]:rect[1] + rect[3], rect[0]:rect[0] + rect[2]] = cv2.GC_PR_BGD
        centre = (round(rect[0] + rect[2] / 2), round(rect[1] + rect[3] / 2))
        axes = (max(1, round(core * rect[2] / 2)), max(1, round(core * rect[3] / 2)))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, int(cv2.GC_PR_FGD), -1)
        cv2.grabCut(crop, mask, _NO_RECT, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    else:
        cv2.grabCut(crop, mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    if len(positive) or len(negative):
        r = max(2, round(CLICK_RADIUS * float(np.hypot(x1 - x0, y1 - y0)) * scale))
        for pts, value in ((negative, cv2.GC_BGD), (positive, cv2.GC_FGD)):
            for px, py in pts:
                qx, qy = to_crop(float(px), float(py))
                cv2.circle(mask, (round(qx), round(qy)), r, int(value), -1)
        cv2.setRNGSeed(seed)
        cv2.grabCut(crop, mask, _NO_RECT, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1.0:
        fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
    fg = _drop_specks(fg, [((px - cx0), (py - cy0)) for px, py in positive])
    out = np.zeros((h, w), bool)
    out[cy0:cy1, cx0:cx1] = fg.astype(bool)
    return out


def _drop_specks(fg: np.ndarray, keep_points: list[tuple[float, float]]) -> np.ndarray:
    """Keep the main part(s): components at least KEEP_FRACTION of the largest, or clicked."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 2:
        return fg
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = {k + 1 for k, a in enumerate(areas) if a >= KEEP_FRACTION * areas.max()}
    for px, py in keep_points:
        ix, iy = int(px), int(py)
        if 0 <= iy < labels.shape[0] and 0 <= ix < labels.shape[1] and labels[iy, ix] > 0:
            keep.add(int(labels[iy, ix]))
    return np.isin(labels, sorted(keep)).astype(np.uint8)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def next_click(pred: np.ndarray, target: np.ndarray) -> tuple[tuple[float, float], bool] | None:
    """Where a person would click next to fix ``pred`` towards ``target``: the interior-most
    pixel of the largest error region (distance transform), positive when it is missed object.
    Used by the benchmark's simulated user (the standard interactive-segmentation protocol)."""
    missed = (target & ~pred).astype(np.uint8)
    extra = (pred & ~target).astype(np.uint8)
    if not missed.any() and not extra.any():
        return None
    best = None
    for err, positive in ((missed, True), (extra, False)):
        if not err.any():
            continue
        d = cv2.distanceTransform(np.pad(err, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(d)), d.shape)
        if best is None or d[y, x] > best[0]:
            best = (float(d[y, x]), (x + 0.5, y + 0.5), positive)
    assert best is not None  # one error map is non-empty (checked above)
    return best[1], best[2]
