"""The whole criterion on a synthetic D-FINE output dict (aux, pre, enc, dn parts) and on the real
model: the loss keys, which matches each part uses, finiteness and gradient flow."""

import pytest
import torch

from core.loss.criterion import DFineCriterion, go_union_indices, summarize_losses, total_loss

B, Q, C, L, R, HM = 2, 6, 3, 3, 4, 8  # batch, queries, classes, decoder layers, reg_max, mask size
GROUPS, MAX_GT = 2, 2
QDN = 2 * MAX_GT * GROUPS


def _targets():
    g = torch.Generator().manual_seed(5)
    masks0 = (torch.rand(2, 32, 32, generator=g) > 0.5).to(torch.uint8)
    masks1 = torch.zeros(1, 32, 32)
    masks1[0, 8:24, 4:20] = 1
    return [
        {
            "labels": torch.tensor([0, 2]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]]),
            "masks": masks0,
        },
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.375, 0.5, 0.5, 0.5]]), "masks": masks1},
    ]


def _outputs(with_masks=True):
    """Leaf tensors (so gradients can be checked) arranged as the official D-FINE output dict."""
    g = torch.Generator().manual_seed(7)
    leaves = {}

    def leaf(name, *shape, scale=1.0):
        t = (torch.randn(*shape, generator=g) * scale).requires_grad_()
        leaves[name] = t
        return t

    def layer(prefix, q, i):
        d = {
            "pred_logits": leaf(f"{prefix}logits{i}", B, q, C),
            "pred_boxes": leaf(f"{prefix}boxes{i}", B, q, 4, scale=0.5).sigmoid() * 0.9 + 0.05,
            "pred_corners": leaf(f"{prefix}corners{i}", B, q, 4 * (R + 1)),
            "ref_points": torch.rand(B, q, 4, generator=g) * 0.5 + 0.25,
        }
        if with_masks:
            d["pred_masks"] = leaf(f"{prefix}masks{i}", B, q, HM, HM)
        return d

    dec = [layer("", Q, i) for i in range(L)]
    for d in dec[1:]:
        d["ref_points"] = dec[0]["ref_points"]  # D-FINE: one reference for all layers
    dn = [layer("dn_", QDN, i) for i in range(L)]
    for d in dn[1:]:
        d["ref_points"] = dn[0]["ref_points"]
    out = {**dec[-1], "up": torch.tensor([0.5]), "reg_scale": torch.tensor([4.0])}
    out["aux_outputs"] = [
        {**d, "teacher_corners": dec[-1]["pred_corners"], "teacher_logits": dec[-1]["pred_logits"]}
        for d in dec[:-1]
    ]
    out["pre_outputs"] = {
        "pred_logits": leaf("pre_logits", B, Q, C),
        "pred_boxes": leaf("pre_boxes", B, Q, 4).sigmoid() * 0.9 + 0.05,
    }
    out["enc_aux_outputs"] = [
        {
            "pred_logits": leaf("enc_logits", B, Q, C),
            "pred_boxes": leaf("enc_boxes", B, Q, 4).sigmoid() * 0.9 + 0.05,
        }
    ]
    out["enc_meta"] = {"class_agnostic": False}
    out["dn_outputs"] = [
        {**d, "teacher_corners": dn[-1]["pred_corners"], "teacher_logits": dn[-1]["pred_logits"]} for d in dn
    ]
    out["dn_pre_outputs"] = {
        "pred_logits": leaf("dn_pre_logits", B, QDN, C),
        "pred_boxes": leaf("dn_pre_boxes", B, QDN, 4).sigmoid() * 0.9 + 0.05,
    }
    # group g's positives sit at g * 2 * MAX_GT + k (positive then negative halves)
    out["dn_meta"] = {
        "dn_positive_idx": (torch.tensor([0, 1, 4, 5]), torch.tensor([0, 4])),
        "dn_num_group": GROUPS,
        "dn_num_split": [QDN, Q],
    }
    return out, leaves


def _expected_keys(segment=True):
    masks = ["loss_mask_bce", "loss_mask_dice"] if segment else []
    cls_box = ["loss_vfl", "loss_bbox", "loss_giou"]
    keys = set(cls_box + ["loss_fgl"] + masks)
    for i in range(L - 1):
        keys |= {k + f"_aux_{i}" for k in cls_box + ["loss_fgl", "loss_ddf"] + masks}
    keys |= {k + "_pre" for k in cls_box}
    keys |= {k + "_enc_0" for k in cls_box}
    for i in range(L):
        keys |= {k + f"_dn_{i}" for k in cls_box + ["loss_fgl", "loss_ddf"] + masks}
    keys |= {k + "_dn_pre" for k in cls_box}
    return keys


def test_full_criterion_keys_finite_and_gradients():
    outputs, leaves = _outputs()
    crit = DFineCriterion(num_classes=C, task="segment", reg_max=R)
    losses = crit(outputs, _targets())
    assert set(losses) == _expected_keys(segment=True)
    for k, v in losses.items():
        assert v.ndim == 0 and torch.isfinite(v), k
    assert losses["loss_ddf_dn_2"].item() == 0.0  # the last dn layer is its own teacher
    assert losses["loss_ddf_aux_0"].item() > 0.0
    total = total_loss(losses)
    total.backward()
    for name, t in leaves.items():
        assert t.grad is not None and t.grad.abs().sum() > 0, name
    summary = summarize_losses(losses)
    assert set(summary) == {
        "loss",
        "loss_vfl",
        "loss_bbox",
        "loss_giou",
        "loss_fgl",
        "loss_ddf",
        "loss_mask_bce",
        "loss_mask_dice",
    }
    assert abs(summary["loss"] - total.item()) < 1e-4
    assert abs(sum(v for k, v in summary.items() if k != "loss") - total.item()) < 1e-4


def test_each_part_uses_the_official_matches_and_normalisation():
    outputs, _ = _outputs()
    targets = _targets()
    crit = DFineCriterion(num_classes=C, task="segment", reg_max=R)
    losses = crit(outputs, targets)
    prepared = crit._prepare_targets(outputs, targets)
    match = lambda o: crit.matcher(o, prepared)["indices"]
    final = match({k: v for k, v in outputs.items() if "aux" not in k})
    aux = [match(a) for a in outputs["aux_outputs"]]
    pre = match(outputs["pre_outputs"])
    enc = match(outputs["enc_aux_outputs"][0])
    go = go_union_indices(final, aux + [pre, enc])
    n_go = float(sum(len(r) for r, _ in go))
    w = crit.weight_dict
    # classification uses the layer's own match over the number of GT boxes (3)
    vfl_pre = crit.loss_vfl(outputs["pre_outputs"], prepared, pre, 3.0)["loss_vfl"] * w["loss_vfl"]
    assert abs(losses["loss_vfl_pre"].item() - vfl_pre.item()) < 1e-5
    # boxes of every non-dn part (encoder too) use the union of matches over its size
    for key, part in [
        ("_aux_1", outputs["aux_outputs"][1]),
        ("_enc_0", outputs["enc_aux_outputs"][0]),
        ("", outputs),
    ]:
        box = crit.loss_boxes(part, prepared, go, n_go)
        assert abs(losses["loss_bbox" + key].item() - w["loss_bbox"] * box["loss_bbox"].item()) < 1e-5
    # masks use the layer's own match, averaged over its matched instances
    m = crit.loss_masks(outputs["aux_outputs"][0], prepared, aux[0])
    assert abs(losses["loss_mask_dice_aux_0"].item() - m["loss_mask_dice"].item()) < 1e-6
    # denoising: fixed matches, normalised by num_boxes * groups
    dn = [
        (torch.tensor([0, 1, 4, 5]), torch.tensor([0, 1, 0, 1])),
        (torch.tensor([0, 4]), torch.tensor([0, 0])),
    ]
    box = crit.loss_boxes(outputs["dn_outputs"][1], prepared, dn, 3.0 * GROUPS)
    assert abs(losses["loss_giou_dn_1"].item() - w["loss_giou"] * box["loss_giou"].item()) < 1e-5


def test_detect_task_computes_no_mask_loss():
    outputs, _ = _outputs(with_masks=True)  # even if masks are present, detect ignores them
    crit = DFineCriterion(num_classes=C, task="detect", reg_max=R)
    assert crit.matcher.cost_mask == 0 and crit.matcher.cost_mask_dice == 0
    targets = [{k: v for k, v in t.items() if k != "masks"} for t in _targets()]
    losses = crit(outputs, targets)
    assert set(losses) == _expected_keys(segment=False)
    assert not any("mask" in k for k in losses)


def test_segment_task_needs_masks_and_valid_labels():
    outputs, _ = _outputs(with_masks=False)
    crit = DFineCriterion(num_classes=C, task="segment", reg_max=R)
    with pytest.raises(ValueError, match="pred_masks"):
        crit(outputs, _targets())
    outputs, _ = _outputs()
    bad = _targets()
    bad[1]["labels"] = torch.tensor([C])
    with pytest.raises(ValueError, match="class id 3"):
        crit(outputs, bad)


def test_image_without_objects_in_the_batch():
    outputs, _ = _outputs()
    targets = _targets()
    targets[1] = {
        "labels": torch.zeros(0, dtype=torch.int64),
        "boxes": torch.zeros(0, 4),
        "masks": torch.zeros(0, 32, 32),
    }
    outputs["dn_meta"]["dn_positive_idx"] = (torch.tensor([0, 1, 4, 5]), torch.zeros(0, dtype=torch.int64))
    losses = DFineCriterion(num_classes=C, task="segment", reg_max=R)(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses).backward()


def test_real_model_through_the_criterion():
    """Size n, 2 classes, train mode with targets -> criterion -> backward.

    256x256, not 128: size n (strides 16/32) has only 80 anchors at 128 but selects 300 queries.
    """
    model_mod = pytest.importorskip("core.model")
    torch.manual_seed(0)
    s = 256
    model = model_mod.build_model("n", num_classes=2, task="segment", image_size=s)
    model.train()
    images = torch.rand(2, 3, s, s)
    masks0 = torch.zeros(2, s, s)
    masks0[0, 40:120, 60:140] = 1
    masks0[1, 140:240, 120:200] = 1
    masks1 = torch.zeros(1, s, s)
    masks1[0, 20:220, 20:100] = 1
    targets = [
        {
            "labels": torch.tensor([0, 1]),
            "boxes": torch.tensor([[100 / s, 80 / s, 80 / s, 80 / s], [160 / s, 190 / s, 80 / s, 100 / s]]),
            "masks": masks0,
        },
        {
            "labels": torch.tensor([1]),
            "boxes": torch.tensor([[60 / s, 120 / s, 80 / s, 200 / s]]),
            "masks": masks1,
        },
    ]
    outputs = model(images, targets)
    assert outputs["pred_masks"].shape[-2:] == (s // 4, s // 4)
    crit = DFineCriterion(num_classes=2, task="segment")
    losses = crit(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    for part in ("", "_aux_0", "_pre", "_enc_0", "_dn_0", "_dn_pre"):
        assert "loss_vfl" + part in losses
    assert "loss_mask_bce" in losses and "loss_mask_dice_dn_0" in losses and "loss_ddf_aux_0" in losses
    total_loss(losses).backward()
    named = dict(model.named_parameters())
    mask_grads = [p.grad for n, p in named.items() if p.requires_grad and "mask" in n]
    assert mask_grads and any(g is not None and g.abs().sum() > 0 for g in mask_grads)
    head_grads = [p.grad for n, p in named.items() if "score_head" in n]
    assert head_grads and any(g is not None and g.abs().sum() > 0 for g in head_grads)


def test_bfloat16_outputs_are_computed_in_float32():
    """Mixed-precision outputs: losses come out float32 and close to the float32 run."""
    outputs, leaves = _outputs()
    ref = DFineCriterion(num_classes=C, task="segment", reg_max=R)(outputs, _targets())

    def half(v):
        if isinstance(v, torch.Tensor):
            return v.to(torch.bfloat16) if v.is_floating_point() else v
        if isinstance(v, dict):
            return {k: half(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(half(x) for x in v)
        return v

    low = DFineCriterion(num_classes=C, task="segment", reg_max=R)(half(outputs), _targets())
    assert set(low) == set(ref)
    assert all(v.dtype == torch.float32 for v in low.values())
    assert abs(total_loss(low).item() - total_loss(ref).item()) < 0.02 * total_loss(ref).item()
    total_loss(low).backward()
    assert leaves["masks2"].grad is not None and leaves["logits2"].grad.abs().sum() > 0
