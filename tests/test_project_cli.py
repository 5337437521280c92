"""`dfine new | classes | split | check | demo` through the real CLI dispatcher."""

from __future__ import annotations

import shutil
import subprocess
import sys

import yaml
from PIL import Image

from core.cli import main
from core.data.formats.yolo_txt import format_yolo_txt
from core.project import Project


def test_new_creates_project_from_template(tmp_path, capsys):
    assert main(["new", str(tmp_path / "p"), "--classes", "cat, dog,bird", "--task", "detect"]) == 0
    p = Project.open(tmp_path / "p")
    assert p.class_names == ["cat", "dog", "bird"] and p.config.task == "detect"
    assert "# Class names, in order" in p.config_path.read_text()
    assert "created" in capsys.readouterr().out
    # second time: a one-line error, exit 2, no traceback
    assert main(["new", str(tmp_path / "p"), "--classes", "a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfine new: error: ") and "already exists" in err and "Traceback" not in err


def test_classes_verbs(tmp_path, capsys):
    main(["new", str(tmp_path / "p"), "--classes", "a,b,c"])
    p = Project.open(tmp_path / "p")
    Image.new("RGB", (10, 10)).save(p.image_dir / "x.png")
    (p.labels_dir / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n2 0.4 0.4 0.1 0.1\n")
    capsys.readouterr()
    assert main(["classes", str(p.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["0", "a", "1", "instances"] and out[2].split() == ["2", "c", "2", "instances"]
    assert main(["classes", str(p.root), "rename", "a", "apple"]) == 0
    assert main(["classes", str(p.root), "merge", "c", "b"]) == 0
    assert (p.labels_dir / "x.txt").read_text() == "0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n1 0.4 0.4 0.1 0.1\n"
    assert main(["classes", str(p.root), "add", "d"]) == 0
    assert main(["classes", str(p.root), "delete", "apple"]) == 0
    assert Project.open(p.root).class_names == ["b", "d"]
    assert (p.labels_dir / "x.txt").read_text() == "0 0.5 0.5 0.1 0.1\n0 0.4 0.4 0.1 0.1\n"
    assert main(["classes", str(p.root), "undo"]) == 0
    assert Project.open(p.root).class_names == ["apple", "b", "d"]
    capsys.readouterr()
    assert main(["classes", str(p.root), "delete", "zebra"]) == 2
    assert "no class named 'zebra'" in capsys.readouterr().err


def test_split_and_check(tmp_path, capsys):
    main(["new", str(tmp_path / "p"), "--classes", "a"])
    p = Project.open(tmp_path / "p")
    for i in range(30):
        Image.new("RGB", (16, 12)).save(p.image_dir / f"g{i // 3}_{i}.png")
    (p.labels_dir / "g0_0.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (p.labels_dir / "g0_1.txt").write_text("0 0.5 0.5 0.2\n")  # bad: odd count
    (p.labels_dir / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    Image.new("RGB", (16, 12)).save(p.image_dir / "g0_0.jpg")  # same stem as g0_0.png
    capsys.readouterr()
    assert main(["split", str(p.root), "split.group_by=pattern", "split.val_fraction=0.3"]) == 0
    out = capsys.readouterr().out
    assert "10 groups" in out
    val = (p.splits_dir / "val.txt").read_text().split()
    train = (p.splits_dir / "train.txt").read_text().split()
    assert len(val) + len(train) == 31 and not {v.split("_")[0] for v in val} & {t.split("_")[0] for t in train}
    assert main(["check", str(p.root)]) == 1
    out = capsys.readouterr().out
    assert "g0_1.txt:1: odd number of coordinates" in out and "orphan.txt: label file without an image" in out
    assert "30 images ok, 2 instances, 1 bad files" in out
    assert "g0_0.txt: shared by images g0_0.jpg, g0_0.png" in out
    assert main(["split", str(p.root), "split.val_fraction=2"]) == 2
    assert "split.val_fraction: must be < 1, got 2" in capsys.readouterr().err


def test_check_on_real_ultralytics_labels(coco8_dir, tmp_path, capsys):
    names = yaml.safe_load((coco8_dir / "coco8-seg.yaml").read_text())["names"]
    classes = [names[i] for i in range(len(names))]
    p = Project.create(tmp_path / "coco8", classes, "segment")
    for part in ("train", "val"):
        shutil.copytree(coco8_dir / "images" / part, p.image_dir / part)
        shutil.copytree(coco8_dir / "labels" / part, p.labels_dir / part)
    capsys.readouterr()
    assert main(["check", str(p.root)]) == 0
    out = capsys.readouterr().out
    anns, errors = p.load_all()
    assert errors == [] and len(anns) == 8
    n_rows = sum(len([l for l in f.read_text().splitlines() if l.strip()]) for f in p.labels_dir.rglob("*.txt"))
    assert sum(len(a.instances) for a in anns) == n_rows
    assert out.strip().endswith(f"8 images ok, {n_rows} instances, 0 bad files, 0 warnings")
    # re-formatting what was read reproduces each Ultralytics row within 1e-6 (they write 6 decimals)
    for a in anns:
        src = p.label_path(a.image_path).read_text().splitlines()
        ours = format_yolo_txt(a.instances, a.width, a.height).text.splitlines()
        for s, o in zip(src, ours):
            sv, ov = [float(v) for v in s.split()], [float(v) for v in o.split()]
            assert len(sv) == len(ov) and max(abs(x - y) for x, y in zip(sv, ov)) <= 1e-6 + 1e-12


def test_demo_verb_and_module_entry(tmp_path):
    r = subprocess.run([sys.executable, "-m", "core", "demo", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 0, r.stderr
    assert "created demo project" in r.stdout and "64 images" in r.stdout
    r2 = subprocess.run([sys.executable, "-m", "core", "demo", str(tmp_path / "d")],
                        capture_output=True, text=True, timeout=120, check=False)
    assert r2.returncode == 0 and "using demo project" in r2.stdout
