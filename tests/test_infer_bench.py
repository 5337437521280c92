"""The benchmark harness (paper protocol) on a fake runner: counts, summaries and outputs."""

from __future__ import annotations

import csv
import time

import numpy as np

from core.bench import markdown_table, write_outputs
from core.infer.timing import Timing, postprocess_speedup, time_predictor
from core.infer.meta import ModelMeta
from core.infer.predictor import Predictor


class FakeRunner:
    """Sleeps a fixed time per batch and returns 3 confident instances with full masks."""

    backend, device, precision = "fake", "cpu", "fp32"

    def __init__(self, delay_s: float = 0.002):
        self.delay_s = delay_s
        self.calls: list[int] = []

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(len(batch))
        time.sleep(self.delay_s)
        b = len(batch)
        boxes = np.tile(np.array([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9], [0.2, 0.6, 0.4, 0.8],
                                  [0, 0, 1, 1]], np.float32), (b, 1, 1))
        return {"scores": np.tile(np.array([0.9, 0.8, 0.7, 0.1], np.float32), (b, 1)),
                "labels": np.zeros((b, 4), np.int64), "boxes": boxes,
                "masks": np.full((b, 4, 16, 16), 0.9, np.float32)}


def predictor(delay_s: float = 0.002) -> Predictor:
    return Predictor(FakeRunner(delay_s), ModelMeta(["a"], "segment", (64, 64), 4, "n"), conf=0.5)


def test_protocol_warmup_batches_and_counts():
    p = predictor()
    frames = [np.zeros((108, 192, 3), np.uint8)] * 9
    t = time_predictor(p, frames, batch_size=4, warmup=10)
    # warm-up: 10 // 4 = 2 batches of 4, then 2 timed batches (the 9th image does not fill a batch)
    assert p.runner.calls == [4, 4, 4, 4]
    assert len(t.e2e_ms) == 2 and t.images == 8 and t.instances == 8 * 3
    s = t.summary()
    assert s["inst_per_img"] == 3.0 and s["batch"] == 4
    assert all(e >= r >= 2.0 for e, r in zip(t.e2e_ms, t.raw_ms))  # raw includes the 2 ms forward
    assert s["e2e_over_raw"] >= 1.0
    np.testing.assert_allclose(s["img_per_s"], 4 * 1000 / np.mean(t.e2e_ms))


def test_summary_percentiles_exact():
    t = Timing(2, e2e_ms=[10.0, 20.0, 30.0, 40.0, 50.0], raw_ms=[5.0] * 5, post_ms=[1.0] * 5, instances=10, images=10)
    s = t.summary()
    assert s["e2e_p50_ms"] == 30.0 and s["e2e_p95_ms"] == 48.0 and s["e2e_over_raw"] == 6.0
    assert s["img_per_s"] == 2 * 1000 / 30.0


def test_outputs_and_speedup(tmp_path):
    p = predictor(0.0)
    frames = [np.zeros((1080, 1920, 3), np.uint8)] * 2
    speed = postprocess_speedup(p, frames, repeats=1)
    assert speed["inst_per_img"] == 3 and speed["image_size"] == "1920x1080"
    assert speed["crop_ms"] > 0 and speed["naive_ms"] > 0
    rows = [{"model": "fake fp32", **time_predictor(p, frames, 1, warmup=1).summary(),
             "f1": 0.5, "precision": 0.6, "recall": 0.4, "iou": 0.3}]
    write_outputs(tmp_path, rows, speed, ["a note"])
    with open(tmp_path / "bench.csv") as f:
        got = list(csv.DictReader(f))
    assert got[0]["model"] == "fake fp32" and float(got[0]["f1"]) == 0.5
    md = (tmp_path / "bench.md").read_text()
    assert md.startswith("| model | batch |") and "| fake fp32 | 1 |" in md and "- a note" in md
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert "| - | - |" in markdown_table([{**rows[0], "f1": None, "precision": None, "recall": None, "iou": None}],
                                         speed, [])


def _bench_args(tmp_path, *extra: str):
    import argparse

    from core.bench import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--random-size", "n", "--image-size", "128", "--formats", "torch,onnx", "--precision",
                         "fp32", "--no-anchor", "--out", str(tmp_path), *extra])


def test_random_size_bench_takes_the_cpu_pick(tmp_path):
    """`dfine bench --random-size s --mask-head cpu --queries 100` times the CPU pick without a trained
    model: the torch model and the export both carry that head and run that many decoder queries."""
    from core.bench import prepare_models

    setup = prepare_models(_bench_args(tmp_path, "--mask-head", "cpu", "--queries", "20"), log=lambda _: None)
    labels = [label for label, _, _ in setup.models]
    assert labels == ["torch fp32", "onnx fp32"]
    torch_model = setup.models[0][1].runner.module.model  # TorchRunner -> DeployModel -> DFINEModel
    assert torch_model.mask_head_preset == "cpu" and torch_model.decoder.num_queries == 20
    assert torch_model.mask_head.pixel_decoder.out_conv.out_channels == 32
    assert setup.models[0][1].meta.top_k == 60  # 20 queries x 3 classes: fewer than the default 100
    assert any("mask head cpu, 20 queries" in n for n in setup.notes)
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    torch_det, onnx_det = (p.predict([frame])[0] for _, p, _ in setup.models)
    assert len(torch_det) == len(onnx_det) and np.allclose(torch_det.scores, onnx_det.scores, atol=1e-4)


def test_random_size_bench_rejects_bad_head_and_queries(tmp_path):
    import pytest

    from core.bench import prepare_models
    from core.errors import UserFacingError

    with pytest.raises(UserFacingError, match="mask_head must be one of"):
        prepare_models(_bench_args(tmp_path, "--mask-head", "tiny"), log=lambda _: None)
    with pytest.raises(SystemExit):  # the option's range is checked when parsing (core.cli_types)
        _bench_args(tmp_path, "--queries", "301")
    args = _bench_args(tmp_path)
    args.queries = 301  # the model's own check stays for callers that build the arguments themselves
    with pytest.raises(UserFacingError, match="--queries: 301 asked for, the model has 300"):
        prepare_models(args, log=lambda _: None)
