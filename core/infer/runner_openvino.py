"""OpenVINO backend. CPU by default; other device names (GPU, NPU, AUTO, GPU.1) are
passed through to OpenVINO unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import UserFacingError, WeightsError
from core.infer.int8_info import int8_portability_warning, read_int8_info
from core.infer.runner_base import detections_dim

OUTPUT_NAMES = ("labels", "boxes", "scores", "masks")
# CPU compile settings (why: in OpenVinoRunner); benchmarks/anchor_yolo26.py gives YOLO26 the same
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}


def openvino_device(device: str) -> str:
    """'cpu' -> 'CPU'; OpenVINO names pass through; CUDA names are not OpenVINO devices."""
    if device.lower().startswith("cuda"):
        raise UserFacingError(f"device {device!r} is a CUDA name; OpenVINO takes CPU, GPU, NPU or AUTO")
    return device.upper() if device.lower() in ("cpu", "gpu", "npu", "auto") else device


def output_names(compiled) -> list[str]:
    """Our output names; a tensor can carry several ('masks' and its producer's), prefer ours."""
    return [next((n for n in OUTPUT_NAMES if n in o.get_names()), o.get_any_name()) for o in compiled.outputs]


def _static_dims(shape) -> list:
    """An OpenVINO PartialShape as a list: ints where static, None where dynamic."""
    if shape.rank.is_dynamic:
        return []
    return [d.get_length() if d.is_static else None for d in shape]


class OpenVinoRunner:
    backend = "openvino"

    def __init__(self, path: Path, device: str = "cpu", precision: str = "fp32", threads: int | None = None):
        import openvino as ov

        self.device = openvino_device(device)
        self.precision = precision
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise WeightsError(f"{path}: OpenVINO cannot read it ({exc})") from exc
        self.portability_warning = self._check_int8_portability(model) if self.device == "CPU" else None
        config: dict = {"PERFORMANCE_HINT": "LATENCY"}
        if self.device == "CPU":
            # Float parts run in f32: the CPU plugin would otherwise pick bf16 on CPUs that have it,
            # changing results. An FP16 IR is then a half-size file whose weights are expanded to
            # f32 at load time (OpenVINO's documented CPU behaviour).
            # No runtime int8 requantization of activations in layers with compressed (int8/fp16)
            # weights: the plugin turns it on by CPU class (VNNI/AMX), so the same IR computed
            # differently per CPU, and it is not what NNCF calibrated. (It also picks kernels oneDNN
            # then refuses under ONEDNN_MAX_CPU_ISA, the knob the tests use to emulate older CPUs.)
            config.update(CPU_CONFIG)
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(model, self.device, config)
        except Exception as exc:
            raise UserFacingError(f"OpenVINO cannot compile {path} for device {self.device!r} ({exc}); "
                                  f"available devices: {core.available_devices}") from exc
        self.request = self.compiled.create_infer_request()
        self.output_names = output_names(self.compiled)
        self.detections_per_image = detections_dim(
            {n: _static_dims(o.get_partial_shape()) for n, o in zip(self.output_names, self.compiled.outputs)})

    @staticmethod
    def _check_int8_portability(model) -> str | None:
        import warnings


        message = int8_portability_warning(read_int8_info(model))
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        return message

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        results = self.request.infer({0: batch})
        return {name: np.array(results[out]) for name, out in zip(self.output_names, self.compiled.outputs)}

