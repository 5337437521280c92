"""project.yaml validation: every mistake is one ConfigError naming file, line, key path, allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import ProjectConfig, apply_overrides, load_config, parse_config_text
from core.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parents[1] / "projects_template" / "project.yaml"


@pytest.fixture(scope="module")
def template_text() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def _err(text: str, name: str = "proj/project.yaml") -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config_text(text, name)
    return str(ei.value)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, l in enumerate(text.splitlines(), 1) if needle in l)


def test_template_is_valid_and_matches_documented_defaults(template_text):
    cfg = parse_config_text(template_text.replace("classes: []", "classes: [a]"))
    t = cfg.train
    assert (t.lr, t.backbone_lr, t.weight_decay, t.ema_decay, t.ema_warmups, t.clip_max_norm) == (
        2.5e-4, None, 1.25e-4, 0.9999, 2000, 0.1)
    assert t.backbone_lr_for(pretrained=True) == 1.25e-5 and t.backbone_lr_for(pretrained=False) == 2.5e-4
    w = t.loss_weights
    assert (w.vfl, w.l1, w.giou, w.fgl, w.ddf, w.mask_bce, w.mask_dice) == (1, 5, 2, 0.15, 1.5, 1, 1)
    assert (cfg.export.calibration_images, cfg.export.accuracy_control, cfg.export.max_drop) == (300, False, 0.01)
    assert cfg.infer.conf == 0.5 and t.best_metric == "f1" and t.device == "auto" and t.wandb is False
    # every field of the model is spelled out in the template (documented), and vice versa
    data = yaml.safe_load(template_text)
    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out
    assert keys(data) == keys(ProjectConfig.model_validate({**data, "classes": ["a"]}).model_dump())
    # and each key line in the template is preceded by a comment line
    lines = template_text.splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith("#") and s.endswith(":") is False and ":" in s and not line.startswith("    "):
            assert lines[i - 1].strip().startswith("#"), f"undocumented template line {i + 1}: {line}"


def test_negative_epochs_message_exact(template_text):
    text = template_text.replace("  epochs: 50", "  epochs: -3")
    msg = _err(text)
    assert msg == f"proj/project.yaml:{_line_of(text, 'epochs: -3')}: train.epochs: must be > 0, got -3"


def test_typo_key_suggests_closest(template_text):
    text = template_text.replace("  epochs: 50", "  epoch: 5")
    msg = _err(text)
    assert f"project.yaml:{_line_of(text, 'epoch: 5')}: train.epoch: unknown key, did you mean 'epochs'?" in msg
    assert "allowed: epochs, time_budget_min, batch_size" in msg


def test_top_level_typo(template_text):
    msg = _err(template_text.replace("task: segment", "tsak: segment").replace("classes: []", "classes: [a]"))
    assert "tsak: unknown key, did you mean 'task'?" in msg


def test_wrong_literal_lists_allowed(template_text):
    msg = _err(template_text.replace("task: segment", "task: segmnt"))
    assert "task: must be one of 'segment' or 'detect', got 'segmnt'" in msg


def test_wrong_type(template_text):
    msg = _err(template_text.replace("  batch_size: 8", "  batch_size: eight"))
    assert "train.batch_size: must be a whole number, got 'eight'" in msg
    msg = _err(template_text.replace("  amp: true", "  amp: maybe"))
    assert "train.amp: must be true or false, got 'maybe'" in msg
    msg = _err(template_text.replace("model:\n", "model: 5\nmodel_x:\n", 1))
    assert "model: must be a section" in msg


def test_list_item_error_names_index(template_text):
    msg = _err(template_text.replace("formats: [onnx, openvino]", "formats: [onnx, tflite]"))
    assert "export.formats[1]: must be one of 'onnx', 'openvino' or 'tensorrt', got 'tflite'" in msg


def test_missing_and_duplicate_classes(template_text):
    msg = _err(template_text.replace("classes: []\n", ""))
    assert "proj/project.yaml: classes: required setting is missing" in msg
    text = template_text.replace("classes: []", "classes: [cat, dog, cat]")
    msg = _err(text)
    assert f":{_line_of(text, 'classes: [cat')}: classes: duplicate class name 'cat' (classes 0 and 2)" in msg
    assert "empty name" in _err(template_text.replace("classes: []", "classes: [cat, '']"))


def test_numeric_class_names_are_text(template_text):
    cfg = parse_config_text(template_text.replace("classes: []", "classes: [1, 2]"))
    assert cfg.classes == ["1", "2"]


def test_yaml_syntax_error_has_line_and_column():
    msg = _err("classes: [a, b]\ntrain:\n  epochs: [1\n  lr: 0.1\n")
    assert msg.startswith("proj/project.yaml:4:") and "YAML syntax error" in msg


def test_cross_field_and_ranges(template_text):
    text = template_text.replace("  flat_epochs: null", "  flat_epochs: 70")
    assert f":{_line_of(text, 'flat_epochs: 70')}: train.flat_epochs: must be <= epochs (50), got 70" in _err(text)
    assert "model.image_size: must be a multiple of 32, got 300" in _err(
        template_text.replace("  image_size: 640", "  image_size: 300"))
    assert "train.device: must be one of auto, cpu, mps, cuda or cuda:N, got 'gpu'" in _err(
        template_text.replace("  device: auto", "  device: gpu", 1))
    assert "infer.conf: must be <= 1, got 1.5" in _err(template_text.replace("  conf: 0.5", "  conf: 1.5"))


def test_not_a_mapping_and_missing_file(tmp_path):
    assert "must be a mapping" in _err("- a\n- b\n")
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "project.yaml"
    bad.write_bytes(b"classes: [a]\n\xff\xfe")
    with pytest.raises(ConfigError, match="not a UTF-8"):
        load_config(bad)


def test_apply_overrides(template_text):
    cfg = parse_config_text(template_text.replace("classes: []", "classes: [a]"))
    new = apply_overrides(cfg, ["train.epochs=5", "export.formats=[onnx]", "train.loss_weights.giou=3",
                                "model.weights=/x/y.pth", "train.lr=1e-4"])
    assert (new.train.epochs, new.export.formats, new.train.loss_weights.giou) == (5, ["onnx"], 3.0)
    assert new.model.weights == "/x/y.pth" and new.train.lr == 1e-4
    assert cfg.train.epochs == 50  # the original is untouched
    assert new.train.flat_epochs_resolved == 2 and new.train.no_aug_epochs_resolved == 1
    whole = parse_config_text(template_text.replace("classes: []", "classes: [a]").replace(
        "  no_aug_epochs: null", "  no_aug_epochs: 80"))
    assert whole.train.no_aug_epochs_resolved == whole.train.epochs == 50  # the whole run, not an error
    for bad, words in [
        (["train.epoch=5"], "train.epoch: unknown key, did you mean 'epochs'?"),
        (["train.epochs=-1"], "train.epochs: must be > 0, got -1"),
        (["trian.epochs=1"], "trian: unknown key, did you mean 'train'?"),
        (["task.x=1"], "task is a value, not a section"),
        (["epochs"], "must look like section.key=value"),
    ]:
        with pytest.raises(ConfigError) as ei:
            apply_overrides(cfg, bad)
        assert str(ei.value).startswith("command line: ") and words in str(ei.value)


def test_mask_head_choices_are_the_builders_presets():
    """project.yaml's allowed mask heads are exactly the presets the model builder knows: a preset
    added to one place only would be either unreachable or a config that fails at build time."""
    from typing import get_args

    from core.config import ModelConfig
    from core.model.builder import MASK_HEADS

    assert get_args(ModelConfig.model_fields["mask_head"].annotation) == tuple(MASK_HEADS)
