"""OpenVINO IR from the exported ONNX: FP32, FP16 (weights compressed), and INT8 with
NNCF post-training quantization, optionally with accuracy control on our val F1."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from pathlib import Path

import numpy as np

from core import cpu_isa
from core.infer.int8_info import record_int8_info

# Parts kept in float for INT8: the class/box heads, the mask embedding MLP and the mask dot
# product (found structurally from the "scores"/"masks" outputs, so module names don't matter).
# They are a tiny share of the compute but decide scores, box edges and mask borders.
SENSITIVE_PATTERNS = [r".*dec_score_head.*", r".*dec_bbox_head.*", r".*query_mlp.*", r".*mask_embed.*"]
# NNCF's overflow fix: "enable" quantizes weights to 7 bits in every layer, so an int8 x int8
# multiply-add cannot saturate int16 on CPUs without VNNI (AVX2, AVX-512 without VNNI). NNCF's own
# default fixes the first layer only, which is right on VNNI CPUs but lost most of the agreement
# on an AVX2 CPU (INT8-vs-FP32 F1 0.03 vs 0.29 with the fix); the 7th bit costs little elsewhere.
OVERFLOW_FIX_CHOICES = ("enable", "first_layer_only", "disable")
DEFAULT_OVERFLOW_FIX = "enable"
# rt_info path under which the INT8 IR records how and where it was quantized
PASS_THROUGH = {"Sigmoid", "Reshape", "Convert", "Transpose", "Add", "Multiply", "Squeeze", "Unsqueeze",
                "Concat", "Gather", "GatherElements"}


def export_openvino(onnx_path: Path | str, out_dir: Path | str, precision: str = "fp32") -> Path:
    """``out_dir``/model.xml (+ .bin); FP16 halves the weights file (``compress_to_fp16``)."""
    import openvino as ov

    if precision not in ("fp32", "fp16"):
        raise ValueError(f"OpenVINO float export takes fp32 or fp16, got {precision!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    xml = out_dir / "model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
    return xml


def _matmul_above(result, max_depth: int = 8) -> str | None:
    """Name of the first MatMul on the first-input chain above an output node."""
    node = result.input_value(0).get_node()
    for _ in range(max_depth):
        if node.get_type_name() == "MatMul":
            return node.get_friendly_name()
        if node.get_type_name() not in PASS_THROUGH | {"TopK"} or node.get_input_size() == 0:
            return None
        node = node.input_value(0).get_node()
    return None


def ignored_scope(model, patterns: list[str] | None = None):
    """nncf.IgnoredScope over the sensitive parts present in ``model`` (None when none are)."""
    import re

    import nncf

    patterns = SENSITIVE_PATTERNS if patterns is None else patterns
    ops = model.get_ops()
    names = [op.get_friendly_name() for op in ops]
    used = [p for p in patterns if any(re.fullmatch(p, n) for n in names)]
    heads = [n for r in model.get_results() if (n := _matmul_above(r)) is not None]
    if not used and not heads:
        return None
    return nncf.IgnoredScope(names=sorted(set(heads)), patterns=used, validate=False)


def int8_settings(overflow_fix: str, subset_size: int) -> dict:
    """What the report and the IR record: NNCF version and settings, and the CPU it ran on."""
    import nncf


    return {"nncf_version": nncf.__version__, "preset": "mixed", "overflow_fix": overflow_fix,
            "subset_size": subset_size, "cpu": cpu_isa.detect().as_dict()}


def _advanced_parameters(overflow_fix: str):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    if overflow_fix not in OVERFLOW_FIX_CHOICES:
        raise ValueError(f"overflow_fix must be one of {', '.join(OVERFLOW_FIX_CHOICES)}, got {overflow_fix!r}")
    return AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix))


def quantize_int8(onnx_path: Path | str, out_dir: Path | str, calibration: Iterable[np.ndarray],
                  subset_size: int, keep_sensitive_float: bool = True,
                  validation: tuple[Iterable, Callable] | None = None, max_drop: float = 0.01,
                  overflow_fix: str = DEFAULT_OVERFLOW_FIX, model_type: str | None = None,
                  log: Callable[[str], None] = print,
                  progress: Callable[..., None] | None = None) -> tuple[Path, dict]:
    """INT8 IR with NNCF. ``calibration`` yields preprocessed [1,3,h,w] float32 batches.

    ``calibration`` may be a lazy iterable with ``__len__``.
    ``validation`` = (items, fn(compiled_model, items) -> F1) switches on
    ``nncf.quantize_with_accuracy_control`` with an absolute ``max_drop``.
    ``overflow_fix`` is NNCF's (see DEFAULT_OVERFLOW_FIX for why every layer by default).
    ``model_type`` "transformer" is NNCF's ModelType.TRANSFORMER (a lever measured by
    benchmarks/anchor_yolo26.py --levers; None = NNCF's default).
    Returns the xml path and what was done (for the export report; also stored in the IR's rt_info).
    """
    import nncf
    import openvino as ov

    advanced = _advanced_parameters(overflow_fix)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    if isinstance(calibration, Sized):
        count = len(calibration)
    else:
        calibration = list(calibration)
        count = len(calibration)
    dataset = nncf.Dataset(calibration)  # iterated lazily: 300 full-size inputs would be GBs
    scope = ignored_scope(model) if keep_sensitive_float else None
    kwargs: dict = {"subset_size": min(subset_size, count), "preset": nncf.QuantizationPreset.MIXED}
    if scope is not None:
        kwargs["ignored_scope"] = scope
    info: dict = {"calibration_images": min(subset_size, count),
                  "ignored": (scope.names + scope.patterns) if scope else [],
                  "accuracy_control": validation is not None,
                  **int8_settings(overflow_fix, min(subset_size, count))}
    if model_type is not None:
        kwargs["model_type"] = nncf.ModelType(model_type)
        info["model_type"] = model_type
    if validation is None:
        quantized = nncf.quantize(model, dataset, advanced_parameters=advanced, **kwargs)
    else:
        items, fn = validation
        items = list(items)
        history: list[float] = []

        def recorded(compiled_model, data) -> float:
            value = float(fn(compiled_model, data))
            history.append(value)
            return value

        log(f"INT8 with accuracy control (max F1 drop {max_drop}, {len(items)} val images)")
        if progress is not None:  # core.export.pipeline.Progress: the "accuracy" stage starts
            progress("accuracy", 0, 1, f"INT8 accuracy control (max F1 drop {max_drop})")
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration_dataset=dataset, validation_dataset=nncf.Dataset(items),
            validation_fn=recorded, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=advanced, **kwargs)
        # NNCF validates the FP32 model first, then the INT8 model and each partly-reverted one;
        # the report measures the returned model's F1 itself
        info.update(max_drop=max_drop, val_f1_history=[round(v, 4) for v in history])
    record_int8_info(quantized, info)
    xml = out_dir / "model.xml"
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return xml, info
