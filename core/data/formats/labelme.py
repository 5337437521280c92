"""labelme json (one file per image) <-> ImageAnnotation.

Shapes: ``polygon`` (>= 3 points) and ``rectangle`` map exactly; ``circle`` (centre +
rim point) becomes a 32-vertex polygon; ``mask`` (labelme >= 5.3, a base64 PNG
of the box region) is traced into polygons. ``point``/``line``/``linestrip`` are
not regions: they are skipped and reported. Shapes sharing a ``group_id`` and a
label form ONE multi-part object (labelme's convention, as in labelme2coco); on
export a multi-part object is written as several shapes with one ``group_id``.
Holes cannot be drawn in labelme, so an object with holes is written as one
polygon whose rings are joined by zero-width bridges (same pixels when filled).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.atomic_io import atomic_write_bytes, atomic_write_text
from core.bounded_input import PNG_HEAD_BYTES, loads_json
from core.config import class_name_problem
from core.data.formats.report import ImportResult, outside_image
from core.data.formats.yolo_txt import bridge_rings
from core.data.images import check_header, image_size
from core.errors import ImageLimitError, ImageReadError, LabelError
from core.geometry import mask_to_polygons

CIRCLE_VERTICES = 32
LABELME_VERSION = "5.5.0"
_NOT_REGIONS = {"point", "points", "line", "linestrip"}


def _load_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(path, None, f"not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        raise LabelError(path, None, "file is empty")
    try:
        data = loads_json(text, path)
    except json.JSONDecodeError as exc:
        raise LabelError(path, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise LabelError(path, None, "not a labelme file (top level must be an object)", value=type(data).__name__)
    for key in ("shapes", "imagePath"):
        if key not in data:
            raise LabelError(path, None, f"not a labelme file: missing key '{key}'")
    if not isinstance(data["shapes"], list):
        raise LabelError(path, None, "'shapes' must be a list", value=type(data["shapes"]).__name__)
    return data


def _points(raw: Any) -> np.ndarray | None:
    try:
        pts = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        return None
    return pts


def circle_polygon(center: np.ndarray, rim: np.ndarray, n: int = CIRCLE_VERTICES) -> np.ndarray:
    r = float(np.hypot(*(rim - center)))
    t = np.arange(n) * (2 * math.pi / n)
    return np.stack([center[0] + r * np.cos(t), center[1] + r * np.sin(t)], axis=1)


def _resolve_image(json_path: Path, data: dict, extract_dir: Path | None) -> Path:
    """The image a labelme file points to; extracted from ``imageData`` when the file is gone."""
    raw = str(data["imagePath"] or "").replace("\\", "/")
    image = (json_path.parent / raw) if raw else json_path.with_suffix(".jpg")
    if raw and image.is_file():
        return image
    beside = json_path.parent / Path(raw).name if raw else None
    if beside is not None and beside.is_file():
        return beside  # the folder was moved, or an absolute path from another machine
    if data.get("imageData") and extract_dir is not None:
        name = Path(raw).name if raw else json_path.stem + ".png"
        target = extract_dir / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                atomic_write_bytes(target, base64.b64decode(data["imageData"], validate=False))
            except (ValueError, TypeError) as exc:
                raise LabelError(json_path, None, f"imageData is not valid base64 ({exc})") from None
        return target
    hint = " (the json has imageData: import with an extract folder)" if data.get("imageData") else ""
    raise LabelError(json_path, None, f"imagePath points to a missing image {image}{hint}", value=raw)


def read_labelme_file(json_path: Path | str, class_names: list[str], problems: list[LabelError],
                      extract_dir: Path | None = None) -> ImageAnnotation:
    """One labelme file. New labels are appended to ``class_names`` (in place); shapes that
    cannot be used go to ``problems``; file-level damage raises :class:`LabelError`."""
    path = Path(json_path)
    data = _load_json(path)
    ann = _empty_annotation(path, data, extract_dir)
    w, h = ann.width, ann.height
    groups: dict[tuple[str, int], Instance] = {}
    for i, shape in enumerate(data["shapes"]):
        try:
            label, gid, where, (polygons, holes, box) = _read_shape(path, i, shape)
            far = outside_image(polygons or [box], w, h)
            if far is not None:
                raise LabelError(path, None, f"{where}: point outside the {w}x{h} image", value=far)
        except LabelError as exc:
            problems.append(exc)
            continue
        if label not in class_names:
            class_names.append(label)
        key = (label, gid) if gid is not None else None
        if key is not None and key in groups:
            _join_group(groups[key], polygons, holes, box)
            continue
        inst = Instance(class_names.index(label), polygons=polygons, holes=holes, box=box, group_id=gid)
        if key is not None:
            groups[key] = inst
        ann.instances.append(inst)
    return ann


def _empty_annotation(path: Path, data: dict, extract_dir: Path | None) -> ImageAnnotation:
    """The image the file labels, its size checked against the file's imageWidth/imageHeight."""
    image = _resolve_image(path, data, extract_dir)
    try:
        w, h = image_size(image)
    except ImageReadError as exc:
        raise LabelError(path, None, f"imagePath: {exc}", value=data["imagePath"]) from None
    jw, jh = data.get("imageWidth"), data.get("imageHeight")
    if jw is not None and jh is not None and (jw, jh) != (w, h):
        raise LabelError(path, None, f"imageWidth x imageHeight {jw}x{jh} differs from the image's {w}x{h} "
                         "(labels would be misplaced; EXIF orientation?)", value=data["imagePath"])
    return ImageAnnotation(image, w, h)


Geometry = tuple[list[np.ndarray], list[np.ndarray], "tuple[float, float, float, float] | None"]


def _read_shape(path: Path, i: int, shape: object) -> tuple[str, int | None, str, Geometry]:
    """(label, group id, where, geometry) of ``shapes[i]``; LabelError naming it when unusable."""
    where = f"shapes[{i}]"
    if not isinstance(shape, dict):
        raise LabelError(path, None, f"{where}: expected an object", value=shape)
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        raise LabelError(path, None, f"{where}: missing or empty 'label'", value=label)
    problem = class_name_problem(label)
    if problem:
        raise LabelError(path, None, f"{where}: 'label' {problem}", value=label)
    stype = shape.get("shape_type") or "polygon"
    where = f"{where} ({label!r}, {stype})"
    pts = _points(shape.get("points"))
    if pts is None:
        raise LabelError(path, None, f"{where}: 'points' must be a list of [x, y] numbers", value=shape.get("points"))
    gid = shape.get("group_id")
    if gid is not None and (not isinstance(gid, int) or isinstance(gid, bool)):
        raise LabelError(path, None, f"{where}: 'group_id' must be an integer or null", value=gid)
    return label, gid, where, _shape_geometry(path, where, stype, pts, shape)


def _decode_mask(png: bytes) -> np.ndarray:
    """An embedded mask as bool pixels, its header size checked before PIL decodes it."""
    with Image.open(io.BytesIO(png)) as im:
        check_header("mask", im.size[0], im.size[1], png[:PNG_HEAD_BYTES], len(png))
        return np.asarray(im.convert("L")) > 0


def _shape_geometry(path: Path, where: str, stype: str, pts: np.ndarray, shape: dict) -> Geometry:
    """(polygons, holes, box) of one region shape; LabelError for shapes with no usable area."""
    if stype == "polygon":
        if len(pts) < 3:
            raise LabelError(path, None, f"{where}: a polygon needs at least 3 points, got {len(pts)}",
                             value=pts.tolist())
        return [pts], [], None
    if stype == "rectangle":
        if len(pts) < 2 or np.ptp(pts[:, 0]) <= 0 or np.ptp(pts[:, 1]) <= 0:
            raise LabelError(path, None, f"{where}: a rectangle needs 2 distinct corners", value=pts.tolist())
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return [], [], (x0, y0, x1, y1)
    if stype == "circle":
        if len(pts) != 2 or np.allclose(pts[0], pts[1]):
            raise LabelError(path, None, f"{where}: a circle needs a centre and a rim point", value=pts.tolist())
        return [circle_polygon(pts[0], pts[1])], [], None
    if stype == "mask":
        try:
            m = _decode_mask(base64.b64decode(shape["mask"]))
        except (KeyError, TypeError, ValueError, OSError):
            raise LabelError(path, None, f"{where}: 'mask' is not a base64 PNG") from None
        except ImageLimitError as exc:
            raise LabelError(path, None, f"{where}: {exc}") from None
        outers, holes = mask_to_polygons(m)
        if not outers:
            raise LabelError(path, None, f"{where}: mask is empty")
        offset = np.floor(pts.min(axis=0))  # the mask covers the shape's box, from its top-left pixel
        return [p + offset for p in outers], [p + offset for p in holes], None
    if stype in _NOT_REGIONS:
        raise LabelError(path, None, f"{where}: shape type is not a region (no area); skipped", value=stype)
    raise LabelError(path, None, f"{where}: unknown shape_type", value=stype)


def _join_group(inst: Instance, polygons: list[np.ndarray], holes: list[np.ndarray], box) -> None:
    """labelme's group_id: several shapes are parts of one object (boxes become polygon parts)."""
    if inst.is_box:
        x0, y0, x1, y1 = inst.bbox()
        inst.polygons = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])]
        inst.box = None
    if box is not None:
        polygons = [np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])]
    inst.polygons.extend(polygons)
    inst.holes.extend(holes)


def load_labelme(source: Path | str, class_names: list[str] | None = None,
                 extract_dir: Path | str | None = None) -> ImportResult:
    """A labelme json file or a folder of them (recursive). Classes start from
    ``class_names`` (kept in order) and grow with labels met in file-name order."""
    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*.json") if p.is_file())
        if not files:
            raise LabelError(src, None, "no labelme .json files in this folder")
    elif src.is_file():
        files = [src]
    else:
        raise LabelError(src, None, "labelme file or folder not found")
    names = list(class_names or [])
    result = ImportResult(class_names=names, source_root=src if src.is_dir() else src.parent)
    extract = Path(extract_dir) if extract_dir is not None else None
    for f in files:
        try:
            result.annotations.append(read_labelme_file(f, names, result.problems, extract))
        except LabelError as exc:
            result.problems.append(exc)
    added = names[len(class_names or []):]
    if class_names and added:
        result.notes.append(f"new classes from labelme labels: {', '.join(added)}")
    return result


# ----------------------------------------------------------------------------- writing

def _rect(box: tuple[float, float, float, float]) -> list[list[float]]:
    return [[box[0], box[1]], [box[2], box[3]]]


def labelme_dict(ann: ImageAnnotation, class_names: list[str], json_dir: Path) -> dict:
    """labelme json for one image; ``imagePath`` relative to the json's folder."""
    used = {i.group_id for i in ann.instances if i.group_id is not None}
    next_gid = max(used, default=0) + 1
    shapes = []
    for inst in ann.instances:
        label = class_names[inst.class_id]
        gid = inst.group_id
        if inst.is_box:
            shapes.append(_shape(label, _rect(inst.bbox()), "rectangle", gid))
            continue
        if inst.holes:
            rings = [bridge_rings(list(inst.polygons) + list(inst.holes))]
        else:
            rings = list(inst.polygons)
        if len(rings) > 1 and gid is None:
            gid, next_gid = next_gid, next_gid + 1
        for ring in rings:
            shapes.append(_shape(label, ring.tolist(), "polygon", gid))
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": Path(os.path.relpath(ann.image_path.resolve(), json_dir.resolve())).as_posix(),
        "imageData": None,
        "imageHeight": ann.height,
        "imageWidth": ann.width,
    }


def _shape(label: str, points: list, shape_type: str, group_id: int | None) -> dict:
    return {"label": label, "points": [[float(x), float(y)] for x, y in points], "group_id": group_id,
            "description": "", "shape_type": shape_type, "flags": {}, "mask": None}


def save_labelme(out_dir: Path | str, annotations: list[ImageAnnotation], class_names: list[str],
                 beside_images: bool = False) -> list[Path]:
    """One json per image: ``<image>.json`` next to the image when ``beside_images`` (how
    labelme itself saves), else ``out_dir/<stem>.json`` referencing the image."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[Path] = set()
    for ann in annotations:
        base = ann.image_path.with_suffix("") if beside_images else out / ann.image_path.stem
        path, n = base.with_name(base.name + ".json"), 1
        while path in taken:  # two images with the same stem (a.jpg, a.png)
            path, n = base.with_name(f"{base.name}_{n}.json"), n + 1
        taken.add(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(labelme_dict(ann, class_names, path.parent), indent=2,
                                           ensure_ascii=False))
        written.append(path)
    return written
