"""The whole export chain for one model: ONNX first (every other format starts from it), then
OpenVINO FP32/FP16/INT8 and TensorRT engines, into one export folder:

    exports/<name>/meta.json            classes, task, input size (what Predictor.load reads)
                   model.onnx
                   openvino_{fp32,fp16,int8}/model.xml (+ .bin)
                   tensorrt_{fp32,fp16}.engine
                   report.json          (core.export.report)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from core.errors import UserFacingError
from core.eval.validate import EVAL_FLOOR, validate
from core.export.openvino_export import export_openvino, quantize_int8
from core.export.tensorrt_export import export_tensorrt
from core.infer.meta import ModelMeta
from core.infer.runner_openvino import output_names
from core.infer.runner_tensorrt import tensorrt_available

FORMATS = ("onnx", "openvino", "tensorrt")
STAGES = ("onnx", "openvino", "int8", "accuracy", "tensorrt", "measure", "report")  # the order `export_all` + report run


class Progress(Protocol):
    """``progress(stage, done, total, message)``: a stage of STAGES starts or moves on (done of total)."""

    def __call__(self, stage: str, done: int = 0, total: int = 0, message: str = "") -> None: ...


def no_progress(stage: str, done: int = 0, total: int = 0, message: str = "") -> None:
    """The default Progress: the human log says enough."""
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportResult:
    folder: Path
    files: dict[tuple[str, str], Path] = field(default_factory=dict)  # (backend, precision) -> model file
    int8_info: dict = field(default_factory=dict)


def project_for(path: Path, explicit: Path | None = None):
    """The project given, else the one holding ``path`` (runs/<name>/best.pt sits 3 levels down)."""
    from core.project import Project

    if explicit is not None:
        return Project.open(explicit)
    start = Path(path).resolve()
    for folder in [start, *start.parents][:4]:
        if (folder / "project.yaml").is_file():
            return Project.open(folder)
    return None


def check_request(formats: Sequence[str], precisions: Sequence[str], has_calibration: bool) -> None:
    """Fail before any work when the request cannot be met (unknown names, TensorRT missing, ...)."""
    bad = [f for f in formats if f not in FORMATS] + [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise UserFacingError(f"unknown format/precision {', '.join(bad)}; formats: {', '.join(FORMATS)}; "
                              f"precisions: {', '.join(PRECISIONS)}")
    if "tensorrt" in formats:

        ok, reason = tensorrt_available()
        if not ok:
            raise UserFacingError(reason)
    if "int8" in precisions and "openvino" in formats and not has_calibration:
        raise UserFacingError("INT8 needs calibration images from a project: pass --project "
                              "(or export from runs/<name>/ inside a project)")


def calibration_batches(paths: list[Path], image_size: tuple[int, int]):
    """Preprocessed [1,3,h,w] inputs, read lazily (NNCF iterates them once per statistic pass)."""
    from core.data.images import read_image
    from core.infer.preprocess import preprocess

    class _Lazy:
        def __len__(self) -> int:
            return len(paths)

        def __iter__(self):
            for p in paths:
                yield preprocess([read_image(p)], image_size)[0]

    return _Lazy()


def limit_queries(meta: ModelMeta, queries: int, trained: int, what: str = "export queries") -> None:
    """Checks a decoder query count against the ``trained`` one (``what`` names the setting in the
    error), records it in the meta and keeps top_k possible (top_k <= queries x classes)."""
    if not 1 <= queries <= trained:
        raise UserFacingError(f"{what}: {queries} asked for, the model has {trained} "
                              f"(use 1..{trained}; fewer is faster, see benchmarks/decoder_queries.py)")
    meta.top_k = min(meta.top_k, queries * meta.num_classes)
    meta.extra["decoder_queries"] = queries


def deploy_model(model, meta: ModelMeta, queries: int | None):
    """The export graph's wrapper; with ``queries`` the meta records them and keeps top_k possible."""
    from core.model import DeployModel

    if queries is not None:
        limit_queries(meta, queries, model.decoder.num_queries)
    return DeployModel(model, meta.top_k, num_queries=queries)


def export_all(model, meta: ModelMeta, out_dir: Path, formats: Sequence[str], precisions: Sequence[str],
               calibration: list[Path] | None = None, accuracy_fn: tuple | None = None, max_drop: float = 0.01,
               opset: int = 17, overflow_fix: str = "enable", queries: int | None = None,
               log: Callable[[str], None] = print, progress: Progress = no_progress) -> ExportResult:
    """Write every requested format x precision; ``accuracy_fn`` = (items, validation_fn) turns on
    NNCF accuracy control for INT8; ``overflow_fix`` is NNCF's (all layers by default, see
    ``core.export.openvino_export.DEFAULT_OVERFLOW_FIX``); ``queries`` runs the exported decoder on
    that many of the encoder's proposals (DeployModel). ``progress`` hears each stage of STAGES."""
    from core.export.onnx_export import export_onnx

    check_request(formats, precisions, bool(calibration))
    out_dir = Path(out_dir)
    deploy = deploy_model(model, meta, queries)  # a bad count fails before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    meta.save(out_dir)
    result = ExportResult(out_dir)
    log(f"ONNX (opset {opset}) ...")
    progress("onnx", 0, 1, f"ONNX (opset {opset})")
    onnx_path = export_onnx(deploy, out_dir / "model.onnx", meta, opset=opset)
    result.files[("onnx", "fp32")] = onnx_path
    if "openvino" in formats:

        plain = [p for p in precisions if p in ("fp32", "fp16")]
        for i, prec in enumerate(plain):
            log(f"OpenVINO {prec.upper()} ...")
            progress("openvino", i, len(plain), f"OpenVINO {prec.upper()}")
            result.files[("openvino", prec)] = export_openvino(onnx_path, out_dir / f"openvino_{prec}", prec)
        if "int8" in precisions:
            assert calibration is not None  # check_request refused INT8 without calibration images
            log(f"OpenVINO INT8 (NNCF, {len(calibration)} calibration images) ...")
            progress("int8", 0, 1, f"OpenVINO INT8 (NNCF, {len(calibration)} calibration images"
                     + (", accuracy control)" if accuracy_fn is not None else ")"))
            xml, info = quantize_int8(onnx_path, out_dir / "openvino_int8",
                                      calibration_batches(calibration, meta.image_size), len(calibration),
                                      validation=accuracy_fn, max_drop=max_drop,
                                      overflow_fix=overflow_fix, log=log, progress=progress)
            result.files[("openvino", "int8")] = xml
            result.int8_info = info
    if "tensorrt" in formats:

        plain = [p for p in precisions if p in ("fp32", "fp16")]
        for i, prec in enumerate(plain):
            log(f"TensorRT {prec.upper()} ...")
            progress("tensorrt", i, len(plain), f"TensorRT {prec.upper()}")
            result.files[("tensorrt", prec)] = export_tensorrt(onnx_path, out_dir / f"tensorrt_{prec}.engine",
                                                               prec, meta.image_size)
    return result


def openvino_validation_fn(items, meta: ModelMeta, conf: float):
    """NNCF accuracy-control metric: our val F1 of a compiled OpenVINO model."""
    from core.infer.postprocess import postprocess
    from core.infer.preprocess import preprocess

    def f1_of(compiled_model, validation_items) -> float:
        outputs = list(compiled_model.outputs)
        names = output_names(compiled_model)

        def predict(images: list[np.ndarray]):
            dets = []
            for image in images:  # one at a time: NNCF may hand over a model compiled for batch 1
                batch, sizes = preprocess([image], meta.image_size)
                res = compiled_model(batch)
                raw = {n: np.asarray(res[o]) for n, o in zip(names, outputs)}
                dets += postprocess(raw, sizes, EVAL_FLOOR, meta.class_names, rle=True)
            return dets

        return validate(predict, list(validation_items), meta.class_names, meta.task, conf).fixed.f1

    return list(items), f1_of
