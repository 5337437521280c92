"""Class list edits rewrite labels atomically, undo in one step, and survive a crash mid-edit."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from core.errors import UserFacingError
from core.project import ClassEditJournal, Project

LABELS = {
    "a": "0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n2 0.1 0.1 0.3 0.1 0.2 0.3\n",
    "b": "2 0.5 0.5 0.1 0.1\r\n2 0.3 0.3 0.1 0.1\r\n",  # CRLF kept byte for byte except ids
    "c": "1 0.5 0.5 0.1 0.1\n",
    "d": "",
}


@pytest.fixture()
def proj(tmp_path: Path) -> Project:
    p = Project.create(tmp_path / "p", ["cat", "dog", "bird"], "segment")
    for stem, text in LABELS.items():
        Image.new("RGB", (20, 20)).save(p.image_dir / f"{stem}.png")
        (p.labels_dir / f"{stem}.txt").write_bytes(text.encode())
    return p


def _labels(p: Project) -> dict[str, str]:
    return {f.stem: f.read_bytes().decode() for f in sorted(p.labels_dir.glob("*.txt"))}


def _ids(p: Project) -> dict[str, list[int]]:
    return {k: [int(l.split()[0]) for l in v.splitlines() if l.strip()] for k, v in _labels(p).items()}


def test_add_and_rename_touch_no_label(proj):
    before = _labels(proj)
    proj.add_class("fish")
    proj.rename_class("dog", "puppy")
    assert proj.class_names == ["cat", "puppy", "bird", "fish"]
    assert Project.open(proj.root).class_names == ["cat", "puppy", "bird", "fish"]
    assert _labels(proj) == before
    assert "# Class names, in order" in proj.config_path.read_text()  # comments kept
    with pytest.raises(UserFacingError, match="duplicate class name 'cat'"):
        proj.rename_class("puppy", "cat")
    with pytest.raises(UserFacingError, match="no class named 'cow'"):
        proj.rename_class("cow", "x")


def test_merge_relabels_and_shifts_ids(proj):
    proj.merge_classes("dog", "bird")  # dog(1) -> bird; bird shifts 2 -> 1
    assert proj.class_names == ["cat", "bird"]
    assert _ids(proj) == {"a": [0, 1, 1], "b": [1, 1], "c": [1], "d": []}
    assert _labels(proj)["b"] == "1 0.5 0.5 0.1 0.1\r\n1 0.3 0.3 0.1 0.1\r\n"


def test_delete_with_removal_and_with_relabel(proj):
    proj.delete_class("cat")
    assert proj.class_names == ["dog", "bird"]
    assert _ids(proj) == {"a": [0, 1], "b": [1, 1], "c": [0], "d": []}
    proj.undo_class_edit()
    proj.delete_class("bird", relabel_to="cat")
    assert _ids(proj) == {"a": [0, 1, 0], "b": [0, 0], "c": [1], "d": []}


@pytest.mark.parametrize("edit", [
    lambda p: p.add_class("fish"),
    lambda p: p.rename_class("cat", "kitten"),
    lambda p: p.merge_classes("cat", "bird"),
    lambda p: p.delete_class("dog"),
    lambda p: p.delete_class("dog", relabel_to="cat"),
])
def test_undo_restores_every_byte(proj, edit):
    labels, config = _labels(proj), proj.config_path.read_bytes()
    edit(proj)
    proj.undo_class_edit()
    assert _labels(proj) == labels and proj.config_path.read_bytes() == config
    assert proj.class_names == ["cat", "dog", "bird"]
    with pytest.raises(UserFacingError, match="nothing to undo"):
        proj.undo_class_edit()


def test_undo_keeps_labelling_done_after_the_edit(proj):
    proj.delete_class("cat")  # ids now: dog 0, bird 1
    (proj.labels_dir / "c.txt").write_text("1 0.5 0.5 0.1 0.1\n0 0.4 0.4 0.1 0.1\n")  # edited afterwards
    (proj.labels_dir / "e.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # new file afterwards
    proj.undo_class_edit()
    ids = _ids(proj)
    assert ids["c"] == [2, 1] and ids["e"] == [1]  # mapped back to the old numbering
    assert ids["a"] == [0, 1, 2]  # untouched files restored exactly


def test_bad_label_file_blocks_the_edit_and_is_not_touched(proj):
    (proj.labels_dir / "zz.txt").write_bytes(b"0 0.5 0.5 0.1 0.1\nfoo 1 2 3 4\n")
    labels, config = _labels(proj), proj.config_path.read_bytes()
    with pytest.raises(UserFacingError) as ei:
        proj.delete_class("cat")
    assert "zz.txt:2" in str(ei.value) and "foo" in str(ei.value) and "nothing was changed" in str(ei.value)
    assert _labels(proj) == labels and proj.config_path.read_bytes() == config


def test_crash_mid_edit_is_rolled_back_on_open(proj, monkeypatch):
    labels, config = _labels(proj), proj.config_path.read_bytes()
    from core.atomic_io import atomic_write_text as real
    calls = {"n": 0}

    def dying(path, text, encoding="utf-8"):
        calls["n"] += 1
        if calls["n"] == 3:  # journal written, one label rewritten, then the "power cut"
            raise KeyboardInterrupt("simulated crash")
        real(path, text, encoding)

    _patch_project_writes(monkeypatch, dying)
    with pytest.raises(KeyboardInterrupt):
        proj.merge_classes("cat", "bird")
    _patch_project_writes(monkeypatch, real)
    assert _labels(proj) != labels  # half-applied on disk
    journal = json.loads((proj.root / ".dfine" / "class_edit.json").read_text())
    assert journal["description"].startswith("merge")
    reopened = Project.open(proj.root)  # recovery
    assert _labels(reopened) == labels and proj.config_path.read_bytes() == config
    assert reopened.class_names == ["cat", "dog", "bird"]
    assert not ClassEditJournal(proj.root).path.exists()


def test_undo_refuses_when_new_class_is_in_use(proj):
    proj.add_class("fish")
    (proj.labels_dir / "f.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(UserFacingError, match="cannot undo"):
        proj.undo_class_edit()
    assert proj.class_names == ["cat", "dog", "bird", "fish"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_open_does_not_roll_back_an_edit_another_live_process_is_writing(proj, monkeypatch):
    labels = _labels(proj)
    from core.atomic_io import atomic_write_text as real
    calls = {"n": 0}

    def dying(path, text, encoding="utf-8"):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        real(path, text, encoding)

    _patch_project_writes(monkeypatch, dying)
    with pytest.raises(KeyboardInterrupt):
        proj.merge_classes("cat", "bird")
    _patch_project_writes(monkeypatch, real)
    half = _labels(proj)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # an editor still alive and holding the lock
        with ClassEditJournal(proj.root)._lock():
            os.write(w, b"1")
            time.sleep(30)
        os._exit(0)
    os.read(r, 1)
    try:
        Project.open(proj.root)
        assert _labels(proj) == half  # not rolled back under a live editor
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    Project.open(proj.root)  # the editor died: its lock died with it -> rollback
    assert _labels(proj) == labels


def _patch_project_writes(monkeypatch, fn) -> None:
    """Every atomic write of core.project's modules goes through ``fn``."""
    import sys

    for name, module in list(sys.modules.items()):
        if (name == "core.project" or name.startswith("core.project.")) and hasattr(module, "atomic_write_text"):
            monkeypatch.setattr(module, "atomic_write_text", fn)
