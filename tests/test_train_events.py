"""Event log: strict JSON lines, schema validation, metrics.csv, plots, optional WandB sink."""

from __future__ import annotations

import io
import json
import math

import pytest

from core.train.events import EventLog, WandbSink, append_metrics_csv, plot_run, read_events, validate_event


def _step(step: int, loss: float) -> dict:
    return {"epoch": 0, "step": step, "epoch_step": step, "steps_per_epoch": 10, "total_steps": 10, "loss": loss,
            "losses": {"loss_vfl": loss / 2, "loss_mask_dice": loss / 2}, "lr": 1e-4 * step, "lr_backbone": 1e-5,
            "img_per_s": 3.5, "eta_s": 12.0}


def test_event_log_writes_file_and_stream_identically(tmp_path):
    out = io.StringIO()
    log = EventLog(tmp_path / "run", out)
    log.emit("step", **_step(1, 2.0))
    log.emit("metrics", epoch=0, step=1, metrics={"f1": 0.5, "map": math.nan}, best_metric="f1", value=0.5,
             is_best=True)
    log.emit("error", message="boom", type="RuntimeError")
    log.close()
    lines = out.getvalue().splitlines()
    assert lines == (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict JSON: NaN became null
    assert records[1]["metrics"]["map"] is None
    for r in records:
        validate_event(r)
    with pytest.raises(ValueError, match="bad step event: epoch: Field required"):
        validate_event({"event": "step", "time": 1.0, "step": 3})
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


def test_metrics_csv_grows_columns_and_plots(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    append_metrics_csv(csv_path, {"epoch": 0, "step": 5, "f1": 0.25})
    append_metrics_csv(csv_path, {"epoch": 1, "step": 10, "f1": 0.5, "mask_map": 0.1})
    assert csv_path.read_text().splitlines() == ["epoch,step,f1,mask_map", "0,5,0.25,", "1,10,0.5,0.1"]
    log = EventLog(tmp_path)
    for k in range(1, 4):
        log.emit("step", **_step(k, 3.0 - k / 2))
    log.emit("metrics", epoch=0, step=3, metrics={"f1": 0.4, "precision": 0.5}, best_metric="f1", value=0.4,
             is_best=True)
    log.close()
    written = plot_run(tmp_path)
    assert sorted(p.name for p in written) == ["losses.png", "lr.png", "metrics.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


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
    sink.log({"event": "step", **_step(2, 1.0)})
    sink.log({"event": "metrics", "step": 2, "metrics": {"f1": 0.7, "curve": {}}})
    sink.log({"event": "checkpoint", "kind": "last"})
    sink.close()
    assert run.logged[0] == (2, {"train/loss": 1.0, "train/lr": 2e-4, "train/img_per_s": 3.5,
                                 "train/loss_vfl": 0.5, "train/loss_mask_dice": 0.5})
    assert run.logged[1] == (2, {"val/f1": 0.7}) and len(run.logged) == 2 and run.finished
