"""Error analysis finds mistakes injected into a clean synthetic labelled set.

Predictions are the clean labels, lightly jittered, with model-like noise (random
low-score false positives, some true objects found only at low score). Mistakes
of every kind are injected into the labels; the top-K of the ranked list
(K = number of injected mistakes) must be >= 90 % injected mistakes and must
contain >= 90 % of them.
"""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from core.analysis.find_mistakes import analyze, analyze_image
from core.annotation import ImageAnnotation, Instance
from core.eval.records import ImagePred
from core.rle import box_iou

H, W, C = 120, 160, 3


def star(rng, cx, cy, r, n=8):
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.7, 1.0, n)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)


def clean_set(rng, n_images=40):
    anns = []
    for i in range(n_images):
        insts = []
        for _ in range(60):
            if len(insts) >= rng.integers(3, 7):
                break
            r = rng.uniform(8, 22)
            cx, cy = rng.uniform(r, W - r), rng.uniform(r, H - r)
            if any(np.hypot(*(np.mean(j.polygons[0], 0) - (cx, cy))) < 2.2 * r + 20 for j in insts):
                continue
            insts.append(Instance(int(rng.integers(0, C)), polygons=[star(rng, cx, cy, r)]))
        anns.append(ImageAnnotation(f"img{i:03d}.png", W, H, insts))
    return anns


def predictions(rng, ann):
    """Clean labels jittered (vertex noise ~3% of size, shift ~2%), plus model noise."""
    polys, scores, labels = [], [], []
    for inst in ann.instances:
        p = inst.polygons[0]
        size = np.ptp(p, 0).mean()
        polys.append(p + rng.normal(0, 0.03 * size, p.shape) + rng.normal(0, 0.02 * size, 2))
        scores.append(rng.uniform(0.15, 0.45) if rng.random() < 0.08 else rng.uniform(0.6, 0.98))
        labels.append(inst.class_id)
    for _ in range(rng.integers(0, 3)):  # low-confidence false positives
        polys.append(star(rng, rng.uniform(10, W - 10), rng.uniform(10, H - 10), rng.uniform(5, 15)))
        scores.append(rng.uniform(0.05, 0.4))
        labels.append(int(rng.integers(0, C)))
    if not polys:
        return ImagePred.empty(with_masks=True)
    rles = [mask_utils.frPyObjects([q.ravel().tolist()], H, W)[0] for q in polys]
    boxes = mask_utils.toBbox(rles)
    boxes[:, 2:] += boxes[:, :2]
    return ImagePred(boxes, scores, labels, rles)


def inject(rng, anns):
    """Returns mutated annotations and the injected mistakes [(image, kind, instance or box)]."""
    out, truth = [], []
    kinds = ["missing_label", "wrong_class", "bad_geometry", "duplicate_label", "spurious_label",
             "out_of_image", "degenerate_geometry"]
    for i, ann in enumerate(anns):
        a = ann.copy()
        if i % 2 or not a.instances:  # every other image stays clean
            out.append(a)
            continue
        kind = kinds[(i // 2) % len(kinds)]
        k = int(rng.integers(0, len(a.instances)))
        inst = a.instances[k]
        if kind == "missing_label":
            truth.append((i, kind, inst.bbox()))
            del a.instances[k]
        elif kind == "wrong_class":
            inst.class_id = (inst.class_id + int(rng.integers(1, C))) % C
            truth.append((i, kind, k))
        elif kind == "bad_geometry":
            p = inst.polygons[0]
            c = p.mean(0)
            size = np.ptp(p, 0)
            if rng.random() < 0.5:
                inst.polygons = [c + (p - c) * 0.55]  # shrunk
            else:
                inst.polygons = [p + size * rng.choice([-1, 1], 2) * 0.35]  # shifted
            truth.append((i, kind, k))
        elif kind == "duplicate_label":
            dup = inst.copy()
            dup.polygons = [dup.polygons[0] + rng.normal(0, 0.3, dup.polygons[0].shape)]
            a.instances.append(dup)
            truth.append((i, kind, len(a.instances) - 1))
        elif kind == "spurious_label":
            for _ in range(200):
                cx, cy = rng.uniform(12, W - 12), rng.uniform(12, H - 12)
                if all(np.hypot(*(np.mean(j.polygons[0], 0) - (cx, cy))) > 45 for j in a.instances):
                    break
            a.instances.append(Instance(int(rng.integers(0, C)), polygons=[star(rng, cx, cy, 10)]))
            truth.append((i, kind, len(a.instances) - 1))
        elif kind == "out_of_image":
            p = inst.polygons[0].copy()  # a vertex dragged well past the right border
            j = int(np.argmax(p[:, 0]))
            p[j, 0] = W + 0.5 * np.ptp(p[:, 0])
            inst.polygons = [p]
            truth.append((i, kind, k))
        elif kind == "degenerate_geometry":
            a.instances.append(Instance(int(rng.integers(0, C)), polygons=[[[30, 30], [31, 30], [30, 31]]]))
            truth.append((i, kind, len(a.instances) - 1))
        out.append(a)
    return out, truth


def is_hit(issue, t, anns_path_index):
    i, kind, where = t
    # one issue per instance: an injected kind may be the reported kind or listed as "also"
    if anns_path_index[issue.image] != i or kind not in (issue.kind, *issue.evidence.get("also", [])):
        return False
    if isinstance(where, tuple):  # missing label: compare the suggested region with the dropped one
        return box_iou(np.array([issue.box]), np.array([where]))[0, 0] > 0.5
    return issue.instance == where


@pytest.mark.parametrize("task", ["segment", "detect"])
@pytest.mark.parametrize("seed", [0, 1])
def test_injected_mistakes_rank_first(seed, task):
    rng = np.random.default_rng(seed)
    clean = clean_set(rng)
    preds = [predictions(rng, a) for a in clean]
    noisy, truth = inject(rng, clean)
    assert len(truth) >= 18
    issues = analyze(noisy, preds, task=task)
    index = {str(a.image_path): i for i, a in enumerate(noisy)}
    k = len(truth)
    top = issues[:k]
    hits = [any(is_hit(x, t, index) for t in truth) for x in top]
    found = [any(is_hit(x, t, index) for x in top) for t in truth]
    precision_at_k, recall_at_k = np.mean(hits), np.mean(found)
    print(f"{task} seed {seed}: K={k} precision@K={precision_at_k:.3f} recall@K={recall_at_k:.3f} issues={len(issues)}")
    assert precision_at_k >= 0.9 and recall_at_k >= 0.9


def test_clean_labels_give_no_confident_issue():
    rng = np.random.default_rng(5)
    clean = clean_set(rng, 10)
    issues = analyze(clean, [predictions(rng, a) for a in clean])
    assert all(i.score < 0.5 for i in issues), [(i.kind, round(i.score, 2)) for i in issues if i.score >= 0.5]


def test_issue_content_for_each_kind():
    sq = lambda x0, y0, x1, y1: np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    ann = ImageAnnotation("a.png", W, H, [
        Instance(0, polygons=[sq(10, 10, 30, 30)]),  # 0 labelled 0, model says 2 -> wrong class
        Instance(1, polygons=[sq(50, 10, 70, 30)]),  # 1 ok
        Instance(1, polygons=[sq(50, 10, 70, 30)]),  # 2 duplicate of 1
        Instance(0, polygons=[sq(100, 10, 110, 20)]),  # 3 model sees 100..120 x 10..30 -> bad geometry
        Instance(0, polygons=[sq(10, 80, 30, 100)]),  # 4 nothing predicted -> spurious
        Instance(1, polygons=[sq(150, 50, 170, 70)]),  # 5 half outside the image (W = 160)
    ])
    boxes = np.array([[10, 10, 30, 30], [50, 10, 70, 30], [100, 10, 120, 30], [60, 70, 90, 100]], float)
    rles = [mask_utils.frPyObjects(np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]]]), H, W)[0] for b in boxes]
    pred = ImagePred(boxes, [0.9, 0.8, 0.85, 0.7], [2, 1, 0, 2], rles)  # the last one: missing label
    got = {i.kind: i for i in analyze_image(ann, pred)}
    assert set(got) == {"wrong_class", "duplicate_label", "bad_geometry", "spurious_label", "missing_label",
                        "out_of_image"}
    assert got["wrong_class"].instance == 0 and got["wrong_class"].fix == {"action": "set_class", "class_id": 2}
    assert got["wrong_class"].score == pytest.approx(0.9)  # score 0.9 x IoU 1.0
    assert got["duplicate_label"].instance == 2 and got["duplicate_label"].evidence["other_instance"] == 1
    bad = got["bad_geometry"]
    assert bad.instance == 3 and bad.evidence["iou"] == pytest.approx(0.25)  # 100 px inside 400 px
    # confidence 0.85 x min(1, 2 (1 - IoU / typical IoU)); uncalibrated, the typical IoU is good_iou = 0.7
    assert bad.score == pytest.approx(0.85 * min(1, 2 * (1 - 0.25 / 0.7)))
    assert bad.fix["action"] == "replace_geometry" and bad.fix["box"] == [100, 10, 120, 30]
    xs, ys = bad.fix["polygons"][0][0::2], bad.fix["polygons"][0][1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((100, 119, 10, 29), abs=1)
    assert got["spurious_label"].instance == 4 and got["spurious_label"].score == pytest.approx(0.75)
    miss = got["missing_label"]
    assert miss.instance is None and miss.fix["class_id"] == 2 and miss.score == pytest.approx(0.7)
    out = got["out_of_image"]
    assert out.instance == 5 and out.evidence["outside_fraction"] == pytest.approx(0.5)
    assert out.fix["action"] == "clip"
    cx = out.fix["polygons"][0][0::2]
    assert max(cx) == pytest.approx(160) and min(cx) == pytest.approx(150)
