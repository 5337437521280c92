"""Out-of-fold analysis (issue #15): fold assignment, bad input, fold-by-fold vs all at once,
resume after a killed fold (real tiny training), and the event contract of `--folds`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from test_train_helpers import PY, REPO, env, tiny_project

from core.analysis import folds
from core.analysis.folds import assign_folds, classes_missing_from_training
from core.cli import main
from core.errors import UserFacingError
from core.eval.coco_results import write_coco_results
from core.eval.records import gt_from_annotation, pred_from_arrays
from core.messages import ProgressEvent, ResultEvent, parse_event
from core.project import Project


def test_folds_keep_groups_together_balanced_and_deterministic():
    images = [f"g{i // 3:02d}_{i % 3}.png" for i in range(60)]  # 20 groups of 3 near-duplicate frames
    groups = [im.split("_")[0] for im in images]
    classes = [{i // 3 % 4} for i in range(60)]
    a = assign_folds(images, groups, classes, 5, seed=0)
    assert a == assign_folds(images, groups, classes, 5, seed=0)
    assert a != assign_folds(images, groups, classes, 5, seed=1)
    for g in set(groups):  # a group never straddles two folds
        assert len({f for f, gg in zip(a, groups) if gg == g}) == 1
    assert sorted(np.bincount(a, minlength=5).tolist()) == [12, 12, 12, 12, 12]
    for f in range(5):  # stratified: every class in every fold (5 groups of each class, 5 folds)
        assert {c for cs, ff in zip(classes, a) if ff == f for c in cs} == {0, 1, 2, 3}
    assert classes_missing_from_training(a, classes, 5) == {}


def test_a_class_in_one_group_only_is_reported_missing_from_that_folds_training():
    images = [f"{i}.png" for i in range(6)]
    classes = [{0}, {0}, {0}, {0}, {0, 1}, set()]  # class 1 only in image 4; image 5 has an empty label file
    a = assign_folds(images, [None] * 6, classes, 3)
    assert classes_missing_from_training(a, classes, 3) == {a[4]: [1]}


def test_fewer_groups_than_folds_is_a_clear_error():
    with pytest.raises(UserFacingError, match=r"--folds 5 needs at least 5 images .*has 6 images in 2 groups"):
        assign_folds([f"{i}" for i in range(6)], ["a", "a", "a", "b", "b", "b"], [set()] * 6, 5)
    with pytest.raises(UserFacingError, match="at least 2"):
        assign_folds(["a", "b"], [None, None], [set(), set()], 1)


@pytest.fixture
def small(tmp_path):
    """6 demo images; image 5's label file is emptied (an image with nothing labelled)."""
    root = tiny_project(tmp_path / "p", n_train=4, n_val=2)
    proj = Project.open(root)
    empty = proj.label_path(proj.image_paths()[5])
    empty.write_text("")
    return proj


def _snapshot(proj: Project) -> dict[str, bytes]:
    return {str(p.relative_to(proj.root)): p.read_bytes() for p in sorted(proj.labels_dir.rglob("*")) if p.is_file()}


def test_cli_fewer_images_than_folds(small, capsys):
    before = _snapshot(small)
    assert main(["analyze", str(small.root), "--folds", "7"]) == 2
    err = capsys.readouterr().err
    assert "--folds 7 needs at least 7 images" in err and "has 6 images" in err and "Traceback" not in err
    assert _snapshot(small) == before and not (small.review_dir / "label_issues.json").exists()


def _fake_run_fold(project, plan, i, training, emit):
    """A 'model' that predicts each held-out image's labels (class 0 everywhere): deterministic."""
    anns = [project.load_annotation(project.image_dir / r) for r in plan.fold_images(i)]
    preds = []
    for a in anns:
        gt = gt_from_annotation(a)
        preds.append(pred_from_arrays(gt.boxes, np.full(len(gt), 0.9), np.zeros(len(gt), np.int64), gt.masks))
    folder = plan.fold_dir(i)
    folder.mkdir(parents=True, exist_ok=True)
    write_coco_results(folder / folds.PREDICTIONS, plan.fold_images(i), preds, project.class_names)
    write_coco_results(folder / folds.FLIP_PREDICTIONS, plan.fold_images(i), preds, project.class_names)
    emit("progress", verb="analyze", stage=f"fold {i + 1}/{plan.k} train", done=1, total=1)
    (folder / folds.DONE).write_text("{}")
    return True


def _issues(proj: Project) -> list[tuple]:
    doc = json.loads((proj.review_dir / "label_issues.json").read_text())
    assert doc["mode"] == "out-of-fold" and doc["folds"] == 3
    return [(i["id"], i["kind"], round(i["score"], 6), i["message"]) for i in doc["issues"]]


def test_fold_by_fold_then_merge_equals_all_at_once(small, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(folds, "run_fold", _fake_run_fold)
    other = Project.open(shutil.copytree(small.root, tmp_path / "copy"))
    assert main(["analyze", str(small.root), "--folds", "3"]) == 0
    all_at_once = _issues(small)
    assert all_at_once and {k for _, k, _, _ in all_at_once} == {"wrong_class"}  # the fake says class 0
    # one fold per "machine": nothing is ranked until the last one is done
    assert main(["analyze", str(other.root), "--folds", "3", "--fold", "2"]) == 0
    assert main(["analyze", str(other.root), "--folds", "3", "--merge-only"]) == 2
    assert "folds 1, 3 of 3 are not done" in capsys.readouterr().err
    assert not (other.review_dir / "label_issues.json").exists()
    assert main(["analyze", str(other.root), "--folds", "3", "--fold", "3"]) == 0
    assert main(["analyze", str(other.root), "--folds", "3", "--fold", "1"]) == 0  # the last one ranks
    by_folds = _issues(other)
    assert main(["analyze", str(other.root), "--folds", "3", "--merge-only"]) == 0
    assert _issues(other) == by_folds
    strip = lambda rows: [(k, s, m) for _, k, s, m in rows]  # noqa: E731 - ids hold the image path
    assert strip(by_folds) == strip(all_at_once)


def test_a_class_missing_from_a_folds_training_is_a_warning_event(small, monkeypatch, capsys):
    from core.annotation import ImageAnnotation

    monkeypatch.setattr(folds, "run_fold", _fake_run_fold)
    images = small.image_paths()
    for n, img in enumerate(images):  # class 2 (rectangle) only in the first image
        ann = small.load_annotation(img)
        keep = [i for i in ann.instances if i.class_id != 2 or n == 0]
        if n == 0 and not any(i.class_id == 2 for i in keep):
            keep[0].class_id = 2
        small.save_annotation(ImageAnnotation(ann.image_path, ann.width, ann.height, keep))
    assert main(["analyze", str(small.root), "--folds", "3", "--events", "-"]) == 0
    events = [parse_event(line) for line in capsys.readouterr().out.splitlines()]
    warnings = [e.message for e in events if e.event == "warning" and e.about == "folds"]
    # one fold holds the only rectangle (and here the only circle too): its training lacks them
    assert len(warnings) == 1 and "no training image has class" in warnings[0] and "rectangle" in warnings[0]
    assert isinstance(events[-1], ResultEvent)


def test_in_sample_says_so(small, tmp_path, capsys):
    pred = tmp_path / "r.json"
    pred.write_text("[]")
    assert main(["analyze", str(small.root), "--predictions", str(pred)]) == 0
    assert json.loads((small.review_dir / "label_issues.json").read_text())["mode"] == "given"
    assert main(["analyze", str(small.root), "--predictions", str(pred), "--folds", "3"]) == 2
    assert "--predictions is analysed as given" in capsys.readouterr().err


# ------------------------------------------------------------------ real (tiny) training


RECIPE = ["--set", "train.batch_size=2", "train.workers=0", "train.epochs=1", "train.device=cpu"]


def _events(stdout: str) -> list:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert lines
    return [parse_event(ln) for ln in lines]  # every stdout line is a contract event


def test_killed_fold_resumes_alone_and_events_follow_the_contract(small):
    """Kill `dfine analyze --folds 2` while fold 2 trains: fold 1 stays done, labels and an
    earlier review/ are untouched; the next run trains only fold 2, then ranks."""
    earlier = small.review_dir / "label_issues.json"
    small.review_dir.mkdir(exist_ok=True)
    earlier.write_text('{"issues": []}')
    labels_before = _snapshot(small)
    cmd = [PY, "-m", "core", "analyze", str(small.root), "--folds", "2", "--events", "-", *RECIPE]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            ev = json.loads(line)
            if ev.get("event") == "progress" and ev.get("stage") == "fold 2/2 train":
                os.killpg(proc.pid, signal.SIGKILL)  # no chance to save anything
                break
    finally:
        proc.wait(60)
    assert any('"fold 1/2 predict"' in s for s in seen)
    plan_dir = next((small.review_dir / "folds").iterdir())
    assert (plan_dir / "fold_0" / folds.DONE).is_file() and not (plan_dir / "fold_1" / folds.DONE).exists()
    assert earlier.read_text() == '{"issues": []}' and _snapshot(small) == labels_before
    done_0 = (plan_dir / "fold_0" / folds.DONE).stat().st_mtime_ns
    time.sleep(0.01)
    out = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    events = _events(out.stdout)
    stages = [e.stage for e in events if isinstance(e, ProgressEvent)]
    assert not any(s.startswith("fold 1/2") for s in stages)  # reused
    assert "fold 2/2 train" in stages and "fold 2/2 predict" in stages and stages[-1] == "report"
    assert stages.index("fold 2/2 predict") < stages.index("rank")
    assert isinstance(events[-1], ResultEvent) and events[-1].mode == "out-of-fold"
    assert (plan_dir / "fold_0" / folds.DONE).stat().st_mtime_ns == done_0
    doc = json.loads(earlier.read_text())
    assert doc["mode"] == "out-of-fold" and doc["folds"] == 2 and doc["images"] == 6
    assert _snapshot(small) == labels_before  # the analysis never writes labels
