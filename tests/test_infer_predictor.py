"""Backend resolution, frame sources, overlays, checkpoint loading and the `dfine infer` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.bench import synthetic_model
from core.errors import UserFacingError, WeightsError
from core.infer.detections import Detections
from core.infer.meta import ModelMeta, find_meta
from core.infer.overlay import PALETTE, draw_detections
from core.infer.predictor import Predictor, resolve_model
from core.infer.runner_tensorrt import tensorrt_available
from core.infer.sources import open_source

CLASSES = ["circle", "triangle", "rectangle"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# ---------------------------------------------------------------------------- resolve_model

def test_resolve_files_by_suffix(tmp_path):
    assert resolve_model(touch(tmp_path / "a.pt")).backend == "torch"
    assert resolve_model(touch(tmp_path / "m.onnx")).backend == "onnx"
    xml = resolve_model(touch(tmp_path / "openvino_int8" / "model.xml"))
    assert (xml.backend, xml.precision) == ("openvino", "int8")
    assert resolve_model(tmp_path / "openvino_int8").path == tmp_path / "openvino_int8" / "model.xml"
    trt = resolve_model(touch(tmp_path / "tensorrt_fp16.engine"))
    assert (trt.backend, trt.precision) == ("tensorrt", "fp16")
    with pytest.raises(WeightsError, match="unknown model file type '.txt'"):
        resolve_model(touch(tmp_path / "notes.txt"))
    with pytest.raises(WeightsError, match="no such model file or folder"):
        resolve_model(tmp_path / "missing.onnx")
    with pytest.raises(UserFacingError, match="unknown backend 'tflite'"):
        resolve_model(tmp_path, backend="tflite")


def test_resolve_export_folder_prefers_fastest_for_device(tmp_path):
    for rel in ["model.onnx", "openvino_fp32/model.xml", "openvino_fp16/model.xml", "openvino_int8/model.xml",
                "tensorrt_fp16.engine"]:
        touch(tmp_path / rel)
    cpu = resolve_model(tmp_path, device="cpu")
    assert (cpu.backend, cpu.precision) == ("openvino", "int8")  # TensorRT is not a CPU choice
    gpu = resolve_model(tmp_path, device="cuda")
    assert (gpu.backend, gpu.precision) == ("tensorrt", "fp16")
    assert resolve_model(tmp_path, backend="openvino", precision="fp32").path == tmp_path / "openvino_fp32" / "model.xml"
    assert resolve_model(tmp_path, backend="onnx").path == tmp_path / "model.onnx"
    with pytest.raises(WeightsError, match="no torch model found"):
        resolve_model(tmp_path, backend="torch")
    run = tmp_path / "runs" / "r1"
    touch(run / "last.pt")
    touch(run / "best.pt")
    assert resolve_model(run).path == run / "best.pt"
    with pytest.raises(WeightsError, match="no model found"):
        resolve_model(touch(tmp_path / "empty" / "readme.md").parent)


def test_meta_lookup(tmp_path):
    meta = ModelMeta(CLASSES, "segment", (320, 320), 100, "n")
    meta.save(tmp_path)
    found = find_meta(touch(tmp_path / "openvino_fp16" / "model.xml"))
    assert found.class_names == CLASSES and found.image_size == (320, 320)
    with pytest.raises(WeightsError, match="no meta.json"):
        find_meta(touch(tmp_path.parent / "elsewhere" / "lone" / "deeper" / "m.onnx"))
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not a valid export meta.json"):
        find_meta(tmp_path / "openvino_fp16" / "model.xml")


def test_tensorrt_missing_is_a_clear_error(tmp_path):
    ok, reason = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available here")
    assert "needs an NVIDIA GPU and the tensorrt package" in reason
    from core.export.tensorrt_export import export_tensorrt

    with pytest.raises(UserFacingError, match="needs an NVIDIA GPU and the tensorrt package"):
        export_tensorrt(tmp_path / "m.onnx", tmp_path / "m.engine")
    from core.export.pipeline import check_request

    with pytest.raises(UserFacingError, match="needs an NVIDIA GPU"):
        check_request(["onnx", "tensorrt"], ["fp16"], has_calibration=False)
    with pytest.raises(UserFacingError, match="INT8 needs calibration images"):
        check_request(["onnx", "openvino"], ["int8"], has_calibration=False)


# ---------------------------------------------------------------------------- checkpoint + predictor

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A trainer-format checkpoint whose EMA weights differ from its raw weights."""
    root = tmp_path_factory.mktemp("run")
    model = synthetic_model("n", len(CLASSES), 256, seed=1)
    raw = {k: v + 1.0 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    config = {"classes": CLASSES, "task": "segment", "model": {"size": "n", "image_size": 256}}
    torch.save({"model": raw, "ema": {"module": model.state_dict(), "updates": 3}, "config": config,
                "class_names": CLASSES}, root / "best.pt")
    return root, model


def test_checkpoint_loads_ema_weights(checkpoint):
    from core.infer.checkpoint_loader import load_checkpoint

    root, model = checkpoint
    loaded, meta = load_checkpoint(root / "best.pt")
    assert meta.class_names == CLASSES and meta.image_size == (256, 256) and meta.model_size == "n"
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_checkpoint_errors(tmp_path):
    from core.infer.checkpoint_loader import load_checkpoint

    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    small = synthetic_model("n", 2, 256).state_dict()
    torch.save({"model": small, "class_names": CLASSES, "config": {"model": {"size": "n", "image_size": 256}}},
               tmp_path / "wrong.pt")
    with pytest.raises(WeightsError, match="do not fit a size-n segment model with 3 classes"):
        load_checkpoint(tmp_path / "wrong.pt")


def test_predictor_contract(checkpoint):
    root, _ = checkpoint
    p = Predictor.load(root, conf=0.5)
    assert p.backend == "torch" and p.class_names == CLASSES
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)]
    dets = p.predict(images)
    assert len(dets) == 2
    for img, d in zip(images, dets):
        assert isinstance(d, Detections) and d.image_size == img.shape[:2]
        assert d.masks.shape == (len(d), *img.shape[:2])
        assert (d.scores >= 0.5).all() and (d.boxes[:, 2:] <= [img.shape[1], img.shape[0]]).all()
    assert len(p.predict(images[0])) == 1  # a single array is one image
    rle = p.predict(images, rle=True)
    assert all(d.masks is None and len(d.rles) == len(d) for d in rle)
    with pytest.raises(UserFacingError, match="confidence threshold must be in"):
        Predictor(p.runner, p.meta, conf=1.5)


# ---------------------------------------------------------------------------- sources + overlay

def test_sources(tmp_path):
    img = np.full((24, 32, 3), 100, np.uint8)
    cv2.imwrite(str(tmp_path / "b.png"), img)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    (tmp_path / "broken.png").write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("x")
    folder = open_source(tmp_path)
    frames = list(folder)
    assert folder.kind == "folder" and [f.name for f in frames] == ["a.jpg", "b.png"]
    assert len(folder.skipped) == 1 and "broken.png" in folder.skipped[0]
    single = open_source(tmp_path / "b.png")
    assert single.kind == "image" and next(iter(single)).image.shape == (24, 32, 3)
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), i * 40, np.uint8))
    writer.release()
    src = open_source(video, max_frames=3)
    frames = list(src)
    assert src.kind == "video" and src.total == 3 and [f.index for f in frames] == [0, 1, 2]
    assert frames[0].name == "frame_000000"
    with pytest.raises(UserFacingError, match="not an image"):
        open_source(tmp_path / "notes.txt")
    with pytest.raises(UserFacingError, match="no such file or folder"):
        open_source(tmp_path / "nope.jpg")
    with pytest.raises(UserFacingError, match="camera 57 could not be opened"):
        open_source("57")


def test_overlay_draws_masks_and_boxes():
    img = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 22:32, 10:30] = True  # below the label text
    det = Detections(np.array([[5, 5, 50, 35]], np.float32), np.array([0.9], np.float32), np.array([1]),
                     (40, 60), mask, None, CLASSES)
    out = draw_detections(img, det, alpha=0.5)
    assert img.max() == 0  # input untouched
    np.testing.assert_allclose(out[28, 20], PALETTE[1] * 0.5, atol=1)  # blended class colour inside the mask
    assert out[33, 45].max() == 0 and out[35, 30].any()  # untouched background, box edge drawn


# ---------------------------------------------------------------------------- CLI

def test_infer_cli_folder_and_video(checkpoint, tmp_path):
    from core.cli import main

    root, _ = checkpoint
    from core.demo import render_demo_image

    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "im0.jpg"), render_demo_image(0)[0])
    cv2.imwrite(str(src / "im0.png"), render_demo_image(1)[0])  # same stem: its own overlay
    (src / "im1.jpg").write_bytes(b"broken")  # skipped with a message, not fatal
    out = tmp_path / "out"
    (tmp_path / "afile").write_text("x")
    assert main(["infer", str(root / "best.pt"), str(src), "--save", str(tmp_path / "afile")]) == 2
    assert main(["infer", str(root / "best.pt"), str(src), "--save", str(out), "--conf", "0.3", "--no-progress"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in rows} == {"im0.jpg", "im0.png"}
    assert (out / "im0_png_pred.jpg").is_file()
    assert all(set(r) >= {"bbox", "score", "category_id", "segmentation"} and r["score"] >= 0.3 for r in rows)
    assert all(1 <= r["category_id"] <= 3 for r in rows)
    assert (out / "im0_pred.jpg").is_file() and not (out / "im1_pred.jpg").exists()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for i in range(2):
        writer.write(render_demo_image(i)[0])
    writer.release()
    vout = tmp_path / "vout"
    assert main(["infer", str(root), str(video), "--save", str(vout), "--no-progress"]) == 0
    cap = cv2.VideoCapture(str(vout / "clip_pred.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    assert main(["infer", str(root), str(tmp_path / "missing.jpg")]) == 2  # clear error, no traceback
