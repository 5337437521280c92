"""Contrastive denoising groups: exact structure on a tiny case."""

from __future__ import annotations

import torch

from core.model.box_ops import box_cxcywh_to_xyxy, inverse_sigmoid
from core.model.denoising import contrastive_denoising_group


def _targets():
    return [{"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]])},
            {"labels": torch.tensor([0, 1]),
             "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.3]])}]


def test_structure_without_noise():
    embed = torch.nn.Embedding(4, 8, padding_idx=3)
    logits, boxes, mask, meta = contrastive_denoising_group(
        _targets(), num_classes=3, num_queries=5, class_embed=embed, num_denoising=4,
        label_noise_ratio=0.0, box_noise_scale=0.0)
    # max 2 GTs -> 4 // 2 = 2 groups, each [pos, pos, neg, neg] -> 8 denoising queries
    assert meta["dn_num_group"] == 2 and meta["dn_num_split"] == [8, 5]
    assert [t.tolist() for t in meta["dn_positive_idx"]] == [[0, 4], [0, 1, 4, 5]]
    assert logits.shape == (2, 8, 8) and boxes.shape == (2, 8, 4)
    # image 0 has one GT: its second slot is padding (class 3 -> zero embedding row)
    assert torch.equal(logits[0, 1], torch.zeros(8))
    assert torch.equal(logits[1, 0], embed.weight[0]) and torch.equal(logits[1, 5], embed.weight[1])
    torch.testing.assert_close(boxes[1, 4], inverse_sigmoid(torch.tensor([0.3, 0.3, 0.2, 0.2])))
    expected = torch.zeros(13, 13, dtype=torch.bool)
    expected[8:, :8] = True          # matching queries never see denoising queries
    expected[0:4, 4:8] = True        # group 0 does not see group 1
    expected[4:8, 0:4] = True        # and vice versa
    assert torch.equal(mask, expected)


def test_box_noise_keeps_positives_closer_than_negatives():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(4, 8, padding_idx=3)
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    _, boxes, _, meta = contrastive_denoising_group(targets, 3, 5, embed, num_denoising=200,
                                                    label_noise_ratio=0.5, box_noise_scale=1.0)
    xyxy = box_cxcywh_to_xyxy(boxes.sigmoid()[0])
    gt = torch.tensor([0.3, 0.3, 0.7, 0.7])
    err = (xyxy - gt).abs().max(-1).values  # corner shift in units of half size (0.2)
    pos, neg = err[0::2], err[1::2]        # one GT: [pos, neg] per group
    assert meta["dn_num_group"] == 200
    assert (pos <= 0.2 + 1e-5).all()       # positive: shifted by < 1 x half size
    assert (neg >= pos.median()).float().mean() > 0.9
