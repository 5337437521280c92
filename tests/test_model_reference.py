"""Same numbers as the official D-FINE N (weights + input + outputs in ../shared/reference).

`dfine_n_nc80_forward_wc.pt` is well-conditioned: its 300th and 301st encoder scores are 6.2e-5
apart (~260 ulps), so every CPU selects the same 300 queries, and image -> backbone -> encoder ->
decoder, all ours, must reproduce all 300 output rows within 1e-3. The order of rows inside the
top 300 follows near-tied scores, so rows are matched one-to-one first (box L1, as the fixture's
README says) and then compared element-wise.

The older `dfine_n_nc80_forward.pt` sits on ties at its 300th place (1 ulp of encoder noise moves
its boxes by 0.8), so it is only used where no CPU-dependent selection is involved: the encoder,
and a demonstration of why the end-to-end check needs the well-conditioned file.
"""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from core.model import build_model

TOL = 1e-3
WELL_CONDITIONED = "dfine_n_nc80_forward_wc.pt"
TIED = "dfine_n_nc80_forward.pt"


def load_reference(reference_dir, name: str = WELL_CONDITIONED):
    """(fixture dict, our N detector in eval mode with the fixture's weights)."""
    ref = torch.load(reference_dir / name, weights_only=True)
    model = build_model("n", 80, task="detect", image_size=640).eval()
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ref["state_dict_fp16"].items()}
    model.load_state_dict(sd, strict=True)
    return ref, model


def match_rows(logits, boxes, ref_logits, ref_boxes) -> tuple[float, float, int]:
    """Match our 300 rows to the reference's one-to-one on box L1; (max logit diff, max box diff,
    number of rows matched)."""
    cost = torch.cdist(boxes.double(), ref_boxes.double(), p=1)
    rows, cols = linear_sum_assignment(cost.numpy())
    rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
    return ((logits[rows] - ref_logits[cols]).abs().max().item(),
            (boxes[rows] - ref_boxes[cols]).abs().max().item(), len(rows))


@pytest.fixture(scope="module")
def wc(reference_dir):
    return load_reference(reference_dir, WELL_CONDITIONED)


@pytest.fixture(scope="module")
def tied(reference_dir):
    return load_reference(reference_dir, TIED)


@pytest.mark.isa_sensitive
@pytest.mark.parametrize("which", ["wc", "tied"])
def test_encoder_outputs_match(which, request):
    ref, model = request.getfixturevalue(which)
    x = ref["input_rgb_uint8"].float() / 255
    with torch.no_grad():
        feats = model.encoder(model.backbone(x))
    assert len(feats) == len(ref["encoder_outputs"]) == 2
    for ours, theirs in zip(feats, ref["encoder_outputs"]):
        assert ours.shape == theirs.shape
        assert (ours - theirs.float()).abs().max().item() < 1e-5


@pytest.mark.isa_sensitive
def test_end_to_end_every_matched_row_within_tolerance(wc):
    """The model issue's criterion: no selection replay, all 300 rows within 1e-3."""
    ref, model = wc
    with torch.no_grad():
        out = model(ref["input_rgb_uint8"].float() / 255)
    logit_err, box_err, n = match_rows(out["pred_logits"][0], out["pred_boxes"][0],
                                       ref["pred_logits"][0], ref["pred_boxes"][0])
    print(f"well-conditioned fixture, end to end: {n} rows, max diff logits {logit_err:.2e} boxes {box_err:.2e}")
    assert n == 300
    assert logit_err <= TOL and box_err <= TOL


@pytest.mark.isa_sensitive
def test_decoder_on_reference_features_every_matched_row(wc):
    """The decoder alone, fed the official encoder outputs."""
    ref, model = wc
    with torch.no_grad():
        out = model.decoder([f.float() for f in ref["encoder_outputs"]])
    assert set(out) == {"pred_logits", "pred_boxes"}
    logit_err, box_err, n = match_rows(out["pred_logits"][0], out["pred_boxes"][0],
                                       ref["pred_logits"][0], ref["pred_boxes"][0])
    assert n == 300 and logit_err <= TOL and box_err <= TOL


def _worst_after_one_ulp(ref, model, matched: bool) -> float:
    """Largest box change when every encoder output element moves by 1 ulp (2 random directions)."""
    feats = [f.float() for f in ref["encoder_outputs"]]
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for _ in range(2):
            away = [torch.where(torch.rand(f.shape, generator=gen) < 0.5, -torch.inf, torch.inf) for f in feats]
            nudged = [torch.nextafter(f, a) for f, a in zip(feats, away)]
            assert max((n - f).abs().max().item() for n, f in zip(nudged, feats)) < 1e-6
            out = model.decoder(nudged)
            if matched:
                _, box_err, _ = match_rows(out["pred_logits"][0], out["pred_boxes"][0],
                                           ref["pred_logits"][0], ref["pred_boxes"][0])
            else:
                box_err = (out["pred_boxes"] - ref["pred_boxes"]).abs().max().item()
            worst = max(worst, box_err)
    return worst


def test_row_order_is_ill_conditioned_but_matched_rows_are_not(tied, wc):
    """Why rows are matched before comparing: 1 ulp on the old fixture's own encoder outputs
    reorders near-tied queries and moves the row-by-row output by far more than 1e-3, while the
    well-conditioned fixture's matched rows stay within 1e-3 under the same nudge."""
    assert _worst_after_one_ulp(*tied, matched=False) > 100 * TOL
    assert _worst_after_one_ulp(*wc, matched=True) <= TOL
