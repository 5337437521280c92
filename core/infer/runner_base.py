"""What a backend runner is: preprocessed batch in, raw deployment-graph arrays out.

Runners know nothing about images or Detections; pre- and post-processing are shared
(`core.infer.preprocess`, `core.infer.postprocess`). See `core.model.DeployModel` for the
array layout.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    backend: str  # "torch" | "onnxruntime" | "openvino" | "tensorrt"
    device: str
    precision: str  # "fp32" | "fp16" | "int8"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """[B,3,h,w] float32 -> {"scores", "labels", "boxes"[, "masks"]} numpy arrays."""
        ...
