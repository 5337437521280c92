"""Class colours that stay distinct for 80+ classes.

Why not golden-ratio hues: at fixed saturation/value, hue steps look equal in HSV but not
to the eye (greens crowd, many pairs look alike after ~20 classes). Instead colours are
picked greedily in CIELAB: each next class gets the candidate sRGB colour farthest (CIE76
ΔE) from every colour already handed out. The candidates are limited to lightness and
chroma that read on both the dark and the light canvas (no greys: grey is the "no class"
look). The sequence is deterministic and stable: class k always gets the same colour, and
adding classes never changes earlier ones. Pure numpy (no Qt) so it is testable alone.
"""

from __future__ import annotations

import numpy as np

SEED_HEX = "#e69f00"  # class 0 keeps the orange it always had
L_RANGE = (45.0, 88.0)  # readable on #141517 (dark canvas) and #d9dce1 (light canvas)
MIN_CHROMA = 28.0
GRID = 22  # sRGB levels per channel for the candidate set (22^3 = 10,648 colours)

_order: list[int] = []  # indices into _candidates(), in hand-out order
_cand_rgb: np.ndarray | None = None
_cand_lab: np.ndarray | None = None
_min_d2: np.ndarray | None = None  # squared distance of each candidate to the nearest handed-out colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (..., 3) -> CIELAB (D65)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def hex_to_rgb(text: str) -> np.ndarray:
    text = text.lstrip("#")
    return np.array([int(text[k:k + 2], 16) / 255 for k in (0, 2, 4)])


def _candidates() -> tuple[np.ndarray, np.ndarray]:
    global _cand_rgb, _cand_lab
    if _cand_rgb is None:
        levels = np.linspace(0.0, 1.0, GRID)
        rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
        rgb = np.vstack([hex_to_rgb(SEED_HEX)[None], rgb])
        lab = srgb_to_lab(rgb)
        chroma = np.hypot(lab[:, 1], lab[:, 2])
        keep = (lab[:, 0] >= L_RANGE[0]) & (lab[:, 0] <= L_RANGE[1]) & (chroma >= MIN_CHROMA)
        keep[0] = True  # the seed
        _cand_rgb, _cand_lab = rgb[keep], lab[keep]
    return _cand_rgb, _cand_lab


def _extend(n: int) -> None:
    """Hand out colours until there are ``n`` (farthest-point sampling in Lab)."""
    global _min_d2
    rgb, lab = _candidates()
    while len(_order) < n:
        k = 0 if not _order else int(np.argmax(_min_d2))
        _order.append(k)
        d2 = ((lab - lab[k]) ** 2).sum(1)
        _min_d2 = d2 if _min_d2 is None else np.minimum(_min_d2, d2)


def class_rgb(class_id: int) -> tuple[int, int, int]:
    """0-255 sRGB of class ``class_id`` (any id >= 0; negative ids get class 0's colour)."""
    k = max(0, int(class_id))
    _extend(k + 1)
    r, g, b = np.round(_candidates()[0][_order[k]] * 255).astype(int)
    return int(r), int(g), int(b)


def palette_lab(n: int) -> np.ndarray:
    """The first ``n`` class colours in CIELAB (for tests and the docs)."""
    return srgb_to_lab(np.array([class_rgb(k) for k in range(n)], dtype=np.float64) / 255)
