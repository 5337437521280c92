"""`dfine train` / `dfine val` report bad input as one line (and an `error` event with --events)."""

from __future__ import annotations

import json

import cv2
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


def test_lite_mask_head_setting_reaches_checkpoint_val_and_predictor(tmp_path):
    """`model.mask_head: lite` trains, is remembered by the checkpoint, and every loader
    (dfine val, Predictor) rebuilds the same narrow head; several --set values in one flag."""
    import torch

    from core.infer.predictor import Predictor

    root = tiny_project(tmp_path / "p", n_train=2, n_val=1)
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")  # a val image that cannot be read
    with open(root / "splits" / "val.txt", "a") as f:
        f.write("broken.jpg\n")
    dfine("train", str(root), "--name", "lite", "--no-progress", "--device", "cpu",
          "--set", "model.mask_head=lite", "train.epochs=1", "train.batch_size=2", "train.workers=0")
    ckpt = root / "runs" / "lite" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["config"]["model"]["mask_head"] == "lite"
    # the run records the class list it started with, and says which val image it left out
    assert state["class_names"] == ["circle", "triangle", "rectangle"]
    assert (root / "runs" / "lite" / "config.yaml").read_text().startswith(
        "classes:\n- circle\n- triangle\n- rectangle\n")
    warnings = [e["message"] for e in map(json.loads, (root / "runs" / "lite" / "events.jsonl").read_text()
                                          .splitlines()) if e["event"] == "warning"]
    assert sum("validation image left out of the metrics" in w and "broken.jpg" in w for w in warnings) == 1
    proc = dfine("val", str(root), "--weights", str(ckpt), "--device", "cpu", "--json")
    assert "f1" in proc.stdout
    from core.model import build_model

    lite = build_model("n", 3, "segment", 256, mask_head="lite").state_dict()
    paper = build_model("n", 3, "segment", 256, mask_head="paper").state_dict()
    key = "mask_head.pixel_decoder.out_conv.weight"
    assert lite[key].shape != paper[key].shape
    assert state["model"][key].shape == lite[key].shape
    # a paper-head model could not take these weights: loading succeeds only with the lite head
    predictor = Predictor.load(ckpt, device="cpu")
    assert len(predictor.predict([cv2.imread(str(next((root / "images").glob("img*.jpg"))))])) == 1
