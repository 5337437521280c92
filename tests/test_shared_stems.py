"""Issue #35: x.jpg and x.png in one folder pair with one label file (labels go by name).
Import keeps them apart (the second is renamed) and says so naming both; convert and check warn
naming both, on the terminal."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from core.cli import main
from core.project import Project

BOX = "0 0.500000 0.500000 0.200000 0.200000\n"


def _coco_two_stems(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (40, 30)).save(src / "x.jpg")
    Image.new("RGB", (40, 30), (9, 9, 9)).save(src / "x.png")
    data = {"images": [{"id": 1, "file_name": "x.jpg", "width": 40, "height": 30},
                       {"id": 2, "file_name": "x.png", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [20, 10, 8, 8]},
                            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [2, 2, 4, 4]}]}
    (src / "coco.json").write_text(json.dumps(data))
    return src / "coco.json"


def test_import_keeps_both_labels_and_names_both_images(tmp_path, capsys):
    root = tmp_path / "proj"
    assert main(["import", "coco", str(_coco_two_stems(tmp_path)), str(root)]) == 0
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("warning:"))
    assert "x.png imported as x_1.png: x.jpg already uses" in line and str(root / "labels" / "x.txt") in line
    proj = Project.open(root)
    assert [p.name for p in proj.image_paths()] == ["x.jpg", "x_1.png"]
    assert len(proj.load_annotation(root / "images" / "x.jpg").instances) == 1
    assert len(proj.load_annotation(root / "images" / "x_1.png").instances) == 2  # not written over x.txt
    assert proj.shared_label_files() == {}


def test_import_next_to_a_labelled_image_of_the_same_stem(tmp_path, capsys):
    proj = Project.create(tmp_path / "proj", ["a"], "detect")
    Image.new("RGB", (10, 10)).save(proj.image_dir / "x.jpg")
    (proj.labels_dir / "x.txt").write_text(BOX)
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(ds / "images" / "x.png")
    (ds / "labels" / "x.txt").write_text(BOX + BOX)
    (ds / "classes.txt").write_text("a\n")
    assert main(["import", "yolo", str(ds), str(proj.root)]) == 0
    assert "x.png imported as x_1.png: x.jpg already uses" in capsys.readouterr().err
    assert (proj.labels_dir / "x.txt").read_text() == BOX  # the project's own label is untouched
    assert len((proj.labels_dir / "x_1.txt").read_text().splitlines()) == 2


def test_yolo_source_with_two_images_on_one_label_file_warns(tmp_path, capsys):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    Image.new("RGB", (10, 10)).save(ds / "images" / "x.jpg")
    Image.new("RGB", (10, 10), (5, 5, 5)).save(ds / "images" / "x.png")
    (ds / "labels" / "x.txt").write_text(BOX)
    (ds / "classes.txt").write_text("a\n")
    assert main(["import", "yolo", str(ds), str(tmp_path / "proj")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {ds / 'labels' / 'x.txt'}: shared by images x.jpg, x.png" in err


def _project_with_shared_stem(tmp_path: Path) -> Project:
    proj = Project.create(tmp_path / "proj", ["a"], "detect")
    Image.new("RGB", (10, 10)).save(proj.image_dir / "x.jpg")
    Image.new("RGB", (10, 10), (7, 7, 7)).save(proj.image_dir / "x.png")
    Image.new("RGB", (10, 10)).save(proj.image_dir / "y.jpg")
    (proj.labels_dir / "x.txt").write_text(BOX)
    return proj


def test_convert_warns_naming_both_images_for_every_format(tmp_path, capsys):
    proj = _project_with_shared_stem(tmp_path)
    for kind in ("yolo", "coco", "labelme"):
        assert main(["convert", str(proj.root), kind, str(tmp_path / f"out_{kind}")]) == 0
        err = capsys.readouterr().err
        warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
        assert len(warnings) == 1
        assert f"{proj.labels_dir / 'x.txt'}: shared by images x.jpg, x.png" in warnings[0]
        assert "rename one of them" in warnings[0]


def test_check_warns_naming_both_images(tmp_path, capsys):
    proj = _project_with_shared_stem(tmp_path)
    assert main(["check", str(proj.root)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {proj.labels_dir / 'x.txt'}: shared by images x.jpg, x.png (same name" in out
    assert proj.label_sharers(proj.image_dir / "x.png") == [proj.image_dir / "x.jpg"]
    assert proj.label_sharers(proj.image_dir / "y.jpg") == []


def test_gui_import_and_export_summaries_carry_the_warning(tmp_path):
    from app.transfer import export_project, import_into

    text = import_into(None, tmp_path / "proj", "coco", _coco_two_stems(tmp_path))
    assert "1 warning(s): " in text and "x.png imported as x_1.png: x.jpg already uses" in text
    proj = _project_with_shared_stem(tmp_path / "other")
    text = export_project(None, proj, "yolo", tmp_path / "out")
    assert "warning: " in text and "shared by images x.jpg, x.png" in text
