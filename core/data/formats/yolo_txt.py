"""One YOLO label file <-> the instances of one image (pixel coordinates).

Rows (normalised to the image size, origin at the top-left corner):

* ``cls x1 y1 x2 y2 x3 y3 ...`` polygon, at least 3 points (Ultralytics segment format);
* ``cls cx cy w h`` box (Ultralytics detect format).

Multi-part objects and holes. YOLO txt has one polygon per row, so an instance with
several parts or with holes is written as ONE row: its rings are joined by
zero-width "bridges" (go to the nearest vertex of the next ring, walk around it,
come back the same way), the same trick Ultralytics' own COCO converter uses. Any
polygon filler (``cv2.fillPoly``, which Ultralytics uses) draws exactly the parts
minus the holes, so Ultralytics trains on the right mask. To get the parts back
without loss, a sidecar ``labels/<stem>.parts.json`` maps a hash of the row's
coordinates to the original rings::

    {"version": 1, "rows": {"<sha1 of coordinate tokens>": {"polygons": [[x, y, ...], ...],
                                                             "holes": [[...]], "box": false,
                                                             "group_id": 3, "iscrowd": false}}}

(coordinates normalised). The key hashes the coordinates only, not the class id,
so class edits never touch sidecars; a row whose hash has no entry (the txt was
edited elsewhere) simply loads as the single bridged polygon, which still has the
right pixels. Box-only instances in a file that also holds polygons are written as
4-corner polygons marked ``"box": true`` in the sidecar, because Ultralytics reads
a file with any polygon row as all-polygons (a 4-number row would become a broken
2-point polygon there). Instance ``group_id``/``iscrowd`` also live in the sidecar.

Lenient where it is safe, strict where data could be wrong: BOM, CRLF, blank lines,
tabs and trailing spaces are fine; coordinates up to ``CLIP_TOLERANCE`` outside
[0, 1] are clipped with a warning; everything else (odd coordinate count, NaN/inf,
non-numeric token, class id out of range, too few points, far-outside coordinates)
raises :class:`LabelError` naming file, line and value.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.annotation import Instance
from core.bounded_input import loads_json
from core.errors import LabelError, LimitError

CLIP_TOLERANCE = 0.02  # normalised; beyond this a coordinate is an error, not a rounding slip
DECIMALS = 6  # Ultralytics writes 6 decimals; 1e-6 of a 10k px image is 0.01 px
SIDECAR_SUFFIX = ".parts.json"


@dataclass
class ParsedLabels:
    instances: list[Instance]
    warnings: list[str] = field(default_factory=list)


@dataclass
class FormattedLabels:
    text: str
    sidecar: dict | None  # None when no instance needs one


def sidecar_path(label_path: Path) -> Path:
    return label_path.with_name(label_path.stem + SIDECAR_SUFFIX)


def row_key(coord_tokens: list[str]) -> str:
    """Hash of a row's coordinate tokens (not the class id) used as the sidecar key."""
    # utf-8: float() accepts non-ASCII digits ("٣"); for ASCII rows the key is unchanged
    return hashlib.sha1(" ".join(coord_tokens).encode("utf-8")).hexdigest()[:20]


# ----------------------------------------------------------------------------- parsing


def decode_label_bytes(data: bytes, path: Path) -> str:
    """UTF-8 (BOM tolerated); a non-text file is an error naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabelError(path, line, "not a UTF-8 text file", data[exc.start : exc.start + 8]) from None


def split_rows(text: str) -> list[tuple[int, list[str]]]:
    """(1-based line number, tokens) for every non-blank line; handles BOM/CRLF/tabs."""
    text = text.lstrip("\ufeff")
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        toks = line.split()
        if toks:
            rows.append((i, toks))
    return rows


def _float(tok: str) -> float:
    """float() minus Python's digit separators: "0.5_5" is a typo, not 0.55."""
    if "_" in tok:
        raise ValueError(tok)
    return float(tok)


def parse_class_id(tok: str, path: Path, line: int, num_classes: int | None) -> int:
    try:
        v = _float(tok)
    except ValueError:
        raise LabelError(path, line, "class id is not a number", tok) from None
    if not math.isfinite(v) or v != int(v):
        raise LabelError(path, line, "class id must be a whole number", tok)
    cid = int(v)
    if cid < 0:
        raise LabelError(path, line, "class id must be >= 0", tok)
    if num_classes is not None and cid >= num_classes:
        raise LabelError(
            path, line, f"class id out of range: the project has {num_classes} classes (0..{num_classes - 1})", tok
        )
    return cid


def _parse_coords(toks: list[str], path: Path, line: int) -> np.ndarray:
    vals = np.empty(len(toks), dtype=np.float64)
    for j, t in enumerate(toks):
        try:
            v = _float(t)
        except ValueError:
            raise LabelError(path, line, f"coordinate {j + 1} is not a number", t) from None
        if not math.isfinite(v):
            raise LabelError(path, line, f"coordinate {j + 1} is not finite", t)
        vals[j] = v
    return vals


def _check_range(vals: np.ndarray, toks: list[str], path: Path, line: int, warnings: list[str]) -> np.ndarray:
    lo, hi = -CLIP_TOLERANCE, 1.0 + CLIP_TOLERANCE
    bad = np.flatnonzero((vals < lo) | (vals > hi))
    if bad.size:
        j = int(bad[0])
        raise LabelError(
            path, line,
            f"coordinate {j + 1} is far outside [0, 1] (normalised coordinates expected; "
            f"pixel coordinates?)", toks[j],
        )
    out = np.clip(vals, 0.0, 1.0)
    if np.any(out != vals):
        j = int(np.flatnonzero(out != vals)[0])
        warnings.append(f"{path}:{line}: coordinate {j + 1} slightly outside [0, 1] ({toks[j]}), clipped")
    return out


def parse_yolo_txt(
    text: str,
    width: int,
    height: int,
    path: Path | str = "<labels>",
    num_classes: int | None = None,
    sidecar: dict | None = None,
) -> ParsedLabels:
    """Parse one label file's text into pixel-coordinate instances (raises LabelError)."""
    path = Path(path)
    entries = (sidecar or {}).get("rows", {}) if isinstance(sidecar, dict) else {}
    warnings: list[str] = []
    instances: list[Instance] = []
    scale = np.array([width, height], dtype=np.float64)
    for line, toks in split_rows(text):
        cid = parse_class_id(toks[0], path, line, num_classes)
        ctoks = toks[1:]
        n = len(ctoks)
        if n == 4:
            vals = _parse_coords(ctoks, path, line)
            cx, cy, w, h = vals
            if w <= 0 or h <= 0:
                raise LabelError(path, line, "box width and height must be > 0", " ".join(ctoks[2:]))
            corners = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            corners = _check_range(corners, [f"{v:g}" for v in corners], path, line, warnings)
            box = (corners[0] * width, corners[1] * height, corners[2] * width, corners[3] * height)
            entry = entries.get(row_key(ctoks))
            instances.append(Instance(class_id=cid, box=box, **_meta_kwargs(entry)))
            continue
        if n == 0:
            raise LabelError(path, line, "row has a class id but no coordinates", " ".join(toks))
        if n % 2:
            raise LabelError(path, line, f"odd number of coordinates ({n}); expected x y pairs", " ".join(toks))
        if n < 6:
            raise LabelError(path, line, f"a polygon needs at least 3 points, got {n // 2}", " ".join(toks))
        vals = _check_range(_parse_coords(ctoks, path, line), ctoks, path, line, warnings)
        poly = vals.reshape(-1, 2) * scale
        entry = entries.get(row_key(ctoks))
        inst = None
        if entry:
            inst, problem = _from_sidecar(entry, cid, scale)
            if problem:
                warnings.append(f"{sidecar_path(path)}: entry of {path.name}:{line} {problem}; "
                                f"the row's own polygon is used")
        if inst is None:
            inst = Instance(class_id=cid, polygons=[poly])
            if _shoelace(poly) == 0.0:
                warnings.append(f"{path}:{line}: polygon has zero area")
        instances.append(inst)
    return ParsedLabels(instances, warnings)


def _sidecar_ring(p: object) -> np.ndarray:
    """One normalised ring of a sidecar entry, checked: finite and inside [0, 1] (with the
    txt's tolerance); a NaN or a pixel coordinate would crash or skew every later step."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1 or arr.size % 2:
        raise ValueError(f"a ring of {arr.size} values is not x y pairs")
    if not np.all(np.isfinite(arr)):
        raise ValueError("has a coordinate that is not finite")
    if np.any((arr < -CLIP_TOLERANCE) | (arr > 1 + CLIP_TOLERANCE)):
        raise ValueError(f"has a coordinate outside [0, 1] ({float(arr[(arr < 0) | (arr > 1)][0]):g}; "
                         f"pixel coordinates?)")
    return np.clip(arr, 0.0, 1.0).reshape(-1, 2)


def _from_sidecar(entry: dict, cid: int, scale: np.ndarray) -> tuple[Instance | None, str | None]:
    """Rebuild the original instance; (None, why) when the entry is unusable (then the row's
    own bridged polygon is used: the txt alone still gives the right mask)."""
    try:
        if not isinstance(entry, dict):
            raise TypeError("is not an object")
        polys = [_sidecar_ring(p) * scale for p in entry.get("polygons", [])]
        holes = [_sidecar_ring(p) * scale for p in entry.get("holes", [])]
        meta = _meta_kwargs(entry)
        if entry.get("box"):
            if not polys or len(polys[0]) == 0:
                return None, None
            x0, y0 = polys[0].min(axis=0)
            x1, y1 = polys[0].max(axis=0)
            return Instance(class_id=cid, box=(x0, y0, x1, y1), **meta), None
        if not polys or any(len(p) < 3 for p in polys):
            return None, None
        return Instance(class_id=cid, polygons=polys, holes=holes, **meta), None
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        return None, str(exc)


def _meta_kwargs(entry: object) -> dict:
    """Instance metadata kept in the sidecar: group, crowd flag, and the model-made mark
    (source/score). The key hashes the coordinates, so a person's edit drops the mark."""
    meta = entry if isinstance(entry, dict) else {}
    gid, score = meta.get("group_id"), meta.get("score")
    return {
        "group_id": gid if isinstance(gid, int) else None,
        "iscrowd": bool(meta.get("iscrowd", False)),
        "source": "model" if meta.get("source") == "model" else "human",
        "score": float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None,
    }


def load_sidecar(data: bytes | None) -> dict | None:
    """A damaged sidecar is ignored (the txt alone still gives correct masks)."""
    if not data:
        return None

    try:
        obj = loads_json(data.decode("utf-8"), "sidecar")
    except (UnicodeDecodeError, ValueError, LimitError):
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("rows"), dict) else None


# ----------------------------------------------------------------------------- formatting


def _fmt(v: float) -> str:
    s = f"{v:.{DECIMALS}f}"
    return "0.000000" if s == "-0.000000" else s


def _norm_tokens(points: np.ndarray, scale: np.ndarray) -> list[str]:
    return [_fmt(v) for v in np.clip(points / scale, 0.0, 1.0).reshape(-1)]


def bridge_rings(rings: list[np.ndarray]) -> np.ndarray:
    """Join rings into one polygon with zero-width bridges between nearest vertices.

    With parts and holes wound oppositely (see ``_oriented``), even-odd and non-zero
    fillers both give the parts with the holes cut out (the bridges have no area), and
    the polygon's |signed area| is parts minus holes.
    """
    out = [tuple(p) for p in rings[0]]
    for ring in rings[1:]:
        pts = np.asarray(out)
        d = ((pts[:, None, :] - ring[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        loop = [tuple(p) for p in np.roll(ring, -j, axis=0)]
        out = out[: i + 1] + loop + [loop[0], out[i]] + out[i + 1 :]
    return np.asarray(out, dtype=np.float64)


def format_yolo_txt(instances: list[Instance], width: int, height: int) -> FormattedLabels:
    """Text of one label file (``\\n`` line ends, trailing newline) plus its sidecar or None."""
    scale = np.array([width, height], dtype=np.float64)
    any_poly = any(not inst.is_box for inst in instances)
    rows: list[str] = []
    entries: dict[str, dict] = {}
    for inst in instances:
        extra: dict[str, Any] = {}
        if inst.group_id is not None:
            extra["group_id"] = int(inst.group_id)
        if inst.iscrowd:
            extra["iscrowd"] = True
        if inst.source == "model":
            extra["source"] = "model"
            if inst.score is not None:
                extra["score"] = float(inst.score)
        if inst.is_box:
            x0, y0, x1, y1 = inst.bbox()
            if not any_poly:
                c = np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
                toks = [_fmt(v) for v in np.clip(c, 0.0, 1.0)]
                rows.append(" ".join([str(inst.class_id), *toks]))
                if extra:  # box rows cannot carry a sidecar key reliably; metadata only
                    entries[row_key(toks)] = {"polygons": [], "box": True, **extra}
                continue
            rect = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            toks = _norm_tokens(rect, scale)
            rows.append(" ".join([str(inst.class_id), *toks]))
            entries[row_key(toks)] = {"polygons": [[float(t) for t in toks]], "box": True, **extra}
            continue
        for p in inst.polygons + inst.holes:
            if len(p) < 3:
                raise ValueError(f"class {inst.class_id}: a polygon needs at least 3 points, got {len(p)}")
        rings = [_oriented(p, +1) for p in inst.polygons] + [_oriented(h, -1) for h in inst.holes]
        merged = bridge_rings(rings) if len(rings) > 1 else inst.polygons[0]
        toks = _norm_tokens(merged, scale)
        rows.append(" ".join([str(inst.class_id), *toks]))
        if len(rings) > 1 or extra:
            entries[row_key(toks)] = {
                "polygons": [[float(t) for t in _norm_tokens(p, scale)] for p in inst.polygons],
                "holes": [[float(t) for t in _norm_tokens(h, scale)] for h in inst.holes],
                **extra,
            }
    text = "".join(r + "\n" for r in rows)
    return FormattedLabels(text, {"version": 1, "rows": entries} if entries else None)


def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0


def _oriented(p: np.ndarray, sign: int) -> np.ndarray:
    """Parts one way round, holes the other, so non-zero fillers cut holes as even-odd ones do."""
    return p if _signed_area(p) * sign >= 0 else p[::-1]


def _shoelace(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)
