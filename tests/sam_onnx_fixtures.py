"""Tiny ONNX encoder/decoder pairs with the signatures of the real SAM-family exports
(core.weights.sam_registry.CONTRACTS), built with onnx.helper: no weights, a few KB each.

The decoders draw a diamond of L1 radius ``RADIUS`` (in the frame the decoder sees) around the
first prompt point, so a test can check that clicks go in, and masks come back, in image pixels."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RADIUS = 102.4  # in the decoder's frame: 20 px on a 200 px wide image under the `sam` contract (x5.12)
OPSET = [helper.make_opsetid("", 17)]


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _embed_nodes(image: str, axes_all: bool = True) -> list[onnx.NodeProto]:
    """image (any shape) -> image_embeddings [1, 256, 64, 64] filled with the image's mean."""
    return [
        helper.make_node("ReduceMean", [image], ["m"], keepdims=0),
        _const("one4", np.array([1, 1, 1, 1], np.int64)),
        helper.make_node("Reshape", ["m", "one4"], ["m4"]),
        _const("emb_shape", np.array([1, 256, 64, 64], np.int64)),
        helper.make_node("Expand", ["m4", "emb_shape"], ["image_embeddings"]),
    ]


def _diamond_nodes(coords: str, size_i64: str) -> list[onnx.NodeProto]:
    """coords [..., N, 2] (first point used), size_i64 [2] (H, W) -> 'diamond' [H, W] logits."""
    return [
        _const("zero", np.array(0, np.int64)), _const("onei", np.array(1, np.int64)),
        _const("i0", np.array([0], np.int64)), _const("i1", np.array([1], np.int64)),
        _const("i2", np.array([2], np.int64)),
        helper.make_node("Slice", [size_i64, "i0", "i1"], ["h1"]),
        helper.make_node("Slice", [size_i64, "i1", "i2"], ["w1"]),
        helper.make_node("Squeeze", ["h1"], ["h"]), helper.make_node("Squeeze", ["w1"], ["w"]),
        helper.make_node("Range", ["zero", "h", "onei"], ["yi"]),
        helper.make_node("Range", ["zero", "w", "onei"], ["xi"]),
        helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["xi"], ["xf"], to=TensorProto.FLOAT),
        _const("half", np.array(0.5, np.float32)),
        helper.make_node("Add", ["yf", "half"], ["ys"]), helper.make_node("Add", ["xf", "half"], ["xs"]),
        _const("flat2", np.array([-1, 2], np.int64)),
        helper.make_node("Reshape", [coords, "flat2"], ["pts"]),
        helper.make_node("Slice", ["pts", "i0", "i1", "i0"], ["p0"]),        # [1, 2]
        helper.make_node("Slice", ["p0", "i0", "i1", "i1"], ["px"]),         # [1, 1]
        helper.make_node("Slice", ["p0", "i1", "i2", "i1"], ["py"]),
        _const("flat1", np.array([1], np.int64)),
        helper.make_node("Reshape", ["px", "flat1"], ["px1"]), helper.make_node("Reshape", ["py", "flat1"], ["py1"]),
        helper.make_node("Sub", ["xs", "px1"], ["dx0"]), helper.make_node("Abs", ["dx0"], ["dx"]),
        helper.make_node("Sub", ["ys", "py1"], ["dy0"]), helper.make_node("Abs", ["dy0"], ["dy"]),
        helper.make_node("Unsqueeze", ["dy", "i1"], ["dyc"]), helper.make_node("Unsqueeze", ["dx", "i0"], ["dxr"]),
        helper.make_node("Add", ["dyc", "dxr"], ["d"]),
        _const("radius", np.array(RADIUS, np.float32)),
        helper.make_node("Sub", ["radius", "d"], ["diamond"]),
    ]


def _model(nodes, inputs, outputs) -> bytes:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs)
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _t(name: str, elem: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


F = TensorProto.FLOAT


def sam_encoder() -> bytes:
    return _model(_embed_nodes("input_image"), [_t("input_image", F, ["h", "w", 3])],
                  [_t("image_embeddings", F, [1, 256, 64, 64])])


def sam_decoder() -> bytes:
    nodes = [helper.make_node("Cast", ["orig_im_size"], ["size_i64"], to=TensorProto.INT64)]
    nodes += _diamond_nodes("point_coords", "size_i64")
    nodes += [helper.make_node("Unsqueeze", ["diamond", "i0"], ["d3"]),
              helper.make_node("Unsqueeze", ["d3", "i0"], ["masks"]),
              _const("iou_predictions", np.array([[0.9]], np.float32)),
              _const("lr_shape", np.array([1, 1, 256, 256], np.int64)),
              helper.make_node("ConstantOfShape", ["lr_shape"], ["low_res_masks"])]
    inputs = [_t("image_embeddings", F, [1, 256, 64, 64]), _t("point_coords", F, [1, "n", 2]),
              _t("point_labels", F, [1, "n"]), _t("mask_input", F, [1, 1, 256, 256]),
              _t("has_mask_input", F, [1]), _t("orig_im_size", F, [2])]
    outputs = [_t("masks", F, [1, 1, "H", "W"]), _t("iou_predictions", F, [1, 1]),
               _t("low_res_masks", F, [1, 1, 256, 256])]
    return _model(nodes, inputs, outputs)


def efficientsam_encoder() -> bytes:
    return _model(_embed_nodes("batched_images"), [_t("batched_images", F, [1, 3, "h", "w"])],
                  [_t("image_embeddings", F, [1, 256, 64, 64])])


def efficientsam_decoder() -> bytes:
    """Three candidates: nothing, the diamond, nothing; the IoU ranks the diamond first."""
    nodes = _diamond_nodes("batched_point_coords", "orig_im_size")
    nodes += [helper.make_node("Unsqueeze", ["diamond", "i0"], ["d3"]),
              helper.make_node("Unsqueeze", ["d3", "i0"], ["d4"]),
              helper.make_node("Unsqueeze", ["d4", "i0"], ["d5"]),
              _const("neg", np.array(-1.0, np.float32)), _const("zerof", np.array(0.0, np.float32)),
              helper.make_node("Mul", ["d5", "zerof"], ["z5"]),
              helper.make_node("Add", ["z5", "neg"], ["none"]),
              helper.make_node("Concat", ["none", "d5", "none"], ["output_masks"], axis=2),
              _const("iou_predictions", np.array([[[0.1, 0.9, 0.2]]], np.float32))]
    inputs = [_t("image_embeddings", F, [1, 256, 64, 64]), _t("batched_point_coords", F, [1, 1, "n", 2]),
              _t("batched_point_labels", F, [1, 1, "n"]), _t("orig_im_size", TensorProto.INT64, [2])]
    outputs = [_t("output_masks", F, [1, 1, 3, "H", "W"]), _t("iou_predictions", F, [1, 1, 3])]
    return _model(nodes, inputs, outputs)
