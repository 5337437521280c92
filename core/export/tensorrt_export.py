"""TensorRT FP32/FP16 engines from the exported ONNX (TensorRT 10 API), when a GPU and the
tensorrt package are present; otherwise a clear error (see `tensorrt_available`)."""

from __future__ import annotations

from pathlib import Path

from core.errors import UserFacingError
from core.infer.runner_tensorrt import tensorrt_available


def export_tensorrt(onnx_path: Path | str, out_path: Path | str, precision: str = "fp16",
                    image_size: tuple[int, int] = (640, 640), max_batch: int = 8, workspace_gb: float = 4.0) -> Path:
    """Build and serialise an engine with a dynamic batch profile 1..``max_batch`` (opt 1)."""
    ok, reason = tensorrt_available()
    if not ok:
        raise UserFacingError(reason)
    if precision not in ("fp32", "fp16"):
        raise UserFacingError(f"TensorRT export takes fp32 or fp16 here, got {precision!r} "
                              "(INT8 is the OpenVINO/NNCF path)")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserFacingError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    h, w = image_size
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (1, 3, h, w), (1, 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise UserFacingError(f"TensorRT could not build a {precision} engine from {onnx_path} (see log above)")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(bytes(engine))
    return out_path
