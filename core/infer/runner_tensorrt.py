"""TensorRT backend (TensorRT 10 tensor API); device buffers are torch CUDA tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import UserFacingError, WeightsError
from core.infer.runner_base import detections_dim

NEEDS = "TensorRT needs an NVIDIA GPU and the tensorrt package (pip install dfine-studio[gpu])"


def tensorrt_available() -> tuple[bool, str]:
    """(usable, reason): tensorrt imports and torch sees a CUDA GPU."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, f"{NEEDS}: the tensorrt package is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, f"{NEEDS}: no CUDA GPU found"
    return True, ""


class TensorRTRunner:
    backend = "tensorrt"

    def __init__(self, path: Path, device: str = "cuda", precision: str = "fp16"):
        ok, reason = tensorrt_available()
        if not ok:
            raise UserFacingError(reason)
        import tensorrt as trt
        import torch

        self.device = device if device.startswith("cuda") else "cuda"
        self.precision = precision
        self._torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as f, trt.Runtime(logger) as runtime:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise WeightsError(f"{path}: TensorRT cannot deserialize it (built by another TensorRT version "
                               "or GPU? re-export on this machine)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = [n for n in names if n != self.input_name]
        self.detections_per_image = detections_dim({n: list(self.engine.get_tensor_shape(n))
                                                    for n in self.output_names})
        self._dtypes = {n: torch.from_numpy(np.zeros(0, trt.nptype(self.engine.get_tensor_dtype(n)))).dtype
                        for n in names}
        self.stream = torch.cuda.Stream(device=self.device)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(batch).to(self.device).to(self._dtypes[self.input_name]).contiguous()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        outs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())  # the upload ran on the default stream
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return {n: (t.float() if t.is_floating_point() else t.long()).cpu().numpy() for n, t in outs.items()}
