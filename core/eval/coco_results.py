"""Read a COCO "results" file (the standard detection output format) into per-image predictions.

Rows: {"image_id", "category_id", "bbox": [x, y, w, h], "score", optional
"segmentation" (RLE with str/bytes/list counts, or polygons)}. The file is either
a plain list of rows, or a COCO dict holding "images" and "categories" next to
its rows ("annotations" or "results"), which makes image and class mapping exact.

Without such a dict: a string image_id is matched to an image by relative path,
file name or stem; an integer image_id is the 1-based position in the image list
(the ids `dfine convert --to coco` writes); category_id - category_offset is the
class index (offset 1 = COCO's convention and our COCO export).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.annotation import ImageAnnotation
from core.atomic_io import atomic_write_text
from core.bounded_input import loads_json
from core.errors import LabelError
from core import rle as rle_ops
from core.eval.records import ImagePred, pred_from_arrays


def _image_keys(path: Path, root: Path | None) -> list[str]:
    keys = [path.name, path.stem, str(path)]
    if root is not None:
        try:
            keys.insert(0, path.relative_to(root).as_posix())
        except ValueError:
            pass
    return keys


def load_coco_results(path: Path | str, annotations: Sequence[ImageAnnotation], class_names: Sequence[str],
                      image_root: Path | str | None = None, category_offset: int = 1,
                      with_masks: bool = True) -> list[ImagePred]:
    """Predictions aligned with ``annotations`` (images without rows get no predictions)."""
    path = Path(path)
    data = _read_results(path)
    root = Path(image_root) if image_root is not None else None
    by_key: dict[str, int] = {}
    for i, ann in enumerate(annotations):
        for k in _image_keys(Path(ann.image_path), root):
            by_key.setdefault(k, i)
    if isinstance(data, dict):
        rows, id_to_index, cat_to_class = _coco_dict_parts(data, path, by_key, class_names)
    elif isinstance(data, list):
        rows, id_to_index, cat_to_class = data, {}, None
    else:
        raise LabelError(path, None, "expected a list of COCO result rows or a COCO dict", type(data).__name__)
    per_image: list[list[dict]] = [[] for _ in annotations]
    for n, row in enumerate(rows):
        idx, cls, score = _place_row(row, n, path, id_to_index, by_key, len(annotations), cat_to_class,
                                     category_offset, class_names)
        per_image[idx].append({**row, "_cls": cls, "_score": score, "_n": n})
    return [_image_pred(ann, rows_i, path, with_masks) for ann, rows_i in zip(annotations, per_image)]


def _read_results(path: Path):
    try:
        return loads_json(path.read_bytes(), path)
    except IsADirectoryError:
        raise LabelError(path, None, "is a folder, not a predictions file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(path, None, f"cannot read the predictions file: {exc}") from exc


def _coco_dict_parts(data: dict, path: Path, by_key: dict[str, int], class_names: Sequence[str]
                     ) -> tuple[list, dict[object, int], dict[int, int] | None]:
    """(rows, image id -> annotation index, category id -> class) of a COCO dict."""
    rows = data.get("results", data.get("annotations"))
    if rows is None:
        raise LabelError(path, None, "a COCO dict needs 'annotations' or 'results' rows")
    if not isinstance(rows, list):
        raise LabelError(path, None, "'annotations'/'results' must be a list of rows", type(rows).__name__)
    images = data.get("images", [])
    if not isinstance(images, list):
        raise LabelError(path, None, "'images' must be a list", type(images).__name__)
    id_to_index: dict[object, int] = {}
    for n, im in enumerate(images):
        if not isinstance(im, dict) or not _is_id(im.get("id")):
            raise LabelError(path, None, f"images[{n}]: needs a whole-number or text 'id'", im)
        name = str(im.get("file_name", ""))
        idx = by_key.get(name, by_key.get(Path(name).name))
        if idx is not None:
            id_to_index[im["id"]] = idx
    if "categories" not in data:
        return rows, id_to_index, None
    names = {n: k for k, n in enumerate(class_names)}
    cat_to_class: dict[int, int] = {}
    cats = data["categories"]
    for n, c in enumerate(cats if isinstance(cats, list) else [cats]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise LabelError(path, None, f"categories[{n}]: needs a whole-number 'id' and a 'name'", c)
        if not isinstance(c.get("name"), str) or c["name"] not in names:
            raise LabelError(path, None, f"category {c.get('name')!r} is not a project class "
                             f"({', '.join(class_names)})", c.get("name"))
        cat_to_class[c["id"]] = names[c["name"]]
    return rows, id_to_index, cat_to_class


def _place_row(row, n: int, path: Path, id_to_index: dict[object, int], by_key: dict[str, int], num_images: int,
               cat_to_class: dict[int, int] | None, category_offset: int, class_names: Sequence[str]
               ) -> tuple[int, int, float]:
    """(annotation index, class, score) of result row ``n``; LabelError naming the row otherwise."""
    where = f"row {n}"
    try:
        iid, cid, score = row["image_id"], row["category_id"], float(row["score"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelError(path, None, f"{where}: needs image_id, category_id and score", _short(row)) from exc
    if not _is_id(iid):
        raise LabelError(path, None, f"{where}: image_id must be a whole number or a text", _short(iid))
    if not isinstance(cid, int) or isinstance(cid, bool):
        raise LabelError(path, None, f"{where}: category_id must be a whole number", _short(cid))
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise LabelError(path, None, f"{where}: score must be a number in [0, 1]", row["score"])
    if iid in id_to_index:
        idx = id_to_index[iid]
    elif isinstance(iid, str) and iid in by_key:
        idx = by_key[iid]
    elif isinstance(iid, int) and not id_to_index and 1 <= iid <= num_images:
        idx = iid - 1
    else:
        raise LabelError(path, None, f"{where}: image_id matches no project image", iid)
    cls = cat_to_class.get(cid) if cat_to_class is not None else cid - category_offset
    if cls is None or not 0 <= cls < len(class_names):
        hint = "" if cat_to_class is not None else f" (category_offset={category_offset}; try 0 or 1)"
        raise LabelError(path, None, f"{where}: category_id outside the {len(class_names)} classes{hint}", cid)
    return idx, cls, score


def _image_pred(ann: ImageAnnotation, rows: list[dict], path: Path, with_masks: bool) -> ImagePred:
    """One image's rows as an ImagePred (a row without a segmentation gets its box as the mask)."""
    if not rows:
        return ImagePred.empty(with_masks, str(ann.image_path))
    masks = None
    if with_masks:
        masks = []
        for r in rows:
            seg = r.get("segmentation")
            try:
                masks.append(rle_ops.from_segmentation(seg, ann.height, ann.width) if seg
                             else rle_ops.box_to_rle(_xyxy(r, path, ann), ann.height, ann.width))
            except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
                raise LabelError(path, None, f"row {r['_n']}: segmentation for {Path(ann.image_path).name}: "
                                 f"{exc}", _short(seg)) from None
    boxes = np.array([_xyxy(r, path, ann) if "bbox" in r else rle_ops.to_xyxy([masks[k]])[0]
                      for k, r in enumerate(rows)], np.float64)
    return pred_from_arrays(boxes, [r["_score"] for r in rows], [r["_cls"] for r in rows], masks, str(ann.image_path))


def _xyxy(row: dict, path: Path, ann: ImageAnnotation) -> list[float]:
    try:
        x, y, w, h = (float(v) for v in row["bbox"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelError(path, None, f"row {row.get('_n')}: a row without segmentation needs bbox [x, y, w, h]",
                         _short(row.get("bbox"))) from exc
    box = [x, y, x + w, y + h]
    try:  # finite and within a sane multiple of the image, before anything is rasterised
        rle_ops.check_geometry(box, ann.height, ann.width, "bbox value")
    except ValueError as exc:
        raise LabelError(path, None, f"row {row.get('_n')}: {exc}", row.get("bbox")) from None
    if w < 0 or h < 0:
        raise LabelError(path, None, f"row {row.get('_n')}: bbox width and height must be >= 0", row.get("bbox"))
    return box


def _is_id(v: object) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def _short(v: object, limit: int = 80) -> str:
    """A value as it can appear in a one-line message."""
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def write_coco_results(path: Path | str, image_keys: Sequence[str], predictions: Sequence[ImagePred],
                       class_names: Sequence[str]) -> None:
    """A COCO results dict ({"images", "categories", "results"}) that :func:`load_coco_results`
    maps back exactly: ``image_keys[i]`` (a path relative to the image folder) is image ``i + 1``'s
    file_name, class ``c`` is category ``c + 1`` named ``class_names[c]``; masks as RLE (str counts).
    Written atomically, so a reader never sees half a file."""

    if len(image_keys) != len(predictions):
        raise ValueError(f"{len(image_keys)} image keys for {len(predictions)} predictions")
    rows = []
    for n, pred in enumerate(predictions, 1):
        for k in range(len(pred)):
            x0, y0, x1, y1 = (float(v) for v in pred.boxes[k])
            row = {"image_id": n, "category_id": int(pred.labels[k]) + 1,
                   "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                   "score": round(float(pred.scores[k]), 5)}
            if pred.masks is not None:
                row["segmentation"] = rle_ops.to_json(pred.masks[k])
            rows.append(row)
    doc = {"images": [{"id": n, "file_name": key} for n, key in enumerate(image_keys, 1)],
           "categories": [{"id": c + 1, "name": name} for c, name in enumerate(class_names)],
           "results": rows}
    atomic_write_text(Path(path), json.dumps(doc, separators=(",", ":")))
