"""COCO instances json <-> ImageAnnotation.

Polygons (one or several parts per object) map to ``Instance.polygons`` exactly.
RLE (``iscrowd`` objects, or mask-only datasets) is decoded with pycocotools and
traced into outer polygons + holes; vertices sit on boundary pixel centres, so a
traced polygon is within 0.5 px of the mask edge. Objects with holes or
``iscrowd`` are written back as RLE because COCO polygons cannot express holes.
Category ids are mapped to class ids 0..K-1 in ascending id order and written back
as ``class_id + 1``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from core.annotation import ImageAnnotation, Instance
from core.atomic_io import atomic_write_text
from core.bounded_input import loads_json
from core.config import class_name_problem
from core.data.formats.report import ImportResult, outside_image
from core.data.images import image_size
from core.project_paths import PathOutsideError, inside
from core.errors import ImageReadError, LabelError
from core import rle as rle_ops
from core.geometry import mask_to_polygons

# ----------------------------------------------------------------------------- masks

def instance_rle(inst: Instance, height: int, width: int) -> dict:
    """Rasterise an instance (parts minus holes, or its box) to compressed COCO RLE."""
    if inst.is_box:
        x0, y0, x1, y1 = inst.bbox()
        rle = mask_utils.frPyObjects([[x0, y0, x1, y0, x1, y1, x0, y1]], height, width)
        return mask_utils.merge(rle)
    # frPyObjects reads a 4-number list as a box, so degenerate (<3 point) parts are left out
    parts = [p.ravel().tolist() for p in inst.polygons if len(p) >= 3]
    if not parts:
        x0, y0, x1, y1 = inst.bbox()
        parts = [[x0, y0, x1, y0, x1, y1, x0, y1]]
    outer = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    hole_parts = [h.ravel().tolist() for h in inst.holes if len(h) >= 3]
    if not hole_parts:
        return outer
    holes = mask_utils.merge(mask_utils.frPyObjects(hole_parts, height, width))
    m = mask_utils.decode(outer).astype(bool) & ~mask_utils.decode(holes).astype(bool)
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


# ----------------------------------------------------------------------------- reading

def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelError(path, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise LabelError(path, None, f"not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        raise LabelError(path, None, "file is empty")
    try:
        return loads_json(text, path)
    except json.JSONDecodeError as exc:
        raise LabelError(path, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None


def _is_id(v: Any) -> bool:
    """COCO ids are numbers or text; a list/dict id cannot be a key (and is a typo)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def _require(obj: dict, key: str, path: Path, where: str) -> Any:
    if not isinstance(obj, dict):
        raise LabelError(path, None, f"{where}: expected an object", value=obj)
    if key not in obj:
        raise LabelError(path, None, f"{where}: missing key '{key}'")
    return obj[key]


def _finite_numbers(values: Any) -> bool:
    return (isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and math.isfinite(v) for v in values))


def _read_categories(data: dict, path: Path) -> tuple[list[str], dict[int, int]]:
    cats = _require(data, "categories", path, "top level")
    if not isinstance(cats, list) or not cats:
        raise LabelError(path, None, "'categories' must be a non-empty list", value=cats)
    by_id: dict[int, str] = {}
    for i, cat in enumerate(cats):
        cid = _require(cat, "id", path, f"categories[{i}]")
        name = _require(cat, "name", path, f"categories[{i}]")
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise LabelError(path, None, f"categories[{i}]: 'id' must be an integer", value=cid)
        if cid in by_id:
            raise LabelError(path, None, f"categories[{i}]: duplicate category id", value=cid)
        problem = class_name_problem(str(name))
        if problem:
            raise LabelError(path, None, f"categories[{i}]: class name {problem}", value=name)
        by_id[cid] = str(name)
    dup = [n for n, c in Counter(by_id.values()).items() if c > 1]
    if dup:
        raise LabelError(path, None, "duplicate category name", value=dup[0])
    ordered = sorted(by_id)
    return [by_id[c] for c in ordered], {c: k for k, c in enumerate(ordered)}


def _parse_segmentation(seg: Any, bbox: Any, class_id: int, h: int, w: int, where: str,
                        path: Path, problems: list[LabelError]) -> Instance | None:
    """One COCO annotation's geometry -> Instance, or None with the reason in ``problems``."""
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            problems.append(LabelError(path, None, f"{where}: RLE segmentation needs 'counts' and 'size'",
                                       value=sorted(seg)))
            return None
        if list(seg["size"]) != [h, w]:
            problems.append(LabelError(path, None, f"{where}: RLE size does not match the image's "
                                       f"[height, width] {[h, w]}", value=seg["size"]))
            return None
        try:
            # validated (counts cover the image exactly) before pycocotools sees them
            mask = mask_utils.decode(rle_ops.from_segmentation(seg, h, w))
        except Exception as exc:  # noqa: BLE001  pycocotools raises bare Exceptions on bad counts
            problems.append(LabelError(path, None, f"{where}: undecodable RLE ({exc})"))
            return None
        outers, holes = mask_to_polygons(mask)
        if not outers:
            problems.append(LabelError(path, None, f"{where}: RLE mask is empty"))
            return None
        return Instance(class_id, polygons=outers, holes=holes)
    if isinstance(seg, list) and seg:
        parts = [seg] if all(isinstance(v, (int, float)) for v in seg) else seg  # tolerate a flat list
        polygons = []
        for j, part in enumerate(parts):
            if not _finite_numbers(part):
                problems.append(LabelError(path, None, f"{where}: segmentation[{j}] is not a list of finite "
                                           "numbers", value=part if not isinstance(part, list) else part[:8]))
                continue
            if len(part) % 2 or len(part) < 6:
                problems.append(LabelError(path, None, f"{where}: segmentation[{j}] needs >= 3 points (an even "
                                           f"count >= 6 of numbers), has {len(part)} numbers", value=part))
                continue
            polygons.append(np.asarray(part, dtype=np.float64).reshape(-1, 2))
        return Instance(class_id, polygons=polygons) if polygons else None
    if seg is not None and seg != []:
        problems.append(LabelError(path, None, f"{where}: 'segmentation' must be a polygon list or an RLE "
                                   f"object, not {type(seg).__name__}", value=seg))
        return None
    # detection-only annotation
    if bbox is None:
        problems.append(LabelError(path, None, f"{where}: missing key 'bbox' (and no segmentation)"))
        return None
    if not _finite_numbers(bbox) or len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
        problems.append(LabelError(path, None, f"{where}: 'bbox' must be [x, y, width, height] with "
                                   "positive size", value=bbox))
        return None
    x, y, bw, bh = (float(v) for v in bbox)
    return Instance(class_id, box=(x, y, x + bw, y + bh))


def load_coco(json_path: Path | str, image_dir: Path | str | None = None) -> ImportResult:
    """Read a COCO instances file. Images are looked up as ``image_dir / file_name``
    (default: the json's folder). Bad annotations/images are skipped and listed in
    ``problems``; a file that is not COCO at all raises :class:`LabelError`."""
    path = Path(json_path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise LabelError(path, None, "top level must be an object with 'images', 'annotations', 'categories'",
                         value=type(data).__name__)
    class_names, cat_to_class = _read_categories(data, path)
    images = _require(data, "images", path, "top level")
    anns = _require(data, "annotations", path, "top level")
    if not isinstance(images, list):
        raise LabelError(path, None, "'images' must be a list", value=type(images).__name__)
    if not isinstance(anns, list):
        raise LabelError(path, None, "'annotations' must be a list", value=type(anns).__name__)
    root = Path(image_dir) if image_dir is not None else path.parent
    result = ImportResult(class_names=class_names, source_root=root)
    problems = result.problems

    by_id: dict[Any, ImageAnnotation] = {}
    bad_images: set[Any] = set()
    for i, img in enumerate(images):
        iid = _require(img, "id", path, f"images[{i}]")
        file_name = _require(img, "file_name", path, f"images[{i}]")
        if not _is_id(iid):
            raise LabelError(path, None, f"images[{i}]: 'id' must be a number or a text", value=iid)
        if not isinstance(file_name, str) or not file_name:
            raise LabelError(path, None, f"images[{i}]: 'file_name' must be a non-empty text", value=file_name)
        if iid in by_id or iid in bad_images:
            raise LabelError(path, None, f"images[{i}]: duplicate image id", value=iid)
        where = f"images[{i}] (id {iid})"
        try:
            image_path = inside(root, file_name, f"{path}: {where} file_name", follow_links=False)  # no ../ or /abs out of the images folder
            actual = image_size(image_path)
        except PathOutsideError as exc:
            problems.append(LabelError(path, None, str(exc).removeprefix(f"{path}: ")))
            bad_images.add(iid)
            continue
        except ImageReadError as exc:
            problems.append(LabelError(path, None, f"{where}: {exc}"))
            bad_images.add(iid)
            continue
        w, h = img.get("width", actual[0]), img.get("height", actual[1])
        if (w, h) != actual or isinstance(w, bool) or isinstance(h, bool):
            problems.append(LabelError(path, None, f"{where}: width x height {w}x{h} differs from the image "
                                       f"file's {actual[0]}x{actual[1]} (EXIF orientation?)", value=file_name))
            bad_images.add(iid)
            continue
        by_id[iid] = ImageAnnotation(image_path, int(w), int(h))

    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            problems.append(LabelError(path, None, f"annotations[{i}]: expected an object", value=ann))
            continue
        where = f"annotations[{i}] (id {ann.get('id', '?')})"
        missing = [k for k in ("image_id", "category_id") if k not in ann]
        if missing:
            problems.append(LabelError(path, None, f"{where}: missing key '{missing[0]}'"))
            continue
        iid, cid = ann["image_id"], ann["category_id"]
        if not _is_id(iid) or not _is_id(cid):
            problems.append(LabelError(path, None, f"{where}: image_id and category_id must be numbers or text",
                                       value=iid if not _is_id(iid) else cid))
            continue
        if iid in bad_images:
            problems.append(LabelError(path, None, f"{where}: its image was skipped (see above)", value=iid))
            continue
        if iid not in by_id:
            problems.append(LabelError(path, None, f"{where}: unknown image_id", value=iid))
            continue
        if cid not in cat_to_class:
            problems.append(LabelError(path, None, f"{where}: unknown category_id", value=cid))
            continue
        target = by_id[iid]
        inst = _parse_segmentation(ann.get("segmentation"), ann.get("bbox"), cat_to_class[cid],
                                   target.height, target.width, where, path, problems)
        if inst is None:
            continue
        points: list = list(inst.polygons) if inst.polygons else [inst.bbox()]
        far = outside_image(points, target.width, target.height)
        if far is not None:
            problems.append(LabelError(path, None, f"{where}: point outside the {target.width}x{target.height} "
                                       "image", value=far))
            continue
        inst.iscrowd = bool(ann.get("iscrowd", 0))
        target.instances.append(inst)
    result.annotations = list(by_id.values())
    return result


# ----------------------------------------------------------------------------- writing

def _relative_name(image_path: Path, image_root: Path | None) -> str:
    if image_root is not None:
        try:
            return Path(image_path).resolve().relative_to(Path(image_root).resolve()).as_posix()
        except ValueError:
            pass
    return Path(image_path).name


def coco_dict(annotations: list[ImageAnnotation], class_names: list[str],
              image_root: Path | str | None = None) -> dict:
    """Build a COCO instances dict; ``file_name`` is relative to ``image_root`` when inside it."""
    root = Path(image_root) if image_root is not None else None
    images: list[dict] = []
    anns: list[dict] = []
    for img_id, ann in enumerate(annotations, start=1):
        images.append({"id": img_id, "file_name": _relative_name(ann.image_path, root),
                       "width": ann.width, "height": ann.height})
        for inst in ann.instances:
            if not 0 <= inst.class_id < len(class_names):
                raise LabelError(ann.image_path, None, f"class id out of range 0..{len(class_names) - 1}",
                                 value=inst.class_id)
            x0, y0, x1, y1 = inst.bbox()
            record: dict[str, Any] = {
                "id": len(anns) + 1, "image_id": img_id, "category_id": inst.class_id + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": int(inst.iscrowd),
            }
            if inst.is_box:
                record["segmentation"] = []
                record["area"] = (x1 - x0) * (y1 - y0)
            else:
                rle = instance_rle(inst, ann.height, ann.width)
                record["area"] = float(mask_utils.area(rle))
                if inst.holes or inst.iscrowd:
                    record["segmentation"] = {"size": [ann.height, ann.width],
                                              "counts": rle["counts"].decode("ascii")}  # novermin (bytes.decode)
                else:
                    record["segmentation"] = [p.ravel().tolist() for p in inst.polygons]
            anns.append(record)
    categories = [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(class_names)]
    return {"info": {"description": "exported by dfine-studio"}, "images": images,
            "annotations": anns, "categories": categories}


def save_coco(json_path: Path | str, annotations: list[ImageAnnotation], class_names: list[str],
              image_root: Path | str | None = None) -> Path:
    """Write a COCO instances json atomically; returns its path."""
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(coco_dict(annotations, class_names, image_root)))
    return path
