"""Same numbers as the official D-FINE N (weights + input + outputs in ../shared/reference).

The fixture's query selection (top-300 of the encoder scores) contains exact and 1-ulp ties:
the official code itself, run on this CPU, lands 2e-7 away in the encoder outputs and swaps
~100 tied queries (max diff 0.012 logits / 0.82 boxes vs the fixture; bitwise-equal encoder
outputs to ours). So the decoder is checked element-wise on the fixture's own encoder
outputs, and the end-to-end output as a one-to-one matching of queries.
"""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from core.model import build_model

TOL = 1e-3


@pytest.fixture(scope="module")
def ref_and_model(reference_dir):
    ref = torch.load(reference_dir / "dfine_n_nc80_forward.pt", weights_only=True)
    model = build_model("n", 80, task="detect", image_size=640).eval()
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ref["state_dict_fp16"].items()}
    model.load_state_dict(sd, strict=True)
    return ref, model


def test_encoder_outputs_match(ref_and_model):
    ref, model = ref_and_model
    x = ref["input_rgb_uint8"].float() / 255
    with torch.no_grad():
        feats = model.encoder(model.backbone(x))
    assert len(feats) == len(ref["encoder_outputs"]) == 2
    for ours, theirs in zip(feats, ref["encoder_outputs"]):
        assert ours.shape == theirs.shape
        assert (ours - theirs.float()).abs().max().item() < 1e-5


def test_decoder_matches_elementwise_on_reference_features(ref_and_model):
    ref, model = ref_and_model
    with torch.no_grad():
        out = model.decoder([f.float() for f in ref["encoder_outputs"]])
    assert set(out) == {"pred_logits", "pred_boxes"}
    assert (out["pred_logits"] - ref["pred_logits"]).abs().max().item() <= TOL
    assert (out["pred_boxes"] - ref["pred_boxes"]).abs().max().item() <= TOL


def test_end_to_end_queries_match_one_to_one(ref_and_model):
    ref, model = ref_and_model
    x = ref["input_rgb_uint8"].float() / 255
    with torch.no_grad():
        out = model(x)
    ours = torch.cat([out["pred_logits"][0], out["pred_boxes"][0]], -1).double()
    theirs = torch.cat([ref["pred_logits"][0], ref["pred_boxes"][0]], -1).double()
    cost = torch.cdist(ours, theirs, p=float("inf"))
    rows, cols = linear_sum_assignment(cost.numpy())
    matched = cost[rows, cols] <= TOL
    # Only queries swapped across the 300th-place tie can differ (6 of 300 on this machine).
    assert matched.float().mean().item() >= 0.97
    # The confident end of the list is unaffected by ties: the best 50 reference queries match.
    best = ref["pred_logits"][0].max(-1).values.argsort(descending=True)[:50]
    matched_ref = set(cols[matched.numpy()].tolist())
    assert all(int(i) in matched_ref for i in best)
