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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.annotation import ImageAnnotation
from core.errors import LabelError
from core.eval import rle as rle_ops
from core.eval.records import ImagePred


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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(path, None, f"cannot read the predictions file: {exc}") from exc
    root = Path(image_root) if image_root is not None else None
    by_key: dict[str, int] = {}
    for i, ann in enumerate(annotations):
        for k in _image_keys(Path(ann.image_path), root):
            by_key.setdefault(k, i)

    id_to_index: dict[object, int] = {}
    cat_to_class: dict[int, int] | None = None
    if isinstance(data, dict):
        rows = data.get("results", data.get("annotations"))
        if rows is None:
            raise LabelError(path, None, "a COCO dict needs 'annotations' or 'results' rows")
        for im in data.get("images", []):
            name = str(im.get("file_name", ""))
            idx = by_key.get(name, by_key.get(Path(name).name))
            if idx is not None:
                id_to_index[im["id"]] = idx
        if "categories" in data:
            names = {n: k for k, n in enumerate(class_names)}
            cat_to_class = {}
            for c in data["categories"]:
                if c.get("name") not in names:
                    raise LabelError(path, None, f"category {c.get('name')!r} is not a project class "
                                     f"({', '.join(class_names)})", c.get("name"))
                cat_to_class[int(c["id"])] = names[c["name"]]
    elif isinstance(data, list):
        rows = data
    else:
        raise LabelError(path, None, "expected a list of COCO result rows or a COCO dict", type(data).__name__)

    per_image: list[list[dict]] = [[] for _ in annotations]
    for n, row in enumerate(rows):
        where = f"row {n}"
        try:
            iid, cid, score = row["image_id"], int(row["category_id"]), float(row["score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelError(path, None, f"{where}: needs image_id, category_id and score", row) from exc
        if iid in id_to_index:
            idx = id_to_index[iid]
        elif isinstance(iid, str) and iid in by_key:
            idx = by_key[iid]
        elif isinstance(iid, int) and not id_to_index and 1 <= iid <= len(annotations):
            idx = iid - 1
        else:
            raise LabelError(path, None, f"{where}: image_id matches no project image", iid)
        cls = cat_to_class.get(cid) if cat_to_class is not None else cid - category_offset
        if cls is None or not 0 <= cls < len(class_names):
            hint = "" if cat_to_class is not None else f" (category_offset={category_offset}; try 0 or 1)"
            raise LabelError(path, None, f"{where}: category_id outside the {len(class_names)} classes{hint}", cid)
        per_image[idx].append({**row, "_cls": cls, "_score": score})

    preds = []
    for ann, rows_i in zip(annotations, per_image):
        if not rows_i:
            preds.append(ImagePred.empty(with_masks, str(ann.image_path)))
            continue
        masks = None
        if with_masks:
            masks = []
            for r in rows_i:
                seg = r.get("segmentation")
                masks.append(rle_ops.from_segmentation(seg, ann.height, ann.width) if seg
                             else rle_ops.box_to_rle(_xyxy(r, path), ann.height, ann.width))
        boxes = np.array([_xyxy(r, path) if "bbox" in r else rle_ops.to_xyxy([masks[k]])[0]
                          for k, r in enumerate(rows_i)], np.float64)
        preds.append(ImagePred(boxes, [r["_score"] for r in rows_i], [r["_cls"] for r in rows_i], masks,
                               str(ann.image_path)))
    return preds


def _xyxy(row: dict, path: Path) -> list[float]:
    try:
        x, y, w, h = (float(v) for v in row["bbox"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelError(path, None, "a row without segmentation needs bbox [x, y, w, h]", row.get("bbox")) from exc
    return [x, y, x + w, y + h]
