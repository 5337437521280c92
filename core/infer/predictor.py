"""`Predictor`: the one inference entry point for every backend.

    predictor = Predictor.load("exports/run1", device="cpu", conf=0.5)
    detections = predictor.predict([bgr_image, ...])

`load` picks the backend from the file or folder; pre- and post-processing are the
shared modules, so every backend returns the same `Detections` for the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserFacingError, WeightsError
from core.infer.detections import Detections
from core.infer.meta import ModelMeta, check_labels_fit, check_meta_fits, find_meta_file, read_meta
from core.infer.postprocess import postprocess
from core.infer.preprocess import preprocess
from core.infer.runner_base import BACKENDS, Runner, backend_name
from core.infer.runner_onnx import OnnxRunner
from core.infer.runner_openvino import OpenVinoRunner
from core.infer.runner_tensorrt import TensorRTRunner

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
TENSORRT_SUFFIXES = (".engine", ".plan", ".trt")



@dataclass(frozen=True)
class ModelFile:
    backend: str
    precision: str
    path: Path


def export_layout(root: Path) -> list[ModelFile]:
    """Every model an export folder can hold (see core.export), whether present or not."""
    root = Path(root)
    return [
        ModelFile("tensorrt", "fp16", root / "tensorrt_fp16.engine"),
        ModelFile("tensorrt", "fp32", root / "tensorrt_fp32.engine"),
        ModelFile("openvino", "int8", root / "openvino_int8" / "model.xml"),
        ModelFile("openvino", "fp16", root / "openvino_fp16" / "model.xml"),
        ModelFile("openvino", "fp32", root / "openvino_fp32" / "model.xml"),
        ModelFile("onnx", "fp32", root / "model.onnx"),
    ]


def _precision_from_name(path: Path) -> str:
    text = str(path).lower()
    return next((p for p in ("int8", "fp16") if p in text), "fp32")


def resolve_model(path: Path | str, device: str = "cpu", backend: str | None = None,
                  precision: str | None = None) -> ModelFile:
    """Which backend and file ``path`` means. A file goes by its suffix; a run folder to its
    best.pt; an export folder to the fastest model it holds for ``device`` (TensorRT on CUDA,
    else OpenVINO INT8 > FP16 > FP32 > ONNX), narrowed by ``backend``/``precision``."""
    path = Path(path)
    backend = None if backend is None else backend_name(backend)
    if backend is not None and backend not in BACKENDS:
        raise UserFacingError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in CHECKPOINT_SUFFIXES:
            return ModelFile("torch", precision or "fp32", path)
        if suffix == ".onnx":
            return ModelFile("onnx", "fp32", path)
        if suffix == ".xml":
            return ModelFile("openvino", precision or _precision_from_name(path), path)
        if suffix in TENSORRT_SUFFIXES:
            return ModelFile("tensorrt", precision or _precision_from_name(path), path)
        raise WeightsError(f"{path}: unknown model file type {suffix!r} (expected .pt, .onnx, .xml or .engine)")
    if not path.is_dir():
        raise WeightsError(f"{path}: no such model file or folder")
    if (path / "model.xml").is_file():
        return ModelFile("openvino", precision or _precision_from_name(path), path / "model.xml")
    for name in ("best.pt", "last.pt"):
        if (path / name).is_file() and backend in (None, "torch"):
            return ModelFile("torch", precision or "fp32", path / name)
    on_gpu = device.lower().startswith("cuda")
    candidates = [m for m in export_layout(path) if m.path.is_file()
                  and (backend is None or m.backend == backend)
                  and (precision is None or m.precision == precision)
                  and (backend == "tensorrt" or on_gpu or m.backend != "tensorrt")]
    if not candidates:
        wanted = " ".join(x for x in (backend, precision) if x)
        raise WeightsError(f"{path}: no {wanted + ' ' if wanted else ''}model found (expected best.pt, "
                           "model.onnx, openvino_*/model.xml or tensorrt_*.engine)")
    return candidates[0]


def make_runner(model_file: ModelFile, device: str = "cpu", threads: int | None = None
                ) -> tuple[Runner, ModelMeta]:
    """Open ``model_file`` with its backend; imports only that backend's library."""
    runner, meta, _ = open_model(model_file, device, threads)
    return runner, meta


def open_model(model_file: ModelFile, device: str = "cpu", threads: int | None = None
               ) -> tuple[Runner, ModelMeta, Path | None]:
    """(runner, meta, the meta.json it came from; None for a checkpoint, which holds its own).
    An export's meta.json is checked against the model's outputs before it is used."""
    runner: Runner
    if model_file.backend == "torch":
        from core.infer.checkpoint_loader import load_checkpoint
        from core.infer.runner_torch import TorchRunner
        from core.model import DeployModel

        model, meta = load_checkpoint(model_file.path, device="cpu")
        runner = TorchRunner(DeployModel(model, meta.top_k), device, half=model_file.precision == "fp16")
        return runner, meta, None
    meta_file = find_meta_file(model_file.path)
    meta = read_meta(meta_file)
    if model_file.backend == "onnx":
        runner = OnnxRunner(model_file.path, device, threads)
    elif model_file.backend == "openvino":
        runner = OpenVinoRunner(model_file.path, device, model_file.precision, threads)
    else:
        runner = TensorRTRunner(model_file.path, device, model_file.precision)
    check_meta_fits(meta, meta_file, model_file.path, getattr(runner, "detections_per_image", None),
                    getattr(runner, "recorded_classes", None))
    return runner, meta, meta_file


class Predictor:
    """Shared preprocess -> backend runner -> shared postprocess."""

    def __init__(self, runner: Runner, meta: ModelMeta, conf: float = 0.5, batch_size: int = 8,
                 meta_file: Path | None = None):
        if not 0.0 <= conf <= 1.0:
            raise UserFacingError(f"confidence threshold must be in [0, 1], got {conf}")
        self.runner = runner
        self.meta = meta
        self.meta_file = meta_file  # where the class list came from (messages)
        self.conf = conf
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: Path | str, device: str = "cpu", conf: float = 0.5, backend: str | None = None,
             precision: str | None = None, threads: int | None = None) -> Predictor:
        """``device`` "auto" means the first CUDA GPU when torch sees one, else the CPU."""
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        runner, meta, meta_file = open_model(resolve_model(path, device, backend, precision), device, threads)
        return cls(runner, meta, conf, meta_file=meta_file)

    @classmethod
    def from_module(cls, model, meta: ModelMeta, device: str = "cpu", conf: float = 0.5) -> Predictor:
        """Torch predictor for a model already in memory (tests, the trainer's validation)."""
        from core.infer.runner_torch import TorchRunner
        from core.model import DeployModel

        return cls(TorchRunner(DeployModel(model, meta.top_k), device), meta, conf)

    @property
    def class_names(self) -> list[str]:
        return self.meta.class_names

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def precision(self) -> str:
        return self.runner.precision

    def predict(self, images: list[np.ndarray], rle: bool = False, conf: float | None = None) -> list[Detections]:
        """BGR uint8 images -> one `Detections` per image, in original pixels; those scoring at
        least ``conf`` (default: the predictor's threshold; validation asks for all down to
        ``core.eval.validate.EVAL_FLOOR``)."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch, sizes = preprocess(chunk, self.meta.image_size)
            raw = self.runner.run(batch)
            check_labels_fit(raw.get("labels"), self.meta, self.meta_file)
            results += postprocess(raw, sizes, self.conf if conf is None else conf, self.meta.class_names, rle=rle)
        return results
