"""Issue #17: the CLI's defaults come from the config model (one source), and one name per backend."""

from __future__ import annotations

import pytest

from core.cli import build_parser
from core.config import ExportConfig, InferConfig


def parsed(verb: str, *args: str):
    return build_parser(verb).parse_args([verb, *args])


def test_bench_and_infer_defaults_are_the_config_defaults(tmp_path) -> None:
    bench = parsed("bench")
    assert bench.conf == InferConfig().conf
    assert bench.precision.split(",") == ExportConfig().precisions
    assert bench.calibration_images == ExportConfig().calibration_images
    assert parsed("infer", "m", "0").conf == InferConfig().conf


@pytest.mark.parametrize("old", ["onnxruntime", "onnx"])
def test_one_backend_name_old_one_accepted(old: str) -> None:
    from core.infer.runner_base import BACKENDS, backend_name

    assert parsed("infer", "m", "0", "--backend", old).backend == "onnx"
    assert backend_name(old) == "onnx" and "onnxruntime" not in BACKENDS
    assert set(ExportConfig.model_fields["formats"].annotation.__args__[0].__args__) <= set(BACKENDS)
