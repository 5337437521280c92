"""`Detections`: what every backend returns for one image, in original-image pixels.

One dataclass for all backends so that the GUI, the CLI, the benchmark and the
evaluation never care which runtime produced the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import rle as rle_ops


@dataclass
class Detections:
    """Instances found in one image.

    boxes  float32 [K, 4] xyxy in original pixels; scores float32 [K]; labels int64 [K];
    masks  bool [K, H, W] (segmentation, unless RLE was asked for) or None;
    rles   list of COCO RLE dicts (``{"size": [H, W], "counts": str}``) when asked for, else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]  # (H, W) of the original image
    masks: np.ndarray | None = None
    rles: list[dict] | None = None
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        k = len(self.scores)
        if len(self.boxes) != k or len(self.labels) != k:
            raise ValueError(f"boxes/scores/labels lengths differ: {len(self.boxes)}/{k}/{len(self.labels)}")
        if self.masks is not None:
            h, w = self.image_size
            if self.masks.dtype != np.bool_ or self.masks.shape != (k, h, w):
                raise ValueError(f"masks must be bool [{k},{h},{w}], got {self.masks.dtype} {self.masks.shape}")
        if self.rles is not None and len(self.rles) != k:
            raise ValueError(f"{len(self.rles)} RLEs for {k} instances")

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None or self.rles is not None

    @classmethod
    def empty(cls, image_size: tuple[int, int], with_masks: bool, class_names: list[str] | None = None
              ) -> Detections:
        h, w = image_size
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   (h, w), np.zeros((0, h, w), bool) if with_masks else None, None, list(class_names or []))

    def to_rle(self) -> list[dict]:
        """COCO RLEs of the masks (counts decoded to str so they serialise to JSON)."""
        if self.rles is not None:
            return self.rles
        if self.masks is None:
            raise ValueError("these detections have no masks")
        return encode_rle(self.masks)

    def mask_array(self) -> np.ndarray | None:
        """Masks as bool [K,H,W], decoding RLEs when that is how they are held."""
        if self.masks is not None or self.rles is None:
            return self.masks

        h, w = self.image_size
        return rle_ops.decode(self.rles) if self.rles else np.zeros((0, h, w), bool)

    def to_coco_results(self, image_id: int | str, category_ids: list[int] | None = None) -> list[dict]:
        """COCO "results" rows (bbox as xywh); ``category_ids[label]`` maps labels to COCO ids."""
        rles = self.to_rle() if self.has_masks else [None] * len(self)
        rows = []
        for box, score, label, rle in zip(self.boxes, self.scores, self.labels, rles):
            x0, y0, x1, y1 = (float(v) for v in box)
            row: dict[str, Any] = {
                "image_id": image_id,
                "category_id": int(category_ids[label]) if category_ids else int(label),
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "score": round(float(score), 5),
            }
            if rle is not None:
                row["segmentation"] = rle
            rows.append(row)
        return rows


def encode_rle(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of bool [K,H,W] masks with str counts (JSON-ready)."""

    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in rle_ops.encode(masks)]  # novermin (bytes.decode, not py2 str.decode)
