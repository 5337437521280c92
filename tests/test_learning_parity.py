"""The learning-parity benchmark's pure pieces (benchmarks/learning_parity.py), without the
upstream venv: the shared batches, the shared lr list, and the scoring of an upstream-format
(mask probabilities) or our-format (mask logits) output dict by our evaluator."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import learning_parity as lp  # noqa: E402


def test_batch_order_is_a_permutation_per_epoch_and_deterministic():
    order = lp.batch_order(10, 3, 7, seed=0)
    assert len(order) == 7 and all(len(b) == 3 for b in order)
    # 3 batches per epoch (the 10th image dropped): each epoch's 9 indices are distinct
    for epoch in range(2):
        flat = [i for b in order[3 * epoch:3 * epoch + 3] for i in b]
        assert len(set(flat)) == 9 and set(flat) <= set(range(10))
    assert order == lp.batch_order(10, 3, 7, seed=0)
    assert order != lp.batch_order(10, 3, 7, seed=1)
    assert order[:3] != order[3:6]  # a new permutation each epoch
    with pytest.raises(ValueError, match="larger than"):
        lp.batch_order(3, 4, 1, seed=0)


def test_lr_schedule_values():
    # 20 steps: warm-up 2, flat to 10, cosine to half the lr by 18, then flat at the minimum
    lrs = lp.lr_schedule(20, 1e-3)
    assert lp.schedule_parts(20) == (2, 10, 2)
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(2.5e-4) and lrs[2] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[14] == pytest.approx(5e-4 + 5e-4 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert lrs[18] == lrs[19] == pytest.approx(5e-4)


def test_shared_data_is_deterministic_and_batches_are_copies():
    a = lp.build_data(3, 2, 64, data_seed=5)
    b = lp.build_data(3, 2, 64, data_seed=5)
    assert lp.digest(a["train_images"], a["val_images"]) == lp.digest(b["train_images"], b["val_images"])
    assert a["train_images"].dtype == torch.uint8 and a["train_images"].shape == (3, 3, 64, 64)
    assert a["val_images"].shape == (2, 3, 64, 64) and a["val_sizes"] == [(256, 256), (256, 256)]
    for ta, tb in zip(a["train_targets"], b["train_targets"]):
        assert all(torch.equal(ta[k], tb[k]) for k in ("labels", "boxes", "masks"))
        assert ta["masks"].shape[1:] == (64, 64) and len(ta["labels"]) == len(ta["boxes"]) >= 1
    images, targets = lp.step_batch(a, [2, 0])
    assert torch.equal(images, a["train_images"][[2, 0]].float() / 255.0)
    targets[0]["masks"].zero_()  # a criterion writing into its targets must not touch the shared data
    assert a["train_targets"][2]["masks"].any()


def _square(x0: int, y0: int, x1: int, y1: int) -> dict:
    return {"class_id": 0, "polygons": [[x0, y0, x1, y0, x1, y1, x0, y1]], "holes": []}


def _hand_made_outputs(mask_logits: bool) -> tuple[dict, list[list[dict]], list[tuple[int, int]]]:
    """A 64x64 image with GT A (class 0, 8..24) and B (class 1, 36..56); 3 queries x 4 classes:
    query 0 finds A as class 0 (0.9), query 1 finds B's shape but as class 2 (0.8), query 2 nothing."""
    gt_a, gt_b = _square(8, 8, 24, 24), {**_square(36, 36, 56, 56), "class_id": 1}
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 0, 0] = math.log(0.9 / 0.1)
    logits[0, 1, 2] = math.log(0.8 / 0.2)
    boxes = torch.tensor([[[16, 16, 16, 16], [46, 46, 20, 20], [32, 32, 8, 8]]], dtype=torch.float32) / 64
    masks = torch.zeros(1, 3, 16, 16)  # stride 4
    masks[0, 0, 2:6, 2:6] = 1
    masks[0, 1, 9:14, 9:14] = 1
    if mask_logits:
        masks = masks * 20 - 10
    return {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks}, [[gt_a, gt_b]], [(64, 64)]


@pytest.mark.parametrize("mask_logits", [False, True])  # upstream's layout / ours
def test_scoring_an_output_dict(mask_logits):
    out, labels, sizes = _hand_made_outputs(mask_logits)
    top = lp.top_k_outputs(out, 12, mask_logits)
    assert top["labels"][0, :2].tolist() == [0, 2] and top["scores"][0, :2].tolist() == pytest.approx([0.9, 0.8])
    assert top["boxes"][0, 0].tolist() == pytest.approx([8 / 64, 8 / 64, 24 / 64, 24 / 64])
    assert float(top["masks"][0, 0, 3, 3]) == pytest.approx(1.0, abs=1e-4)
    raw = {k: v.numpy() for k, v in top.items()}
    m = lp.score_outputs(raw, labels, sizes)
    # conf 0.5: A found (TP), B's shape with the wrong class (FP) and B missed (FN)
    assert (m["precision"], m["recall"], m["mask_f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # mAP50 over the classes with GT: class 0 AP 1, class 1 AP 0 (class 2 has no GT: not counted)
    assert m["mask_map50"] == pytest.approx(0.5)
    # the best threshold (over 0.8, under 0.9) keeps only A: precision 1, recall 1/2
    assert m["best_f1"] == pytest.approx(2 / 3) and 0.8 < m["best_threshold"] <= 0.9


def test_top_k_outputs_equals_deploy_model():
    from core.model import DeployModel, build_model

    torch.manual_seed(0)
    model = build_model("n", 4, "segment", 64).eval()
    model.decoder.num_queries = 16  # 64 px gives 20 feature positions
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        mine = lp.top_k_outputs(model(images), 20, mask_logits=True)
        dep = dict(zip(("labels", "boxes", "scores", "masks"), DeployModel(model, 20, fuse=False)(images)))
    assert torch.equal(mine["labels"], dep["labels"])
    for k in ("boxes", "scores", "masks"):
        np.testing.assert_allclose(mine[k].numpy(), dep[k].numpy(), rtol=0, atol=1e-6)


def test_step_times_compared_only_while_both_ran(tmp_path):
    # ours ends after 4 s; upstream's steps after its first two (4 s) ran alone
    assert lp.overlap_medians([1.0, 1.0, 1.5, 0.5], [1.5, 2.5, 3.0, 9.0]) == (1.0, 2.0, 4, 2)
    assert lp.overlap_medians([1.5, 2.5, 3.0, 9.0], [1.0, 1.0, 1.5, 0.5]) == (2.0, 1.0, 2, 4)
    log = tmp_path / "ours_seed0.log"
    log.write_text('warning: something\n{"step": 1, "loss": 3.0, "step_s": 1.5}\nnot json\n[1, 2]\n'
                   '{"step": 2, "loss": 2.0, "step_s": 1.25}\n')
    assert [r["step_s"] for r in lp.log_rows(log)] == [1.5, 1.25]


def _run(impl: str, seed: int, dtype: str, pair: str, f1: float, step_s: float) -> dict:
    ev = {"mask_f1": f1, "best_f1": f1, "mask_map50": f1 + 0.1}
    return {"impl": impl, "seed": seed, "dtype": dtype, "pair": pair, "evals": {480: ev}, "step_s": [step_s] * 4,
            "step_s_median": step_s, "step_s_mean": step_s, "loss_first": 40.0, "loss_last": 20.0}


def test_merged_table_keeps_fp32_and_bf16_runs_apart_and_times_only_side_by_side_pairs():
    """Runs merged from several invocations: our bf16 run is its own column (not hidden behind the
    fp32 run of the same seed), and a wall-time ratio is printed only for runs that shared the CPU."""
    results = [_run("ours", 0, "fp32", "old", 0.5, 10.0), _run("upstream", 0, "fp32", "old", 0.4, 8.0),
               _run("ours", 0, "bfloat16", "new", 0.6, 3.0), _run("upstream", 1, "fp32", "old1", 0.3, 8.0),
               _run("ours", 1, "bfloat16", "new1", 0.2, 3.0)]
    md = lp.markdown(results, [480])
    header = md.splitlines()[0]
    assert header == ("| step | metric | ours s0 | ours bfloat16 s0 | upstream s0 | ours s1 | ours bfloat16 s1 | upstream s1 "
                      "| ours mean | ours bfloat16 mean | upstream mean |")
    f1_row = next(line for line in md.splitlines() if line.startswith("| 480 | mask_f1 |"))
    assert f1_row == "| 480 | mask_f1 | 0.500 | 0.600 | 0.400 | - | 0.200 | 0.300 | 0.500 | 0.400 | 0.350 |"
    ratios = [line for line in md.splitlines() if "wall time per step" in line]
    assert len(ratios) == 1 and ratios[0].startswith("seed 0: wall time per step ours/upstream 1.25")


def test_difference_against_seed_noise_and_its_verdict():
    diff, se = lp.difference_vs_noise([0.5, 0.6], [0.4, 0.4])
    assert diff == pytest.approx(0.15) and se == pytest.approx(0.05)  # pooled variance 0.0025, x (1/2 + 1/2)
    assert lp.difference_vs_noise([0.5], [0.4, 0.4]) is None  # one seed measures no noise
    results = [_run("ours", s, "fp32", "p", f1, 1.0) for s, f1 in ((0, 0.5), (1, 0.6))]
    results += [_run("upstream", s, "fp32", "p", 0.4, 1.0) for s in (0, 1)]
    rows = [line for line in lp.markdown(results, [480]).splitlines() if line.startswith("| ours | 480 |")]
    assert rows == ["| ours | 480 | mask_f1 | +0.150 | 0.050 | ahead |", "| ours | 480 | mask_map50 | +0.150 | 0.050 | ahead |"]


def test_mask_heads_get_their_own_columns_and_any_run_can_be_the_baseline():
    """A lite-head run beside a paper-head run of the same seed (issue #16's quality question): each
    keeps its column, and the noise table subtracts the chosen baseline (our paper head), not upstream."""
    results = [_run("ours", s, "bfloat16", f"p{s}", f1, 1.0) for s, f1 in ((0, 0.70), (1, 0.74))]
    results += [dict(_run("ours", s, "bfloat16", f"l{s}", f1, 0.5), mask_head="lite") for s, f1 in ((0, 0.66), (1, 0.72))]
    assert [lp.run_label(r) for r in results] == ["ours bfloat16"] * 2 + ["ours lite bfloat16"] * 2
    assert lp.run_label(dict(_run("ours", 0, "fp32", "x", 0.5, 1.0), mask_head="narrow")) == "ours narrow"
    md = lp.markdown(results, [480], baseline="ours bfloat16")
    assert "| run | step | metric | minus ours bfloat16 (mean) | SE from the seeds | verdict (±2 SE) |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ours lite bfloat16 | 480 | mask_f1 |")]
    # means 0.69 vs 0.72; pooled variance (0.0008 + 0.0018) / 2 = 0.0013, SE sqrt(0.0013) = 0.036
    assert rows == ["| ours lite bfloat16 | 480 | mask_f1 | -0.030 | 0.036 | within noise |"]
    assert "wall time per step" not in md  # no upstream run: no ratio to print


def test_load_detector_takes_every_weight_but_the_mask_head(tmp_path):
    """A lighter head judged from a trained detector: the detector's tensors are copied, the new
    head keeps its own fresh weights, and a state dict of another model is refused by name."""
    from core.model import build_model

    torch.manual_seed(0)
    trained = build_model("n", lp.NUM_CLASSES, "segment", 256, mask_head="narrow").state_dict()
    torch.save(trained, tmp_path / "ema.pt")
    torch.manual_seed(1)
    lite = build_model("n", lp.NUM_CLASSES, "segment", 256, mask_head="lite")
    fresh_head = {k: v.clone() for k, v in lite.state_dict().items() if k.startswith("mask_head.")}
    n = lp.load_detector(lite, tmp_path / "ema.pt")
    assert n == sum(not k.startswith("mask_head.") for k in trained) > 600
    after = lite.state_dict()
    assert all(torch.equal(after[k], trained[k]) for k in trained if not k.startswith("mask_head."))
    assert all(torch.equal(after[k], v) for k, v in fresh_head.items())
    torch.save({**trained, "backbone.extra.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a size-N state dict"):
        lp.load_detector(lite, tmp_path / "other.pt")
