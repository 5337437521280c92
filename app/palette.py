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


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIE ΔE2000 between CIELAB colours (broadcasting over the leading axes), after Sharma, Wu
    and Dalal, "The CIEDE2000 color-difference formula" (2005), kL = kC = kH = 1."""
    lab1, lab2 = np.asarray(lab1, np.float64), np.asarray(lab2, np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dlp, dcp = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dhp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    lbp, cbp = (L1 + L2) / 2, (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(np.abs(h1p - h2p) <= 180, hsum / 2, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    hbp = np.where(c1p * c2p == 0, hsum, hbp)
    t = (1 - 0.17 * np.cos(np.radians(hbp - 30)) + 0.24 * np.cos(np.radians(2 * hbp))
         + 0.32 * np.cos(np.radians(3 * hbp + 6)) - 0.20 * np.cos(np.radians(4 * hbp - 63)))
    d_theta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    rc = 2 * np.sqrt(cbp ** 7 / (cbp ** 7 + 25.0 ** 7))
    sl = 1 + 0.015 * (lbp - 50) ** 2 / np.sqrt(20 + (lbp - 50) ** 2)
    sc = 1 + 0.045 * cbp
    sh = 1 + 0.015 * cbp * t
    rt = -np.sin(np.radians(2 * d_theta)) * rc
    return np.sqrt((dlp / sl) ** 2 + (dcp / sc) ** 2 + (dhp / sh) ** 2 + rt * (dcp / sc) * (dhp / sh))


def min_pairwise_de2000(rgb255: list[tuple[int, int, int]]) -> float:
    """Smallest ΔE2000 between any two of the colours (0-255 sRGB)."""
    lab = srgb_to_lab(np.asarray(rgb255, np.float64) / 255)
    d = ciede2000(lab[:, None], lab[None])
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def _nearest_de(taken: list[tuple[int, int, int]]) -> np.ndarray:
    """ΔE2000 of every candidate to its nearest colour in ``taken`` (inf when none)."""
    lab = _candidates()[1]
    d = np.full(len(lab), np.inf)
    for rgb in taken:
        d = np.minimum(d, ciede2000(lab, srgb_to_lab(np.asarray(rgb, np.float64) / 255)))
    return d


def _pick(d: np.ndarray) -> tuple[int, int, int]:
    k = 0 if np.isinf(d).all() else int(np.argmax(d))  # nothing taken: the seed orange
    r, g, b = np.round(_candidates()[0][k] * 255).astype(int)
    return int(r), int(g), int(b)


def next_color(taken: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The candidate colour farthest (ΔE2000) from every colour in ``taken`` (the seed orange when
    nothing is taken). Deterministic: the same taken colours give the same answer."""
    return _pick(_nearest_de(taken))


def assign_colors(names: list[str], known: dict[str, tuple[int, int, int]]) -> dict[str, tuple[int, int, int]]:
    """Colours for ``names`` bound to the NAME: a name in ``known`` keeps its colour; each new
    name (in list order) gets the colour farthest (ΔE2000) from every colour already known or
    handed out, so a class keeps its colour when others are renamed, merged or deleted. Returns
    the known colours plus the new ones. 80 new names take ~0.1 s."""
    out = dict(known)
    new = [n for n in dict.fromkeys(names) if n not in out]
    if not new:
        return out
    lab = _candidates()[1]
    d = _nearest_de(list(out.values()))
    for name in new:
        out[name] = _pick(d)
        d = np.minimum(d, ciede2000(lab, srgb_to_lab(np.asarray(out[name], np.float64) / 255)))
    return out
