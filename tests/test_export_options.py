"""Issue #17: `dfine export` takes its defaults from the config model (no repeated literals), and an
opset below what the deploy graph needs is a config error, not a bare ValueError mid-export."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from core.config import ExportConfig, InferConfig, ProjectConfig
from core.errors import ConfigError
from core.export.cli import add_arguments, export_options


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["run", *argv])


def test_defaults_come_from_the_config_model():
    o = export_options(parse(), None)
    d = ExportConfig()
    assert o.formats == d.formats == ["onnx", "openvino"]
    assert d.precisions == ["fp32", "fp16", "int8"] and o.precisions == ["fp32", "fp16"]  # no project: no INT8 images
    assert (o.accuracy_control, o.max_drop, o.calibration_images, o.opset, o.overflow_fix, o.conf) == (
        d.accuracy_control, d.max_drop, d.calibration_images, d.opset, d.int8_overflow_fix, InferConfig().conf)


def test_project_values_then_flags_win():
    cfg = ProjectConfig(classes=["a"], export={"formats": ["onnx"], "precisions": ["int8"], "max_drop": 0.05,
                                               "calibration_images": 7, "accuracy_control": True,
                                               "queries": 100},
                        infer={"conf": 0.3})
    project = SimpleNamespace(config=cfg)
    o = export_options(parse(), project)
    assert (o.formats, o.precisions, o.max_drop, o.calibration_images, o.accuracy_control, o.conf, o.queries) == (
        ["onnx"], ["int8"], 0.05, 7, True, 0.3, 100)
    o = export_options(parse("--formats", "onnx,OpenVINO", "--precision", "fp16", "--max-drop", "0.02",
                             "--conf", "0.6", "--calibration-images", "3", "--queries", "150"), project)
    assert (o.formats, o.precisions, o.max_drop, o.conf, o.calibration_images, o.queries) == (
        ["onnx", "openvino"], ["fp16"], 0.02, 0.6, 3, 150)
    assert export_options(parse(), None).queries is None  # default: every query the model has


def test_opset_below_17_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        ProjectConfig(classes=["a"], export={"opset": 13})
    assert ProjectConfig(classes=["a"], export={"opset": 18}).export.opset == 18
    from core.export.onnx_export import export_onnx
    from core.infer.meta import ModelMeta

    with pytest.raises(ConfigError, match="ONNX opset must be >= 17.*got 13"):
        export_onnx(None, tmp_path / "m.onnx", ModelMeta(["a"], "segment", (64, 64), 10, "n"), opset=13)
    assert not (tmp_path / "m.onnx").exists()


def test_keys_that_did_nothing_are_gone_but_old_files_still_load(tmp_path):
    cfg = ProjectConfig(classes=["a"], export={"batch_size": 4, "dynamic_batch": True, "opset": 17},
                        infer={"backend": "openvino", "conf": 0.4})
    dumped = cfg.model_dump()
    assert "batch_size" not in dumped["export"] and "dynamic_batch" not in dumped["export"]
    assert "backend" not in dumped["infer"] and dumped["infer"]["conf"] == 0.4
    from pathlib import Path

    template = (Path(__file__).resolve().parents[1] / "projects_template" / "project.yaml").read_text()
    assert "dynamic_batch" not in template and "backend:" not in template
    with pytest.raises(ValueError, match="opsett"):  # other unknown keys are still refused
        ProjectConfig(classes=["a"], export={"opsett": 17})
