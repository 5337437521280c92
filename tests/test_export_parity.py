"""One model through torch, ONNX Runtime and OpenVINO FP32/FP16/INT8 gives the same Detections.

The model is size N at 256x256 (fast on CPU) with `core.bench.synthetic_model` weights:
random, made input-dependent and sharpened so that scores spread over (0, 1) and masks are
crisp, i.e. the test compares real instances, not a cloud of near-threshold values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from core.bench import synthetic_model
from core.demo import render_demo_image
from core.export.onnx_export import export_onnx
from core.export.openvino_export import export_openvino, quantize_int8
from core.infer.meta import ModelMeta
from core.infer.predictor import Predictor
from core.infer.preprocess import preprocess
from core.infer.runner_tensorrt import tensorrt_available
from core.model import DeployModel

SIZE = 256
CLASSES = ["circle", "triangle", "rectangle"]


def demo_images() -> list[np.ndarray]:
    import cv2

    imgs = [render_demo_image(i)[0] for i in range(4)]
    imgs[1] = cv2.resize(imgs[1], (517, 333))  # odd size, other aspect
    imgs[2] = cv2.resize(imgs[2], (200, 380))  # portrait
    return imgs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = synthetic_model("n", len(CLASSES), SIZE)
    meta = ModelMeta(CLASSES, "segment", (SIZE, SIZE), 100, "n")
    meta.save(root)
    onnx_path = export_onnx(DeployModel(model, meta.top_k), root / "model.onnx", meta)
    export_openvino(onnx_path, root / "openvino_fp32", "fp32")
    export_openvino(onnx_path, root / "openvino_fp16", "fp16")
    torch.save({"model": model.state_dict(), "class_names": CLASSES,
                "config": {"task": "segment", "classes": CLASSES, "model": {"size": "n", "image_size": SIZE}}},
               root / "best.pt")
    images = demo_images()
    # a threshold far from every score the torch model gives on these images
    raw = Predictor.from_module(model, meta, conf=0.0).predict(images)
    scores = np.concatenate([d.scores for d in raw])
    grid = np.arange(0.5, 0.9, 0.005)
    conf = float(grid[np.argmax([np.abs(scores - g).min() for g in grid])])
    margin = float(np.abs(scores - conf).min())
    assert margin > 0.002, f"no clean threshold (margin {margin})"
    reference = Predictor.from_module(model, meta, conf=conf).predict(images)
    assert sum(len(d) for d in reference) >= 8, "the test model must produce instances"
    return {"root": root, "model": model, "meta": meta, "conf": conf, "images": images, "reference": reference}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare(reference, other, min_area: int = 0) -> tuple[float, float]:
    """Same instances (one-to-one, same class, score within 0.01) -> (max box error px, min mask IoU
    over instances of at least ``min_area`` pixels: one flipped pixel moves a 20-pixel mask's IoU 5%)."""
    worst_box, ious = compare_all(reference, other, min_area)
    return worst_box, min([1.0, *ious])


def compare_all(reference, other, min_area: int = 0) -> tuple[float, list[float]]:
    """As compare(), with every instance's mask IoU."""
    worst_box, all_ious = 0.0, []
    for ref, det in zip(reference, other, strict=True):
        assert len(ref) == len(det), f"{len(ref)} vs {len(det)} instances"
        if not len(ref):
            continue
        cost = np.abs(ref.boxes[:, None] - det.boxes[None]).max(-1) + 1e3 * (ref.labels[:, None] != det.labels[None])
        rows, cols = linear_sum_assignment(cost)
        assert np.array_equal(ref.labels[rows], det.labels[cols])
        assert np.abs(ref.scores[rows] - det.scores[cols]).max() < 0.01
        worst_box = max(worst_box, float(np.abs(ref.boxes[rows] - det.boxes[cols]).max()))
        all_ious += [mask_iou(ref.masks[r], det.masks[c]) for r, c in zip(rows, cols) if ref.masks[r].sum() >= min_area]
    return worst_box, all_ious


# FP16: the bar is mask IoU >= 0.95. These random-weight masks have soft edges where fp16
# rounding flips boundary pixels: measured mean 0.98, min 0.93 (875-px mask) on the demo images, so
# the mean carries the 0.95 bar and the minimum gets 0.90. On a trained model the slow test
# test_fp16_on_trained_run holds every instance to 0.95.
@pytest.mark.isa_sensitive
@pytest.mark.parametrize("backend,precision,max_box_px,min_iou,min_mean_iou,min_area", [
    ("torch", "fp32", 1.0, 0.98, 0.98, 0),  # from best.pt through the checkpoint loader
    ("onnx", "fp32", 1.0, 0.98, 0.98, 0),
    ("openvino", "fp32", 1.0, 0.98, 0.98, 0),
    ("openvino", "fp16", 2.0, 0.90, 0.95, 100),
])
def test_backends_agree(exported, backend, precision, max_box_px, min_iou, min_mean_iou, min_area):
    p = Predictor.load(exported["root"], conf=exported["conf"], backend=backend, precision=precision)
    assert (p.backend, p.precision) == (backend, precision)
    assert p.class_names == CLASSES
    dets = p.predict(exported["images"])
    for img, d in zip(exported["images"], dets):
        assert d.masks.shape == (len(d), *img.shape[:2])
    box_err, ious = compare_all(exported["reference"], dets, min_area)
    print(f"{backend} {precision}: max box error {box_err:.4f} px, mask IoU min {min(ious):.4f} "
          f"mean {np.mean(ious):.4f} over {len(ious)} instances")
    assert box_err <= max_box_px
    assert len(ious) >= 8 and min(ious) >= min_iou and np.mean(ious) >= min_mean_iou


TRT_OK, TRT_REASON = tensorrt_available()


@pytest.mark.gpu
@pytest.mark.skipif(not TRT_OK, reason=TRT_REASON or "TensorRT available")
@pytest.mark.parametrize("precision,max_box_px,min_iou,min_area", [("fp32", 1.0, 0.98, 0), ("fp16", 2.0, 0.95, 100)])
def test_tensorrt_agrees(exported, precision, max_box_px, min_iou, min_area):
    from core.export.tensorrt_export import export_tensorrt

    root = exported["root"]
    engine = export_tensorrt(root / "model.onnx", root / f"tensorrt_{precision}.engine", precision, (SIZE, SIZE))
    p = Predictor.load(engine, device="cuda", conf=exported["conf"])
    assert (p.backend, p.precision) == ("tensorrt", precision)
    box_err, iou = compare(exported["reference"], p.predict(exported["images"]), min_area)
    assert box_err <= max_box_px and iou >= min_iou


def test_onnx_graph_contract(exported):
    import onnx

    model = onnx.load(str(exported["root"] / "model.onnx"))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [o.name for o in model.graph.output] == ["labels", "boxes", "scores", "masks"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch
    import onnxruntime as ort

    outs = ort.InferenceSession(str(exported["root"] / "model.onnx")).run(None, {"images": np.zeros((3, 3, SIZE, SIZE),
                                                                                                  np.float32)})
    assert [o.shape for o in outs] == [(3, 100), (3, 100, 4), (3, 100), (3, 100, SIZE // 4, SIZE // 4)]  # top-K only
    assert '"class_names"' in {p.key: p.value for p in model.metadata_props}["dfine_meta"]


def test_dynamic_batch_gives_same_result_as_single(exported):
    p = Predictor.load(exported["root"] / "model.onnx", conf=exported["conf"])
    images = exported["images"][:3]
    batched = p.predict(images)
    single = [p.predict([im])[0] for im in images]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        assert np.array_equal(a.labels, b.labels)


def _int8_agreement(exported, overflow_fix: str = "enable") -> float:
    """Quantize the test model with ``overflow_fix`` and return its INT8-vs-FP32 agreement F1."""
    import shutil

    import openvino as ov

    from core.eval.evaluator import Evaluator
    from core.eval.records import ImageGT, ImagePred
    from core.infer.int8_info import read_int8_info

    root = exported["root"]
    shutil.rmtree(root / "openvino_int8", ignore_errors=True)
    calib = [preprocess([render_demo_image(i)[0]], (SIZE, SIZE))[0] for i in range(4, 16)]
    xml, info = quantize_int8(root / "model.onnx", root / "openvino_int8", calib, subset_size=12,
                              overflow_fix=overflow_fix)
    assert info["calibration_images"] == 12 and "/MatMul" in info["ignored"]
    assert info["overflow_fix"] == overflow_fix and info["cpu"]["label"] and "nncf_version" in info
    ir = ov.Core().read_model(str(xml))
    assert read_int8_info(ir)["overflow_fix"] == overflow_fix  # recorded in the IR for the runner's check
    ops = ir.get_ops()
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops) > 50  # really quantized
    mask_product = next(op for op in ops if op.get_friendly_name() == "/MatMul")
    assert all(mask_product.input_value(i).get_node().get_type_name() != "FakeQuantize" for i in range(2))
    p = Predictor.load(root, conf=exported["conf"], backend="openvino", precision="int8")
    ev = Evaluator(len(CLASSES), CLASSES, "segment", conf=exported["conf"], coco=False)
    for ref, det in zip(exported["reference"], p.predict(exported["images"])):
        h, w = ref.image_size
        ev.add(ImageGT(h, w, ref.boxes, ref.labels, ref.masks), ImagePred.from_detections(det))
    return ev.summary().fixed.f1


@pytest.mark.isa_sensitive
def test_int8_agreement_with_fp32(exported):
    """INT8 (NNCF, sensitive heads kept in float, overflow fix on every layer) against FP32 as ground
    truth: F1 of agreement, on this CPU and (test_isa_branches.py) with AVX2 forced.

    On this random-weight model INT8 agrees poorly even when right (its N(0, 0.1) noise weights give
    activations no trained network has): measured 0.24-0.33 on AVX2 and AVX-512 VNNI CPUs. What
    the bound catches is saturation: with NNCF's default overflow fix (first layer only) an AVX2 CPU
    (no VNNI) gave 0.03-0.07, i.e. a broken model (see the next test); the real F1 drop is measured
    on a trained run by the slow test below and `benchmarks/int8_overflow.py`.
    """
    f1 = _int8_agreement(exported)
    print(f"INT8 agreement F1 vs FP32: {f1:.3f}")
    assert f1 >= 0.2


@pytest.mark.isa_sensitive
def test_without_vnni_the_overflow_fix_is_what_keeps_int8_right(exported):
    """Why the agreement test holds on a CPU without VNNI: NNCF's default (first layer only)
    saturates there. Measured with AVX2 forced on an AVX-512 VNNI CPU (benchmarks/int8_overflow.py):
    agreement F1 0.067 with first_layer_only vs 0.327 with the fix; with VNNI both are fine
    (0.296 / 0.318), so this runs only where the CPU (or the forced ISA) has no int8 dot product."""
    from core import cpu_isa

    here = cpu_isa.detect()
    if here.int8_dot_product:
        pytest.skip(f"this CPU ({here.label}) has VNNI/AMX, where int8 products cannot saturate; "
                    "test_isa_branches.py runs this test with AVX2 forced")
    scores = {fix: _int8_agreement(exported, fix) for fix in ("first_layer_only", "enable")}
    print(f"INT8 agreement on {here.label}: {scores}")
    assert scores["enable"] >= 0.2
    assert scores["first_layer_only"] < scores["enable"] - 0.1


def _export_trained_run(out, *args: str) -> str:
    """Export the run named by DFINE_TEST_RUN=<project>/runs/<name> (skip when unset); returns the run."""
    import os

    from core.cli import main

    run = os.environ.get("DFINE_TEST_RUN")
    if not run:
        pytest.skip("set DFINE_TEST_RUN to a trained run folder inside a project")
    assert main(["export", run, "--formats", "onnx,openvino", "--out", str(out), *args]) == 0
    return run


@pytest.mark.slow
def test_int8_f1_drop_on_trained_run(tmp_path):
    """Real F1 drop of INT8 with accuracy control on a trained run: set DFINE_TEST_RUN=<project>/runs/<name>."""
    import json

    out = tmp_path / "export"
    _export_trained_run(out, "--precision", "fp32,int8", "--accuracy-control", "--max-drop", "0.01",
                        "--timing-images", "3")
    rows = {(r["format"], r["precision"]): r for r in json.loads((out / "report.json").read_text())["results"]}
    assert abs(rows[("openvino", "fp32")]["f1_delta_vs_torch"]) <= 0.005
    assert rows[("openvino", "int8")]["f1_delta_vs_torch"] >= -0.02  # max_drop 0.01 + val-noise margin


@pytest.mark.slow
def test_fp16_on_trained_run(tmp_path):
    """On a trained run (DFINE_TEST_RUN=<project>/runs/<name>) every FP16 instance keeps mask IoU >= 0.95."""
    from pathlib import Path

    from core.data.images import read_image
    from core.project import Project

    out = tmp_path / "export"
    run = _export_trained_run(out, "--precision", "fp32,fp16", "--no-report")
    images = [read_image(p) for p in Project.open(Path(run).parent.parent).split_images("val")]
    reference = Predictor.load(Path(run) / "best.pt").predict(images)
    assert sum(len(d) for d in reference) >= 10, "the run must be trained enough to find objects"
    fp16 = Predictor.load(out, backend="openvino", precision="fp16").predict(images)
    box_err, ious = compare_all(reference, fp16, min_area=100)
    print(f"trained run, OpenVINO FP16: max box error {box_err:.3f} px, mask IoU min {min(ious):.4f} "
          f"mean {np.mean(ious):.4f} over {len(ious)} instances")
    assert box_err <= 2.0 and min(ious) >= 0.95


def test_export_cli(exported, tmp_path):
    from core.cli import main

    ckpt = exported["root"] / "best.pt"
    # INT8 needs a project's images: a clear error before any work
    assert main(["export", str(ckpt), "--precision", "int8", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    out = tmp_path / "export"
    assert main(["export", str(ckpt), "--formats", "onnx", "--precision", "fp16", "--out", str(out),
                 "--no-report"]) == 0  # (OpenVINO conversion is covered by the fixture)
    assert (out / "model.onnx").is_file() and not (out / "openvino_fp16").exists()
    p = Predictor.load(out, conf=exported["conf"])  # meta.json written by the export
    assert (p.backend, p.class_names) == ("onnx", CLASSES)
    box_err, iou = compare(exported["reference"], p.predict(exported["images"]))
    assert box_err <= 1.0 and iou >= 0.98


def test_int8_portability_warning_only_where_it_matters():
    """An IR quantized without the all-layer fix warns on a CPU without VNNI/AMX, nowhere else."""
    from core.cpu_isa import CpuIsa
    from core.infer.int8_info import int8_portability_warning

    avx2 = CpuIsa(avx2=True, avx512=False, avx512_vnni=False, avx_vnni=False, avx512_bf16=False, amx=False)
    vnni = CpuIsa(avx2=True, avx512=True, avx512_vnni=True, avx_vnni=False, avx512_bf16=False, amx=False)
    made_on_vnni = {"overflow_fix": "first_layer_only", "cpu": {"label": "AVX-512 VNNI"}}
    message = int8_portability_warning(made_on_vnni, here=avx2)
    assert message and "AVX-512 VNNI" in message and "AVX2" in message and "int8_overflow_fix" in message
    assert int8_portability_warning(made_on_vnni, here=vnni) is None
    assert int8_portability_warning({"overflow_fix": "enable", "cpu": {}}, here=avx2) is None
    assert int8_portability_warning(None, here=avx2) is None  # float IRs and older exports


def test_export_cli_overflow_fix_setting(tmp_path):
    """The config key and the CLI flag reach NNCF (validated by the config model)."""
    import argparse

    from core.config import ProjectConfig
    from core.errors import ConfigError
    from core.export.cli import add_arguments

    assert ProjectConfig(classes=["a"]).export.int8_overflow_fix == "enable"
    with pytest.raises((ConfigError, ValueError)):
        ProjectConfig(classes=["a"], export={"int8_overflow_fix": "sometimes"})
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["x", "--int8-overflow-fix", "first_layer_only"]).int8_overflow_fix == "first_layer_only"
    with pytest.raises(SystemExit):
        p.parse_args(["x", "--int8-overflow-fix", "sometimes"])


def test_openvino_runner_warns_for_an_int8_ir_made_for_vnni_on_a_cpu_without(tmp_path, monkeypatch):
    import warnings

    import openvino as ov
    from openvino import opset13 as ops

    from core import cpu_isa
    from core.export.openvino_export import int8_settings
    from core.infer.int8_info import record_int8_info
    from core.infer.runner_openvino import OpenVinoRunner

    x = ops.parameter([1, 3], np.float32)
    model = ov.Model([ops.relu(x)], [x])
    record_int8_info(model, int8_settings("first_layer_only", 8))
    ov.save_model(model, str(tmp_path / "model.xml"))
    monkeypatch.setattr(cpu_isa, "_hardware_features", lambda: {"avx2"})
    with pytest.warns(RuntimeWarning, match="no VNNI"):
        runner = OpenVinoRunner(tmp_path / "model.xml", precision="int8")
    assert "first_layer_only" in runner.portability_warning
    monkeypatch.setattr(cpu_isa, "_hardware_features", lambda: {"avx2", "avx512", "avx512_vnni"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert OpenVinoRunner(tmp_path / "model.xml", precision="int8").portability_warning is None
