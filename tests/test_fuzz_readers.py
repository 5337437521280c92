"""Property-based fuzzing of every reader of user files (issue #20): any input gives a result
or our error type (UserFacingError), never another exception, a crash or a hang.

Each test runs FUZZ_EXAMPLES cases (default 150: a few seconds each; DFINE_FUZZ_EXAMPLES=5000
for a long run) and counts them, so the number of cases actually run can be quoted.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.errors import UserFacingError

FUZZ_EXAMPLES = int(os.environ.get("DFINE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("DFINE_FUZZ_RANDOM"),  # the suite is repeatable
                suppress_health_check=list(HealthCheck))
RUNS: Counter = Counter()

# ----------------------------------------------------------------------------- strategies

numbers = st.one_of(st.integers(-10**13, 10**13), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, 0.5, -1, 1e12, 40, 30, float("nan"), float("inf")]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=6),
                                                           st.dictionaries(st.text(max_size=8), kids, max_size=6)),
                           max_leaves=30)


def coords(n_min: int = 0, n_max: int = 12):
    return st.lists(numbers, min_size=n_min, max_size=n_max)


def _json(value) -> str:
    return json.dumps(value)  # NaN/Infinity written as JSON's common extension, as other tools do


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        Image.new("RGB", (40, 30)).save(root / "x.png")
        yield root


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nfuzz cases run: " + ", ".join(f"{k} {v}" for k, v in sorted(RUNS.items())))


def _ok_or_ours(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UserFacingError as exc:
        assert str(exc)  # a message, never an empty one
        return None


# ----------------------------------------------------------------------------- label rows + sidecar


token = st.one_of(st.sampled_from(["0", "1", "2", "0.5", "1.0", "nan", "inf", "-1", "1e308", "0x1", "", "9" * 40,
                                   "\x00", "é", "0.25", "3.0"]),
                  numbers.map(str), st.text(max_size=6))
row = st.lists(token, max_size=14).map(" ".join)
label_text = st.lists(row, max_size=6).map(lambda rows: "\n".join(rows))
sidecar_doc = st.one_of(
    json_values,
    st.fixed_dictionaries({"version": st.just(1), "rows": st.dictionaries(
        st.text(max_size=20), st.fixed_dictionaries({}, optional={
            "polygons": st.one_of(json_values, st.lists(coords(0, 10), max_size=3)),
            "holes": st.one_of(json_values, st.lists(coords(0, 10), max_size=2)),
            "box": st.booleans(), "group_id": scalars, "score": scalars, "source": scalars,
            "iscrowd": scalars}), max_size=3)}))


@FUZZ
@given(text=label_text, sidecar=sidecar_doc, n_classes=st.sampled_from([None, 1, 3]))
def test_label_rows_and_sidecar(text, sidecar, n_classes):
    from core.data.formats.yolo_txt import format_yolo_txt, load_sidecar, parse_yolo_txt, row_key, split_rows

    RUNS["label rows + sidecar"] += 1
    side = load_sidecar(_json(sidecar).encode())
    if isinstance(side, dict):  # also try the sidecar keyed by the real rows (so entries are used)
        entries = list(side["rows"].values())
        keyed = {row_key(toks[1:]): e for (_, toks), e in zip(split_rows(text), entries)}
        side = {"version": 1, "rows": keyed}
    parsed = _ok_or_ours(parse_yolo_txt, text, 40, 30, "x.txt", n_classes, side)
    if parsed is not None:
        for inst in parsed.instances:
            pts = np.concatenate(inst.polygons) if inst.polygons else np.asarray([inst.bbox()])
            assert np.all(np.isfinite(pts)) and pts.min() >= 0 and pts[..., 0::2].max() <= 40
        out = format_yolo_txt(parsed.instances, 40, 30)  # what we read, we can write back
        assert parse_yolo_txt(out.text, 40, 30, "y.txt", n_classes, out.sidecar).instances is not None


# ----------------------------------------------------------------------------- COCO import


coco_ann = st.fixed_dictionaries({}, optional={
    "id": scalars, "image_id": st.one_of(st.just(1), scalars, json_values), "category_id": st.one_of(
        st.just(1), scalars), "bbox": st.one_of(coords(0, 5), json_values),
    "segmentation": st.one_of(st.lists(coords(0, 12), max_size=3), json_values,
                              st.fixed_dictionaries({"size": st.one_of(st.just([30, 40]), json_values),
                                                     "counts": st.one_of(st.text(max_size=20),
                                                                         st.lists(st.integers(-5, 1300),
                                                                                  max_size=6))})),
    "iscrowd": scalars})
coco_doc = st.one_of(json_values, st.fixed_dictionaries({
    "images": st.one_of(st.just([{"id": 1, "file_name": "x.png", "width": 40, "height": 30}]),
                        st.lists(st.fixed_dictionaries({}, optional={"id": scalars, "file_name": scalars,
                                                                     "width": scalars, "height": scalars}),
                                 max_size=2), json_values),
    "annotations": st.one_of(st.lists(coco_ann, max_size=4), json_values),
    "categories": st.one_of(st.just([{"id": 1, "name": "a"}]), json_values)}))


@FUZZ
@given(doc=coco_doc)
def test_coco_import(folder, doc):
    from core.data.formats.coco import load_coco

    RUNS["COCO import"] += 1
    p = folder / "coco.json"
    p.write_text(_json(doc))
    res = _ok_or_ours(load_coco, p)
    if res is not None:
        for ann in res.annotations:
            for inst in ann.instances:
                for poly in inst.polygons or [np.asarray(inst.bbox())]:
                    assert np.all(np.isfinite(poly))


# ----------------------------------------------------------------------------- labelme import


shape = st.fixed_dictionaries({}, optional={
    "label": scalars, "points": st.one_of(st.lists(coords(0, 3), max_size=6), json_values),
    "shape_type": st.one_of(st.sampled_from(["polygon", "rectangle", "circle", "mask", "point", "linestrip"]),
                            scalars), "group_id": scalars, "mask": scalars, "flags": json_values})
labelme_doc = st.one_of(json_values, st.fixed_dictionaries({
    "shapes": st.one_of(st.lists(shape, max_size=4), json_values),
    "imagePath": st.one_of(st.just("x.png"), scalars),
}, optional={"imageWidth": scalars, "imageHeight": scalars, "imageData": st.one_of(st.none(), st.text(max_size=8))}))


@FUZZ
@given(doc=labelme_doc)
def test_labelme_import(folder, doc):
    from core.data.formats.labelme import read_labelme_file

    RUNS["labelme import"] += 1
    p = folder / "x.json"
    p.write_text(_json(doc))
    problems: list = []
    _ok_or_ours(read_labelme_file, p, ["a"], problems, folder / "extract")
    assert all(isinstance(e, UserFacingError) for e in problems)


# ----------------------------------------------------------------------------- Ultralytics import


yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.text(max_size=10))
data_yaml = st.one_of(
    st.text(max_size=60),
    st.fixed_dictionaries({}, optional={
        "names": st.one_of(st.lists(yaml_scalar, max_size=4), st.dictionaries(st.integers(-2, 5), yaml_scalar,
                                                                              max_size=4), yaml_scalar),
        "nc": yaml_scalar, "path": st.one_of(st.just("."), yaml_scalar), "train": st.one_of(
            st.just("images"), yaml_scalar, st.lists(yaml_scalar, max_size=2)),
        "val": st.one_of(st.just("images"), yaml_scalar)}).map(lambda d: json.dumps(d)))


@FUZZ
@given(text=data_yaml, label=label_text)
def test_ultralytics_import(text, label):
    from core.data.formats.yolo_dataset import load_ultralytics_yaml

    RUNS["Ultralytics import"] += 1
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "images").mkdir()
        (root / "labels").mkdir()
        Image.new("RGB", (40, 30)).save(root / "images" / "x.png")
        (root / "labels" / "x.txt").write_text(label, encoding="utf-8")
        (root / "data.yaml").write_text(text, encoding="utf-8")
        _ok_or_ours(load_ultralytics_yaml, root / "data.yaml")


# ----------------------------------------------------------------------------- predictions


pred_row = st.fixed_dictionaries({}, optional={
    "image_id": st.one_of(st.just(1), st.just("x.png"), scalars, json_values),
    "category_id": st.one_of(st.just(1), scalars), "score": st.one_of(st.just(0.5), scalars),
    "bbox": st.one_of(coords(4, 4), coords(0, 6), json_values),
    "segmentation": st.one_of(st.lists(coords(0, 12), max_size=2), json_values,
                              st.fixed_dictionaries({"size": st.one_of(st.just([30, 40]), json_values),
                                                     "counts": st.one_of(st.text(max_size=24),
                                                                         st.lists(st.integers(-5, 1300),
                                                                                  max_size=6))}))})
pred_doc = st.one_of(st.lists(pred_row, max_size=5), json_values,
                     st.fixed_dictionaries({"annotations": st.lists(pred_row, max_size=3)},
                                           optional={"images": json_values, "categories": json_values}))


@FUZZ
@given(doc=pred_doc)
def test_predictions_reader(folder, doc):
    from core.annotation import ImageAnnotation
    from core.eval.coco_results import load_coco_results

    RUNS["predictions"] += 1
    p = folder / "pred.json"
    p.write_text(_json(doc))
    anns = [ImageAnnotation(folder / "x.png", 40, 30, [])]
    preds = _ok_or_ours(load_coco_results, p, anns, ["a", "b"], folder)
    if preds is not None:
        for pr in preds:
            assert np.all(np.isfinite(pr.boxes)) and np.all(np.isfinite(pr.scores))


# ----------------------------------------------------------------------------- project.yaml


@pytest.fixture(scope="module")
def template_text() -> str:
    from core.project import TEMPLATE

    return TEMPLATE.read_text(encoding="utf-8")


yaml_piece = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["&a [1, 2]", "*a", "!!python/object:os.system 'x'", "{", "[[[[", "- - -", "? a", "|",
                     "classes: [a, a]", "classes: []", "model: {image_size: 64}", "split: {group_pattern: '('}",
                     "train: {epochs: -1}", "&x [*x]", "\t", "\x00", "classes: [a]\nclasses: [b]"]))


@FUZZ
@given(insert=yaml_piece, where=st.integers(0, 10_000), key=st.sampled_from(["classes", "model", "split", "x"]))
def test_project_yaml(template_text, insert, where, key):
    from core.config import parse_config_text

    RUNS["project.yaml"] += 1
    for text in (template_text[: where % (len(template_text) + 1)] + insert + template_text[where % (len(
            template_text) + 1):], f"{key}: {insert}\n", insert):
        cfg = _ok_or_ours(parse_config_text, text, "project.yaml")
        if cfg is not None:
            assert all(isinstance(c, str) and c for c in cfg.classes)
            assert math.isfinite(cfg.split.val_fraction)
