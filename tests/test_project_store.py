"""Project folder: create from template, image discovery, atomic label store, bad files reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.data.formats.yolo_txt import sidecar_path
from core.errors import LabelError, UserFacingError
from core.project import Project


def _img(path: Path, w: int = 40, h: int = 30, exif_orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (w, h), (10, 20, 30))
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif)
    else:
        im.save(path)
    return path


@pytest.fixture()
def proj(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "p", ["cat", "dog", "bird"], "segment")


def test_create_keeps_template_comments_and_sets_values(tmp_path):
    p = Project.create(tmp_path / "new", ["a b", "x:y", "ü"], "detect")
    text = p.config_path.read_text(encoding="utf-8")
    template = (Path(__file__).resolve().parents[1] / "projects_template" / "project.yaml").read_text()
    assert sum(1 for l in text.splitlines() if l.strip().startswith("#")) == \
        sum(1 for l in template.splitlines() if l.strip().startswith("#"))
    assert p.class_names == ["a b", "x:y", "ü"] and p.config.task == "detect"
    assert Project.open(p.root).class_names == ["a b", "x:y", "ü"]
    assert (p.root / "images").is_dir() and (p.root / "labels").is_dir()
    with pytest.raises(UserFacingError, match="already exists"):
        Project.create(p.root, ["a"], "segment")
    with pytest.raises(UserFacingError, match="not a dfine-studio project"):
        Project.open(tmp_path)


def test_create_rejects_bad_input_before_writing(tmp_path):
    with pytest.raises(UserFacingError, match="duplicate class name 'a'"):
        Project.create(tmp_path / "x", ["a", "a"], "segment")
    with pytest.raises(UserFacingError, match="task: must be one of"):
        Project.create(tmp_path / "y", ["a"], "segmentation")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_image_paths_sorted_recursive_any_case(proj):
    for rel in ["b.JPG", "a.png", "sub/c.jpeg", "sub/d.TIFF", "notes.txt", ".hidden.png", "e.WebP"]:
        p = proj.image_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    rels = [p.relative_to(proj.image_dir).as_posix() for p in proj.image_paths()]
    assert rels == ["a.png", "b.JPG", "e.WebP", "sub/c.jpeg", "sub/d.TIFF"]
    assert proj.label_path(proj.image_dir / "sub" / "c.jpeg") == proj.labels_dir / "sub" / "c.txt"


def test_image_root_elsewhere(tmp_path):
    p = Project.create(tmp_path / "p", ["a"], "segment")
    ext = tmp_path / "photos"
    _img(ext / "x.png")
    text = p.config_path.read_text().replace("image_root: null", "image_root: ../photos")
    p.config_path.write_text(text)
    p = Project.open(p.root)
    assert p.image_paths() == [ext / "x.png"]
    assert p.label_path(ext / "x.png") == p.root / "labels" / "x.txt"


def test_save_load_round_trip_exact(proj):
    img = _img(proj.image_dir / "one.png", 200, 100)
    ann = ImageAnnotation(img, 200, 100, [
        Instance(0, polygons=[[[20, 10], [180, 10], [100, 90]]]),
        Instance(2, polygons=[[[0, 0], [50, 0], [50, 50], [0, 50]], [[60, 60], [80, 60], [70, 80]]],
                 holes=[[[10, 10], [20, 10], [20, 20]]]),
        Instance(1, box=(5, 5, 25, 45)),
    ])
    lp = proj.save_annotation(ann)
    assert lp == proj.labels_dir / "one.txt"
    assert lp.read_text().splitlines()[0] == "0 0.100000 0.100000 0.900000 0.100000 0.500000 0.900000"
    back = proj.load_annotation(img)
    assert (back.width, back.height) == (200, 100) and len(back.instances) == 3
    for a, b in zip(ann.instances, back.instances):
        assert a.class_id == b.class_id and a.is_box == b.is_box
        assert len(a.polygons) == len(b.polygons) and len(a.holes) == len(b.holes)
        assert np.allclose(a.bbox(), b.bbox(), atol=1e-3)
    assert sidecar_path(lp).exists()
    # saving without multi-part instances removes the sidecar again
    proj.save_annotation(ImageAnnotation(img, 200, 100, [ann.instances[0]]))
    assert not sidecar_path(lp).exists()
    # empty annotation -> empty file (= no instances), and loading an unlabelled image gives none
    proj.save_annotation(ImageAnnotation(img, 200, 100, []))
    assert lp.read_text() == "" and proj.load_annotation(img).instances == []
    other = _img(proj.image_dir / "two.png")
    assert proj.load_annotation(other).instances == []


def test_save_refuses_unknown_class(proj):
    img = _img(proj.image_dir / "a.png")
    with pytest.raises(LabelError, match="class id out of range 0..2"):
        proj.save_annotation(ImageAnnotation(img, 40, 30, [Instance(3, box=(1, 1, 5, 5))]))
    assert not proj.label_path(img).exists()


def test_sidecar_crash_states_all_load_correctly(proj):
    """Simulate a crash after each of the 3 save steps: old txt or new txt, each with a valid sidecar."""
    img = _img(proj.image_dir / "m.png", 100, 100)
    two = lambda d: Instance(0, polygons=[[[10 + d, 10], [30, 10], [30, 30]], [[60, 60], [90, 60], [90, 90 - d]]])
    old, new = ImageAnnotation(img, 100, 100, [two(0)]), ImageAnnotation(img, 100, 100, [two(5)])
    lp = proj.save_annotation(old)
    old_txt, old_side = lp.read_text(), sidecar_path(lp).read_text()
    proj.save_annotation(new)
    new_txt, new_side = lp.read_text(), sidecar_path(lp).read_text()
    union = {"version": 1, "rows": {**json.loads(old_side)["rows"], **json.loads(new_side)["rows"]}}
    for txt, side, want in [(old_txt, json.dumps(union), old), (new_txt, json.dumps(union), new),
                            (new_txt, new_side, new)]:
        lp.write_text(txt)
        sidecar_path(lp).write_text(side)
        got = proj.load_annotation(img).instances[0]
        assert len(got.polygons) == 2 and np.allclose(got.polygons[0], want.instances[0].polygons[0], atol=1e-3)


def test_exif_rotated_image_size(proj):
    img = _img(proj.image_dir / "rot.jpg", 40, 30, exif_orientation=6)  # 90 deg: displayed 30x40
    assert (proj.load_annotation(img).width, proj.load_annotation(img).height) == (30, 40)


def test_load_all_reports_bad_files_and_loads_the_rest_without_touching_them(proj):
    good = [_img(proj.image_dir / f"g{i}.png") for i in range(3)]
    for g in good:
        proj.label_path(g).write_text("0 0.5 0.5 0.2 0.2\n")
    bad_a, bad_b = _img(proj.image_dir / "bad_a.png"), _img(proj.image_dir / "bad_b.png")
    proj.label_path(bad_a).write_bytes(b"0 0.5 0.5 0.2 0.2\n1 0.1 nan 0.2 0.2\n")
    proj.label_path(bad_b).write_bytes(b"7 0.5 0.5 0.2 0.2\r\n")
    (proj.image_dir / "broken.png").write_bytes(b"not an image")
    before = {p: p.read_bytes() for p in proj.labels_dir.iterdir()}
    warnings: list[str] = []
    anns, errors = proj.load_all(warnings)
    assert sorted(a.image_path.name for a in anns) == ["g0.png", "g1.png", "g2.png"]
    msgs = sorted(str(e) for e in errors)
    assert len(msgs) == 3
    assert any("bad_a.txt:2" in m and "nan" in m for m in msgs)
    assert any("bad_b.txt:1" in m and "out of range" in m and "'7'" in m for m in msgs)
    assert any("broken.png" in m for m in msgs)
    assert {p: p.read_bytes() for p in proj.labels_dir.iterdir()} == before  # never rewritten


def test_clipped_coordinates_warn_with_file_and_line(proj):
    img = _img(proj.image_dir / "c.png", 100, 100)
    proj.label_path(img).write_text("\n0 -0.005 0.1 0.5 0.1 0.5 1.01\n")
    warnings: list[str] = []
    ann = proj.load_annotation(img, warnings)
    assert len(ann.instances) == 1 and len(warnings) == 1 and "c.txt:2" in warnings[0]
    assert ann.instances[0].polygons[0].min() == 0.0 and ann.instances[0].polygons[0].max() == 100.0
