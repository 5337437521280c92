"""Calibrated ranking (issue #15): with a simulated *decent* model that makes its own mistakes
(flickering false positives, class confusions, misses, sloppy boxes), the label mistakes rank
above the model's mistakes once the mirrored view and per-class calibration are used."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.calibration import _class_curve, calibrate
from core.analysis.find_mistakes import AnalysisConfig, analyze
from core.annotation import ImageAnnotation, Instance
from core.eval.records import ImagePred

W = H = 200
SLOTS = [(10, 10), (110, 10), (10, 110)]  # three 60 px objects per image; (110, 110) stays background
C = 3


def box(x, y, s=60):
    return (float(x), float(y), float(x + s), float(y + s))


def simulate(seed: int = 0, n_images: int = 60):
    """(noisy labels, predictions, mirrored predictions, truth: [(image, instance, None) or (image, None, box)])."""
    rng = np.random.default_rng(seed)
    anns, preds, flips, truth = [], [], [], []
    kinds = ["missing_label"] * 8 + ["wrong_class"] * 8 + ["spurious_label"] * 6 + ["bad_geometry"] * 6
    mistakes = dict(zip(rng.choice(n_images * 3, len(kinds), replace=False).tolist(), kinds))
    for i in range(n_images):
        name = f"img{i:03d}.png"
        insts, rows, frows = [], [], []
        background_used = False

        def pred(b, scores: dict[int, float], mirrored: dict[int, float], rows=rows, frows=frows):
            for c, s in scores.items():
                rows.append((b, s, c))
            for c, s in mirrored.items():
                frows.append((b, s, c))

        for slot, (x, y) in enumerate(SLOTS):
            c = int(rng.integers(0, C))
            b = box(x + rng.uniform(-1.5, 1.5), y + rng.uniform(-1.5, 1.5))  # the model's box: 1-2 px off
            s = float(rng.uniform(0.7, 0.95))
            kind = mistakes.get(i * 3 + slot)
            r = rng.random()
            if kind is None and r < 0.08:  # model miss: a weak trace in both views
                pred(b, {c: 0.12}, {c: 0.1})
            elif kind is None and r < 0.12:  # model class confusion: unsure between two classes
                pred(b, {c: 0.5, (c + 1) % C: 0.55}, {c: 0.5, (c + 1) % C: 0.5})
            else:
                pred(b, {c: s}, {c: s - 0.03})
            if kind == "missing_label":
                truth.append((name, None, box(x, y)))
                continue
            label_class = (c + 1) % C if kind == "wrong_class" else c
            lb = box(x + 25, y + 25) if kind == "bad_geometry" else box(x, y)
            if kind in ("wrong_class", "bad_geometry"):
                truth.append((name, len(insts), None))
            insts.append(Instance(label_class, box=lb))
            if kind == "spurious_label" and not background_used:  # a label on the empty slot
                truth.append((name, len(insts), None))
                insts.append(Instance(int(rng.integers(0, C)), box=box(110, 110)))
                background_used = True
        if rng.random() < 0.15:  # a confident false positive that the mirrored view does not repeat
            rows.append((box(120, 120, 40), float(rng.uniform(0.6, 0.8)), int(rng.integers(0, C))))
        anns.append(ImageAnnotation(name, W, H, insts))
        preds.append(ImagePred(np.array([r[0] for r in rows]).reshape(-1, 4), [r[1] for r in rows],
                               [r[2] for r in rows], image_id=name))
        flips.append(ImagePred(np.array([r[0] for r in frows]).reshape(-1, 4), [r[1] for r in frows],
                               [r[2] for r in frows], image_id=name))
    return anns, preds, flips, truth


def hits(issues, truth) -> list[bool]:
    def hit(it):
        for name, inst, b in truth:
            if it.image != name:
                continue
            if inst is not None and it.instance == inst:
                return True
            if inst is None and it.instance is None and abs(it.box[0] - b[0]) < 5 and abs(it.box[1] - b[1]) < 5:
                return True
        return False
    return [hit(i) for i in issues]


def test_label_mistakes_rank_above_model_mistakes():
    anns, preds, flips, truth = simulate()
    n = len(truth)
    assert n == 28
    cfg = AnalysisConfig()
    cal = calibrate(anns, preds, "detect", cfg, flips=flips, num_classes=C)
    ours = analyze(anns, preds, "detect", cfg, flips=flips, calibration=cal, class_names=["a", "b", "c"])
    h = hits(ours, truth)
    assert all(h[:n]) and sum(h) == n  # precision@N = recall@N = 1.0: every label mistake first
    assert {i.kind for i in ours[:n]} == {"missing_label", "wrong_class", "spurious_label", "bad_geometry"}
    # the simulated model's mistakes come after, weaker: its flickers are not flagged at all
    assert all(i.score < ours[n - 1].score for i in ours[n:])
    assert not any(i.kind == "missing_label" and i.box[0] > 115 for i in ours)
    swap = next(i for i in ours if i.kind == "wrong_class")
    assert swap.message.startswith("model says ") and "mirrored view" in swap.message and "label says" in swap.message

    # the plain ranking (no mirrored view, no calibration) lets the flickers in between
    plain = analyze(anns, preds, "detect", cfg)
    plain_hits = hits(plain, truth)
    assert sum(plain_hits[:n]) / n == pytest.approx(PLAIN_PRECISION, abs=1e-9)


PLAIN_PRECISION = 27 / 28  # measured: one flickering false positive outranks a label mistake


def test_best_f1_threshold_and_monotone_precision():
    # scores of 6 hypotheses of one class, 4 labels: correct at 0.9, 0.8, 0.5; wrong at 0.7, 0.3, 0.2
    k = _class_curve([0.9, 0.7, 0.8, 0.3, 0.5, 0.2], [True, False, True, False, True, False], 5, 0.5, [0.8] * 3)
    # F1 at 0.9: 2*(1*.2)/(1.2)=.333; 0.8: 2*(1*.4)/1.4=.571; 0.7: 2*(.667*.4)/1.067=.5; 0.5: 2*(.75*.6)/1.35=.667
    assert k.threshold == 0.5 and k.f1 == pytest.approx(2 / 3) and k.recall == pytest.approx(0.6)
    # local P(correct | score), isotonic: 0.2, 0.3 -> 0; 0.5, 0.7 pooled -> 0.5; 0.8, 0.9 -> 1
    assert k.confidence(0.95) == 1.0 and k.confidence(0.8) == 1.0 and k.confidence(0.6) == pytest.approx(0.5)
    assert k.confidence(0.25) == 0.0
    assert k.typical_iou == pytest.approx(0.8)
