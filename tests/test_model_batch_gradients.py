"""Gradients do not depend on batch composition: batch [a] and batch [a, a] (loss averaged
over the batch) give the same parameter gradients. Guards the BatchNorm work-around in
core/model/grad_layout.py (torch's CPU BatchNorm backward is wrong for batch-1 gradients with
ambiguous channels-last strides, which the AIFI encoder's permute produces)."""

from __future__ import annotations

import torch

from core.model import build_model
from core.model.grad_layout import BatchNorm2d


def test_batchnorm_gets_right_input_gradient_for_strided_batch1_gradient() -> None:
    torch.manual_seed(0)
    bn = BatchNorm2d(32).double().train()
    y = torch.randn(1, 32, 8, 8, dtype=torch.float64)
    strided = torch.randn(1, 64, 32, dtype=torch.float64).permute(0, 2, 1).reshape(1, 32, 8, 8)
    assert not strided.is_contiguous()
    a = y.clone().requires_grad_(True)
    bn(a).backward(strided)
    b = y.clone().requires_grad_(True)
    bn(b).backward(strided.contiguous())
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_logit_gradients_are_independent_of_batch_composition() -> None:
    torch.manual_seed(0)
    model = build_model("n", 3, "detect", 256).double().train()
    model.decoder.num_denoising = 0  # denoising needs targets; not what this test is about
    x = torch.rand(1, 3, 256, 256, dtype=torch.float64)
    weight = torch.randn(300, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def grads(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        model.zero_grad()
        (model(batch)["pred_logits"] * weight).sum().div(batch.shape[0]).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    single, double = grads(x), grads(torch.cat([x, x]))
    scale = max(g.abs().max().item() for g in single.values())
    worst = max((single[n] - double[n]).abs().max().item() for n in single)
    assert any(n.startswith("backbone.") for n in single)  # the gradient reaches the backbone
    assert worst / scale < 1e-9, worst / scale
