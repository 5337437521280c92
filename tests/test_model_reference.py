"""Same numbers as the official D-FINE N (weights + input + outputs in ../shared/reference).

The fixture's top-300 query selection sits on a plateau of near-equal encoder scores: around
the 300th place ~30 neighbouring scores are exactly equal or 1 ulp apart. A 1-ulp change of the
fixture's *own* encoder outputs already reorders that plateau and moves the output boxes by up
to 0.8 (`test_fixture_query_selection_is_ill_conditioned`), so no implementation can meet an
element-wise 1e-3 end to end unless its backbone and encoder are bitwise equal to the fixture
machine's. Ours land within 2e-7 (~1 ulp; every thread count / oneDNN ISA / input-scaling
variant tried on this CPU gives the same picture), and so does the official code: run here
(`benchmarks/official_parity.py`), its encoder outputs are bitwise equal to ours and its end
to end output misses the fixture by the same 0.012 / 0.82. So the end-to-end output is checked
element-wise with the fixture's query selection replayed, and as a one-to-one matching of
queries without it; the decoder is checked element-wise on the fixture's own encoder outputs.
"""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from core.model import build_model

TOL = 1e-3


def load_reference(reference_dir):
    """(fixture dict, our N detector in eval mode with the fixture's weights)."""
    ref = torch.load(reference_dir / "dfine_n_nc80_forward.pt", weights_only=True)
    model = build_model("n", 80, task="detect", image_size=640).eval()
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ref["state_dict_fp16"].items()}
    model.load_state_dict(sd, strict=True)
    return ref, model


@pytest.fixture(scope="module")
def ref_and_model(reference_dir):
    return load_reference(reference_dir)


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


def _reference_query_indices(model, ref) -> torch.Tensor:
    """The top-300 selection the fixture's own encoder outputs give (the official selection)."""
    dec = model.decoder
    memory, shapes = dec._get_encoder_input([f.float() for f in ref["encoder_outputs"]])
    _, valid = dec._anchors_for(memory, shapes)
    scores = dec.enc_score_head(dec.enc_output(valid.to(memory.dtype) * memory)).max(-1).values
    return dec._query_indices(scores, dec.num_queries)


def test_end_to_end_matches_elementwise_with_the_reference_query_selection(ref_and_model,
                                                                           monkeypatch):
    """Image -> backbone -> encoder -> decoder, all ours; only the tie order at the query
    selection is taken from the fixture. Measured here: 5e-6 (logits), 1e-4 (boxes)."""
    ref, model = ref_and_model
    with torch.no_grad():
        ref_idx = _reference_query_indices(model, ref)
        monkeypatch.setattr(model.decoder, "_query_indices", lambda scores, topk: ref_idx)
        out = model(ref["input_rgb_uint8"].float() / 255)
    assert (out["pred_logits"] - ref["pred_logits"]).abs().max().item() <= TOL
    assert (out["pred_boxes"] - ref["pred_boxes"]).abs().max().item() <= TOL


def test_fixture_query_selection_is_ill_conditioned(ref_and_model):
    """Why the unreplayed end-to-end check is a matching: 1 ulp of noise on the fixture's own
    encoder outputs moves the official outputs by far more than 1e-3. If this ever fails, the
    fixture became well-conditioned: then assert the plain end-to-end output element-wise."""
    ref, model = ref_and_model
    feats = [f.float() for f in ref["encoder_outputs"]]
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for _ in range(2):
            away = [torch.where(torch.rand(f.shape, generator=gen) < 0.5, -torch.inf, torch.inf)
                    for f in feats]
            nudged = [torch.nextafter(f, a) for f, a in zip(feats, away)]
            assert max((n - f).abs().max().item() for n, f in zip(nudged, feats)) < 1e-6
            out = model.decoder(nudged)
            worst = max(worst, (out["pred_boxes"] - ref["pred_boxes"]).abs().max().item())
    assert worst > 100 * TOL


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
