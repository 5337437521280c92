"""Event log: strict JSON lines, schema validation, metrics.csv, plots, optional WandB sink."""

from __future__ import annotations

import io
import json
import math

import pytest

from core.messages import TRAIN_METRIC_NAMES, TrainMetrics
from core.train.events import (
    EventLog,
    WandbSink,
    append_metrics_csv,
    metric_series,
    plot_run,
    read_events,
    run_history,
    validate_event,
)


def _metrics(**values: float) -> dict:
    return {"f1": None, "precision": None, "recall": None, "iou": None, **values}


def _step(step: int, loss: float) -> dict:
    return {"epoch": 0, "step": step, "epoch_step": step, "steps_per_epoch": 10, "total_steps": 10, "loss": loss,
            "losses": {"loss_vfl": loss / 2, "loss_mask_dice": loss / 2}, "lr": 1e-4 * step, "lr_backbone": 1e-5,
            "img_per_s": 3.5, "eta_s": 12.0}


def test_event_log_writes_file_and_stream_identically(tmp_path):
    out = io.StringIO()
    log = EventLog(tmp_path / "run", out)
    log.emit("step", **_step(1, 2.0))
    log.emit("metrics", epoch=0, step=1, metrics=_metrics(f1=0.5, box_map=math.nan), best_metric="f1", value=0.5,
             is_best=True)
    log.emit("error", message="boom", type="RuntimeError")
    log.close()
    lines = out.getvalue().splitlines()
    assert lines == (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict JSON: NaN became null
    assert records[1]["metrics"]["box_map"] is None
    for r in records:
        validate_event(r)
    with pytest.raises(ValueError, match="bad step event: epoch: Field required"):
        validate_event({"event": "step", "time": 1.0, "step": 3})
    with pytest.raises(ValueError, match="bad metrics event: metrics.map: Extra inputs are not permitted"):
        log.emit("metrics", epoch=0, step=1, metrics={**_metrics(), "map": 0.3}, best_metric="f1", value=0.5,
                 is_best=True)  # a metric name not declared in core.messages.TrainMetrics
    with pytest.raises(ValueError, match="unknown training event kind 'nope'"):
        log.emit("nope")
    with pytest.raises(ValueError, match="bad checkpoint event: kind: Input should be 'last' or 'best'"):
        log.emit("checkpoint", kind="middle", path="x.pt", epoch=0, step=1)  # the writer is checked too
    with pytest.raises(ValueError, match="bad epoch event: time_s: Field required"):
        log.emit("epoch", epoch=0, step=1, loss=1.0)


def test_disabled_log_writes_nothing(tmp_path):
    log = EventLog(tmp_path / "rank1", io.StringIO(), enabled=False)
    log.emit("warning", message="x")
    log.close()
    assert not (tmp_path / "rank1").exists()


def test_torn_last_line_is_ignored(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text('{"event":"warning","time":1,"message":"a"}\n{"event":"ste')
    assert read_events(p) == [{"event": "warning", "time": 1, "message": "a"}]


def test_metrics_csv_has_the_declared_columns_and_plots_show_map(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    append_metrics_csv(csv_path, 0, 5, TrainMetrics(**_metrics(f1=0.25)))
    append_metrics_csv(csv_path, 1, 10, TrainMetrics(**_metrics(f1=0.5, mask_map=0.1)))
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == ["epoch", "step", *TRAIN_METRIC_NAMES]
    assert lines[1].startswith("0,5,0.25,") and lines[2].split(",")[TRAIN_METRIC_NAMES.index("mask_map") + 2] == "0.1"
    log = EventLog(tmp_path)
    for k in range(1, 4):
        log.emit("step", **_step(k, 3.0 - k / 2))
    for epoch in range(2):
        log.emit("metrics", epoch=epoch, step=3, metrics=_metrics(f1=0.4, box_map50=0.3, mask_map50=(0.2, 0.3)[epoch]),
                 best_metric="f1", value=0.4, is_best=True)
    log.close()
    written = plot_run(tmp_path)
    assert sorted(p.name for p in written) == ["losses.png", "lr.png", "metrics.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    curves = metric_series(read_events(tmp_path / "events.jsonl"))  # what metrics.png draws
    assert curves["mask_map50"] == ([0, 1], [0.2, 0.3]) and curves["box_map50"] == ([0, 1], [0.3, 0.3])
    assert "mask_map" not in curves  # unknown values are not drawn as zeros


def test_wandb_sink_forwards_steps_and_metrics():
    class FakeRun:
        def __init__(self):
            self.logged, self.finished = [], False

        def log(self, data, step):
            self.logged.append((step, data))

        def finish(self):
            self.finished = True

    run = FakeRun()
    sink = WandbSink(run)
    sink.log({"event": "step", "time": 1.0, **_step(2, 1.0)})
    sink.log({"event": "metrics", "time": 1.0, "epoch": 0, "step": 2, "metrics": _metrics(f1=0.7, box_map=0.25),
              "best_metric": "f1", "value": 0.7, "is_best": True})
    sink.log({"event": "checkpoint", "time": 1.0, "kind": "last", "path": "last.pt", "epoch": 0, "step": 2})
    sink.close()
    assert run.logged[0] == (2, {"train/loss": 1.0, "train/lr": 2e-4, "train/img_per_s": 3.5,
                                 "train/loss_vfl": 0.5, "train/loss_mask_dice": 0.5})
    assert run.logged[1] == (2, {"val/f1": 0.7, "val/box_map": 0.25}) and len(run.logged) == 2 and run.finished
    with pytest.raises(ValueError, match="bad step event: losses.loss_new: Extra inputs are not permitted"):
        sink.log({"event": "step", "time": 1.0, **_step(3, 1.0), "losses": {"loss_new": 0.1}})  # typed, not a dict


def _start(step: int, resumed: bool) -> dict:
    return {"event": "start", "time": 1.0, "run": "r", "run_dir": "runs/r", "epochs": 2, "steps_per_epoch": 3,
            "total_steps": 6, "device": "cpu", "world_size": 1, "num_train": 3, "num_val": 1, "classes": ["a"],
            "resumed": resumed, "epoch": step // 3, "step": step}


def test_run_history_joins_the_attempts_of_a_resumed_run():
    """events.jsonl holds every attempt of a run one after the other; a run killed after its last
    checkpoint (step 3) logged steps 4-5 that its resume does again: the history has each step once,
    the resumed attempt's values, and the plots (losses.png, the Train panel) draw that."""
    def metrics(epoch: int, step: int, f1: float) -> dict:
        return {"event": "metrics", "time": 1.0, "epoch": epoch, "step": step, "metrics": _metrics(f1=f1),
                "best_metric": "f1", "value": f1, "is_best": True}

    events = [_start(0, False), *({"event": "step", "time": 1.0, **_step(k, 10.0 + k)} for k in range(1, 4)),
              metrics(0, 3, 0.1), *({"event": "step", "time": 1.0, **_step(k, 10.0 + k)} for k in (4, 5)),
              {"event": "step", "time": 1.0, "step": 6},  # a line of another version: left out
              _start(3, True), *({"event": "step", "time": 1.0, **_step(k, 20.0 + k)} for k in (4, 5, 6)),
              metrics(1, 6, 0.2)]
    history = run_history(events)
    assert [(s.step, s.loss) for s in history.steps] == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 24.0), (5, 25.0),
                                                         (6, 26.0)]
    assert [(m.epoch, m.metrics.f1) for m in history.metrics] == [(0, 0.1), (1, 0.2)]
    assert history.steps[0].lr_backbone == 1e-5  # a declared field now, not an extra
    # a kill after the validation of epoch 0 but before its checkpoint: the resume validates again
    again = run_history([*events[:5], _start(0, True), metrics(0, 3, 0.15)])
    assert [(m.epoch, m.metrics.f1) for m in again.metrics] == [(0, 0.15)] and again.steps == []


def test_the_criterion_weighs_and_logs_exactly_the_declared_losses():
    from core.loss.criterion import DEFAULT_LOSS_WEIGHTS
    from core.messages import TRAIN_LOSS_NAMES

    assert set(DEFAULT_LOSS_WEIGHTS) == set(TRAIN_LOSS_NAMES)
