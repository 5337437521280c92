"""Our streamed COCO AP equals one direct pycocotools COCOeval over the same data (1e-9)."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core.annotation import ImageAnnotation, Instance
from core.eval.coco_ap import CocoAccumulator
from core.eval.evaluator import Evaluator
from core.eval.records import ImagePred, gt_from_annotation

H, W, C = 96, 128, 3


def random_polygon(rng, cx, cy, r):
    n = rng.integers(5, 10)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.5, 1.0, n)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)


def make_set(seed=0, n_images=12, crowd=True):
    """(annotations, per-image list of (polygon, score, label)) with perturbed/extra/missing predictions."""
    rng = np.random.default_rng(seed)
    anns, preds = [], []
    for i in range(n_images):
        insts, dets = [], []
        for _ in range(rng.integers(0, 7)):
            r = rng.uniform(4, 30)
            poly = random_polygon(rng, rng.uniform(0, W), rng.uniform(0, H), r)
            cls = int(rng.integers(0, C))
            is_crowd = bool(crowd and rng.random() < 0.12)
            insts.append(Instance(cls, polygons=[poly], iscrowd=is_crowd))
            if rng.random() < 0.85:  # detected, perturbed
                noisy = poly + rng.normal(0, r * 0.05, poly.shape) + rng.normal(0, r * 0.05, 2)
                label = cls if rng.random() < 0.9 else int(rng.integers(0, C))
                dets.append((noisy, float(rng.uniform(0.0, 1.0)), label))
        for _ in range(rng.integers(0, 4)):  # false positives
            dets.append((random_polygon(rng, rng.uniform(0, W), rng.uniform(0, H), rng.uniform(4, 25)),
                         float(rng.uniform(0, 0.7)), int(rng.integers(0, C))))
        if i == 0:  # more than 100 detections on one image: only the best 100 count
            for _ in range(130):
                dets.append((random_polygon(rng, rng.uniform(0, W), rng.uniform(0, H), 6),
                             float(rng.uniform(0, 1)), int(rng.integers(0, C))))
        anns.append(ImageAnnotation(f"img{i}.png", W, H, insts))
        preds.append(dets)
    return anns, preds


def to_pred(dets):
    if not dets:
        return ImagePred.empty(with_masks=True)
    rles = [mask_utils.frPyObjects([p.ravel().tolist()], H, W)[0] for p, _, _ in dets]
    boxes = mask_utils.toBbox(rles).astype(float)
    boxes[:, 2:] += boxes[:, :2]
    return ImagePred(boxes, [s for _, s, _ in dets], [lab for _, _, lab in dets], rles)


def direct_coco(anns, preds, iou_type):
    """Independent reference: one COCO json + one results list, one COCOeval."""
    images, gts, results = [], [], []
    for i, (ann, dets) in enumerate(zip(anns, preds)):
        images.append({"id": i + 1, "height": H, "width": W, "file_name": f"img{i}.png"})
        for inst in ann.instances:
            poly = inst.polygons[0]
            seg = [poly.ravel().tolist()]
            area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(seg, H, W))))
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            gts.append({"id": len(gts) + 1, "image_id": i + 1, "category_id": inst.class_id + 1,
                        "segmentation": seg, "area": area, "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "iscrowd": int(inst.iscrowd)})
        p = to_pred(dets)
        order = np.argsort(-p.scores, kind="stable")
        order = [k for k in order if p.scores[k] >= 0.01][:100]
        for k in order:
            r = {"image_id": i + 1, "category_id": int(p.labels[k]) + 1, "score": float(p.scores[k])}
            if iou_type == "segm":
                m = p.masks[k]
                r["segmentation"] = {"size": m["size"], "counts": m["counts"].decode()}
            else:
                b = p.boxes[k]
                r["bbox"] = [b[0], b[1], b[2] - b[0], b[3] - b[1]]
            results.append(r)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gts,
                      "categories": [{"id": c + 1, "name": str(c)} for c in range(C)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_ap_equals_direct_cocoeval(seed):
    anns, preds = make_set(seed)
    acc = CocoAccumulator(C)
    for ann, dets in zip(anns, preds):
        acc.add(gt_from_annotation(ann), to_pred(dets))
    ours = acc.compute()
    for t in ("segm", "bbox"):
        ref = direct_coco(anns, preds, t)
        assert np.allclose(ours[t]["stats"], ref.stats, atol=1e-9, rtol=0), t
        assert 0.05 < ours[t]["map"] < 0.95  # a non-trivial case
        prec = ref.eval["precision"]
        for k in range(C):
            pk = prec[:, :, k, 0, -1]
            expect = pk[pk > -1].mean() if (pk > -1).any() else None
            got = ours[t]["per_class"][str(k)]["map"]
            assert (got is None and expect is None) or abs(got - expect) < 1e-9


def test_crowd_regions_are_honoured():
    anns, preds = make_set(3, crowd=True)
    assert sum(i.iscrowd for a in anns for i in a.instances) >= 2
    acc, acc_nocrowd = CocoAccumulator(C), CocoAccumulator(C)
    for ann, dets in zip(anns, preds):
        acc.add(gt_from_annotation(ann), to_pred(dets))
        plain = ann.copy()
        for inst in plain.instances:
            inst.iscrowd = False
        acc_nocrowd.add(gt_from_annotation(plain), to_pred(dets))
    with_crowd, without = acc.compute(), acc_nocrowd.compute()
    assert np.allclose(with_crowd["segm"]["stats"], direct_coco(anns, preds, "segm").stats, atol=1e-9, rtol=0)
    assert abs(with_crowd["segm"]["map"] - without["segm"]["map"]) > 1e-3


def test_detection_inside_crowd_region_is_not_a_false_positive():
    sq = lambda x0, y0, x1, y1: np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    ann = ImageAnnotation("a.png", W, H, [Instance(0, polygons=[sq(0, 0, 20, 20)]),
                                          Instance(0, polygons=[sq(50, 20, 110, 80)], iscrowd=True)])
    dets = [(sq(60, 30, 80, 50), 0.95, 0), (sq(0, 0, 20, 20), 0.9, 0)]  # the crowd hit scores highest
    for crowd, expected in ((True, 1.0), (False, 0.5)):
        a = ann.copy()
        a.instances[1].iscrowd = crowd
        ev = Evaluator(1, task="segment")
        ev.add(gt_from_annotation(a), to_pred(dets))
        s = ev.summary()
        # with crowd: only the real object counts -> AP 1. Without: 2 GTs, the top det
        # (IoU 400/3600 with the big one) is an FP, so recall 0.5 at precision 0.5 -> AP@50 ~ 0.25
        if crowd:
            assert s.coco["segm"]["map50"] == pytest.approx(expected)
            assert (s.fixed.tp, s.fixed.fp, s.fixed.fn) == (1, 0, 0)
        else:
            assert s.coco["segm"]["map50"] < 0.5
            assert (s.fixed.tp, s.fixed.fp, s.fixed.fn) == (1, 1, 1)
