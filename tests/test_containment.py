"""A project cannot reach outside itself, and state files are read and written safely (#35).

Every path that comes from a file or an argument (class-edit journal and history, run and
export names, COCO file names) resolves inside its folder or is refused with a clear error;
state files go through the bounded reader and only regular files are read; writers validate
before they write and a failed write leaves everything as it was."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.cli import main
from core.errors import LabelError, UserFacingError
from core.project import ClassEditJournal, Project
from core.project_paths import PathOutsideError, child_folder, folder_name, inside
from project_data import two_image_project

REPO = Path(__file__).resolve().parents[1]
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture()
def proj(tmp_path: Path) -> Project:
    return two_image_project(tmp_path / "p", ["cat", "dog", "bird"])


@pytest.fixture()
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.mkdir()
    (v / "notes.txt").write_text("mine\n")
    (v / "keep.txt").write_text("keep\n")
    return v


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _journal(proj: Project, **fields) -> Path:
    j = {"id": "x" * 32, "description": "crafted", "new_to_old": {}, "files": [], **fields}
    path = proj.root / ".dfine" / "class_edit.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(j))
    return path


def _check(capsys, proj) -> tuple[int, str]:
    rc = main(["check", str(proj.root)])
    cap = capsys.readouterr()
    return rc, cap.err + cap.out


# ----------------------------------------------------------------------------- the rule itself


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "C:\\x", "", "a\x00b"])
def test_inside_refuses_paths_that_leave_the_root(tmp_path, rel):
    with pytest.raises(PathOutsideError):
        inside(tmp_path, rel, "test")


def test_inside_follows_symlinks_unless_told_not_to(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "out")
    assert inside(tmp_path / "root", "a/b.txt", "t") == tmp_path / "root" / "a" / "b.txt"
    with pytest.raises(PathOutsideError, match="symbolic link"):
        inside(tmp_path / "root", "link/x.txt", "t")
    assert inside(tmp_path / "root", "link/x.txt", "t", follow_links=False) == tmp_path / "root" / "link" / "x.txt"


@pytest.mark.parametrize("name", ["..", ".", "a/b", "..\\x", "/abs", "x\ny", " x", ""])
def test_folder_name_is_one_plain_name(name):
    with pytest.raises(PathOutsideError):
        folder_name(name, "--name")
    assert folder_name("run 1 (copy)", "--name") == "run 1 (copy)"


def test_child_folder_refuses_a_symlink_out(tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "x").symlink_to(tmp_path)
    with pytest.raises(PathOutsideError, match="symbolic link"):
        child_folder(tmp_path / "exports", "x", "--name")


# ----------------------------------------------------------------------------- class-edit journal


@pytest.mark.parametrize("bad", ["../victim/notes.txt", "ABS", "labels/../../victim/notes.txt", "images/a.png",
                                 "LINK"])
def test_crafted_journal_never_writes_outside(proj, victim, capsys, bad):
    if bad == "ABS":
        bad = str(victim / "notes.txt")
    if bad == "LINK":
        (proj.labels_dir / "out").symlink_to(victim)
        bad = "labels/out/notes.txt"
    _journal(proj, files=[{"path": bad, "old": "pwned\n", "new": "x\n", "rows": []}])
    before = _tree(victim)
    rc, err = _check(capsys, proj)
    assert rc == 2 and "class_edit.json: files[0].path" in err and len(err.strip().splitlines()) == 1, err
    assert any(w in err for w in ("absolute path", "goes up with '..'", "symbolic link", "nor a label or proposals file"))
    assert _tree(victim) == before


@pytest.mark.parametrize("field, value", [("undoes", "../victim/keep.txt"), ("undoes", "ABS"),
                                          ("history", "../../victim/hist.json"), ("history", "/tmp/h.json")])
def test_crafted_journal_never_deletes_or_creates_outside(proj, victim, capsys, field, value):
    if value == "ABS":
        value = str(victim / "keep.txt")
    _journal(proj, **{field: value})
    (proj.root / ".dfine" / "class_edit.done").write_text("x" * 32)
    before = _tree(victim)
    rc, err = _check(capsys, proj)
    assert rc == 2 and f"class_edit.json: {field}" in err
    assert _tree(victim) == before and not Path("/tmp/h.json").exists()


@pytest.mark.parametrize("text", [DEEP, '{"id": 5}', "[1]", '{"id": "x", "new_to_old": {}, "files": [7]}'])
def test_deep_or_wrongly_typed_journal_is_one_line_error_on_every_verb(proj, capsys, text):
    (proj.root / ".dfine").mkdir(exist_ok=True)
    (proj.root / ".dfine" / "class_edit.json").write_text(text)
    for argv in (["check", str(proj.root)], ["classes", str(proj.root), "list"], ["split", str(proj.root)]):
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "class_edit.json" in err and len(err.splitlines()) == 1, (argv, err)


def test_bad_history_record_is_skipped_and_never_replayed(proj, victim, capsys):
    proj.add_class("fish")
    hist = proj.root / ".dfine" / "class_history"
    (hist / "000099.json").write_text(DEEP)
    assert proj.undo_class_edit().startswith("add")  # the bad newest record is skipped with a warning
    assert proj.class_names == ["cat", "dog", "bird"]


# ----------------------------------------------------------------------------- names from arguments


@pytest.mark.parametrize("name", ["../../x", "..", "/tmp/dfine_export_escape", "a/b"])
def test_export_name_stays_under_exports(proj, capsys, name, tmp_path):
    from core.export.cli import run as export_run  # noqa: F401 - the verb exists

    fake = proj.runs_dir / "r" / "best.pt"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not a checkpoint")
    before = _tree(tmp_path)
    rc = main(["export", str(fake), "--project", str(proj.root), "--name", name, "--formats", "onnx"])
    err = capsys.readouterr().err
    assert rc == 2
    assert _tree(tmp_path) == before and not Path("/tmp/dfine_export_escape").exists()
    assert "not a plain folder name" in err or "checkpoint" in err


def test_export_name_check_runs_before_anything_is_written(proj):
    from core.project_paths import child_folder as cf

    with pytest.raises(PathOutsideError, match="not a plain folder name"):
        cf(proj.exports_dir, "../../x", "--name")


# ----------------------------------------------------------------------------- import sources


def test_coco_file_name_cannot_leave_the_images_folder(tmp_path):
    from core.data.formats.coco import load_coco

    src = tmp_path / "coco"
    (src / "images").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(src / "images" / "ok.png")
    Image.new("RGB", (20, 10)).save(tmp_path / "private.png")
    doc = {"images": [{"id": 1, "file_name": "ok.png", "width": 20, "height": 10},
                      {"id": 2, "file_name": "../../private.png", "width": 20, "height": 10},
                      {"id": 3, "file_name": str(tmp_path / "private.png"), "width": 20, "height": 10}],
           "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    (src / "ann.json").write_text(json.dumps(doc))
    res = load_coco(src / "ann.json", src / "images")
    assert [a.image_path.name for a in res.annotations] == ["ok.png"]
    msgs = " | ".join(str(p) for p in res.problems)
    assert "images[1] (id 2) file_name: '../../private.png' goes up" in msgs and "absolute path" in msgs


# ----------------------------------------------------------------------------- only regular files


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
@pytest.mark.parametrize("where", ["labels/a.txt", "groups.csv", ".dfine/image_state.json", "splits/val.txt"])
def test_a_fifo_is_refused_not_waited_on(proj, capsys, where):
    path = proj.root / where
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if where == "groups.csv":
        from core.project import set_top_level_value
        text = set_top_level_value(proj.config_path.read_text(), "split", "{group_by: csv}")
        proj.config_path.write_text(text)
    os.mkfifo(path)
    t0 = time.monotonic()
    if where.startswith(".dfine"):
        from core.image_state import read_done
        with pytest.raises(LabelError, match="not a regular file"):
            read_done(proj.root)
    else:
        rc, out = _check(capsys, proj) if where.startswith("labels") else (main(["split", str(proj.root)]),
                                                                          capsys.readouterr().err)
        assert rc in (1, 2) and "named pipe (FIFO), not a regular file" in out, out
    assert time.monotonic() - t0 < 10


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_as_training_marker_or_lock_file_does_not_hang(proj):
    from core.project_lock import lock_path, training_active, training_marker

    marker = proj.root / ".dfine" / "training.lock"
    marker.parent.mkdir(exist_ok=True)
    os.mkfifo(marker)
    assert training_active(proj.root) is False
    with training_marker(proj.root):
        pass
    lock = lock_path(proj.root)
    if lock.exists():
        lock.unlink()
    os.mkfifo(lock)
    with pytest.raises(UserFacingError, match="not a regular file"):
        proj.add_class("fish")


@pytest.mark.parametrize("state", ["image_state", "plan"])
def test_deep_state_files_are_one_line_errors(proj, state):
    if state == "image_state":
        from core.image_state import read_done, state_path
        state_path(proj.root).parent.mkdir(exist_ok=True)
        state_path(proj.root).write_text(DEEP)
        with pytest.raises(LabelError, match="nested deeper"):
            read_done(proj.root)
    else:
        from core.analysis.folds import make_plan
        anns, _ = proj.load_all()
        plan = make_plan(proj, anns, 2)
        (plan.root / "plan.json").write_text(DEEP)
        with pytest.raises(UserFacingError, match="nested deeper"):
            make_plan(proj, anns, 2)
        (plan.root / "plan.json").write_text('{"images": [], "fold_of": ["0"]}')
        with pytest.raises(UserFacingError, match="fold_of must be"):
            make_plan(proj, anns, 2)


# ----------------------------------------------------------------------------- writers validate


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e9])
def test_save_refuses_rows_no_reader_would_take(proj, bad):
    path = proj.image_dir / "a.png"
    before = proj.label_path(path).read_bytes()
    poly = np.array([[1.0, 1.0], [20.0, bad], [20.0, 20.0]])
    with pytest.raises(LabelError, match="instance 1"):
        proj.save_annotation(ImageAnnotation(path, 40, 30, [Instance(0, polygons=[poly])]))
    with pytest.raises(LabelError):
        proj.save_annotation(ImageAnnotation(path, 40, 30, [Instance(0, box=(1.0, 2.0, bad, 9.0))]))
    assert proj.label_path(path).read_bytes() == before


def test_review_accept_of_a_nan_fix_writes_nothing_and_records_nothing(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from review_data import make_project, write_issues

    proj = make_project(tmp_path)
    issues = write_issues(proj)
    issues[1]["fix"]["polygons"][0][3] = float("nan")
    issues[1]["fix"]["box"][1] = float("nan")
    (proj.review_dir / "label_issues.json").write_text(json.dumps({"version": 1, "issues": issues}))
    before = _tree(proj.labels_dir)
    rc = main(["review", str(proj.root), "accept", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "not a finite number" in err and len(err.strip().splitlines()) == 1
    assert _tree(proj.labels_dir) == before
    assert not (proj.review_dir / "decisions.json").exists() or "accepted" not in \
        (proj.review_dir / "decisions.json").read_text()
    anns, errors = proj.load_all()
    assert not errors and sum(len(a.instances) for a in anns) == 4


def _enospc_on(monkeypatch, nth: int, match: str | None = None):
    from core.atomic_io import atomic_write_text as real
    calls = {"n": 0}

    def full(path, text, encoding="utf-8"):
        if match is None or match in str(path):
            calls["n"] += 1
            if calls["n"] == nth:
                raise OSError(errno.ENOSPC, f"No space left on device while writing {path} (nothing was written)",
                              str(path))
        real(path, text, encoding)

    _patch_project_writes(monkeypatch, full)


def test_full_disk_mid_class_edit_puts_every_file_back(proj, monkeypatch):
    labels, config = _tree(proj.labels_dir), proj.config_path.read_bytes()
    _enospc_on(monkeypatch, 3)  # journal, one label file, then the disk is full
    with pytest.raises(OSError, match="every file was put back as it was") as info:
        proj.delete_class("cat")
    assert info.value.errno == errno.ENOSPC
    assert _tree(proj.labels_dir) == labels and proj.config_path.read_bytes() == config
    assert not ClassEditJournal(proj.root).path.exists()
    assert Project.open(proj.root).class_names == ["cat", "dog", "bird"]


def test_full_disk_at_the_undo_record_keeps_the_edit_undoable(proj, monkeypatch):
    labels = _tree(proj.labels_dir)
    _enospc_on(monkeypatch, 1, match="class_history")
    with pytest.raises(OSError, match="the edit was applied; its undo record is kept"):
        proj.delete_class("cat")
    monkeypatch.undo()
    assert Project.open(proj.root).class_names == ["dog", "bird"]
    assert proj.undo_class_edit().startswith("delete")
    assert _tree(proj.labels_dir) == labels and proj.class_names == ["cat", "dog", "bird"]


# ----------------------------------------------------------------------------- bounded lock waits


HOLDER = """
import sys, time
from core.project_lock import project_lock
with project_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def held_lock(proj):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(proj.root)], cwd=REPO, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.readline().strip() == "held"
    yield child
    child.kill()
    child.wait()


@pytest.mark.timeout(60)
def test_lock_wait_is_bounded_and_names_the_holder(proj, held_lock, capsys, monkeypatch):
    import core.project_lock as pl

    monkeypatch.setattr(pl, "LOCK_WAIT_S", 1.5)
    t0 = time.monotonic()
    rc = main(["classes", str(proj.root), "add", "fish"])
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - t0 < 10
    assert f"locked by pid {held_lock.pid}" in err and "waited 1.5 s" in err
    assert f"waiting for the project lock of {proj.root}, held by pid {held_lock.pid}" in err
    assert Project.open(proj.root).class_names == ["cat", "dog", "bird"]


def test_run_name_through_a_symlink_out_is_refused(proj, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    proj.runs_dir.mkdir()
    (proj.runs_dir / "linked").symlink_to(outside)
    rc = main(["train", str(proj.root), "--name", "linked", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "symbolic link" in err and not any(outside.iterdir())


def test_history_record_through_a_symlink_is_not_replayed(proj, victim, capsys):
    _journal(proj, history="000001.json")
    (proj.root / ".dfine" / "class_edit.done").write_text("x" * 32)
    (proj.root / ".dfine" / "class_history").symlink_to(victim)
    before = _tree(victim)
    rc, err = _check(capsys, proj)
    assert rc == 2 and "symbolic link" in err, err
    assert _tree(victim) == before  # nothing written through the link
    (proj.root / ".dfine" / "class_history").unlink()
    (proj.root / ".dfine" / "class_edit.json").unlink()
    (proj.root / ".dfine" / "class_history").symlink_to(victim)  # a fresh edit: refused before it starts
    with pytest.raises(PathOutsideError):
        proj.add_class("fish")
    assert _tree(victim) == before and Project(proj.root, proj.config).classes_on_disk() == ["cat", "dog", "bird"]


def _patch_project_writes(monkeypatch, fn) -> None:
    """Every atomic write of core.project's modules goes through ``fn``."""
    import sys

    for name, module in list(sys.modules.items()):
        if (name == "core.project" or name.startswith("core.project.")) and hasattr(module, "atomic_write_text"):
            monkeypatch.setattr(module, "atomic_write_text", fn)
