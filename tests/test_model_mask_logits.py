"""MaskHead.logits folds decoder layers into the query axis: same numbers as the plain
broadcast product (the definition), values and gradients, including zero queries."""

from __future__ import annotations

import torch

from core.model.mask_head import MaskHead


def _reference(head: MaskHead, hidden: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
    b, d, h, w = feat.shape
    return torch.matmul(head.embed(hidden), feat.reshape(b, d, h * w)).reshape(*hidden.shape[:-1], h, w)


def test_layer_folded_product_equals_broadcast_definition():
    torch.manual_seed(0)
    head = MaskHead([64, 64], [16, 32], hidden_dim=64, fuse_dim=32, mask_dim=32)
    hidden = torch.randn(3, 2, 7, 64, requires_grad=True)
    feat = torch.randn(2, 32, 5, 6, requires_grad=True)
    ref, got = _reference(head, hidden, feat), head.logits(hidden, feat)
    assert got.shape == (3, 2, 7, 5, 6)
    assert (got - ref).abs().max().item() <= 1e-6
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad((ref * g).sum(), [hidden, feat]),
                    torch.autograd.grad((got * g).sum(), [hidden, feat])):
        assert (a - b).abs().max().item() <= 1e-5
    single = head.logits(hidden[1], feat)  # eval: one layer, no leading dim
    assert single.shape == (2, 7, 5, 6) and (single - ref[1]).abs().max().item() <= 1e-6
    empty = head.logits(torch.zeros(3, 2, 0, 64), feat)  # no denoising queries
    assert empty.shape == (3, 2, 0, 5, 6)
