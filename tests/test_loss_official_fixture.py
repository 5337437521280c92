"""Our matcher and criterion against the official ones, through fixtures the official code wrote.

tests/fixtures/loss_official_detect.pt: Peterande/D-FINE (4a1f73a) — the official size-N model's
training-mode outputs (noised random init, 128 px, batch 2 with 3 + 2 targets, 20 queries, 4
denoising groups), and what the official `DFINECriterion` + `HungarianMatcher` (its YAML
config) gave on them: every weighted loss term, the matches of every layer, the GO union and
the denoising matches. tests/fixtures/loss_official_segment.pt: the same from upstream
ArgoHA/D-FINE-seg (40fdf64) with masks (our segment model's outputs at 64 px, occluding
masks, mask losses and focal + dice mask matching costs). Regenerate both with
`benchmarks/loss_parity.py --write-fixtures tests/fixtures` (needs the two checkouts).

The fixtures were chosen so that no result hangs on rounding: every assignment survives a 1e-4
relative perturbation of its costs and the GO union has no count ties; loss terms are compared
to 1e-5 relative, so the test passes on any CPU (AVX2 or AVX-512).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.loss import DFineCriterion
from core.loss.criterion import denoising_indices, go_union_indices

FIXTURES = Path(__file__).parent / "fixtures"
REL_TOL = 1e-5


def _load(task: str) -> dict:
    return torch.load(FIXTURES / f"loss_official_{task}.pt", weights_only=True)


def _pairs(indices) -> list[list[tuple[int, int]]]:
    return [sorted(zip(rows.tolist(), cols.tolist())) for rows, cols in indices]


def _layers(outputs: dict) -> dict:
    layers = {"final": {k: v for k, v in outputs.items() if "aux" not in k}}
    layers.update({f"aux_{i}": a for i, a in enumerate(outputs["aux_outputs"])})
    layers["pre"] = outputs["pre_outputs"]
    layers.update({f"enc_{i}": e for i, e in enumerate(outputs["enc_aux_outputs"])})
    return layers


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_every_loss_term_equals_the_official_one(task):
    fx = _load(task)
    crit = DFineCriterion(fx["meta"]["num_classes"], task=task)
    with torch.no_grad():
        ours = {k: v.item() for k, v in crit(fx["outputs"], fx["targets"]).items()}
    official = fx["losses"]
    assert set(ours) == set(official)
    kinds = {"loss_vfl", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf"}
    if task == "segment":
        kinds |= {"loss_mask_bce", "loss_mask_dice"}
    assert {k for k in kinds if any(key.startswith(k) for key in official)} == kinds
    for key, want in official.items():
        got = ours[key]
        assert abs(got - want) <= REL_TOL * max(abs(want), abs(got)) + 1e-9, (key, got, want)


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_matches_equal_the_official_ones(task):
    fx = _load(task)
    crit = DFineCriterion(fx["meta"]["num_classes"], task=task)
    targets = crit._prepare_targets(fx["outputs"], fx["targets"])  # masks at mask resolution
    layers = _layers(fx["outputs"])
    ours = {name: crit.matcher(out, targets)["indices"] for name, out in layers.items()}
    assert set(ours) == set(fx["indices"])
    for name, official in fx["indices"].items():
        assert _pairs(ours[name]) == _pairs(official), name
        assert [len(r) for r, _ in official] == [len(t["labels"]) for t in targets]  # all matched
    go = go_union_indices(ours["final"], [ours[n] for n in ours if n != "final"])
    assert _pairs(go) == _pairs(fx["go_indices"])
    dn = denoising_indices(fx["outputs"]["dn_meta"], targets)
    assert _pairs(dn) == _pairs(fx["dn_indices"])


def test_the_mask_terms_depend_on_the_upstream_crop():
    """The fixture pins the crop: the pixel-overlap crop (floor/ceil corners, pixel-count area)
    this criterion used before gives other mask losses than upstream's."""
    fx = _load("segment")
    crit = DFineCriterion(fx["meta"]["num_classes"], task="segment")
    outputs, targets = fx["outputs"], crit._prepare_targets(fx["outputs"], fx["targets"])
    indices = crit.matcher({k: v for k, v in outputs.items() if "aux" not in k}, targets)["indices"]
    pred = outputs["pred_masks"][torch.cat([torch.full_like(r, i) for i, (r, _) in enumerate(indices)]),
                                 torch.cat([r for r, _ in indices])]
    gt = torch.cat([t["masks"][c] for t, (_, c) in zip(targets, indices)])
    boxes = torch.cat([t["boxes"][c] for t, (_, c) in zip(targets, indices)])
    h, w = pred.shape[-2:]
    cx, cy, bw, bh = boxes.unbind(-1)
    x1, x2 = torch.floor((cx - bw / 2) * w), torch.ceil((cx + bw / 2) * w)
    y1, y2 = torch.floor((cy - bh / 2) * h), torch.ceil((cy + bh / 2) * h)
    xs, ys = torch.arange(w), torch.arange(h)
    overlap = ((ys[None, :, None] >= y1[:, None, None]) & (ys[None, :, None] < y2[:, None, None])
               & (xs[None, None, :] >= x1[:, None, None]) & (xs[None, None, :] < x2[:, None, None]))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(pred, gt, reduction="none")
    old = ((bce * overlap).sum(dim=(1, 2)) / overlap.sum(dim=(1, 2))).mean().item()
    want = fx["losses"]["loss_mask_bce"]
    assert abs(old - want) > 100 * REL_TOL * want
