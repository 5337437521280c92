"""Issue #17: every line a verb prints with ``--events -`` is a ``core.messages`` event, and the
export report on disk is an ``ExportReport``. Runs the real verbs on a tiny project (CPU)."""

from __future__ import annotations

import json

import pytest
from test_train_helpers import dfine, tiny_project

from core.messages import (
    ErrorEvent,
    ProgressEvent,
    ResultEvent,
    TrainDoneEvent,
    TrainStartEvent,
    parse_event,
    read_export_report,
)


def parsed_lines(stdout: str) -> list:
    """Every stdout line must be one valid event (nothing else may be printed there)."""
    lines = stdout.splitlines()
    assert lines, "no events printed"
    return [parse_event(line) for line in lines]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tiny_project(tmp_path_factory.mktemp("contract") / "p", n_train=2, n_val=2)
    proc = dfine("train", str(root), "--events", "-", "--name", "r", "--no-progress", "--device", "cpu",
                 "--set", "train.epochs=1", "train.batch_size=2", "train.workers=0")
    return root, proc


def test_train_events_follow_the_contract(trained):
    root, proc = trained
    events = parsed_lines(proc.stdout)
    kinds = [e.event for e in events]
    assert isinstance(events[0], TrainStartEvent) and events[0].run == "r" and events[0].total_steps == 1
    assert isinstance(events[-1], TrainDoneEvent) and events[-1].stopped == "finished"
    assert kinds.count("step") == 1 and kinds.count("epoch") == 1 and kinds.count("metrics") == 1
    assert {e.kind for e in events if e.event == "checkpoint"} >= {"last"}
    # the file log is the same contract, line for line
    on_disk = (root / "runs" / "r" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert on_disk == proc.stdout.splitlines()


def test_export_events_and_report_follow_the_contract(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "exp"
    proc = dfine("export", str(root / "runs" / "r"), "--formats", "onnx", "--precision", "fp32",
                 "--out", str(out), "--timing-images", "1", "--events", "-")
    events = parsed_lines(proc.stdout)
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert all(e.verb == "export" for e in progress)
    # stages in order; "measure" once per model (torch reference + onnx), done counts up
    assert [(e.stage, e.done, e.total) for e in progress] == [
        ("onnx", 0, 1), ("measure", 0, 2), ("measure", 1, 2), ("report", 0, 1)]
    result = events[-1]
    assert isinstance(result, ResultEvent) and result.verb == "export"
    assert result.paths == {"folder": str(out), "onnx/fp32": str(out / "model.onnx"),
                            "report": str(out / "report.json")}
    assert "report:" in proc.stderr and "onnx" in proc.stderr  # the human output moved to stderr
    report = read_export_report(out / "report.json")
    assert [(r.format, r.precision, r.file) for r in report.results] == [
        ("torch", "fp32", None), ("onnx", "fp32", "model.onnx")]
    assert report.val_images == 2 and report.timed_images == 1 and report.model.task == "segment"
    onnx = report.results[1]
    assert onnx.size_mb is not None and onnx.size_mb > 0 and onnx.e2e_p50_ms is not None
    assert onnx.val_f1 is not None and onnx.f1_delta_vs_torch == pytest.approx(onnx.val_f1 - report.results[0].val_f1,
                                                                              abs=2e-4)
    # the writer keeps exactly the keys it measured (no nulls added by the model)
    raw = json.loads((out / "report.json").read_text())
    assert set(raw) == {"created", "machine", "model", "conf", "val_images", "timed_images", "int8", "results"}


def test_export_error_is_an_event(trained, tmp_path):
    root, _ = trained
    ckpt = root / "runs" / "r" / "last.pt"
    proc = dfine("export", str(ckpt), "--precision", "int8", "--formats", "openvino", "--out",
                 str(tmp_path / "x"), "--project", str(tmp_path / "nowhere"), "--events", "-", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    events = parsed_lines(proc.stdout)
    assert len(events) == 1 and isinstance(events[0], ErrorEvent) and "nowhere" in events[0].message


def test_analyze_events_follow_the_contract(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "review"
    proc = dfine("analyze", str(root), "--weights", str(root / "runs" / "r" / "last.pt"), "--out", str(out),
                 "--events", "-")
    events = parsed_lines(proc.stdout)
    progress = [(e.stage, e.done, e.total) for e in events if isinstance(e, ProgressEvent)]
    assert progress == [("images", 0, 4), ("images", 1, 4), ("images", 2, 4), ("images", 3, 4),
                        ("images", 4, 4), ("rank", 0, 1), ("rank", 1, 1), ("report", 0, 1)]
    result = events[-1]
    assert isinstance(result, ResultEvent) and result.verb == "analyze"
    assert sorted(result.paths.values()) == sorted(str(p) for p in out.iterdir())
    assert "likely label issues in 4 images" in proc.stderr and result.message.endswith(")")


def test_bad_lines_are_named():
    with pytest.raises(ValueError, match="bad progress event: stage: Field required"):
        parse_event({"event": "progress", "time": 1.0, "verb": "export"})
    with pytest.raises(ValueError, match="bad progress event: progress: Input should be less than or equal to 1"):
        parse_event({"event": "progress", "time": 1.0, "verb": "export", "stage": "onnx", "progress": 3})
    with pytest.raises(ValueError, match="event"):
        parse_event({"event": "report", "time": 1.0})
    with pytest.raises(ValueError):
        parse_event("not json")


def test_val_events_follow_the_contract(trained):
    root, _ = trained
    proc = dfine("val", str(root), "--weights", str(root / "runs" / "r" / "last.pt"), "--events", "-")
    assert proc.returncode == 0, proc.stderr
    events = parsed_lines(proc.stdout)
    progress = [(e.stage, e.done, e.total) for e in events if isinstance(e, ProgressEvent)]
    assert progress == [("images", 0, 2), ("images", 2, 2)]  # one batch of 2 val images
    result = events[-1]
    assert isinstance(result, ResultEvent) and result.verb == "val" and result.message == "val: 2 images, conf 0.5"
    assert result.metrics is not None and result.metrics.f1 is not None and result.metrics.recall is not None
    assert "f1:" in proc.stderr  # the human table moved to stderr


def test_bench_events_follow_the_contract(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "bench"
    proc = dfine("bench", str(root), "--formats", "torch,onnx", "--precision", "fp32", "--batch-sizes", "1,2",
                 "--images", "2", "--frame", "64x48", "--out", str(out), "--events", "-")
    assert proc.returncode == 0, proc.stderr
    events = parsed_lines(proc.stdout)
    stages = [(e.stage, e.done, e.total) for e in events if isinstance(e, ProgressEvent)]
    assert stages == [("prepare", None, None), ("time", 0, 4), ("time", 1, 4), ("time", 2, 4), ("time", 3, 4),
                      ("time", 4, 4)]  # (torch, onnx) x (1, 2)
    result = events[-1]
    assert isinstance(result, ResultEvent) and result.verb == "bench"
    assert set(result.paths) == {"csv", "json", "md", "png"} and all(out.joinpath(f"bench.{k}").is_file()
                                                                     for k in result.paths)
    assert "| torch fp32 | 1 |" in proc.stderr and "| onnx fp32 | 2 |" in proc.stderr
