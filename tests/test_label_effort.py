"""The label-effort benchmark's scripted user counts what it claims (benchmarks/label_effort.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from core.annotation import Instance

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "label_effort.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("label_effort", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_polygon_cost_is_vertices_plus_close_plus_class(bench):
    rect = Instance(2, polygons=[[(20, 20), (120, 30), (115, 90), (15, 80)]])
    actions, vertices, iou = bench.polygon_actions(rect, 160, 120)
    assert (actions, vertices) == (6, 4) and iou == pytest.approx(1.0)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = Instance(0, polygons=[np.stack([80 + 40 * np.cos(t), 60 + 40 * np.sin(t)], 1)])
    actions, vertices, iou = bench.polygon_actions(circle, 160, 120)
    # the best regular n-gon around a circle (any scale) reaches IoU 0.898 at n=5 and 0.930 at n=6
    assert (actions, vertices) == (8, 6) and iou >= 0.9
    ring = Instance(0, polygons=[[(10, 10), (150, 10), (150, 110), (10, 110)]],
                    holes=[[(40, 30), (120, 30), (120, 90), (40, 90)]])
    actions, vertices, _ = bench.polygon_actions(ring, 160, 120)
    assert (actions, vertices) == (11, 8)  # the hole (40 % of the area) has to be drawn too
    speck = Instance(0, polygons=[[(10, 10), (150, 10), (150, 110), (10, 110)], [(0, 0), (3, 0), (3, 3)]])
    assert bench.polygon_actions(speck, 160, 120)[:2] == (6, 4)  # a 4 px² part is not worth drawing


def test_grabcut_cost_on_a_demo_image(bench):
    from core.demo import render_demo_image

    img, insts = render_demo_image(2)
    rng = np.random.default_rng(0)
    out = [bench.grabcut_actions(img, inst, rng, jitter=0.0) for inst in insts]
    assert all(reached and iou >= 0.9 for _a, _c, iou, reached in out)
    assert [a for a, *_ in out] == [3 + c for _a, c, _i, _r in out]  # drag press+release, class key, clicks


def test_model_cost_two_events_when_the_model_is_right_else_grabcut(bench):
    from core.demo import render_demo_image
    from core.infer.detections import Detections

    img, insts = render_demo_image(2)
    h, w = img.shape[:2]
    inst = insts[0]
    gt = bench.gt_mask(inst, w, h)
    ys, xs = np.nonzero(gt)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    det = Detections([box], [0.9], [inst.class_id], (h, w), gt[None])
    rng = np.random.default_rng(0)
    assert bench.model_actions(img, inst, det, {k: k for k in range(3)}, rng, jitter=0.0)[::2] == (2, True)
    wrong = {k: (k + 1) % 3 for k in range(3)}  # the model's class maps to another class: one key more
    assert bench.model_actions(img, inst, det, wrong, rng, jitter=0.0)[::2] == (3, True)
    empty = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), (h, w), np.zeros((0, h, w), bool))
    actions, iou, enough = bench.model_actions(img, inst, empty, {}, rng, jitter=0.0)
    assert not enough and iou >= 0.9 and actions >= 2 + 3  # the wasted drag, then GrabCut


def test_scissors_cost_is_anchors_plus_close_plus_class(bench):
    rng = np.random.default_rng(0)
    img = rng.normal(70, 8, (160, 200)).clip(0, 255)
    img[40:120, 50:150] = rng.normal(190, 8, (80, 100)).clip(0, 255)
    img = np.repeat(img.astype(np.uint8)[:, :, None], 3, axis=2)
    inst = Instance(0, polygons=[[(50, 40), (150, 40), (150, 120), (50, 120)]])
    actions, anchors, iou, reached = bench.scissors_actions(img, inst, target=0.9)
    assert reached and iou >= 0.9 and actions == anchors + 2
    assert 3 <= anchors <= 4  # the edges carry the outline: a few anchors, the edges do the rest


COCO8 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco8-seg"


@pytest.mark.skipif(not COCO8.is_dir(), reason="coco8-seg not in ../shared/data")
def test_coco_outline_that_raised_topology_exception_is_measured(bench):
    # 000000000036.jpg, object 0: its outline made shapely raise "TopologyException: unable to
    # assign free hole to a shell" in the polygon path before the outlines were repaired
    line = (COCO8 / "labels" / "val" / "000000000036.txt").read_text().splitlines()[0].split()
    w, h = 481, 640
    inst = Instance(int(line[0]), polygons=[np.array(line[1:], float).reshape(-1, 2) * (w, h)])
    for offsets in (bench.OFFSETS, (0.0,)):
        actions, vertices, iou = bench.polygon_actions(inst, w, h, target=0.85, offsets=offsets)
        assert iou >= 0.85 and actions == vertices + 2
