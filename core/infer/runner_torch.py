"""Torch backend: our checkpoint (or any in-memory model) through `core.model.DeployModel`,
the same top-K graph that is exported to ONNX."""

from __future__ import annotations

import numpy as np
import torch

from core.errors import UserFacingError
from core.model import DeployModel


class TorchRunner:
    backend = "torch"

    def __init__(self, deploy_model: DeployModel, device: str = "cpu", half: bool = False):
        if device.startswith("cuda") and not torch.cuda.is_available():

            raise UserFacingError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
        self.device = device
        self.precision = "fp16" if half else "fp32"
        self.module = deploy_model.eval().to(device)
        self.dtype = torch.float16 if half else torch.float32
        if half:
            self.module.half()
        self.output_names = deploy_model.output_names
        self.detections_per_image = deploy_model.top_k

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(batch).to(self.device, non_blocking=True).to(self.dtype)
        outs = self.module(x)
        # .cpu() synchronises, so a timer around run() measures the whole forward
        return {name: t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy()
                for name, t in zip(self.output_names, outs)}
