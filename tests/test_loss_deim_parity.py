"""`train.matching: deim`: our criterion with MAL (``cls_loss="mal"``) against DEIM's own criterion
(tests/deim_reference.py, transcribed from ShihuaHuang95/DEIM) on the shared official fixtures
(tests/fixtures/loss_official_*.pt: D-FINE / D-FINE-seg model outputs and targets). Both use the
same matcher, so every difference would be in the losses. DEIM has no mask losses: for
segmentation our mask terms must equal the D-FINE-seg criterion's (unchanged by MAL)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from deim_reference import DEIMCriterionReference

from core.loss import DFineCriterion
from core.loss.criterion import MAL_GAMMA, summarize_losses

FIXTURES = Path(__file__).parent / "fixtures"
REL_TOL = 1e-5
DEIM_WEIGHTS = {"loss_mal": 1, "loss_bbox": 5, "loss_giou": 2, "loss_fgl": 0.15, "loss_ddf": 1.5}  # configs/base/deim.yml


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= REL_TOL * max(abs(want), abs(got)) + 1e-9


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_every_loss_term_equals_deims(task):
    fx = torch.load(FIXTURES / f"loss_official_{task}.pt", weights_only=True)
    n = fx["meta"]["num_classes"]
    ours_crit = DFineCriterion(n, task=task, cls_loss="mal")
    assert ours_crit.mal_gamma == MAL_GAMMA == 1.5
    with torch.no_grad():
        ours = {k: v.item() for k, v in ours_crit(copy.deepcopy(fx["outputs"]), fx["targets"]).items()}
        targets = ours_crit._prepare_targets(fx["outputs"], fx["targets"])  # masks at the matcher's resolution
        ref = DEIMCriterionReference(ours_crit.matcher, DEIM_WEIGHTS, ["mal", "boxes", "local"], gamma=1.5,
                                     num_classes=n)
        theirs = {k: v.item() for k, v in ref(copy.deepcopy(fx["outputs"]), targets).items()}
    mask_keys = {k for k in ours if k.startswith("loss_mask")}
    # D-FINE's criterion keeps the last denoising layer's DDF (its own teacher: exactly 0); DEIM's leaves it out
    extra = set(ours) - mask_keys - set(theirs)
    assert set(theirs) <= set(ours) and extra == {"loss_ddf_dn_2"} and ours["loss_ddf_dn_2"] == 0.0
    assert any(k.startswith("loss_mal_dn_") for k in theirs) and any(k.startswith("loss_mal_enc_") for k in theirs)
    for key, want in theirs.items():
        assert _close(ours[key], want), (key, ours[key], want)
    if task == "segment":
        with torch.no_grad():
            dfine = {k: v.item() for k, v in DFineCriterion(n, task=task)(copy.deepcopy(fx["outputs"]),
                                                                         fx["targets"]).items()}
        assert mask_keys and all(_close(ours[k], dfine[k]) for k in mask_keys)
    # MAL is not VFL: on these outputs the classification terms differ
    vfl = DFineCriterion(n, task=task)
    with torch.no_grad():
        v = vfl(copy.deepcopy(fx["outputs"]), fx["targets"])
    assert not _close(v["loss_vfl"].item(), ours["loss_mal"])
    assert "loss_mal" in summarize_losses({k: torch.tensor(x) for k, x in ours.items()})


def test_mal_gradient_pushes_a_poor_match_to_a_low_score():
    """One query matched with IoU 0.25: VFL's target is 0.25 weighted by 0.25; MAL's is 0.25^1.5 = 0.125
    with full weight, so MAL's optimum score for that query is lower and its push stronger."""
    logits = torch.zeros(1, 2, 1, requires_grad=True)  # score 0.5 for both queries
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05]]])
    tgt = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.55, 0.55, 0.2, 0.2]])}]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    crit = DFineCriterion(1, task="detect", cls_loss="mal")
    loss = crit.loss_mal({"pred_logits": logits, "pred_boxes": boxes}, tgt, indices, 1.0)["loss_mal"]
    loss.backward()
    iou = (0.15 * 0.15) / (2 * 0.04 - 0.15 * 0.15)
    p = 0.5
    # d/dlogit of w * BCE(logit, t) at p = 0.5: w * (p - t); matched: w = 1, t = iou^1.5; unmatched: w = p^1.5, t = 0
    assert torch.allclose(logits.grad[0, 0, 0], torch.tensor(p - iou ** 1.5), atol=1e-6)
    assert torch.allclose(logits.grad[0, 1, 0], torch.tensor(p ** 1.5 * p), atol=1e-6)
