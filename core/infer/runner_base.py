"""What a backend runner is: preprocessed batch in, raw deployment-graph arrays out.

Runners know nothing about images or Detections; pre- and post-processing are shared
(`core.infer.preprocess`, `core.infer.postprocess`). See `core.model.DeployModel` for the
array layout.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


BACKENDS = ("torch", "onnx", "openvino", "tensorrt")  # one name each, as `dfine export --formats` says
LEGACY_BACKEND_NAMES = {"onnxruntime": "onnx"}  # older reports, settings and scripts


def backend_name(name: str) -> str:
    """The one name of a backend (``onnxruntime`` -> ``onnx``); unknown names pass through."""
    return LEGACY_BACKEND_NAMES.get(name, name)


def detections_dim(shapes: dict[str, list]) -> int | None:
    """Detections per image of a deploy graph (dim 1 of its "scores" / "labels" output) when the
    graph fixes it; None when unknown (dynamic, or other output names)."""
    for name in ("scores", "labels"):
        shape = shapes.get(name)
        if shape is not None and len(shape) >= 2 and isinstance(shape[1], int) and shape[1] > 0:
            return int(shape[1])
    return None


class Runner(Protocol):
    backend: str  # "torch" | "onnx" | "openvino" | "tensorrt"
    device: str
    precision: str  # "fp32" | "fp16" | "int8"

    @property
    def detections_per_image(self) -> int | None:  # the graph's static K (checked against meta.json's top_k)
        ...

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """[B,3,h,w] float32 -> {"scores", "labels", "boxes"[, "masks"]} numpy arrays."""
        ...
