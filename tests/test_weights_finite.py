"""NaN/inf weights are refused by name (issue #35): a downloaded or added file, and a training
checkpoint opened for inference / val / analyze, instead of a model that silently finds nothing."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch
from weights_server import serve_weights

from core.bench import synthetic_model
from core.cli import main as dfine_main
from core.errors import WeightsError
from core.model.checkpoint import first_non_finite, load_trained_model
from core.model.hgnetv2 import HGNetv2
from core.weights import fetch, find_entry, verify_file

B0_FILE = "PPHGNetV2_B0_stage1.pth"
CLASSES = ["circle", "triangle", "rectangle"]


def b0_with(value: float, key_index: int = 5) -> tuple[bytes, str]:
    """An official-layout B0 backbone file whose `key_index`-th float tensor holds `value` once."""
    sd = HGNetv2("B0", use_lab=True).state_dict()
    key = [k for k, v in sd.items() if v.is_floating_point()][key_index]
    sd[key].view(-1)[0] = value
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue(), "backbone." + key


@pytest.mark.parametrize("value,kind", [(float("nan"), "NaN"), (float("inf"), "inf"), (-float("inf"), "inf")])
def test_verify_names_the_file_and_the_first_bad_tensor(tmp_path, value, kind):
    data, key = b0_with(value)
    path = tmp_path / B0_FILE
    path.write_bytes(data)
    with pytest.raises(WeightsError, match=rf"{path}: the hgnetv2_b0 weights hold {kind} values "
                                           rf"\(first in tensor {key}\)"):
        verify_file(path, find_entry("hgnetv2_b0"))
    path.write_bytes(b0_with(0.5)[0])
    assert "B0 backbone" in verify_file(path, find_entry("hgnetv2_b0"))


def test_weights_add_refuses_a_nan_file_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DFINE_WEIGHTS_DIR", str(tmp_path / "cache"))
    data, key = b0_with(float("nan"), key_index=0)
    src = tmp_path / B0_FILE
    src.write_bytes(data)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = dfine_main(["weights", "add", str(src)])
    assert code == 2 and f"{src}: the hgnetv2_b0 weights hold NaN values (first in tensor {key})" in err.getvalue()
    assert "Traceback" not in err.getvalue() and not (tmp_path / "cache" / B0_FILE).exists()


def test_a_downloaded_nan_file_is_refused_and_deleted(tmp_path, monkeypatch):
    with serve_weights(monkeypatch) as srv:
        srv.files[B0_FILE], key = b0_with(float("nan"))
        with pytest.raises(WeightsError, match=rf"refused hgnetv2_b0 .*NaN values \(first in tensor {key}\)"):
            fetch(find_entry("hgnetv2_b0"), tmp_path)
    assert not [p.name for p in tmp_path.rglob("*.pth*")]  # neither the file nor its .part is kept


@pytest.fixture(scope="module")
def state():
    return synthetic_model("n", len(CLASSES), 256, seed=1).state_dict()


def save_checkpoint(path, model_sd, ema_sd=None):
    config = {"classes": CLASSES, "task": "segment", "model": {"size": "n", "image_size": 256}}
    obj = {"model": model_sd, "config": config, "class_names": CLASSES}
    if ema_sd is not None:
        obj["ema"] = {"module": ema_sd, "updates": 3}
    torch.save(obj, path)
    return path


def with_nan(sd: dict, index: int = 10) -> tuple[dict, str]:
    sd = {k: v.clone() for k, v in sd.items()}
    key = [k for k, v in sd.items() if v.is_floating_point()][index]
    sd[key].view(-1)[-1] = float("nan")
    return sd, key


def test_a_checkpoint_with_nan_ema_weights_is_refused_for_inference(tmp_path, state):
    from core.infer.predictor import Predictor

    bad, key = with_nan(state)
    path = save_checkpoint(tmp_path / "best.pt", state, bad)
    message = (rf"{path}: the EMA weights hold NaN values \(first in tensor {key}\).*not used; its raw 'model' "
               r"weights are finite \(`dfine val --no-ema`")
    with pytest.raises(WeightsError, match=message):
        Predictor.load(path)
    model, _, _ = load_trained_model(path, use_ema=False)  # the raw weights still load
    assert first_non_finite(model.state_dict()) is None


def test_a_checkpoint_with_nan_model_weights_is_refused(tmp_path, state):
    bad, key = with_nan(state, index=3)
    path = save_checkpoint(tmp_path / "last.pt", bad)
    with pytest.raises(WeightsError, match=rf"{path}: the model weights hold NaN values \(first in tensor {key}\)"):
        load_trained_model(path)
    both = save_checkpoint(tmp_path / "both.pt", bad, with_nan(state)[0])
    with pytest.raises(WeightsError, match=r"EMA weights hold NaN.*diverged; not used$"):
        load_trained_model(both)
