"""An export's meta.json must describe the model beside it (issue #35): a top_k or class count
that does not fit the model's outputs is refused, naming meta.json and the values, instead of
used as is. A hand-built ONNX deploy graph (constant detections) keeps this fast."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import WeightsError
from core.infer.meta import ModelMeta
from core.infer.predictor import Predictor

SIZE = 32


def deploy_onnx(path, labels: list[int], recorded: ModelMeta | None = None) -> None:
    """A graph with the deploy outputs (labels [B,K], boxes [B,K,4], scores [B,K]) for K =
    len(labels): every image gets the same K detections; `recorded` goes into the file's metadata
    as `dfine export` writes it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = len(labels)
    consts = {
        "c_labels": np.array([labels], np.int64),
        "c_scores": np.linspace(0.9, 0.6, k, dtype=np.float32)[None],
        "c_boxes": np.tile(np.array([0.1, 0.1, 0.5, 0.5], np.float32), (1, k, 1)),
        "shape_b1": np.array([-1, 1], np.int64),
        "shape_b11": np.array([-1, 1, 1], np.int64),
    }
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["zeros"]),  # [B,1,1,1] of 0: carries the batch size
        helper.make_node("Reshape", ["zeros", "shape_b1"], ["z2"]),
        helper.make_node("Reshape", ["zeros", "shape_b11"], ["z3"]),
        helper.make_node("Add", ["z2", "c_scores"], ["scores"]),
        helper.make_node("Add", ["z3", "c_boxes"], ["boxes"]),
        helper.make_node("Cast", ["z2"], ["z2i"], to=TensorProto.INT64),
        helper.make_node("Add", ["z2i", "c_labels"], ["labels"]),
    ]
    inits = [numpy_helper.from_array(v, n) for n, v in consts.items()]
    inits.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    graph = helper.make_graph(
        nodes, "deploy", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch", k]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", k, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", k])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if recorded is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "dfine_meta", recorded.to_json()
    onnx.save(model, str(path))


def write_meta(folder, classes: list[str], top_k: int):
    return ModelMeta(classes, "detect", (SIZE, SIZE), top_k).save(folder)


def image() -> np.ndarray:
    return np.full((SIZE * 2, SIZE * 3, 3), 100, np.uint8)


def test_a_fitting_meta_is_used(tmp_path):
    deploy_onnx(tmp_path / "model.onnx", [0, 2, 1, 0, 2], ModelMeta(["a", "b", "c"], "detect", (SIZE, SIZE), 5))
    write_meta(tmp_path, ["a", "b", "c"], 5)
    predictor = Predictor.load(tmp_path, conf=0.5)
    assert predictor.runner.detections_per_image == 5 and predictor.runner.recorded_classes == 3
    det = predictor.predict([image(), image()])
    assert len(det) == 2 and list(det[0].labels) == [0, 2, 1, 0, 2] and det[0].boxes.shape == (5, 4)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_top_k_the_outputs_do_not_have_is_refused(tmp_path, backend):
    deploy_onnx(tmp_path / "model.onnx", [0, 1, 1, 0, 1])
    model = tmp_path / "model.onnx"
    if backend == "openvino":
        from core.export.openvino_export import export_openvino

        model = export_openvino(model, tmp_path / "openvino_fp32", "fp32")
    meta_file = write_meta(tmp_path, ["a", "b"], 100)
    with pytest.raises(WeightsError, match=rf"{meta_file}: top_k 100 does not fit {model}: "
                                           r"its outputs hold 5 detections per image"):
        Predictor.load(model)
    write_meta(tmp_path, ["a", "b"], 5)
    assert Predictor.load(model).runner.detections_per_image == 5


def test_a_class_count_the_model_file_records_otherwise_is_refused(tmp_path):
    deploy_onnx(tmp_path / "model.onnx", [0, 1, 1, 0, 1], ModelMeta(["a", "b", "c", "d"], "detect", (SIZE, SIZE), 5))
    meta_file = write_meta(tmp_path, ["a", "b"], 5)
    with pytest.raises(WeightsError, match=rf"{meta_file}: lists 2 classes, .*model.onnx was exported for 4"):
        Predictor.load(tmp_path / "model.onnx")


def test_class_ids_the_meta_cannot_name_are_refused_not_dropped(tmp_path):
    deploy_onnx(tmp_path / "model.onnx", [0, 1, 3, 0, 1])  # no recorded meta: only the outputs tell
    meta_file = write_meta(tmp_path, ["a", "b"], 5)
    predictor = Predictor.load(tmp_path / "model.onnx", conf=0.99)  # even below the threshold
    with pytest.raises(WeightsError, match=rf"{meta_file}: lists 2 classes \(a, b\), the model predicts "
                                           r"class id 3"):
        predictor.predict([image()])
    assert json.loads(meta_file.read_text())["top_k"] == 5  # nothing rewritten
