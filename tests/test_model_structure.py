"""The detector is the official D-FINE key for key; the seg model only adds `mask_head.*`."""

from __future__ import annotations

import json

import pytest
import torch

from core.errors import ConfigError
from core.model import SIZE_CONFIGS, build_model

PAPER_SEG_M = {"n": 5.1, "s": 11.9, "m": 21.2, "l": 32.8, "x": 64.3}  # 59 classes


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared up/reg_scale counted once


@pytest.mark.parametrize("size", ["n", "s", "m", "l", "x"])
def test_detect_state_dict_equals_official(size, reference_dir):
    ref = json.loads((reference_dir / f"dfine_{size}_nc80_keys.json").read_text())
    model = build_model(size, 80, task="detect")
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    theirs = [(k, list(v)) for k, v in ref["state_dict"].items()]
    assert len(ours) == len(theirs)
    first_diff = next(((a, b) for a, b in zip(ours, theirs) if a != b), None)
    assert first_diff is None, f"first differing key/shape (ours, official): {first_diff}"
    assert _n_params(model) == ref["num_parameters"]


@pytest.mark.parametrize("size", ["n", "s", "m", "l", "x"])
def test_segment_adds_only_mask_head_and_matches_paper_size(size):
    det = build_model(size, 59, task="detect")
    seg = build_model(size, 59, task="segment")
    det_keys = list(det.state_dict())
    seg_keys = list(seg.state_dict())
    assert seg_keys[: len(det_keys)] == det_keys
    assert all(k.startswith("mask_head.") for k in seg_keys[len(det_keys):])
    extra = _n_params(seg) - _n_params(det)
    assert 1.0e6 < extra < 2.0e6  # paper: the mask head adds ~1.3-1.7 M
    assert abs(_n_params(seg) / 1e6 - PAPER_SEG_M[size]) / PAPER_SEG_M[size] < 0.05


def test_size_hyperparameters_are_readable():
    assert SIZE_CONFIGS["n"].feat_strides == (16, 32)
    assert SIZE_CONFIGS["s"].feat_strides == (8, 16, 32)
    assert SIZE_CONFIGS["x"].reg_scale == 8.0 and SIZE_CONFIGS["x"].enc_hidden_dim == 384
    assert [SIZE_CONFIGS[s].num_layers for s in "nsmlx"] == [3, 3, 4, 6, 6]
    assert {SIZE_CONFIGS[s].num_queries for s in "nsmlx"} == {300}
    assert {SIZE_CONFIGS[s].num_denoising for s in "nsmlx"} == {100}


def test_large_sizes_freeze_stem_and_norms_like_official():
    l_model = build_model("l", 2, task="detect", image_size=320)
    assert not any(p.requires_grad for p in l_model.backbone.stem.parameters())
    assert all(p.requires_grad for p in l_model.backbone.stages.parameters())
    s_model = build_model("s", 2, task="detect", image_size=320)
    assert all(p.requires_grad for p in s_model.backbone.parameters())


@pytest.mark.parametrize("kwargs, word", [
    ({"size": "xl", "num_classes": 3}, "size"),
    ({"size": "s", "num_classes": 0}, "num_classes"),
    ({"size": "s", "num_classes": 3, "task": "pose"}, "task"),
    ({"size": "s", "num_classes": 3, "image_size": 650}, "image_size"),
])
def test_bad_build_arguments_raise_config_error(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        build_model(**kwargs)


def test_lite_mask_head_only_narrows_the_mask_head():
    paper = build_model("s", 4, task="segment", image_size=160)
    lite = build_model("s", 4, task="segment", image_size=160, mask_head="lite")
    assert list(paper.state_dict()) == list(lite.state_dict())  # same modules, narrower convs
    sp, sl = paper.state_dict(), lite.state_dict()
    assert all(sp[k].shape == sl[k].shape for k in sp if not k.startswith("mask_head."))
    assert sl["mask_head.pixel_decoder.out_conv.weight"].shape == (32, 64, 3, 3)
    assert sl["mask_head.query_mlp.layers.2.weight"].shape == (32, 256)
    with torch.no_grad():
        out = lite.eval()(torch.rand(1, 3, 160, 160))
    assert out["pred_masks"].shape == (1, 300, 40, 40)
    with pytest.raises(ConfigError, match="mask_head"):
        build_model("s", 4, mask_head="huge")
