"""Hostile and careless inputs (issue #20): each gives a one-line message naming the file,
the place and the value, exits 2 and changes nothing, or works correctly. Bounded: no case
may hang or crash the process (pytest-timeout guards the ones that used to)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.bounded_input import compile_user_regex, load_yaml, loads_json, search_user_regex
from core.cli import main
from core.errors import ConfigError, LabelError, LimitError, WeightsError
from core import rle
from core.eval.coco_results import load_coco_results
from core.project import Project
from project_data import two_image_project

BILLION_LAUGHS = "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['lol'] * 9)}]\n" for i in range(9))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".dfine" not in p.parts}


def _cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.fixture()
def proj(tmp_path: Path) -> Project:
    return two_image_project(tmp_path / "p", ["circle", "triangle", "rectangle"])


# ----------------------------------------------------------------------------- YAML


@pytest.mark.timeout(30)
def test_billion_laughs_project_yaml_is_refused_quickly(proj, capsys):
    with open(proj.config_path, "a", encoding="utf-8") as f:
        f.write(BILLION_LAUGHS)
    before = _snapshot(proj.root)
    for verb in (["check"], ["classes", str(proj.root), "list"], ["split"]):
        argv = [verb[0], str(proj.root)] if len(verb) == 1 else verb
        rc, err = _cli(capsys, *argv)
        assert rc == 2 and "project.yaml:" in err and "expands to more than 100000 values" in err
        assert len(err.splitlines()) == 1
    assert _snapshot(proj.root) == before


def test_yaml_limits_depth_and_recursion():
    with pytest.raises(LimitError, match="nested deeper than 64"):
        load_yaml("a: " + "[" * 100 + "]" * 100, "x.yaml")
    with pytest.raises(LimitError, match="nested too deeply|nested deeper"):
        load_yaml("a: " + "[" * 5000 + "]" * 5000, "x.yaml")
    assert load_yaml("a: &x [1, 2]\nb: *x\n", "x.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_repeated_classes_key_is_refused_not_silently_shadowed(proj, capsys):
    text = proj.config_path.read_text()
    proj.config_path.write_text(text + "classes: [dog, cat]\n")
    before = _snapshot(proj.root)
    rc, err = _cli(capsys, "classes", str(proj.root), "rename", "dog", "puppy")
    assert rc == 2 and "key 'classes' is repeated (first at line" in err
    assert _snapshot(proj.root) == before


# ----------------------------------------------------------------------------- regex


@pytest.mark.timeout(30)
def test_catastrophic_group_pattern_is_bounded(proj, capsys):
    Image.new("RGB", (8, 8)).save(proj.image_dir / ("a" * 40 + "b.png"))
    text = proj.config_path.read_text().replace("group_by: none", "group_by: pattern")
    text = text.replace(r"group_pattern: '^(.+?)_\d+$'", "group_pattern: '^(a|aa)+$'")
    assert "'^(a|aa)+$'" in text
    proj.config_path.write_text(text)
    rc, err = _cli(capsys, "split", str(proj.root))
    assert rc == 2 and "split.group_pattern" in err and "took over 1 s" in err and "aaaa" in err
    assert not (proj.splits_dir / "train.txt").exists()


def test_regex_helpers_work_for_normal_patterns():
    c = compile_user_regex(r"^(.+?)_\d+$", "cfg")
    assert search_user_regex(c, "batch01_0003", "cfg").group(1) == "batch01"
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        compile_user_regex("(", "cfg")


# ----------------------------------------------------------------------------- JSON


def test_json_depth_is_bounded_everywhere(proj, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(LimitError, match=r"x.json:1: JSON nested deeper than 500 levels"):
        loads_json(deep, "x.json")
    assert loads_json('{"a": "[[[[[[", "b": [1]}', "x.json") == {"a": "[[[[[[", "b": [1]}
    # predictions
    pred = tmp_path / "pred.json"
    pred.write_text(deep)
    anns = [ImageAnnotation(proj.image_dir / "a.png", 40, 30, [])]
    with pytest.raises(LimitError, match="pred.json:1: JSON nested deeper"):
        load_coco_results(pred, anns, proj.class_names)
    # COCO import
    from core.data.formats.coco import load_coco

    with pytest.raises(LimitError, match="JSON nested deeper"):
        load_coco(pred)
    # sidecar: ignored like any damaged sidecar (the txt row alone gives the right mask)
    side = proj.labels_dir / "a.parts.json"
    side.write_text(deep)
    ann = proj.load_annotation(proj.image_dir / "a.png")
    assert len(ann.instances) == 2


# ----------------------------------------------------------------------------- sidecar geometry


@pytest.mark.parametrize("bad, why", [(float("nan"), "that is not finite"), (35.0, "outside [0, 1] (35")])
def test_sidecar_nan_or_pixel_coordinates_fall_back_to_the_row_with_a_warning(tmp_path, capsys, bad, why):
    p = Project.create(tmp_path / "p", ["a"], "segment")
    Image.new("RGB", (40, 40)).save(p.image_dir / "x.png")
    inst = Instance(0, polygons=[np.array([[1, 1], [20, 1], [20, 20]]), np.array([[25, 25], [35, 25], [35, 35]])])
    p.save_annotation(ImageAnnotation(p.image_dir / "x.png", 40, 40, [inst]))
    side = p.labels_dir / "x.parts.json"
    doc = json.loads(side.read_text())
    key = next(iter(doc["rows"]))
    doc["rows"][key]["polygons"][0][0] = bad
    side.write_text(json.dumps(doc))
    rc, out = main(["check", str(p.root)]), capsys.readouterr().out
    assert rc == 0 and f"x.parts.json: entry of x.txt:1 has a coordinate {why}" in out
    ann = p.load_annotation(p.image_dir / "x.png")
    poly = ann.instances[0].polygons[0]
    assert np.all(np.isfinite(poly)) and poly.min() >= 0 and poly.max() <= 40  # the bridged row


# ----------------------------------------------------------------------------- predictions


def _pred(tmp_path, rows):
    p = tmp_path / "pred.json"
    p.write_text(json.dumps(rows))
    return p


ANNS = [ImageAnnotation(Path("/d/x.png"), 40, 30, [])]


@pytest.mark.parametrize("row, message", [
    ({"bbox": [1, 1, float("inf"), 5]}, "row 0: bbox value is not finite (inf)"),
    ({"bbox": [1, 1, 1e12, 5]}, "row 0: bbox value 1e+12 is far outside the 40x30 image"),
    ({"bbox": [1, 1, -3, 5]}, "row 0: bbox width and height must be >= 0"),
    ({"image_id": [1]}, "row 0: image_id must be a whole number or a text"),
    ({"image_id": {"a": 1}}, "row 0: image_id must be a whole number or a text"),
    ({"category_id": [1]}, "row 0: category_id must be a whole number"),
    ({"score": float("nan")}, "row 0: score must be a number in [0, 1]"),
    ({"score": 7}, "row 0: score must be a number in [0, 1]"),
    ({"segmentation": {"size": [3, 4], "counts": "abc"}}, "RLE size [3, 4] is not the image's"),
    ({"segmentation": {"size": [30, 40], "counts": [5, 5]}}, "counts must be non-negative whole numbers summing"),
    ({"segmentation": {"size": [30, 40], "counts": "0"}}, "do not cover the 40x30 image exactly"),
    ({"segmentation": {"size": [30, 40], "counts": "\x7f\x7f"}}, "invalid character"),
    ({"segmentation": [[1, 2, 3]]}, "polygon segmentation is a list"),
    ({"segmentation": [[0, 0, 1e13, 0, 5, 5]]}, "polygon coordinate 1e+13 is far outside"),
    ({"segmentation": 5}, "unsupported segmentation value"),
])
def test_bad_prediction_rows_are_named(tmp_path, row, message):
    base = {"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1, 1, 5, 5]}
    with pytest.raises(LabelError) as ei:
        load_coco_results(_pred(tmp_path, [{**base, **row}]), ANNS, ["a"])
    assert "pred.json" in str(ei.value) and message in str(ei.value)
    assert "\n" not in str(ei.value)


def test_valid_rle_string_still_reads(tmp_path):
    m = np.zeros((30, 40), bool)
    m[3:9, 4:20] = True
    seg = rle.to_json(rle.encode(m)[0])
    preds = load_coco_results(_pred(tmp_path, [{"image_id": 1, "category_id": 1, "score": 0.5,
                                                "segmentation": seg}]), ANNS, ["a"])
    assert rle.area(preds[0].masks).tolist() == [96.0]
    # column-major runs: 4 empty columns + 3 rows, then 16 columns of 6 set / 24 clear, then the rest
    assert rle._counts_from_string(seg["counts"]) == [123] + [6, 24] * 15 + [6, 1200 - 123 - 16 * 6 - 15 * 24]


# ----------------------------------------------------------------------------- project files


def test_label_path_that_is_a_folder(proj, capsys):
    (proj.labels_dir / "a.txt").unlink()
    (proj.labels_dir / "a.txt").mkdir()
    before = _snapshot(proj.root)
    rc = main(["check", str(proj.root)])
    out = capsys.readouterr().out
    assert rc == 1 and "a.txt: is a folder, not a label file" in out and "1 bad files" in out
    rc, err = _cli(capsys, "classes", str(proj.root), "delete", "rectangle")
    assert rc == 2 and "a.txt: is a folder, not a label file" in err
    assert _snapshot(proj.root) == before
    (proj.labels_dir / "a.txt").rmdir()
    proj.delete_class("rectangle")
    (proj.labels_dir / "a.txt").mkdir()
    rc, err = _cli(capsys, "classes", str(proj.root), "undo")
    assert rc == 2 and "cannot undo" in err and "a.txt: is a folder" in err


def test_non_utf8_groups_csv_and_split_files(proj, capsys):
    (proj.root / "groups.csv").write_bytes(b"image,group\na.png,\xff\xfe\n")
    proj.config_path.write_text(proj.config_path.read_text().replace("group_by: none", "group_by: csv"))
    rc, err = _cli(capsys, "split", str(proj.root))
    assert rc == 2 and "groups.csv: not a UTF-8 text file (byte 18)" in err
    (proj.root / "groups.csv").unlink()
    proj.config_path.write_text(proj.config_path.read_text().replace("group_by: csv", "group_by: none"))
    proj.splits_dir.mkdir(exist_ok=True)
    (proj.splits_dir / "train.txt").write_bytes(b"a.png\n\xc3\x28\n")
    rc, err = _cli(capsys, "split", str(proj.root))
    assert rc == 2 and "train.txt: not a UTF-8 text file (byte 6)" in err
    assert (proj.splits_dir / "train.txt").read_bytes() == b"a.png\n\xc3\x28\n"


def test_line_break_in_an_image_name_does_not_corrupt_splits(proj, capsys):
    Image.new("RGB", (8, 8)).save(proj.image_dir / "evil\nname.png")
    rc, err = _cli(capsys, "split", str(proj.root))
    assert rc == 2 and "contains a line break" in err and "evil\\nname.png" in err
    assert not (proj.splits_dir / "train.txt").exists()


def test_image_size_too_small_for_the_model_is_refused_at_validation(proj, capsys):
    proj.config_path.write_text(proj.config_path.read_text().replace("image_size: 640", "image_size: 64"))
    rc, err = _cli(capsys, "check", str(proj.root))
    assert rc == 2 and "image_size 64 is too small for size s: the model needs at least 128 px" in err


@pytest.mark.parametrize("meta, message", [
    ({"class_names": ["a"], "image_size": "big"}, "image_size must be [height, width]"),
    ({"class_names": ["a"], "image_size": [640]}, "image_size must be [height, width]"),
    ({"class_names": ["a"], "image_size": [0, -5]}, "image_size must be [height, width]"),
    ({"class_names": [], "image_size": [640, 640]}, "class_names must be a non-empty list"),
    ({"class_names": ["a"], "top_k": 0}, "top_k must be a whole number >= 1"),
    ([1, 2], "top level must be an object"),
])
def test_bad_export_meta_json(tmp_path, meta, message):
    from core.infer.meta import find_meta

    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(WeightsError) as ei:
        find_meta(tmp_path / "model.onnx")
    assert "meta.json: not a valid export meta.json" in str(ei.value) and message in str(ei.value)


def test_class_edit_warns_while_a_training_run_is_active(proj, capsys):
    from core.project_lock import training_active, training_marker

    assert not training_active(proj.root)
    with training_marker(proj.root):
        assert training_active(proj.root)
        rc, err = _cli(capsys, "classes", str(proj.root), "rename", "circle", "disc")
        assert rc == 0 and "warning: a training run is using" in err
    assert not training_active(proj.root)
    rc, err = _cli(capsys, "classes", str(proj.root), "rename", "disc", "circle")
    assert rc == 0 and err == ""


def test_coco_import_ids_that_are_lists(tmp_path):
    from core.data.formats.coco import load_coco

    Image.new("RGB", (40, 30)).save(tmp_path / "x.png")
    doc = {"images": [{"id": [1], "file_name": "x.png"}], "annotations": [],
           "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(LabelError, match=r"images\[0\]: 'id' must be a number or a text"):
        load_coco(tmp_path / "c.json")
    doc["images"][0]["id"] = 1
    doc["annotations"] = [{"id": 1, "image_id": {"a": 1}, "category_id": 1, "bbox": [1, 1, 4, 4]}]
    (tmp_path / "c.json").write_text(json.dumps(doc))
    res = load_coco(tmp_path / "c.json")
    assert "image_id and category_id must be numbers or text" in str(res.problems[0])
    assert res.annotations[0].instances == []


# ----------------------------------------------------------------------------- weights and runs


@pytest.mark.parametrize("state, message", [
    ({"decoder.dec_score_head.0.weight": "wrong-shape"}, "size mismatch"),
    ({"not.a.key": "x"}, "unexpected ['not.a.key']"),
])
def test_val_with_weights_that_do_not_fit_is_one_line(proj, capsys, tmp_path, state, message):
    import torch

    from core.train.checkpoint import save_checkpoint

    state = {k: torch.zeros(7, 3) for k in state}
    save_checkpoint(tmp_path / "w.pt", {"model": state, "class_names": proj.class_names, "size": "n",
                                        "image_size": 256, "task": "segment"})
    rc, err = _cli(capsys, "val", str(proj.root), "--weights", str(tmp_path / "w.pt"), "--device", "cpu")
    assert rc == 2 and len(err.splitlines()) == 1
    assert "w.pt: weights do not fit a size-n segment model with 3 classes at 256 px" in err and message in err


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "x\ny"])
def test_train_name_must_stay_under_runs(proj, capsys, name):
    before = _snapshot(proj.root.parent)
    rc, err = _cli(capsys, "train", str(proj.root), "--name", name, "--device", "cpu", "--no-progress")
    assert rc == 2 and "is not a plain folder name" in err
    assert _snapshot(proj.root.parent) == before and not (proj.root / "runs").exists()


# ----------------------------------------------------------------------------- silent wrong results


def test_digit_separator_is_not_a_number(proj):
    from core.data.formats.yolo_txt import parse_yolo_txt

    with pytest.raises(LabelError, match=r"x.txt:1: coordinate 1 is not a number \(got '0.5_5'\)"):
        parse_yolo_txt("0 0.5_5 0.5 0.1 0.1\n", 40, 30, "x.txt", 3)
    with pytest.raises(LabelError, match="class id is not a number"):
        parse_yolo_txt("1_0 0.5 0.5 0.1 0.1\n", 40, 30, "x.txt", 3)


def test_non_ascii_digits_do_not_crash_the_sidecar_key(proj):
    from core.data.formats.yolo_txt import parse_yolo_txt

    parsed = parse_yolo_txt("0 ٠.٥ 0.5 0.1 0.1\n", 40, 30, "x.txt", 3, {"version": 1, "rows": {}})
    assert parsed.instances[0].bbox() == pytest.approx((18.0, 13.5, 22.0, 16.5))


def test_convert_into_the_project_itself_or_onto_a_file_is_refused(proj, capsys, tmp_path):
    before = _snapshot(proj.root)
    for out in (proj.root, proj.root.parent, proj.image_dir):
        rc, err = _cli(capsys, "convert", str(proj.root), "yolo", str(out))
        assert rc == 2 and "is the project itself (or holds it)" in err
    (tmp_path / "file.json").write_text("{}")
    rc, err = _cli(capsys, "convert", str(proj.root), "coco", str(tmp_path / "file.json"))
    assert rc == 2 and "file.json: is a file, not a folder" in err
    assert _snapshot(proj.root) == before
    rc, _ = _cli(capsys, "convert", str(proj.root), "yolo", str(proj.root / "exports" / "yolo"))
    assert rc == 0 and len(list((proj.root / "exports" / "yolo").rglob("*.txt"))) >= 2


def test_classes_list_reports_a_folder_label(proj, capsys):
    (proj.labels_dir / "a.txt").unlink()
    (proj.labels_dir / "a.txt").mkdir()
    assert main(["classes", str(proj.root), "list"]) == 0
    out = capsys.readouterr().out
    assert "bad label file:" in out and "a.txt: is a folder, not a label file" in out
    assert "  2  rectangle                      1 instances" in out  # b.txt still counted


def test_image_pixel_limit_names_the_file_and_how_to_raise_it(tmp_path, monkeypatch):
    from core.data import images
    from core.errors import ImageReadError

    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError) as ei:
        images.read_image(tmp_path / "big.png")
    msg = str(ei.value)
    assert "big.png: image too large to decode (40x30 = 1,200 pixels, limit 1,000" in msg
    assert "raise OPENCV_IO_MAX_IMAGE_PIXELS" in msg
