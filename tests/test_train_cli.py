"""`dfine train` / `dfine val` report bad input as one line (and an `error` event with --events)."""

from __future__ import annotations

import json

from test_train_helpers import dfine, tiny_project


def test_train_on_missing_project_emits_error_event(tmp_path):
    proc = dfine("train", str(tmp_path / "nope"), "--events", "-", check=False)
    assert proc.returncode == 2
    event = json.loads(proc.stdout.strip().splitlines()[-1])
    assert event["event"] == "error" and "nope" in event["message"] and "project.yaml" in event["message"]
    assert "Traceback" not in proc.stderr


def test_unknown_setting_and_bad_checkpoint_are_user_errors(tmp_path):
    root = tiny_project(tmp_path / "p", n_train=1, n_val=1)
    proc = dfine("train", str(root), "--events", "-", "--set", "train.epoch=3", check=False)
    assert proc.returncode == 2 and "train.epoch" in proc.stderr and "Traceback" not in proc.stderr
    event = json.loads(proc.stdout.strip().splitlines()[-1])
    assert event["event"] == "error" and "epochs" in event["message"]  # the did-you-mean hint
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    proc = dfine("val", str(root), "--weights", str(bad), check=False)
    assert proc.returncode == 2 and "broken.pt" in proc.stderr and "Traceback" not in proc.stderr
    proc = dfine("train", str(root), "--resume", "--name", "missing", check=False)
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr
