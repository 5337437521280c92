"""Contrastive denoising (CDN) query groups for training.

Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/zoo/dfine/denoising.py, after
RT-DETR). Each group holds every GT twice: a positive copy (box jittered inside the GT) and a
negative copy (jittered further), with some labels flipped. The attention mask keeps the
matching queries from seeing the denoising ones and the groups from seeing each other.
"""

from __future__ import annotations

import torch
from torch import nn

from core.model.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid

__all__ = ["contrastive_denoising_group"]


def contrastive_denoising_group(
    targets: list[dict] | None,
    num_classes: int,
    num_queries: int,
    class_embed: nn.Embedding,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, dict | None]:
    """Return (query content [B,N,C], query boxes as logits [B,N,4], attn_mask [N+Q,N+Q], dn_meta).

    `targets[i]` has `labels` int [n_i] and `boxes` [n_i,4] cxcywh normalised.
    `dn_meta` = {dn_positive_idx: tuple of index tensors per image, dn_num_group, dn_num_split}.
    """
    if num_denoising <= 0:
        return None, None, None, None
    if targets is None:
        raise ValueError("training with denoising needs targets (list of {labels, boxes})")
    num_gts = [len(t["labels"]) for t in targets]
    device = targets[0]["labels"].device
    max_gt = max(num_gts)
    if max_gt == 0:
        return None, None, None, {"dn_positive_idx": None, "dn_num_group": 0,
                                  "dn_num_split": [0, num_queries]}

    num_group = max(num_denoising // max_gt, 1)
    bs = len(num_gts)
    q_class = torch.full([bs, max_gt], num_classes, dtype=torch.int32, device=device)
    q_box = torch.zeros([bs, max_gt, 4], device=device)
    pad_mask = torch.zeros([bs, max_gt], dtype=torch.bool, device=device)
    for i, n in enumerate(num_gts):
        if n > 0:
            q_class[i, :n] = targets[i]["labels"]
            q_box[i, :n] = targets[i]["boxes"]
            pad_mask[i, :n] = True

    q_class = q_class.tile([1, 2 * num_group])
    q_box = q_box.tile([1, 2 * num_group, 1])
    pad_mask = pad_mask.tile([1, 2 * num_group])
    negative = torch.zeros([bs, max_gt * 2, 1], device=device)
    negative[:, max_gt:] = 1
    negative = negative.tile([1, num_group, 1])
    positive = (1 - negative).squeeze(-1) * pad_mask
    dn_positive_idx = torch.split(torch.nonzero(positive)[:, 1], [n * num_group for n in num_gts])
    n_dn = int(max_gt * 2 * num_group)

    if label_noise_ratio > 0:
        flip = torch.rand_like(q_class, dtype=torch.float) < (label_noise_ratio * 0.5)
        new_label = torch.randint_like(flip, 0, num_classes, dtype=q_class.dtype)
        q_class = torch.where(flip & pad_mask, new_label, q_class)

    if box_noise_scale > 0:
        known = box_cxcywh_to_xyxy(q_box)
        diff = torch.tile(q_box[..., 2:] * 0.5, [1, 1, 2]) * box_noise_scale
        sign = torch.randint_like(q_box, 0, 2) * 2.0 - 1.0
        part = torch.rand_like(q_box)
        part = (part + 1.0) * negative + part * (1 - negative)
        known = torch.clip(known + sign * part * diff, min=0.0, max=1.0)
        q_box = box_xyxy_to_cxcywh(known)
        q_box[q_box < 0] *= -1
    q_box_unact = inverse_sigmoid(q_box)
    q_logits = class_embed(q_class)

    size = n_dn + num_queries
    attn_mask = torch.full([size, size], False, dtype=torch.bool, device=device)
    attn_mask[n_dn:, :n_dn] = True  # matching queries cannot see the reconstruction
    g = max_gt * 2
    for i in range(num_group):  # groups cannot see each other
        rows = slice(g * i, g * (i + 1))
        attn_mask[rows, g * (i + 1):n_dn] = True
        attn_mask[rows, : g * i] = True

    dn_meta = {"dn_positive_idx": dn_positive_idx, "dn_num_group": num_group,
               "dn_num_split": [n_dn, num_queries]}
    return q_logits, q_box_unact, attn_mask, dn_meta
