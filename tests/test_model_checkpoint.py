"""load_weights: official layouts (EMA preferred), backbone files, ours, class/size mismatches."""

from __future__ import annotations

import pickle

import pytest
import torch

from core.errors import WeightsError
from core.model import build_model, load_weights
from core.model.checkpoint import guess_size
from core.train.checkpoint import save_checkpoint
from core.model.checkpoint import read_training_checkpoint as load_checkpoint

IMG = 320


def _randomised(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
          for k, v in model.state_dict().items()}
    for name in ("up", "reg_scale"):  # one shared parameter stored under two keys
        if f"decoder.{name}" in sd:
            sd[f"decoder.decoder.{name}"] = sd[f"decoder.{name}"]
    return sd


@pytest.fixture(scope="module")
def official_n():
    """An 80-class detector state_dict of size N, as an official checkpoint stores it."""
    return _randomised(build_model("n", 80, task="detect", image_size=640), 1)


def test_official_layout_prefers_ema(tmp_path, official_n):
    ema = {k: (v + 1 if v.is_floating_point() else v) for k, v in official_n.items()}
    path = tmp_path / "dfine_n_coco.pth"
    torch.save({"model": official_n, "ema": {"module": ema, "updates": 10}, "last_epoch": 3}, path)
    model = build_model("n", 80, task="detect", image_size=640)
    report = load_weights(model, path)
    assert report.source == "official-ema"
    assert report.skipped == {} and report.missing == [] and report.reinitialized == []
    sd = model.state_dict()
    assert len(report.loaded) == len(sd)
    for k in ("backbone.stem.stem1.conv.weight", "decoder.dec_bbox_head.2.layers.2.bias",
              "encoder.pan_blocks.0.cv4.conv.weight"):
        assert torch.equal(sd[k], ema[k])


def test_model_only_layout_into_segment_model_with_other_classes(tmp_path, official_n):
    path = tmp_path / "official_model_only.pth"
    torch.save({"model": official_n}, path)
    torch.manual_seed(0)
    model = build_model("n", 3, task="segment", image_size=IMG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_weights(model, path)
    sd = model.state_dict()
    assert report.source == "official-model" and report.checkpoint_num_classes == 80
    head_keys = [k for k in official_n if k.startswith(("decoder.enc_score_head.",
                 "decoder.dec_score_head.", "decoder.denoising_class_embed."))]
    assert set(head_keys) <= set(report.skipped)
    assert all("class" in report.skipped[k] for k in head_keys)
    assert report.skipped["decoder.anchors"].startswith("built for another image size")
    assert set(report.reinitialized) == {"decoder.enc_score_head", "decoder.dec_score_head.0",
                                         "decoder.dec_score_head.1", "decoder.dec_score_head.2",
                                         "decoder.denoising_class_embed"}
    # everything else came from the file ...
    assert torch.equal(sd["encoder.input_proj.0.conv.weight"], official_n["encoder.input_proj.0.conv.weight"])
    assert torch.equal(sd["decoder.dec_bbox_head.0.layers.0.weight"], official_n["decoder.dec_bbox_head.0.layers.0.weight"])
    # ... class heads are freshly initialised with the official prior (sigmoid(b) = 0.01) ...
    assert sd["decoder.dec_score_head.0.weight"].shape == (3, 128)
    torch.testing.assert_close(sd["decoder.enc_score_head.bias"].sigmoid(), torch.full((3,), 0.01))
    assert torch.equal(sd["decoder.denoising_class_embed.weight"][-1], torch.zeros(128))
    # ... the mask head is not in the file and keeps its initialisation
    assert all(k.startswith("mask_head.") for k in report.missing) and report.missing
    assert all(torch.equal(sd[k], before[k]) for k in report.missing)
    assert "re-initialised class heads" in report.summary()


def test_backbone_file_loads_backbone_only(tmp_path):
    bb = _randomised(build_model("s", 80, task="detect", image_size=IMG).backbone, 2)
    path = tmp_path / "PPHGNetV2_B0_stage1.pth"
    torch.save(bb, path)  # the ImageNet files are a bare HGNetv2 state_dict
    model = build_model("s", 5, task="segment", image_size=IMG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_weights(model, path)
    assert report.source == "backbone"
    assert set(report.loaded) == {"backbone." + k for k in bb}
    sd = model.state_dict()
    assert torch.equal(sd["backbone.stages.3.blocks.0.layers.2.conv2.conv.weight"],
                       bb["stages.3.blocks.0.layers.2.conv2.conv.weight"])
    assert torch.equal(sd["decoder.query_pos_head.layers.0.weight"],
                       before["decoder.query_pos_head.layers.0.weight"])


def test_own_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(3)
    model = build_model("n", 4, task="segment", image_size=IMG)
    model.load_state_dict(_randomised(model, 4))
    ema = _randomised(model, 5)
    path = tmp_path / "runs" / "last.pt"  # the trainer's layout (core.train.trainer._payload), trimmed
    save_checkpoint(path, {"model": model.state_dict(), "ema": {"module": ema}, "class_names": list("abcd"),
                           "task": "segment"})
    fresh = build_model("n", 4, task="segment", image_size=IMG)
    report = load_weights(fresh, path)
    assert report.source == "ours-ema" and report.skipped == {} and report.missing == []
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, ema[k]), k
    assert not list(tmp_path.joinpath("runs").glob("*.tmp"))


def test_other_size_fails_naming_the_size(tmp_path, official_n):
    path = tmp_path / "n.pth"
    torch.save({"model": official_n}, path)
    model = build_model("s", 80, task="detect", image_size=IMG)
    with pytest.raises(WeightsError, match=r"size 's'.*looks like a size 'n' model") as err:
        load_weights(model, path)
    assert str(path) in str(err.value)


def test_guess_size_recognises_every_size():
    for size in ("m", "x"):
        sd = build_model(size, 7, task="segment", image_size=IMG).state_dict()
        assert guess_size(sd) == (size, 1.0)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_never_runs_code(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    with pytest.raises(WeightsError, match="weights-only") as err:
        load_weights(build_model("n", 2, task="detect", image_size=IMG), path)
    assert "pwned" not in capsys.readouterr().out
    assert "weights_only=False" not in str(err.value)  # torch's advice would run the code


@pytest.mark.parametrize("loader", [
    lambda p: load_weights(build_model("n", 2, task="detect", image_size=IMG), p),
    load_checkpoint,
], ids=["load_weights", "load_checkpoint"])
def test_pickled_objects_are_named_and_never_loaded(tmp_path, capsys, loader):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, path)  # the torch zip layout, as a real attack would use
    with pytest.raises(WeightsError) as err:
        loader(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not a weights-only checkpoint")
    assert "GLOBAL print" in msg  # the refused global is named
    assert "torch.save(model.state_dict()" in msg and "weights_only" not in msg
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("loader", [
    lambda p: load_weights(build_model("n", 2, task="detect", image_size=IMG), p),
    load_checkpoint,
], ids=["load_weights", "load_checkpoint"])
def test_truncated_and_foreign_files_say_so(tmp_path, loader):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(4096)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    for path in (truncated, text):
        with pytest.raises(WeightsError, match=r"not a readable torch checkpoint \(truncated, corrupt"):
            loader(path)


@pytest.mark.parametrize("content, match", [
    (None, "not found"),
    ({"optimizer": {"lr": torch.tensor(1.0)}, "epoch": 3}, "no weights found"),
    ([1, 2, 3], "not a checkpoint"),
])
def test_bad_files_raise_weights_error(tmp_path, content, match):
    path = tmp_path / "w.pth"
    if content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=match):
        load_weights(build_model("n", 2, task="detect", image_size=IMG), path)
