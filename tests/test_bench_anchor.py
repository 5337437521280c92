"""`dfine bench` and the YOLO26-seg anchor (core/bench_anchor.py): without the anchor's venv the bench
still completes and says so; with an anchor (here a fake interpreter printing JSON) it prints the
ours / YOLO26 ratio from the same frames. Nothing is downloaded and Ultralytics is never imported."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

import core.bench as bench
import core.bench_anchor as bench_anchor
from core.bench_anchor import AnchorResult, parse_anchor_output, ratio_lines
from tests.test_infer_bench import predictor


def bench_args(out: Path, *extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    return p.parse_args(["--formats", "openvino", "--precision", "fp32,int8", "--batch-sizes", "1",
                         "--images", "3", "--frame", "64x48", "--out", str(out), *extra])


@pytest.fixture
def fake_bench(monkeypatch):
    """`dfine bench` with one fake 'openvino fp32' model (no export, a 2-ms runner)."""
    setup = bench.BenchSetup([("openvino fp32", predictor(0.002), None)], None, [])
    monkeypatch.setattr(bench, "prepare_models", lambda args, log=print: setup)
    monkeypatch.delenv(bench_anchor.PYTHON_ENV, raising=False)


def fake_anchor(tmp_path: Path, body: str) -> Path:
    exe = tmp_path / "fake-python"
    exe.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'argv.txt'}\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_bench_without_anchor_venv_says_not_installed(tmp_path, monkeypatch, capsys, fake_bench):
    monkeypatch.setattr(bench_anchor, "VENV_DIR", tmp_path / "no-venv")
    assert bench.run(bench_args(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert "| openvino fp32 | 1 |" in out
    assert out.rstrip().endswith("YOLO26 anchor: not installed (see benchmarks/README.md)")
    assert not (tmp_path / "out" / "anchor_yolo26.json").exists()


def test_bench_prints_ratio_to_the_anchor_on_the_same_frames(tmp_path, monkeypatch, capsys, fake_bench):
    reply = {"model": "yolo26n-seg", "ultralytics": "8.4.190", "openvino": "2026.4.1", "input": "64x64", "conf": 0.2,
             "rows": {"fp32": {"e2e_p50_ms": 4.0, "raw_p50_ms": 3.0, "inst_per_img": 10.0},
                      "int8": {"e2e_p50_ms": 2.5, "raw_p50_ms": 1.5, "inst_per_img": 9.0}}}
    exe = fake_anchor(tmp_path, "echo 'Ultralytics says hello on stdout'\necho '" + json.dumps(reply) + "'")
    monkeypatch.setenv(bench_anchor.PYTHON_ENV, str(exe))
    out_dir = tmp_path / "out"
    assert bench.run(bench_args(out_dir)) == 0
    out = capsys.readouterr().out
    ours = json.loads((out_dir / "bench.json").read_text())["rows"][0]["e2e_p50_ms"]
    lines = out.rstrip().splitlines()[-3:]
    assert lines[0] == ("YOLO26 anchor: yolo26n-seg (random weights, Ultralytics 8.4.190, OpenVINO 2026.4.1), "
                        "input 64x64, same frames, batch 1")
    assert lines[1] == (f"  fp32: YOLO26 e2e p50 4.0 ms (raw 3.0 ms); ours {ours:.1f} ms -> ours/YOLO26 "
                        f"{ours / 4.0:.2f}x")
    assert lines[2] == "  int8: YOLO26 e2e p50 2.5 ms (raw 1.5 ms); ours: no openvino int8 batch-1 row to compare"
    argv = (tmp_path / "argv.txt").read_text().split()
    assert argv[0] == str(bench_anchor.ANCHOR_SCRIPT) and "--anchor" in argv
    assert argv[argv.index("--precisions") + 1] == "fp32,int8"
    # the anchor matches the timed model: size N at 64x64 (the fake bench's ModelMeta)
    assert argv[argv.index("--size") + 1] == "n" and argv[argv.index("--input") + 1] == "64x64"
    frames_dir = Path(argv[argv.index("--frames") + 1])
    sent = [cv2.imread(str(p)) for p in sorted(frames_dir.glob("*.png"))]
    timed = bench._bench_frames(None, 3, (64, 48))
    assert len(sent) == 3 and all(np.array_equal(a, b) for a, b in zip(sent, timed))
    saved = json.loads((out_dir / "anchor_yolo26.json").read_text())
    assert saved["rows"]["int8"]["e2e_p50_ms"] == 2.5 and saved["ultralytics"] == "8.4.190"


def test_failing_anchor_is_one_line_and_the_bench_still_passes(tmp_path, monkeypatch, capsys, fake_bench):
    monkeypatch.setenv(bench_anchor.PYTHON_ENV, str(fake_anchor(tmp_path, "echo 'it broke: no openvino' >&2\nexit 3")))
    assert bench.run(bench_args(tmp_path / "out")) == 0
    assert capsys.readouterr().out.rstrip().endswith("YOLO26 anchor: failed (exit 3): it broke: no openvino")


def test_no_anchor_flag_and_no_openvino_rows(tmp_path, monkeypatch, capsys, fake_bench):
    monkeypatch.setenv(bench_anchor.PYTHON_ENV, str(fake_anchor(tmp_path, "exit 1")))
    assert bench.run(bench_args(tmp_path / "out", "--no-anchor")) == 0
    assert capsys.readouterr().out.rstrip().endswith("YOLO26 anchor: skipped (--no-anchor)")
    assert not (tmp_path / "argv.txt").exists()
    assert bench.run(bench_args(tmp_path / "out", "--formats", "torch")) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        "YOLO26 anchor: no OpenVINO precision to compare (it times fp32, int8)")


def test_parse_and_ratio_lines_exact():
    good = json.dumps({"model": "m", "rows": {"int8": {"e2e_p50_ms": 8, "raw_p50_ms": 6, "inst_per_img": 1}}})
    result, reason = parse_anchor_output("noise\n" + good + "\n\n", ["int8"])
    assert reason == "" and result.rows["int8"]["e2e_p50_ms"] == 8.0 and result.info == {"model": "m"}
    rows = [{"model": "openvino int8", "batch": 4, "e2e_p50_ms": 99.0},
            {"model": "openvino int8", "batch": 1, "e2e_p50_ms": 12.0}]
    assert ratio_lines(rows, result, "")[1] == "  int8: YOLO26 e2e p50 8.0 ms (raw 6.0 ms); ours 12.0 ms -> ours/YOLO26 1.50x"
    for bad, word in [("", "IndexError"), ("{not json", "JSONDecodeError"), (good, "KeyError")]:
        res, why = parse_anchor_output(bad, ["fp32"])
        assert res is None and why.startswith("unreadable output") and word in why
    zero = json.dumps({"rows": {"fp32": {"e2e_p50_ms": 0, "raw_p50_ms": 0, "inst_per_img": 0}}})
    assert parse_anchor_output(zero, ["fp32"]) == (None, "unreadable output (non-positive latency)")
    assert ratio_lines([], None, "why") == ["YOLO26 anchor: why"]
    assert isinstance(result, AnchorResult)


def test_find_anchor_python(tmp_path, monkeypatch):
    monkeypatch.delenv(bench_anchor.PYTHON_ENV, raising=False)
    monkeypatch.setattr(bench_anchor, "VENV_DIR", tmp_path / "venv")
    assert bench_anchor.find_anchor_python() is None
    py = tmp_path / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("")
    assert bench_anchor.find_anchor_python() == py
    monkeypatch.setenv(bench_anchor.PYTHON_ENV, str(tmp_path / "missing"))
    assert bench_anchor.find_anchor_python() is None  # an explicit choice is not silently replaced


def test_anchor_compiles_with_our_openvino_cpu_settings(monkeypatch):
    """Ultralytics compiles with OpenVINO's defaults (bf16 for an "FP32" model on a CPU with native
    bf16); the anchor pins our runner's f32 over whatever the caller asks, in Ultralytics' own call
    form (device_name and config as keywords), so FP32 means f32 on both sides on every CPU."""
    import openvino as ov
    from openvino import opset13 as ops

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import anchor_yolo26

    from core.infer.runner_openvino import CPU_CONFIG

    assert anchor_yolo26.OURS_CPU_CONFIG == CPU_CONFIG  # the anchor's copy (its venv lacks our package)
    monkeypatch.setattr(ov.Core, "compile_model", ov.Core.compile_model)  # restored after the test
    seen = anchor_yolo26.pin_cpu_config(anchor_yolo26.OURS_CPU_CONFIG)
    x = ops.parameter([1, 8], np.float32)
    model = ov.Model([ops.matmul(x, ops.constant(np.eye(8, dtype=np.float32)), False, False)], [x])
    compiled = ov.Core().compile_model(model, device_name="CPU",
                                       config={"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16"})
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == 0
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"  # the caller's own kept
    assert seen == ["<Type: 'float32'>"]
    out = compiled(np.arange(8, dtype=np.float32)[None])[0]
    assert out.tolist() == [list(range(8))]
