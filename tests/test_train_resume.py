"""Exact resume: N steps straight == k steps + SIGTERM (real signal, real subprocess) + resume to N.

Also checks the event stream of a whole run against the documented schema.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
import torch
from test_train_helpers import PY, REPO, dfine, env, events_of, tiny_project

from core.train.events import read_events, validate_event

SETTINGS = ["--device", "cpu", "--set", "train.epochs=1", "--set", "train.batch_size=1", "--set", "train.workers=0",
            "--set", "train.no_aug_epochs=0", "--set", "train.mosaic_prob=0.5", "--set", "train.warmup_iters=2",
            "--set", "train.ema_warmups=2", "--set", "train.lr=0.0005"]
N_STEPS = 3


def _step_losses(events: list[dict]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


def _assert_same_tensors(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs (max abs diff {(a.float() - b.float()).abs().max():.3g})"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_sigterm_then_resume_is_bit_exact(tmp_path):
    root = tiny_project(tmp_path / "p", n_train=N_STEPS, n_val=1)

    straight = events_of(dfine("train", str(root), "--events", "-", "--name", "straight", *SETTINGS).stdout)
    ref = _step_losses(straight)
    assert sorted(ref) == list(range(1, N_STEPS + 1))

    proc = subprocess.Popen([PY, "-m", "core", "train", str(root), "--events", "-", "--name", "cut", *SETTINGS],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_part = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            first_part += events_of(line)
            if first_part[-1]["event"] == "step" and first_part[-1]["step"] == 1:
                proc.send_signal(signal.SIGTERM)  # the GUI's cancel
    rc = proc.wait(timeout=600)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    done = [e for e in first_part if e["event"] == "done"]
    assert done and done[0]["stopped"] == "signal"
    k = done[0]["step"]
    assert 1 <= k < N_STEPS, "the signal must stop the run before its end"
    assert any(e["event"] == "checkpoint" and e["kind"] == "last" for e in first_part)

    resumed = events_of(dfine("train", str(root), "--events", "-", "--name", "cut", "--resume", *SETTINGS).stdout)
    start = resumed[0]
    assert start["event"] == "start" and start["resumed"] and start["step"] == k
    got = {**_step_losses(first_part), **_step_losses(resumed)}
    assert sorted(got) == sorted(ref)
    for step in ref:
        assert abs(got[step] - ref[step]) <= 1e-6, (step, got[step], ref[step])

    a = torch.load(root / "runs" / "straight" / "last.pt", weights_only=True)
    b = torch.load(root / "runs" / "cut" / "last.pt", weights_only=True)
    for key in ("model", "ema", "optimizer"):
        _assert_same_tensors(a[key], b[key], key)
    assert a["global_step"] == b["global_step"] == N_STEPS and a["epoch"] == b["epoch"] == 1
    assert a["class_names"] == ["circle", "triangle", "rectangle"]

    # the whole stream (stdout == events.jsonl) follows the documented schema
    logged = read_events(root / "runs" / "straight" / "events.jsonl")
    assert [e["event"] for e in logged] == [e["event"] for e in straight]
    for e in logged + first_part + resumed:
        validate_event(e)
    kinds = [e["event"] for e in straight]
    assert kinds[0] == "start" and kinds[-1] == "done"
    # from scratch (no --weights) the backbone trains at the full lr, not the pretrained 1/20
    assert straight[0]["lr"] == straight[0]["backbone_lr"] == 0.0005
    assert {"step", "epoch", "metrics", "checkpoint"} <= set(kinds)
    step = next(e for e in straight if e["event"] == "step")
    assert step["img_per_s"] > 0 and step["eta_s"] is not None and step["lr"] >= 0
    assert {"loss_vfl", "loss_bbox", "loss_giou", "loss_mask_bce", "loss_mask_dice"} <= set(step["losses"])
    metrics = next(e for e in straight if e["event"] == "metrics")["metrics"]
    assert {"f1", "precision", "recall", "iou", "mask_map", "box_map"} <= set(metrics)
    run = root / "runs" / "straight"
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,f1")
    assert (run / "config.yaml").is_file() and (run / "losses.png").stat().st_size > 1000
    assert (run / "best.pt").is_file()

    # `dfine val` on the checkpoint reproduces the trainer's own validation (same EMA weights)
    import json

    out = dfine("val", str(root), "--weights", str(run / "last.pt"), "--device", "cpu", "--json").stdout
    summary = json.loads(out.strip().splitlines()[-1])
    last_metrics = [e for e in straight if e["event"] == "metrics"][-1]["metrics"]
    assert summary["images"] == 1
    assert summary["f1"] == pytest.approx(last_metrics["f1"], abs=1e-9)
    assert summary["coco"]["segm"]["map"] == pytest.approx(last_metrics["mask_map"], abs=1e-9)
