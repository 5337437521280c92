"""Pre-labeling: a trained model proposes polygons the person then fixes or accepts.

The engine's ``Predictor`` returns masks; here they become *editable* polygons with
``core.geometry.mask_to_polygons`` (pixel-edge outlines, holes kept, valid), simplified to
within a pixel (few vertices to drag). Proposals are ``source="model"`` and drawn dashed until
the person edits or accepts them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.annotation import Instance
from core.geometry import box_iou, mask_to_polygons

DEFAULT_TOLERANCE_PX = 1.0  # simplification: max distance of the polygon from the traced contour
DEFAULT_MIN_AREA_PX = 16.0  # specks below this are noise, not objects


def mask_instance(mask: np.ndarray, class_id: int, score: float | None = None) -> Instance | None:
    """Editable model-made polygon(s) of a bool mask, holes kept; None for an empty mask."""
    polys, holes = mask_to_polygons(mask, DEFAULT_TOLERANCE_PX, DEFAULT_MIN_AREA_PX)
    if not polys:
        return None
    return Instance(class_id=class_id, polygons=polys, holes=holes, source="model", score=score)


def best_detection_mask(det, box: tuple[float, float, float, float], min_iou: float = 0.1
                        ) -> tuple[int, np.ndarray] | None:
    """(index, mask clipped to ``box``) of the detection that best fills ``box`` (box IoU), or None."""
    masks = det.mask_array() if hasattr(det, "mask_array") else det.masks
    if masks is None or not len(det.scores):
        return None
    x0, y0, x1, y1 = box
    iou = box_iou(det.boxes, [box])[:, 0]
    k = int(np.argmax(iou))
    if iou[k] < min_iou:
        return None
    h, w = masks.shape[1:]
    clip = np.zeros((h, w), bool)
    clip[int(max(0, np.floor(y0))):int(min(h, np.ceil(y1))), int(max(0, np.floor(x0))):int(min(w, np.ceil(x1)))] = True
    return k, np.asarray(masks[k], bool) & clip


MAX_PROPOSALS_PER_IMAGE = 50  # beyond this a pre-label is noise to delete, not help (COCO images: median 4)


def proposal_floor(project, requested: float | None = None) -> float:
    """The lowest score a proposal may have: the project's inference threshold (what the model
    is validated and exported with), never a lower slider value such as live view's 0.01."""
    conf = float(getattr(getattr(project.config, "infer", None), "conf", 0.5))
    return max(conf, requested or 0.0)


def keep_confident(instances: list[Instance], floor: float, cap: int = MAX_PROPOSALS_PER_IMAGE
                   ) -> tuple[list[Instance], int]:
    """The proposals the model stands behind (score >= ``floor``), best first, at most ``cap``;
    and how many were left out (the status line says so)."""
    ranked = sorted(instances, key=lambda i: -(i.score if i.score is not None else 1.0))
    kept = [i for i in ranked if (i.score if i.score is not None else 1.0) >= floor][:cap]
    return kept, len(instances) - len(kept)


def class_mapping(model_names: list[str], project_names: list[str]) -> dict[int, int]:
    """Model class id -> project class id: by name when the names overlap, else by
    position (a model trained on this project has the same list)."""
    by_name = {n: i for i, n in enumerate(project_names)}
    named = {k: by_name[n] for k, n in enumerate(model_names) if n in by_name}
    if named:
        return named
    return {k: k for k in range(min(len(model_names) or len(project_names), len(project_names)))}


def detections_to_instances(det, mapping: dict[int, int], tolerance: float = DEFAULT_TOLERANCE_PX,
                            min_area: float = DEFAULT_MIN_AREA_PX, as_boxes: bool = False) -> list[Instance]:
    """One image's ``Detections`` -> model-made instances (polygons from masks, or boxes)."""
    out: list[Instance] = []
    h, w = det.image_size
    masks = None if as_boxes else det.mask_array() if hasattr(det, "mask_array") else det.masks
    for k in range(len(det.scores)):
        cid = mapping.get(int(det.labels[k]))
        if cid is None:
            continue
        x0, y0, x1, y1 = (float(v) for v in det.boxes[k])
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(w), x1), min(float(h), y1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        score = float(det.scores[k])
        if masks is not None:
            # trace only inside the box (masks are zero outside it), then shift back
            ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
            ix1, iy1 = int(np.ceil(x1)), int(np.ceil(y1))
            crop = np.zeros((iy1 - iy0 + 2, ix1 - ix0 + 2), np.uint8)  # 1 px frame keeps edge pixels traceable
            crop[1:-1, 1:-1] = masks[k, iy0:iy1, ix0:ix1]
            polys, holes = mask_to_polygons(crop, tolerance, min_area)
            shift = np.array([ix0 - 1, iy0 - 1], dtype=np.float64)
            if polys:
                out.append(Instance(class_id=cid, polygons=[p + shift for p in polys],
                                    holes=[q + shift for q in holes], source="model", score=score))
            continue
        out.append(Instance(class_id=cid, box=(x0, y0, x1, y1), source="model", score=score))
    return out


def load_predictor(model_path: Path, conf: float):
    from core.infer.predictor import Predictor

    return Predictor.load(model_path, conf=conf)


def predict_images(task, model_path: Path, image_paths: list[Path], project_names: list[str],
                   conf: float, read: Callable[[Path], np.ndarray], as_boxes: bool = False,
                   predictor=None) -> dict[Path, list[Instance]]:
    """Worker body: proposals for each image; stops early (keeping what is done) on cancel."""
    predictor = predictor or load_predictor(model_path, conf)
    mapping = class_mapping(list(getattr(predictor, "class_names", []) or []), project_names)
    results: dict[Path, list[Instance]] = {}
    total = len(image_paths)
    for n, path in enumerate(image_paths):
        if task is not None and task.cancelled:
            break
        if task is not None:
            task.progress(n, total, Path(path).name)
        det = predictor.predict([read(path)])[0]
        results[Path(path)] = detections_to_instances(det, mapping, as_boxes=as_boxes)
    if task is not None:
        task.progress(len(results), total, "done")
    return results
