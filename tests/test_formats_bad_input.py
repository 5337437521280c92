"""Malformed COCO / labelme / data.yaml / YOLO folders: each gives a message naming the file
and the offending value; per-item problems are counted while the rest is imported."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from core.cli import main
from core.data.formats.coco import load_coco
from core.data.formats.labelme import load_labelme
from core.data.formats.yolo_dataset import load_ultralytics_yaml, load_yolo_folder
from core.errors import LabelError

TRI = [1.0, 1.0, 9.0, 1.0, 5.0, 9.0]


def _coco(tmp_path: Path, **over) -> Path:
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    data = {
        "images": [{"id": 1, "file_name": "img.png", "width": 40, "height": 30}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": [TRI], "bbox": [1, 1, 8, 8]}],
    }
    for k, v in over.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    path = tmp_path / "bad_coco.json"
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------ COCO: whole file unreadable

@pytest.mark.parametrize("over,message", [
    ({"categories": None}, r"top level: missing key 'categories'"),
    ({"annotations": None}, r"top level: missing key 'annotations'"),
    ({"images": None}, r"top level: missing key 'images'"),
    ({"categories": [{"id": 1}]}, r"categories\[0\]: missing key 'name'"),
    ({"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}, r"categories\[1\]: duplicate category id \(got 1\)"),
    ({"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]}, r"duplicate category name \(got 'a'\)"),
    ({"images": [{"id": 1, "width": 40, "height": 30}]}, r"images\[0\]: missing key 'file_name'"),
    ({"annotations": {"x": 1}}, r"'annotations' must be a list \(got 'dict'\)"),
])
def test_coco_structural_errors(tmp_path: Path, over: dict, message: str) -> None:
    path = _coco(tmp_path, **over)
    with pytest.raises(LabelError, match=r"bad_coco\.json: " + message):
        load_coco(path)


def test_coco_not_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "images": [\n  oops\n]}')
    with pytest.raises(LabelError, match=r"broken\.json:3: not valid JSON") as err:
        load_coco(path)
    assert err.value.line == 3


def test_coco_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text("")
    with pytest.raises(LabelError, match=r"e\.json: file is empty"):
        load_coco(tmp_path / "e.json")


# ------------------------------------------------------------------ COCO: per annotation

BAD_ANNS = [
    ({"image_id": 99, "category_id": 1, "segmentation": [TRI]}, r"unknown image_id \(got 99\)"),
    ({"image_id": 1, "category_id": 42, "segmentation": [TRI]}, r"unknown category_id \(got 42\)"),
    ({"image_id": 1, "category_id": 1, "segmentation": "polygon"},
     r"'segmentation' must be a polygon list or an RLE object, not str \(got 'polygon'\)"),
    ({"image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3, 4]]},
     r"segmentation\[0\] needs >= 3 points .* has 4 numbers \(got \[1, 2, 3, 4\]\)"),
    ({"image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3, "x", 5, 6]]},
     r"segmentation\[0\] is not a list of finite numbers"),
    ({"image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3, math.nan, 5, 6]]},
     r"segmentation\[0\] is not a list of finite numbers \(got \[1, 2, 3, nan"),
    ({"image_id": 1, "category_id": 1, "segmentation": {"size": [10, 10], "counts": "abc"}},
     r"RLE size does not match the image's \[height, width\] \[30, 40\] \(got \[10, 10\]\)"),
    ({"image_id": 1, "category_id": 1, "segmentation": {"counts": "abc"}},
     r"RLE segmentation needs 'counts' and 'size' \(got \['counts'\]\)"),
    ({"category_id": 1, "segmentation": [TRI]}, r"missing key 'image_id'"),
    ({"image_id": 1, "segmentation": [TRI]}, r"missing key 'category_id'"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 5]}, r"'bbox' must be \[x, y, width, height\].*\[1, 1, 0, 5\]"),
    ({"image_id": 1, "category_id": 1}, r"missing key 'bbox' \(and no segmentation\)"),
    ({"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 400, 1, 5, 9]]},
     r"point outside the 40x30 image \(got \(400\.0, 1\.0\)\)"),
]


@pytest.mark.parametrize("bad,message", BAD_ANNS)
def test_coco_bad_annotation_is_skipped_and_reported(tmp_path: Path, bad: dict, message: str) -> None:
    good = {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [TRI], "bbox": [1, 1, 8, 8]}
    path = _coco(tmp_path, annotations=[good, {"id": 11, **bad}])
    res = load_coco(path)
    assert res.num_instances == 1  # the good one is imported
    assert len(res.problems) == 1
    assert str(res.problems[0]).startswith(f"{path}: annotations[1] (id 11): ")
    assert res.problems[0].path == path
    assert re.search(message, str(res.problems[0])), str(res.problems[0])


def test_coco_missing_image_file_and_size_mismatch(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    images = [{"id": 1, "file_name": "img.png", "width": 40, "height": 30},
              {"id": 2, "file_name": "gone.jpg", "width": 40, "height": 30},
              {"id": 3, "file_name": "img.png", "width": 30, "height": 40}]
    anns = [{"id": i, "image_id": i, "category_id": 1, "segmentation": [TRI]} for i in (1, 2, 3)]
    path = _coco(tmp_path, images=images, annotations=anns)
    res = load_coco(path)
    assert len(res.annotations) == 1 and res.num_instances == 1
    msgs = [str(p) for p in res.problems]
    assert len(msgs) == 4  # two images + their two annotations, each counted
    assert "images[1] (id 2)" in msgs[0] and "gone.jpg: image file not found" in msgs[0]
    assert "images[2] (id 3): width x height 30x40 differs from the image file's 40x30" in msgs[1]
    assert "annotations[1] (id 2): its image was skipped" in msgs[2]


# ------------------------------------------------------------------ labelme

def _lm(tmp_path: Path, shapes: list, image: str = "p.png", **extra) -> Path:
    Image.new("RGB", (20, 10)).save(tmp_path / "p.png")
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"shapes": shapes, "imagePath": image, "imageWidth": 20, "imageHeight": 10,
                                **extra}))
    return path


def _s(points, shape_type="polygon", label="cat", **kw):
    return {"label": label, "points": points, "shape_type": shape_type, **kw}


GOOD = _s([[1, 1], [5, 1], [3, 4]])


@pytest.mark.parametrize("shape,message", [
    (_s([[1, 1], [5, 5]], "hexagon"), r"shapes\[1\] \('cat', hexagon\): unknown shape_type \(got 'hexagon'\)"),
    (_s([[1, 1], [5, 5]]), r"a polygon needs at least 3 points, got 2 \(got \[\[1\.0, 1\.0\], \[5\.0, 5\.0\]\]\)"),
    (_s([[1, 1], [5, 5]], "line"), r"shape type is not a region \(no area\); skipped \(got 'line'\)"),
    (_s([[1, 1], [5, 5]], "point"), r"not a region.*\(got 'point'\)"),
    (_s([[1, 1], [1, 5]], "rectangle"), r"a rectangle needs 2 distinct corners"),
    (_s([[1, 1], [1, 1]], "circle"), r"a circle needs a centre and a rim point"),
    (_s([[1, 1], [5, "a"], [3, 4]]), r"'points' must be a list of \[x, y\] numbers"),
    (_s([[1, 1], [5, 1], [3, 4]], label=""), r"shapes\[1\]: missing or empty 'label' \(got ''\)"),
    (_s([[1, 1], [5, 1], [3, 4]], group_id="g1"), r"'group_id' must be an integer or null \(got 'g1'\)"),
    (_s([[1, 1], [5, -30]], "rectangle"), r"point outside the 20x10 image \(got \(1\.0, -30\.0\)\)"),
])
def test_labelme_bad_shape_is_skipped_and_reported(tmp_path: Path, shape: dict, message: str) -> None:
    path = _lm(tmp_path, [GOOD, shape])
    res = load_labelme(path)
    assert res.num_instances == 1 and len(res.problems) == 1
    assert str(res.problems[0]).startswith(f"{path}: shapes[1]")
    assert re.search(message, str(res.problems[0])), str(res.problems[0])


def test_labelme_missing_image(tmp_path: Path) -> None:
    path = _lm(tmp_path, [GOOD], image="../photos/cat.jpg")
    res = load_labelme(path)
    assert res.annotations == [] and len(res.problems) == 1
    msg = str(res.problems[0])
    assert msg.startswith(f"{path}: imagePath points to a missing image")
    assert "(got '../photos/cat.jpg')" in msg


def test_labelme_image_path_from_another_machine_falls_back_to_json_folder(tmp_path: Path) -> None:
    path = _lm(tmp_path, [GOOD], image="C:\\Users\\ann\\Desktop\\p.png")
    res = load_labelme(path)
    assert not res.problems and res.annotations[0].image_path == tmp_path / "p.png"


def test_labelme_missing_image_with_image_data_is_extracted(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(buf, format="PNG")
    path = _lm(tmp_path, [GOOD], image="gone.png", imageData=base64.b64encode(buf.getvalue()).decode())
    no_extract = load_labelme(path)
    assert "has imageData" in str(no_extract.problems[0])
    res = load_labelme(path, extract_dir=tmp_path / "x")
    assert not res.problems and res.annotations[0].image_path == tmp_path / "x" / "gone.png"
    assert (tmp_path / "x" / "gone.png").is_file()


def test_labelme_size_mismatch_and_not_labelme(tmp_path: Path) -> None:
    path = _lm(tmp_path, [GOOD])
    data = json.loads(path.read_text())
    data["imageWidth"] = 99
    path.write_text(json.dumps(data))
    (tmp_path / "other.json").write_text(json.dumps({"foo": 1}))
    res = load_labelme(tmp_path)
    msgs = sorted(str(p) for p in res.problems)
    assert len(msgs) == 2 and res.annotations == []
    assert msgs[0].startswith(f"{tmp_path / 'other.json'}: not a labelme file: missing key 'shapes'")
    assert "imageWidth x imageHeight 99x10 differs from the image's 20x10" in msgs[1]
    assert msgs[1].startswith(str(path))


# ------------------------------------------------------------------ data.yaml

def _yaml(tmp_path: Path, text: str) -> Path:
    (tmp_path / "images" / "train").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "train" / "a.jpg")
    path = tmp_path / "data.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,message", [
    ("train: images/train\nval: images/train\n", r"data\.yaml: missing key 'names'"),
    ("train: images/train\nnames:\n  0: a\n  2: c\n", r"data\.yaml:2: 'names' ids must be 0\.\.1 without gaps \(got \[0, 2\]\)"),
    ("train: images/train\nnc: 3\nnames: [a, b]\n", r"data\.yaml:2: 'nc' disagrees with 'names' \(2 names\) \(got 3\)"),
    ("train: images/nowhere\nnames: [a]\n", r"data\.yaml: 'train' points to a folder or list that does not exist .*\(got 'images/nowhere'\)"),
    ("train: images/train\nnames: [a, a]\n", r"data\.yaml:2: duplicate class name in 'names' \(got 'a'\)"),
    ("train: [images/train\nnames: [a]\n", r"data\.yaml:2: not valid YAML"),
    ("path: ../missing_root\ntrain: images/train\nnames: [a]\n", r"data\.yaml:1: dataset root folder not found \(got '\.\./missing_root'\)"),
    ("names: [a]\n", r"data\.yaml: missing key 'train' \(and 'val'\)"),
    ("- just\n- a list\n", r"data\.yaml: expected a mapping .*\(got 'list'\)"),
    ("train: images/train\nnames: 5\n", r"data\.yaml:2: 'names' must be a list or a mapping \{id: name\} \(got 5\)"),
])
def test_bad_data_yaml(tmp_path: Path, text: str, message: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(LabelError, match=message):
        load_ultralytics_yaml(path)


def test_yolo_bad_label_file_skips_that_image_only(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for n in ("ok", "bad", "nan"):
        Image.new("RGB", (10, 10)).save(root / "images" / f"{n}.jpg")
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    (root / "labels" / "ok.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "bad.txt").write_text("0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "nan.txt").write_text("1 0.1 0.1 nan 0.2 0.3 0.3\n")
    res = load_yolo_folder(root, class_names=["a", "b"])
    assert [a.image_path.name for a in res.annotations] == ["ok.jpg"]
    msgs = sorted(str(p) for p in res.problems)
    assert len(msgs) == 3
    assert msgs[0].startswith(f"{root / 'images' / 'broken.jpg'}")
    assert msgs[1].startswith(f"{root / 'labels' / 'bad.txt'}:2: class id out of range") and "'5'" in msgs[1]
    assert msgs[2].startswith(f"{root / 'labels' / 'nan.txt'}:1:") and "nan" in msgs[2]


def test_yolo_folder_without_names(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(LabelError, match=r"no class names: add classes\.txt"):
        load_yolo_folder(tmp_path)


# ------------------------------------------------------------------ CLI reporting

def test_cli_reports_skipped_and_exits_1(tmp_path: Path, capsys) -> None:
    path = _coco(tmp_path, annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [TRI]},
        {"id": 2, "image_id": 1, "category_id": 7, "segmentation": [TRI]},
    ])
    assert main(["import", "coco", str(path), str(tmp_path / "proj")]) == 1
    captured = capsys.readouterr()
    assert "skipped: " in captured.err and "unknown category_id (got 7)" in captured.err
    assert "1 images, 1 instances; skipped 1 item(s)" in captured.out
    assert (tmp_path / "proj" / "labels" / "img.txt").read_text().startswith("0 ")


def test_cli_nothing_to_import_is_a_clear_error(tmp_path: Path, capsys) -> None:
    path = _lm(tmp_path, [GOOD], image="missing.png")
    assert main(["import", "labelme", str(path), str(tmp_path / "proj")]) == 2
    err = capsys.readouterr().err
    assert "nothing to import (1 item(s) skipped)" in err and "missing.png" in err
    assert not (tmp_path / "proj" / "project.yaml").exists()


def test_cli_structural_error_is_one_line(tmp_path: Path, capsys) -> None:
    path = _coco(tmp_path, categories=None)
    assert main(["import", "coco", str(path), str(tmp_path / "proj")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"dfine import: error: {path}: top level: missing key 'categories'"


def test_cli_labelme_embedded_image_lands_in_project(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 0, 255)).save(buf, format="PNG")
    path = _lm(tmp_path, [GOOD], image="only_in_json.png", imageData=base64.b64encode(buf.getvalue()).decode())
    assert main(["import", "labelme", str(path), str(tmp_path / "proj")]) == 0
    assert (tmp_path / "proj" / "images" / "only_in_json.png").is_file()
    assert (tmp_path / "proj" / "labels" / "only_in_json.txt").read_text().startswith("0 0.050000 0.100000 ")
