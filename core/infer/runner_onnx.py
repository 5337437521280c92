"""ONNX Runtime backend: CPU, or the CUDA execution provider when it is installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.errors import UserFacingError, WeightsError
from core.infer.runner_base import detections_dim


class OnnxRunner:
    backend = "onnx"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        self.precision = "fp32"
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise UserFacingError(f"device {device!r}: onnxruntime has no CUDA provider here "
                                      "(install onnxruntime-gpu); use device 'cpu'")
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers: list = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise WeightsError(f"{path}: onnxruntime cannot load it ({exc})") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.detections_per_image = detections_dim({o.name: list(o.shape) for o in self.session.get_outputs()})
        self.recorded_classes = self._recorded_classes()

    def _recorded_classes(self) -> int | None:
        """The class count `dfine export` wrote into the file's metadata (None: not ours / absent)."""
        text = self.session.get_modelmeta().custom_metadata_map.get("dfine_meta")
        try:
            names = json.loads(text).get("class_names") if text else None
        except (ValueError, AttributeError):
            return None
        return len(names) if isinstance(names, list) and names else None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input_name: batch})
        return dict(zip(self.output_names, outs))
