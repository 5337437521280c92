"""COCO mAP (mask and box) computed by pycocotools' COCOeval, streamed.

COCOeval's per-image step (``evaluateImg``) only depends on that image's GT and
detections, and ``accumulate`` only reads the list of per-image results. So each
image is evaluated as soon as it arrives (dense IoUs and annotations are dropped)
and only the small per-image match records are kept; ``compute`` hands them all
to one COCOeval's ``accumulate``/``summarize``. The numbers are those of a single
COCOeval over the whole set. Detections: score >= 0.01 and at most 100 per image
(the paper's protocol), applied before COCOeval.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core import rle as rle_ops
from core.eval.records import ImageGT, ImagePred

IOU_TYPES = ("segm", "bbox")


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools prints progress


def _coco(image: dict, anns: list[dict], cats: list[dict]) -> COCO:
    c = COCO()
    c.dataset = {"images": [image], "annotations": anns, "categories": cats}
    with _quiet():
        c.createIndex()
    return c


def _slim(e: dict | None) -> dict | None:
    """Keep only what COCOeval.accumulate reads (scores, match flags, ignore flags), compactly."""
    if e is None:
        return None
    return {"dtScores": np.asarray(e["dtScores"], np.float64), "dtMatches": np.asarray(e["dtMatches"]) != 0,
            "dtIgnore": np.asarray(e["dtIgnore"], bool), "gtIgnore": np.asarray(e["gtIgnore"], bool)}


class CocoAccumulator:
    """Feed images with :meth:`add`; read mAP@50:95, @50, @75 and per class with :meth:`compute`."""

    def __init__(self, num_classes: int, iou_types: Sequence[str] = IOU_TYPES, conf: float = 0.01,
                 max_dets: int = 100, class_names: Sequence[str] | None = None):
        bad = [t for t in iou_types if t not in IOU_TYPES]
        if bad:
            raise ValueError(f"iou types must be among {IOU_TYPES}, got {bad}")
        self.num_classes = num_classes
        self.iou_types = tuple(iou_types)
        self.conf = conf
        self.max_dets = max_dets
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self._cats = [{"id": c + 1, "name": self.class_names[c]} for c in range(num_classes)]
        self._evals: dict[str, list[list]] = {t: [] for t in self.iou_types}
        self._n_images = 0

    def _anns(self, gt_or_pred, iou_type: str, is_gt: bool, img_id: int) -> list[dict]:
        anns = []
        boxes = rle_ops.xyxy_to_xywh(gt_or_pred.boxes)
        masks = gt_or_pred.masks
        if iou_type == "segm" and masks is None:
            raise ValueError("mask AP needs masks on both GT and predictions")
        areas = rle_ops.area(masks) if masks is not None else boxes[:, 2] * boxes[:, 3]
        for k in range(len(gt_or_pred)):
            a = {"id": k + 1, "image_id": img_id, "category_id": int(gt_or_pred.labels[k]) + 1,
                 "bbox": boxes[k].tolist()}
            if iou_type == "segm":
                a["segmentation"] = masks[k]
                a["area"] = float(areas[k])
            else:  # boxes: GT keeps its mask area for the area ranges, like a COCO json
                a["area"] = float(areas[k]) if is_gt else float(boxes[k, 2] * boxes[k, 3])
            if is_gt:
                a["iscrowd"] = int(gt_or_pred.iscrowd[k])
            else:
                a["score"] = float(gt_or_pred.scores[k])
                a["iscrowd"] = 0
            anns.append(a)
        return anns

    def add(self, gt: ImageGT, pred: ImagePred) -> None:
        for what, labels in (("GT", gt.labels), ("predicted", pred.labels)):
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"{gt.image_id or 'image'}: {what} class id outside 0..{self.num_classes - 1}")
        self._n_images += 1
        img_id = self._n_images
        pred = pred.top(self.conf, self.max_dets)
        image = {"id": img_id, "height": gt.height, "width": gt.width}
        for t in self.iou_types:
            ev = COCOeval(_coco(image, self._anns(gt, t, True, img_id), self._cats),
                          _coco(image, self._anns(pred, t, False, img_id), self._cats), t)
            ev.params.imgIds = [img_id]
            ev.params.maxDets = self._max_dets_list()
            ev.params.catIds = [c["id"] for c in self._cats]
            with _quiet():
                ev.evaluate()
            self._evals[t].append([_slim(e) for e in ev.evalImgs])  # ordered [category][area range]

    def _max_dets_list(self) -> list[int]:
        # COCO's 1/10/100 with the last one = our per-image cap (stats[0..2] use the last)
        return sorted({1, 10, self.max_dets}) if self.max_dets > 10 else [1, 10, 100]

    def _compute_one(self, iou_type: str) -> dict:
        ev = COCOeval(iouType=iou_type)
        p = ev.params
        p.imgIds = list(range(1, self._n_images + 1))
        p.catIds = [c["id"] for c in self._cats]
        p.maxDets = self._max_dets_list()
        n_a, per_img = len(p.areaRng), self._evals[iou_type]
        ev.evalImgs = [per_img[i][k * n_a + a]
                       for k in range(len(p.catIds)) for a in range(n_a) for i in range(self._n_images)]
        ev._paramsEval = copy.deepcopy(p)
        with _quiet():
            ev.accumulate()
            ev.summarize()
        prec = ev.eval["precision"]  # [T, R, K, A, M]
        per_class = {}
        for k, name in enumerate(self.class_names):
            pk = prec[:, :, k, 0, -1]
            p50 = prec[0, :, k, 0, -1]
            per_class[name] = {"map": float(pk[pk > -1].mean()) if (pk > -1).any() else None,
                               "map50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else None}
        s = ev.stats
        return {"map": float(s[0]), "map50": float(s[1]), "map75": float(s[2]), "stats": [float(v) for v in s],
                "per_class": per_class}

    def compute(self) -> dict[str, dict]:
        """{"segm"|"bbox": {"map", "map50", "map75", "stats" (COCOeval's 12), "per_class"}}."""
        if self._n_images == 0:
            return {}
        return {t: self._compute_one(t) for t in self.iou_types}
