"""Hungarian matching of predictions to ground truth (one-to-one, scipy's linear_sum_assignment).

Cost = class (focal) + L1 + GIoU on boxes and, for segmentation, (1 - Dice) + sigmoid focal over
the full mask map at mask-head resolution (the D-FINE-seg paper's matcher).
"""

# Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/zoo/dfine/matcher.py) and
# D-FINE-seg (Apache-2.0), ArgoHA/D-FINE-seg (src/d_fine/matcher.py).

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from core.errors import ConfigError
from core.loss.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from core.loss.mask_ops import pairwise_dice_cost, pairwise_focal_cost, resize_masks

Indices = list[tuple[Tensor, Tensor]]

DEFAULT_MATCHER_COSTS: dict[str, float] = {
    "cost_class": 2.0,
    "cost_bbox": 5.0,
    "cost_giou": 2.0,
    "cost_mask": 1.0,  # sigmoid focal over the mask map
    "cost_mask_dice": 1.0,  # 1 - Dice over the mask map
}

_BLOCKED = 1e6  # cost given to queries already used by an earlier round of top-k matching


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets, per image.

    Mask costs are added only when both weights are not zero, the outputs carry ``pred_masks`` and
    the targets carry ``masks``; instances with ``has_mask`` False get no mask cost.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        cost_mask: float = 1.0,
        cost_mask_dice: float = 1.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ConfigError("matcher costs cost_class, cost_bbox and cost_giou cannot all be 0")
        self.cost_class = float(cost_class)
        self.cost_bbox = float(cost_bbox)
        self.cost_giou = float(cost_giou)
        self.cost_mask = float(cost_mask)
        self.cost_mask_dice = float(cost_mask_dice)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    @classmethod
    def from_costs(cls, costs: Mapping[str, float] | None = None, **kwargs: float) -> HungarianMatcher:
        """Build from a dict with DEFAULT_MATCHER_COSTS' keys (missing keys keep the defaults)."""
        merged = dict(DEFAULT_MATCHER_COSTS)
        for key, value in (costs or {}).items():
            if key not in DEFAULT_MATCHER_COSTS:
                raise ConfigError(f"unknown matcher cost {key!r}; allowed: {sorted(DEFAULT_MATCHER_COSTS)}")
            merged[key] = float(value)
        return cls(**merged, **kwargs)

    @property
    def uses_masks(self) -> bool:
        return self.cost_mask != 0 or self.cost_mask_dice != 0

    @torch.no_grad()
    def cost_matrices(
        self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]]
    ) -> list[Tensor]:
        """Per image, the [Q, N_i] float32 CPU cost matrix the assignment minimises."""
        logits = outputs["pred_logits"]
        bs, num_queries = logits.shape[:2]
        prob = logits.flatten(0, 1).float().sigmoid()
        out_bbox = outputs["pred_boxes"].flatten(0, 1).float()
        tgt_ids = torch.cat([t["labels"] for t in targets]).to(logits.device)
        tgt_bbox = torch.cat([t["boxes"] for t in targets]).to(out_bbox.device, torch.float32)

        # Focal-style class cost: the focal loss if this query were positive minus if negative.
        p = prob[:, tgt_ids]
        neg = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        pos = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        cost_class = pos - neg
        cost_bbox = torch.cdist(out_bbox, tgt_bbox, p=1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(out_bbox), box_cxcywh_to_xyxy(tgt_bbox))
        cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        cost = cost.view(bs, num_queries, -1)

        sizes = [len(t["boxes"]) for t in targets]
        per_image = list(cost.split(sizes, dim=-1))
        per_image = [c[i] for i, c in enumerate(per_image)]
        pred_masks = outputs.get("pred_masks")
        if self.uses_masks and pred_masks is not None:
            if pred_masks.shape[:2] != (bs, num_queries):
                raise ValueError(
                    f"pred_masks has shape {tuple(pred_masks.shape)} but pred_logits has {bs} x {num_queries} "
                    "queries; denoising queries must be split off before matching"
                )
            per_image = [
                c + self._mask_cost(pred_masks[i], t) if len(t["boxes"]) and t.get("masks") is not None else c
                for i, (c, t) in enumerate(zip(per_image, targets))
            ]
        return [torch.nan_to_num(c.float(), nan=1.0).cpu() for c in per_image]

    def _mask_cost(self, pred_masks: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        gt = resize_masks(target["masks"].to(pred_masks.device), (pred_masks.shape[-2], pred_masks.shape[-1]))
        cost = pred_masks.new_zeros((pred_masks.shape[0], gt.shape[0]), dtype=torch.float32)
        if self.cost_mask_dice:
            cost = cost + self.cost_mask_dice * pairwise_dice_cost(pred_masks, gt)
        if self.cost_mask:
            cost = cost + self.cost_mask * pairwise_focal_cost(pred_masks, gt, self.alpha, self.gamma)
        has_mask = target.get("has_mask")
        if has_mask is not None:
            cost = cost * has_mask.to(cost.device, cost.dtype)[None, :]
        return cost

    @torch.no_grad()
    def forward(
        self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]], return_topk: int = 0
    ) -> dict[str, Indices]:
        """{"indices": [(query_idx, target_idx) per image]}; with return_topk=k also
        "indices_o2m": the union of k successive one-to-one rounds, each round barred from the
        queries earlier rounds used (D-FINE's one-to-many option)."""
        costs = self.cost_matrices(outputs, targets)
        indices = [_assign(c) for c in costs]
        result = {"indices": indices}
        if return_topk:
            result["indices_o2m"] = _top_k_matches(costs, indices, int(return_topk))
        return result


def _assign(cost: Tensor) -> tuple[Tensor, Tensor]:
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


def _top_k_matches(costs: list[Tensor], first: Indices, k: int) -> Indices:
    """k rounds of assignment per image; after each round the used queries are blocked."""
    out: Indices = []
    for cost, (rows, cols) in zip(costs, first):
        cost = cost.clone()
        all_rows, all_cols = [rows], [cols]
        for _ in range(1, k):
            cost[all_rows[-1], :] = _BLOCKED
            if cost.shape[1] == 0:
                break
            r, c = _assign(cost)
            all_rows.append(r)
            all_cols.append(c)
        out.append((torch.cat(all_rows), torch.cat(all_cols)))
    return out
