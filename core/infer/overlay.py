"""Draw Detections on an image: translucent masks, boxes, "class score" labels."""

from __future__ import annotations

import cv2
import numpy as np

from core.infer.detections import Detections

# Tableau-like palette (BGR); class i uses PALETTE[i % len]
PALETTE = np.array([[180, 119, 31], [14, 127, 255], [44, 160, 44], [40, 39, 214], [189, 103, 148],
                    [75, 86, 140], [194, 119, 227], [127, 127, 127], [34, 189, 188], [207, 190, 23]], np.uint8)


def class_color(label: int) -> tuple[int, int, int]:
    b, g, r = (int(v) for v in PALETTE[int(label) % len(PALETTE)])
    return (b, g, r)


def draw_detections(image: np.ndarray, det: Detections, alpha: float = 0.45) -> np.ndarray:
    """A copy of ``image`` (BGR) with ``det`` drawn on it."""
    out = image.copy()
    masks = det.mask_array()
    if masks is not None:
        for mask, label in zip(masks, det.labels):
            if mask.any():
                color = PALETTE[int(label) % len(PALETTE)].astype(np.float32)
                region = out[mask].astype(np.float32)
                out[mask] = (region * (1 - alpha) + color * alpha).astype(np.uint8)
    thickness = max(1, round(min(image.shape[:2]) / 400))
    scale = max(0.4, min(image.shape[:2]) / 1000)
    for box, label, score in zip(det.boxes, det.labels, det.scores):
        color = class_color(label)
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness, cv2.LINE_AA)
        name = det.class_names[label] if label < len(det.class_names) else str(int(label))
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        ty = y0 - 3 if y0 - th - base - 3 >= 0 else y0 + th + 3
        cv2.rectangle(out, (x0, ty - th - 2), (x0 + tw + 2, ty + base - 1), color, -1)
        cv2.putText(out, text, (x0 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return out
