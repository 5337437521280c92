"""Raw network outputs -> `Detections`: the one post-processing every backend shares.

The paper's recipe: drop queries under the confidence threshold; resize masks from
1/4 of the network input to the original size bilinearly; binarize; zero mask pixels
outside the instance's box. We do it only for kept instances and only inside each
instance's box: crop the low-resolution map around the box, resize the crop with
the full-frame scale factors (so samples land where the full-frame resize puts them),
binarize just the box's pixels ("crop, then resize"). The naive full-frame version is kept as the reference for the equivalence
test and the speed-up measurement in the benchmark.

Raw outputs (batched, from the deployment graph ``core.model.DeployModel``):
``scores`` [B,K] (sorted descending), ``labels`` [B,K] int, ``boxes`` [B,K,4] xyxy
normalised to [0,1], and for segmentation ``masks`` [B,K,h,w] probabilities.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from core.infer.detections import Detections, encode_rle

MASK_THRESHOLD = 0.5  # on sigmoid probabilities


def box_pixel_range(box: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows/cols [r0, r1) x [c0, c1) of the pixels whose centre lies inside the xyxy box."""
    h, w = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    c0 = max(0, math.ceil(x0 - 0.5))
    r0 = max(0, math.ceil(y0 - 0.5))
    c1 = min(w, math.floor(x1 - 0.5) + 1)
    r1 = min(h, math.floor(y1 - 0.5) + 1)
    return r0, r1, c0, c1


def _source_window(lo: int, hi: int, n_src: int, n_dst: int) -> tuple[int, int, int]:
    """Source indices [s0, s1) that a resize of output pixels [lo, hi) reads, and the
    output offset of s0. s0 is snapped down to the grid on which that offset is a whole
    pixel (so sampling is exact); on odd sizes the grid is coarse and the window starts at 0."""
    scale = n_src / n_dst
    s0 = max(0, math.floor((lo + 0.5) * scale - 0.5) - 1)
    s1 = min(n_src, math.floor((hi - 0.5) * scale - 0.5) + 3)
    grid = n_src // math.gcd(n_src, n_dst)  # s0 * n_dst / n_src is whole iff grid divides s0
    s0 = s0 - s0 % grid if grid <= 16 else 0
    return s0, s1, s0 * n_dst // n_src


def paste_masks(masks: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int],
                threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """Low-res masks [K,h,w] -> bool [K,H,W], resized only inside each box (fast path).

    The crop of the low-res map is resized with the full-frame scale factors (``fx``,
    ``fy``), so its pixels land on the same sample positions as a full-frame resize.
    """
    h_img, w_img = image_size
    k, mh, mw = masks.shape
    out = np.zeros((k, h_img, w_img), dtype=bool)
    fx, fy = w_img / mw, h_img / mh
    for i in range(k):
        r0, r1, c0, c1 = box_pixel_range(boxes[i], image_size)
        if r1 <= r0 or c1 <= c0:
            continue
        ys0, ys1, oy = _source_window(r0, r1, mh, h_img)
        xs0, xs1, ox = _source_window(c0, c1, mw, w_img)
        crop = np.ascontiguousarray(masks[i, ys0:ys1, xs0:xs1], dtype=np.float32)
        up = cv2.resize(crop, None, fx=fx, fy=fy, interpolation=cv2.INTER_LINEAR)
        region = up[r0 - oy:r1 - oy, c0 - ox:c1 - ox]
        out[i, r0:r0 + region.shape[0], c0:c0 + region.shape[1]] = region > threshold
    return out


def paste_masks_naive(masks: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int],
                      threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """Reference: resize every full mask map to the image, binarize, then zero outside the box."""
    h_img, w_img = image_size
    out = np.zeros((len(masks), h_img, w_img), dtype=bool)
    for i in range(len(masks)):
        full = cv2.resize(np.ascontiguousarray(masks[i], dtype=np.float32), (w_img, h_img),
                          interpolation=cv2.INTER_LINEAR) > threshold
        r0, r1, c0, c1 = box_pixel_range(boxes[i], image_size)
        out[i, r0:r1, c0:c1] = full[r0:r1, c0:c1]
    return out


def postprocess(raw: dict[str, np.ndarray], image_sizes: list[tuple[int, int]], conf: float = 0.5,
                class_names: list[str] | None = None, rle: bool = False, naive: bool = False,
                mask_threshold: float = MASK_THRESHOLD) -> list[Detections]:
    """One `Detections` per image of the batch (see the module docstring for ``raw``)."""
    scores_b = np.asarray(raw["scores"], dtype=np.float32)
    labels_b = np.asarray(raw["labels"])
    boxes_b = np.asarray(raw["boxes"], dtype=np.float32)
    masks_b = raw.get("masks")
    paste = paste_masks_naive if naive else paste_masks
    results = []
    for b, (h, w) in enumerate(image_sizes):
        keep = np.flatnonzero(scores_b[b] >= conf)
        keep = keep[np.argsort(-scores_b[b][keep], kind="stable")]
        boxes = boxes_b[b][keep] * np.array([w, h, w, h], dtype=np.float32)
        np.clip(boxes, 0, [w, h, w, h], out=boxes)
        masks = None
        if masks_b is not None:
            masks = paste(masks_b[b][keep], boxes, (h, w), mask_threshold)
        det = Detections(boxes, scores_b[b][keep], labels_b[b][keep].astype(np.int64), (h, w),
                         masks, None, list(class_names or []))
        if rle and masks is not None:
            det.rles, det.masks = encode_rle(masks), None
        results.append(det)
    return results
