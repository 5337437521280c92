"""Issue #33: `dfine import` names every file it dropped and why — label files without an image
(an Ultralytics folder often has a few) included — in the summary and in ``--events -``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

from core.cli import main


def _dataset(root: Path) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "train" / "a.png"), np.zeros((40, 60, 3), np.uint8))
    (root / "labels" / "train" / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.3 0.6\n")
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.1 0.1 0.5 0.1 0.3 0.6\n1 0.5 0.5 0.2 0.2\n\n")
    (root / "labels" / "train" / "classes.txt").write_text("cat\ndog\n")  # not a label file
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/train",
                                                    "names": {0: "cat", 1: "dog"}}))
    return root / "data.yaml"


def test_import_names_label_files_without_an_image(tmp_path: Path, capsys) -> None:
    data = _dataset(tmp_path / "src")
    assert main(["import", "ultralytics", str(data), str(tmp_path / "proj")]) == 1
    out = capsys.readouterr()
    ghost = tmp_path / "src" / "labels" / "train" / "ghost.txt"
    assert (f"skipped: {ghost}: label file without an image (no ghost.* among the imported images of "
            f"{tmp_path / 'src' / 'images' / 'train'}); its 2 instance(s) were not imported") in out.err
    assert "classes.txt" not in out.err
    assert out.out.strip().endswith("1 images, 1 instances; skipped 1 item(s): ghost.txt (each with its reason above)")


def test_import_events_list_every_dropped_file(tmp_path: Path, capsys) -> None:
    data = _dataset(tmp_path / "src")
    assert main(["import", "ultralytics", str(data), str(tmp_path / "proj"), "--events", "-"]) == 1
    out = capsys.readouterr()
    events = [json.loads(line) for line in out.out.splitlines()]  # stdout: events only
    ghost = str(tmp_path / "src" / "labels" / "train" / "ghost.txt")
    warning = [e for e in events if e["event"] == "warning" and e.get("dropped")]
    assert [w["path"] for w in warning] == [ghost] and "its 2 instance(s) were not imported" in warning[0]["reason"]
    result = events[-1]
    assert result["event"] == "result" and result["verb"] == "import" and result["images"] == 1
    assert [s["path"] for s in result["skipped"]] == [ghost]
    assert "skipped 1 item(s): ghost.txt" in result["message"]
    from core.messages import parse_event

    for e in events:
        parse_event(e)  # every line is a valid typed event
    assert "skipped 1 item(s)" in out.err  # the human summary went to stderr


def test_import_without_drops_says_so(tmp_path: Path, capsys) -> None:
    data = _dataset(tmp_path / "src")
    (tmp_path / "src" / "labels" / "train" / "ghost.txt").unlink()
    assert main(["import", "ultralytics", str(data), str(tmp_path / "proj")]) == 0
    assert capsys.readouterr().out.strip().endswith("skipped 0 items")
