"""COCO run-length masks: the one form masks take once they leave the model.

A full 1920x1080 bool mask is 2 MB; its RLE is typically a few hundred bytes.
Everything downstream of the model (metrics, COCO AP, error analysis) works on
RLEs so that evaluation memory does not grow with image count or resolution.
Thin wrappers over ``pycocotools.mask`` (the reference implementation of COCO).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from core import geometry

Rle = dict  # {"size": [h, w], "counts": bytes | str}


def encode(masks: np.ndarray) -> list[Rle]:
    """bool/uint8 [K,H,W] (or [H,W]) -> K RLEs. Encodes one mask at a time so the
    Fortran-order copy pycocotools needs is never larger than one mask."""
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"masks must be [K,H,W] or [H,W], got shape {m.shape}")
    out = []
    for k in range(m.shape[0]):
        one = np.asfortranarray(m[k].astype(np.uint8, copy=False)[:, :, None])
        out.append(mask_utils.encode(one)[0])
    return out


def decode(rles: Sequence[Rle]) -> np.ndarray:
    """RLEs -> bool [K,H,W]. Only for a few masks at a time (drawing, tests)."""
    if len(rles) == 0:
        raise ValueError("decode needs at least one RLE (the size comes from it)")
    return np.ascontiguousarray(mask_utils.decode(list(rles)).transpose(2, 0, 1).astype(bool))


def empty(height: int, width: int) -> Rle:
    """An all-zero mask, without allocating the dense array."""
    return mask_utils.frPyObjects(np.zeros((1, 4)), height, width)[0]


def area(rles: Sequence[Rle]) -> np.ndarray:
    """Pixel counts, float64 [K]."""
    if len(rles) == 0:
        return np.zeros(0, np.float64)
    return np.asarray(mask_utils.area(list(rles)), dtype=np.float64)


def to_xyxy(rles: Sequence[Rle]) -> np.ndarray:
    """Tight pixel boxes xyxy float64 [K,4] (empty masks give zeros)."""
    if len(rles) == 0:
        return np.zeros((0, 4), np.float64)
    b = np.asarray(mask_utils.toBbox(list(rles)), dtype=np.float64).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return b


def mask_iou(dt: Sequence[Rle], gt: Sequence[Rle], iscrowd: Sequence[bool] | None = None) -> np.ndarray:
    """IoU [D,G] between RLEs. For a crowd GT the value is intersection / area(dt),
    the COCO rule that lets detections inside a crowd region be ignored."""
    if len(dt) == 0 or len(gt) == 0:
        return np.zeros((len(dt), len(gt)), np.float64)
    crowd = [int(bool(c)) for c in (iscrowd if iscrowd is not None else [0] * len(gt))]
    return np.asarray(mask_utils.iou(list(dt), list(gt), crowd), dtype=np.float64).reshape(len(dt), len(gt))


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2:] -= b[:, :2]
    return b


def box_iou(dt_xyxy: np.ndarray, gt_xyxy: np.ndarray, iscrowd: Sequence[bool] | None = None) -> np.ndarray:
    """Box IoU [D,G] with COCO's continuous-coordinate convention and crowd rule
    (``core.geometry.box_iou``, the one box IoU; equal to pycocotools', tested)."""
    return geometry.box_iou(dt_xyxy, gt_xyxy, iscrowd)


GEOMETRY_MARGIN = 4.0  # coordinates may lie this many image sizes outside the image, no further


def check_geometry(values: Sequence[float] | np.ndarray, height: int, width: int, what: str = "coordinate") -> None:
    """Refuse (ValueError) coordinates that are not finite or lie far outside the image, before
    anything is rasterised: pycocotools allocates by the coordinates' extent (an Infinity
    width asks for terabytes) and crashes on values near 1e12."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{what} is not finite ({arr[bad][0]})")
    xs, ys = arr[0::2], arr[1::2]
    mx, my = GEOMETRY_MARGIN * width, GEOMETRY_MARGIN * height
    far = np.concatenate([xs[(xs < -mx) | (xs > width + mx)], ys[(ys < -my) | (ys > height + my)]])
    if far.size:
        raise ValueError(f"{what} {far[0]:g} is far outside the {width}x{height} image")


def box_to_rle(box_xyxy: Sequence[float], height: int, width: int) -> Rle:
    check_geometry(box_xyxy, height, width, "box coordinate")
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    x0, x1 = np.clip([x0, x1], 0, width)
    y0, y1 = np.clip([y0, y1], 0, height)
    return mask_utils.frPyObjects(np.array([[x0, y0, x1 - x0, y1 - y0]], np.float64), height, width)[0]


def _polygon_rles(polygons: Sequence[np.ndarray], height: int, width: int) -> list[Rle]:
    # One frPyObjects call per part: pycocotools treats a 4-number list as a box,
    # so parts are passed individually and parts with < 3 points are skipped.
    for p in polygons:
        check_geometry(p, height, width, "polygon coordinate")
    return [mask_utils.frPyObjects([np.asarray(p, np.float64).ravel().tolist()], height, width)[0]
            for p in polygons if len(p) >= 3]


def polygons_to_rle(polygons: Sequence[np.ndarray], holes: Sequence[np.ndarray], height: int, width: int) -> Rle:
    """Multi-part polygon with holes (pixel coords) -> one RLE: union of the parts
    minus the union of the holes. Parts outside the image are clipped."""
    parts = _polygon_rles(polygons, height, width)
    if not parts:
        return empty(height, width)
    outer = mask_utils.merge(parts) if len(parts) > 1 else parts[0]
    hole_parts = _polygon_rles(holes, height, width)
    if not hole_parts:
        return outer
    hole = mask_utils.merge(hole_parts) if len(hole_parts) > 1 else hole_parts[0]
    # pycocotools has union/intersection but no difference: one dense mask here is fine.
    dense = mask_utils.decode(outer).astype(bool) & ~mask_utils.decode(hole).astype(bool)
    return encode(dense)[0]


def to_json(r: Rle) -> dict:
    """RLE with str counts (JSON-serialisable)."""
    counts = r["counts"]
    return {"size": [int(r["size"][0]), int(r["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def from_segmentation(seg: object, height: int, width: int) -> Rle:
    """A COCO ``segmentation`` value (RLE dict with str/bytes/list counts, or polygon list)."""
    if isinstance(seg, dict):
        size = seg.get("size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and list(size) == [height, width]):
            raise ValueError(f"RLE size {size!r} is not the image's [height, width] = [{height}, {width}]")
        counts = seg.get("counts")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts) \
                    or sum(counts) != height * width:
                raise ValueError(f"RLE counts must be non-negative whole numbers summing to {height * width}")
            return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        if isinstance(counts, bytes):
            counts = counts.decode("ascii", errors="replace")
        if not isinstance(counts, str):
            raise TypeError(f"RLE counts must be a string or a list, got {type(counts).__name__}")
        runs = _counts_from_string(counts)
        if any(c < 0 for c in runs) or sum(runs) != height * width:
            raise ValueError(f"RLE counts do not cover the {width}x{height} image exactly")
        return {"size": [height, width], "counts": counts.encode("ascii")}
    if isinstance(seg, list):
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            raise ValueError("a polygon segmentation is a list of [x1, y1, x2, y2, ...] lists of 3+ points")
        return polygons_to_rle([np.asarray(p, np.float64).reshape(-1, 2) for p in seg], [], height, width)
    raise ValueError(f"unsupported segmentation value of type {type(seg).__name__}")


def _counts_from_string(s: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' rleFrString in Python), so a
    malformed string is refused here instead of overrunning pycocotools' buffer."""
    runs: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("RLE counts string ends in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE counts string has an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs
