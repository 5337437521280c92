"""Issue #35: a class name is one line of printable text, wherever it comes from (project.yaml,
`dfine new/classes`, the Project API, YOLO / COCO / labelme imports): a line break would make
one class two on the next read of classes.txt and shift every id after it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from core.cli import main
from core.config import class_name_problem, parse_config_text
from core.data.formats.coco import load_coco
from core.data.formats.labelme import load_labelme
from core.data.formats.yolo_dataset import load_ultralytics_yaml, load_yolo_folder
from core.errors import ConfigError, LabelError, UserFacingError
from core.project import Project

BAD = ["cat\ndog", "cat\r", "a\tb", "nul\x00", "bell\x07", "sep\u2028x", "nel\x85x"]


@pytest.mark.parametrize("name", BAD)
def test_problem_names_the_control_character(name: str) -> None:
    problem = class_name_problem(name)
    assert problem is not None and "must be one line" in problem
    assert ("line break" in problem) == any(c in name for c in "\n\r\x85\u2028")


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_empty_or_blank_name_is_refused(name: str) -> None:
    assert class_name_problem(name) == "is empty"


@pytest.mark.parametrize("name", ["cat", "traffic light", "Ünïcode", "1", "a/b", "👍🏽"])
def test_ordinary_names_pass(name: str) -> None:
    assert class_name_problem(name) is None


@pytest.mark.parametrize("name", BAD)
def test_project_yaml_refuses_a_multi_line_class_name(name: str) -> None:
    text = f"classes: [ok, {json.dumps(name)}]\n"
    with pytest.raises(ConfigError) as ei:
        parse_config_text(text, "project.yaml")
    assert f"project.yaml:1: classes: class name {name!r}" in str(ei.value) and "one line" in str(ei.value)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "p", ["cat", "dog"])


def test_add_and_rename_refuse_it_and_change_nothing(project: Project) -> None:
    before = project.config_path.read_text()
    with pytest.raises(UserFacingError, match=r"class name 'a\\nb' contains a line break"):
        project.add_class("a\nb")
    with pytest.raises(UserFacingError, match=r"class name 'x\\ty' contains a control character"):
        project.rename_class("cat", "x\ty")
    with pytest.raises(UserFacingError, match="class name '  ' is empty"):
        project.add_class("  ")
    assert project.config_path.read_text() == before and project.class_names == ["cat", "dog"]


def test_create_refuses_it(tmp_path: Path) -> None:
    with pytest.raises(UserFacingError, match=r"class name 'a\\rb' contains a line break"):
        Project.create(tmp_path / "q", ["a\rb"])
    assert not (tmp_path / "q").exists()


def test_cli_classes_add_rename_and_new_print_one_line(project: Project, tmp_path: Path, capsys) -> None:
    for argv in (["classes", str(project.root), "add", "bird\nfish"],
                 ["classes", str(project.root), "rename", "dog", "d\x00g"],
                 ["new", str(tmp_path / "n"), "--classes", "a,b\nc"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error: class name" in err and "one line" in err
    assert project.class_names == ["cat", "dog"] and not (tmp_path / "n").exists()


# ------------------------------------------------------------------ imports

def test_data_yaml_names_with_a_line_break(tmp_path: Path) -> None:
    (tmp_path / "images" / "train").mkdir(parents=True)
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "train" / "a.jpg")
    (tmp_path / "data.yaml").write_text('train: images/train\nnames: [ok, "two\\nlines"]\n')
    with pytest.raises(LabelError, match=r"data\.yaml:2: class 1: name contains a line break .*\(got 'two\\nlines'\)"):
        load_ultralytics_yaml(tmp_path / "data.yaml")


def test_classes_txt_with_a_control_character(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "classes.txt").write_text("ok\nbad\x07name\n")
    with pytest.raises(LabelError, match=r"classes\.txt: class 1: name contains a control character"):
        load_yolo_folder(tmp_path)


def _coco(tmp_path: Path, name: str) -> Path:
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    data = {"images": [{"id": 1, "file_name": "img.png", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": name}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    return tmp_path / "c.json"


def test_coco_category_name_with_a_line_break(tmp_path: Path, capsys) -> None:
    path = _coco(tmp_path, "cat\ndog")
    with pytest.raises(LabelError, match=r"c\.json: categories\[0\]: class name contains a line break"):
        load_coco(path)
    assert main(["import", "coco", str(path), str(tmp_path / "proj")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'cat\\ndog'" in err
    assert not (tmp_path / "proj").exists()


def test_labelme_label_with_a_line_break_skips_that_shape(tmp_path: Path) -> None:
    Image.new("RGB", (20, 10)).save(tmp_path / "p.png")
    shapes = [{"label": "cat", "points": [[1, 1], [5, 1], [3, 4]], "shape_type": "polygon"},
              {"label": "dog\n", "points": [[1, 1], [5, 1], [3, 4]], "shape_type": "polygon"}]
    (tmp_path / "p.json").write_text(json.dumps({"shapes": shapes, "imagePath": "p.png", "imageWidth": 20,
                                                 "imageHeight": 10}))
    res = load_labelme(tmp_path / "p.json")
    assert res.class_names == ["cat"] and res.num_instances == 1
    assert len(res.problems) == 1 and "shapes[1]: 'label' contains a line break" in str(res.problems[0])
    assert "(got 'dog\\n')" in str(res.problems[0])
