"""Round trips: YOLO -> COCO -> YOLO (coco8-seg, real Ultralytics data), labelme -> project ->
labelme, COCO polygons / multi-polygons / RLE / iscrowd, and the `dfine import|convert` verbs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from core.annotation import ImageAnnotation, Instance
from core.cli import main
from core.data.formats.coco import coco_dict, load_coco, save_coco
from core.geometry import mask_to_polygons
from core.data.formats.labelme import load_labelme, save_labelme
from core.data.formats.report import class_histogram
from core.data.formats.yolo_dataset import load_ultralytics_yaml, load_yolo_folder, save_yolo_dataset
from core.project import Project


@pytest.fixture()
def coco8(coco8_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "coco8-seg"
    shutil.copytree(coco8_dir, dst)
    return dst


def _raw_rows(label_dir: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Independent oracle: the label files read with plain string splitting."""
    out = {}
    for f in sorted(label_dir.rglob("*.txt")):
        rows = []
        for line in f.read_text().splitlines():
            toks = line.split()
            if toks:
                rows.append((int(toks[0]), np.array([float(t) for t in toks[1:]])))
        out[f.stem] = rows
    return out


def _assert_rows_equal(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for stem, rows in a.items():
        assert len(rows) == len(b[stem]), stem
        for (ca, va), (cb, vb) in zip(rows, b[stem]):
            assert ca == cb and va.shape == vb.shape, stem
            np.testing.assert_allclose(va, vb, atol=tol, rtol=0)


def test_coco8_yolo_to_coco_to_yolo(coco8: Path, tmp_path: Path) -> None:
    original = _raw_rows(coco8 / "labels")
    n_rows = sum(len(r) for r in original.values())
    assert n_rows == 30  # what coco8-seg ships; makes the test fail loudly if the fixture changes

    first = load_ultralytics_yaml(coco8 / "coco8-seg.yaml")
    assert not first.problems
    assert len(first.class_names) == 80 and first.class_names[45] == "bowl"
    assert len(first.annotations) == 8 and first.num_instances == n_rows
    assert sorted(first.splits.values()) == ["train"] * 4 + ["val"] * 4

    coco_json = save_coco(tmp_path / "c" / "instances.json", first.annotations, first.class_names,
                          image_root=coco8 / "images")
    data = json.loads(coco_json.read_text())
    assert len(data["annotations"]) == n_rows and len(data["categories"]) == 80
    assert data["images"][0]["file_name"] == "train/000000000009.jpg"

    second = load_coco(coco_json, image_dir=coco8 / "images")
    assert not second.problems and second.class_names == first.class_names
    assert class_histogram(second.annotations) == class_histogram(first.annotations)
    splits = {a.image_path: ("val" if "/val/" in a.image_path.as_posix() else "train") for a in second.annotations}
    yaml_path = save_yolo_dataset(tmp_path / "y", second.annotations, second.class_names, splits)

    _assert_rows_equal(_raw_rows(tmp_path / "y" / "labels"), original, tol=1e-6)
    third = load_ultralytics_yaml(yaml_path)
    assert third.class_names == first.class_names and third.num_instances == n_rows
    assert sorted(third.splits.values()) == ["train"] * 4 + ["val"] * 4


def test_cli_import_ultralytics_then_convert_round_trip(coco8: Path, tmp_path: Path, capsys) -> None:
    proj = tmp_path / "proj"
    assert main(["import", "ultralytics", str(coco8 / "coco8-seg.yaml"), str(proj)]) == 0
    out = capsys.readouterr().out
    assert "8 images, 30 instances" in out
    project = Project.open(proj)
    assert project.class_names[:3] == ["person", "bicycle", "car"]
    assert project.config.task == "segment"
    assert len(project.split_images("train")) == 4 and len(project.split_images("val")) == 4
    assert all("/val/" in p.as_posix() for p in project.split_images("val"))

    assert main(["convert", str(proj), "coco", str(tmp_path / "coco")]) == 0
    assert main(["import", "coco", str(tmp_path / "coco" / "annotations" / "instances_val.json"),
                 str(tmp_path / "proj2"), "--images", str(tmp_path / "coco" / "images"), "--split", "val"]) == 0
    assert main(["import", "coco", str(tmp_path / "coco" / "annotations" / "instances_train.json"),
                 str(tmp_path / "proj2"), "--images", str(tmp_path / "coco" / "images"), "--split", "train"]) == 0
    assert main(["convert", str(tmp_path / "proj2"), "yolo", str(tmp_path / "yolo")]) == 0
    _assert_rows_equal(_raw_rows(tmp_path / "yolo" / "labels"), _raw_rows(coco8 / "labels"), tol=1e-6)
    assert (tmp_path / "yolo" / "images" / "val" / "000000000036.jpg").is_file()
    assert (tmp_path / "proj2" / "images" / "val" / "000000000036.jpg").is_file()  # COCO file_name kept


def _write_labelme(path: Path, image_name: str, w: int, h: int, shapes: list[dict]) -> None:
    path.write_text(json.dumps({"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_name,
                                "imageData": None, "imageWidth": w, "imageHeight": h}))


def _shape(label, points, shape_type="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}


@pytest.fixture()
def labelme_dir(tmp_path: Path) -> Path:
    d = tmp_path / "lm"
    d.mkdir()
    Image.new("RGB", (200, 100), (30, 60, 90)).save(d / "a.jpg")
    Image.new("RGB", (64, 48)).save(d / "b.png")
    _write_labelme(d / "a.json", "a.jpg", 200, 100, [
        _shape("cat", [[10.25, 10.5], [60.125, 12.0], [40.0, 70.75]]),
        _shape("dog", [[100.0, 20.0], [150.5, 80.25]], "rectangle"),
        _shape("cat", [[120, 5], [130, 5], [125, 15]], group_id=7),  # two parts of one object
        _shape("cat", [[140, 5], [150, 5], [145, 15]], group_id=7),
        _shape("dog", [[5, 90], [20, 90], [12, 99]], group_id=3),  # single shape carrying a group id
    ])
    _write_labelme(d / "b.json", "b.png", 64, 48, [
        _shape("bird", [[32, 24], [42, 24]], "circle"),
        _shape("bird", [[1, 1], [5, 1], [5, 5], [1, 5]]),
    ])
    return d


def test_labelme_reader(labelme_dir: Path) -> None:
    res = load_labelme(labelme_dir)
    assert not res.problems
    assert res.class_names == ["cat", "dog", "bird"]
    a, b = res.annotations
    assert (a.width, a.height) == (200, 100) and len(a.instances) == 4
    assert a.instances[1].is_box and a.instances[1].bbox() == (100.0, 20.0, 150.5, 80.25)
    multi = a.instances[2]
    assert multi.group_id == 7 and len(multi.polygons) == 2 and multi.class_id == 0
    circle = b.instances[0].polygons[0]
    assert circle.shape == (32, 2)
    np.testing.assert_allclose(np.hypot(circle[:, 0] - 32, circle[:, 1] - 24), 10.0, atol=1e-9)


def test_labelme_to_project_to_labelme(labelme_dir: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    assert main(["import", "labelme", str(labelme_dir), str(proj)]) == 0
    assert main(["convert", str(proj), "labelme", str(tmp_path / "out")]) == 0
    back = load_labelme(tmp_path / "out")
    orig = load_labelme(labelme_dir)
    assert not back.problems and back.class_names == orig.class_names
    for x, y in zip(orig.annotations, back.annotations):
        assert x.image_path.name == y.image_path.name
        assert len(x.instances) == len(y.instances)
        for i, j in zip(x.instances, y.instances):
            assert (i.class_id, i.group_id, i.is_box, len(i.polygons)) == (j.class_id, j.group_id, j.is_box,
                                                                          len(j.polygons))
            # the project stores normalised coordinates with 6 decimals: 1e-6 of the image size
            tol = 1e-6 * max(x.width, x.height)
            np.testing.assert_allclose(i.bbox(), j.bbox(), atol=tol)
            for p, q in zip(i.polygons, j.polygons):
                np.testing.assert_allclose(p, q, atol=tol)
    raw = json.loads((tmp_path / "out" / "a.json").read_text())
    assert [s["shape_type"] for s in raw["shapes"]] == ["polygon", "rectangle", "polygon", "polygon", "polygon"]
    assert [s["group_id"] for s in raw["shapes"]] == [None, None, 7, 7, 3]
    assert raw["imagePath"] == "a.jpg" and (raw["imageWidth"], raw["imageHeight"]) == (200, 100)


def test_labelme_export_assigns_fresh_group_ids(tmp_path: Path) -> None:
    Image.new("RGB", (50, 50)).save(tmp_path / "m.png")
    tri = [[1, 1], [9, 1], [5, 9]]
    ann = ImageAnnotation(tmp_path / "m.png", 50, 50, [
        Instance(0, polygons=[tri, np.add(tri, 20)]),  # multi-part, no group id yet
        Instance(0, polygons=[np.add(tri, 30)], group_id=4),
    ])
    (path,) = save_labelme(tmp_path / "o", [ann], ["x"])
    gids = [s["group_id"] for s in json.loads(path.read_text())["shapes"]]
    assert gids == [5, 5, 4]
    back = load_labelme(path)
    assert [len(i.polygons) for i in back.annotations[0].instances] == [2, 1]


def _coco_image(tmp_path: Path, w: int = 60, h: int = 50) -> Path:
    Image.new("RGB", (w, h)).save(tmp_path / "img.png")
    return tmp_path / "img.png"


def _coco_file(tmp_path: Path, anns: list[dict], w: int = 60, h: int = 50) -> Path:
    _coco_image(tmp_path, w, h)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "img.png", "width": w, "height": h}],
        "categories": [{"id": 3, "name": "b"}, {"id": 1, "name": "a"}],
        "annotations": anns,
    }))
    return path


def test_coco_multipolygon_and_box_exact(tmp_path: Path) -> None:
    parts = [[1.5, 2.25, 10.0, 2.0, 6.0, 9.0], [20.0, 20.0, 30.0, 20.0, 30.0, 30.0, 20.0, 30.0]]
    path = _coco_file(tmp_path, [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": parts, "bbox": [0, 0, 1, 1], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [], "bbox": [5, 6, 10, 4], "iscrowd": 0},
    ])
    res = load_coco(path)
    assert res.class_names == ["a", "b"]  # ascending category id
    inst, box = res.annotations[0].instances
    assert inst.class_id == 1 and len(inst.polygons) == 2
    np.testing.assert_array_equal(inst.polygons[0].ravel(), parts[0])
    assert box.is_box and box.bbox() == (5.0, 6.0, 15.0, 10.0)
    out = coco_dict(res.annotations, res.class_names, tmp_path)
    assert out["annotations"][0]["segmentation"] == parts
    assert out["annotations"][0]["category_id"] == 2 and out["categories"][1]["name"] == "b"
    assert out["annotations"][0]["bbox"] == [1.5, 2.0, 28.5, 28.0]
    assert out["annotations"][1]["segmentation"] == [] and out["annotations"][1]["area"] == 40.0
    # area is the COCO (rasterised) area: 100 px square + the triangle's pixels
    tri = mask_utils.area(mask_utils.frPyObjects([parts[0]], 50, 60))[0]
    assert out["annotations"][0]["area"] == pytest.approx(100 + tri)


def test_coco_rle_iscrowd_with_hole_within_half_pixel(tmp_path: Path) -> None:
    """RLE is rasterised, so geometry is compared with a 0.5 px tolerance (pixel-centre tracing)."""
    m = np.zeros((50, 60), np.uint8)
    m[10:40, 5:45] = 1  # true boundary x in [5, 45], y in [10, 40]
    m[20:30, 15:25] = 0  # a hole
    rle = mask_utils.encode(np.asfortranarray(m))
    uncompressed_counts = []  # also exercise the uncompressed (list counts) RLE form used for iscrowd
    flat = m.ravel(order="F")
    run_val, run = 0, 0
    for v in flat:
        if v == run_val:
            run += 1
        else:
            uncompressed_counts.append(run)
            run_val, run = v, 1
    uncompressed_counts.append(run)
    path = _coco_file(tmp_path, [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [5, 10, 40, 30],
         "segmentation": {"size": [50, 60], "counts": rle["counts"].decode()}},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [5, 10, 40, 30],
         "segmentation": {"size": [50, 60], "counts": uncompressed_counts}},
    ])
    res = load_coco(path)
    assert not res.problems
    for inst in res.annotations[0].instances:
        assert inst.iscrowd and len(inst.polygons) == 1 and len(inst.holes) == 1
        x0, y0, x1, y1 = inst.bbox()
        np.testing.assert_allclose([x0, y0, x1, y1], [5, 10, 45, 40], atol=0.5)
        hx0, hy0 = inst.holes[0].min(axis=0)
        hx1, hy1 = inst.holes[0].max(axis=0)
        np.testing.assert_allclose([hx0, hy0, hx1, hy1], [15, 20, 25, 30], atol=0.5 + 1e-9)
    out = coco_dict(res.annotations, res.class_names)
    seg = out["annotations"][0]["segmentation"]
    assert isinstance(seg, dict) and seg["size"] == [50, 60]  # holes/iscrowd go back out as RLE
    back = mask_utils.decode({"size": seg["size"], "counts": seg["counts"]})
    inter, union = (back & m).sum(), (back | m).sum()
    assert inter / union > 0.9  # only boundary pixels may differ
    assert back[25, 20] == 0 and back[15, 10] == 1  # hole stays a hole


def test_mask_to_polygons_keeps_single_pixels() -> None:
    m = np.zeros((10, 10), np.uint8)
    m[3, 4] = 1
    outers, holes = mask_to_polygons(m)
    assert holes == [] and len(outers) == 1
    assert {tuple(v) for v in outers[0]} == {(4, 3), (5, 3), (5, 4), (4, 4)}  # the pixel's square


def test_yolo_folder_with_classes_txt_and_detect_rows(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "images" / "valid").mkdir(parents=True)
    (root / "labels" / "valid").mkdir(parents=True)
    (root / "images" / "train").mkdir(parents=True)
    Image.new("RGB", (100, 50)).save(root / "images" / "valid" / "x.jpg")
    Image.new("RGB", (100, 50)).save(root / "images" / "train" / "bg.jpg")  # no label file: background
    (root / "labels" / "valid" / "x.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    res = load_yolo_folder(root)
    assert res.class_names == ["cat", "dog"]
    by_name = {a.image_path.name: a for a in res.annotations}
    assert by_name["x.jpg"].instances[0].bbox() == pytest.approx((40.0, 15.0, 60.0, 35.0))
    assert by_name["bg.jpg"].instances == []
    assert res.splits[root / "images" / "valid" / "x.jpg"] == "val"
    assert any("no label file" in n and n.startswith("1 image") for n in res.notes)
    # box-only data exported again stays in detect format (cx cy w h)
    save_yolo_dataset(tmp_path / "o", res.annotations, res.class_names, res.splits)
    assert (tmp_path / "o" / "labels" / "val" / "x.txt").read_text() == \
        "1 0.500000 0.500000 0.200000 0.400000\n"
    assert (tmp_path / "o" / "labels" / "train" / "bg.txt").read_text() == ""


def test_data_yaml_names_list_path_and_txt_lists(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for n in ("p", "q"):
        Image.new("RGB", (10, 10)).save(root / "images" / f"{n}.jpg")
        (root / "labels" / f"{n}.txt").write_text("0 0.1 0.1 0.9 0.1 0.5 0.9\n")
    (root / "train.txt").write_text("./images/p.jpg\n")
    (root / "val.txt").write_text("./images/q.jpg\n")
    (tmp_path / "d.yaml").write_text("path: data\ntrain: train.txt\nval: [val.txt]\nnames: [only]\n")
    res = load_ultralytics_yaml(tmp_path / "d.yaml")
    assert res.class_names == ["only"] and res.num_instances == 2
    assert {p.name: s for p, s in res.splits.items()} == {"p.jpg": "train", "q.jpg": "val"}


def test_import_keeps_existing_labels_and_renames_clashing_images(tmp_path: Path, labelme_dir: Path,
                                                                  capsys) -> None:
    proj = tmp_path / "proj"
    assert main(["import", "labelme", str(labelme_dir), str(proj)]) == 0
    before = (proj / "labels" / "a.txt").read_text()
    # same file again: already labelled -> kept and reported, exit code 1
    assert main(["import", "labelme", str(labelme_dir / "a.json"), str(proj)]) == 1
    err = capsys.readouterr().err
    assert "already labelled" in err and "a.txt" in err
    assert (proj / "labels" / "a.txt").read_text() == before
    # a different image with the same name is stored next to it, not over it
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (200, 100), (255, 255, 255)).save(other / "a.jpg")
    _write_labelme(other / "a.json", "a.jpg", 200, 100, [_shape("cow", [[1, 1], [9, 1], [5, 9]])])
    assert main(["import", "labelme", str(other), str(proj)]) == 0
    project = Project.open(proj)
    assert project.class_names == ["cat", "dog", "bird", "cow"]
    assert (proj / "images" / "a_1.jpg").is_file()
    assert project.load_annotation(proj / "images" / "a_1.jpg").instances[0].class_id == 3
    assert (proj / "labels" / "a.txt").read_text() == before


def test_labelme_export_of_object_with_hole_keeps_its_pixels(tmp_path: Path) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "h.png")
    outer = np.array([[2, 2], [30, 2], [30, 30], [2, 30]], float)
    hole = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], float)
    ann = ImageAnnotation(tmp_path / "h.png", 40, 40, [Instance(0, polygons=[outer], holes=[hole])])
    (path,) = save_labelme(tmp_path / "o", [ann], ["ring"])
    shapes = json.loads(path.read_text())["shapes"]
    assert len(shapes) == 1 and shapes[0]["shape_type"] == "polygon"

    # compare with the COCO rasteriser: original (parts minus holes) vs the single bridged ring
    from core.data.formats.coco import instance_rle

    back = load_labelme(path).annotations[0].instances[0]
    assert len(back.polygons) == 1 and not back.holes
    expected = mask_utils.decode(instance_rle(ann.instances[0], 40, 40))
    got = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([back.polygons[0].ravel().tolist()], 40, 40)))
    assert expected[15, 15] == 0 and expected.sum() == 28 * 28 - 10 * 10
    assert (got != expected).sum() <= 10  # only along the zero-width bridge
    assert got[15, 15] == 0


def test_coco_multipolygon_through_project_is_exact(tmp_path: Path) -> None:
    """COCO parts -> project store (one bridged YOLO row + sidecar) -> COCO: same parts."""
    parts = [[1.5, 2.25, 10.0, 2.0, 6.0, 9.0], [20.0, 20.0, 30.0, 20.0, 30.0, 30.0, 20.0, 30.0]]
    path = _coco_file(tmp_path, [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": parts, "bbox": [0, 0, 1, 1], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [parts[0]], "bbox": [0, 0, 1, 1], "iscrowd": 0},
    ])
    assert main(["import", "coco", str(path), str(tmp_path / "proj")]) == 0
    assert main(["convert", str(tmp_path / "proj"), "coco", str(tmp_path / "out")]) == 0
    out = [json.loads((tmp_path / "out" / "annotations" / f"instances_{s}.json").read_text())
           for s in ("train", "val")]
    anns = [a for o in out for a in o["annotations"]]
    assert [c["name"] for c in out[0]["categories"]] == ["a", "b"]
    assert sorted(a["category_id"] for a in anns) == [1, 2]
    multi = next(a for a in anns if a["category_id"] == 2)
    assert len(multi["segmentation"]) == 2
    for got, want in zip(multi["segmentation"], parts):
        np.testing.assert_allclose(got, want, atol=1e-6 * 60)  # 6-decimal normalised store, 60 px wide


def test_import_overwrite_replaces_labels(tmp_path: Path, labelme_dir: Path) -> None:
    proj = tmp_path / "proj"
    assert main(["import", "labelme", str(labelme_dir), str(proj)]) == 0
    data = json.loads((labelme_dir / "b.json").read_text())
    data["shapes"] = data["shapes"][:1]
    (labelme_dir / "b.json").write_text(json.dumps(data))
    assert main(["import", "labelme", str(labelme_dir / "b.json"), str(proj)]) == 1  # kept, reported
    assert len((proj / "labels" / "b.txt").read_text().splitlines()) == 2
    assert main(["import", "labelme", str(labelme_dir / "b.json"), str(proj), "--overwrite"]) == 0
    assert len((proj / "labels" / "b.txt").read_text().splitlines()) == 1
