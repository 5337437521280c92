"""Network input from BGR uint8 images: the one preprocessing every backend shares.

Same transform as training and the official D-FINE evaluation: plain resize (no
letterbox) to the network size with bilinear interpolation, BGR -> RGB, /255, NCHW
float32, no mean/std normalisation.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.errors import UserFacingError


def check_image(image: object, index: int = 0) -> np.ndarray:
    """Return ``image`` as a BGR uint8 HxWx3 array, or raise a clear error naming the item."""
    if not isinstance(image, np.ndarray):
        raise UserFacingError(f"image #{index}: expected a numpy array (BGR uint8), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise UserFacingError(f"image #{index}: expected dtype uint8, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        raise UserFacingError(f"image #{index}: expected an HxWx3 BGR image, got shape {image.shape}")
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def preprocess(images: list[np.ndarray], input_size: tuple[int, int]
               ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Batch [B,3,h,w] float32 in [0,1] (RGB) plus each image's original (H, W)."""
    h, w = input_size
    batch = np.empty((len(images), 3, h, w), dtype=np.float32)
    sizes: list[tuple[int, int]] = []
    for i, image in enumerate(images):
        image = check_image(image, i)
        sizes.append((image.shape[0], image.shape[1]))
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        # resizing uint8 first, then one fused channel-flip + scale into the preallocated batch
        np.multiply(resized.transpose(2, 0, 1)[::-1], np.float32(1 / 255), out=batch[i])
    return batch, sizes
