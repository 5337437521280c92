"""The D-FINE-seg training loss.

Per decoder output: VFL (classification weighted by IoU), L1 + GIoU on boxes, FGL + DDF (GO-LSD:
fine-grained localisation on the edge distributions and self-distillation from the last layer),
and for segmentation box-cropped mask BCE + Dice. Applied, as the official D-FINE criterion does,
to the final layer, every auxiliary layer, the pre-refinement head (``pre_outputs``), the encoder
proposals (``enc_aux_outputs``) and the denoising groups (``dn_outputs``, ``dn_pre_outputs``).

With ``cls_loss="mal"`` (``train.matching: deim``) the classification loss is DEIM's
matchability-aware loss in place of VFL: positives target IoU^gamma with weight 1, negatives are
weighted by p^gamma (gamma 1.5), so a low-IoU match is not pushed to a high score (see ``loss_mal``).

Box/FGL/DDF losses of non-denoising layers use the union of the matches of all layers ("GO"
indices, normalised by their count); classification and mask losses use each layer's own match.
"""

# Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/zoo/dfine/dfine_criterion.py),
# D-FINE-seg (Apache-2.0), ArgoHA/D-FINE-seg (src/d_fine/dfine_criterion.py) and, for MAL,
# DEIM (Apache-2.0, Copyright (c) 2024 The DEIM Authors), ShihuaHuang95/DEIM (engine/deim/deim_criterion.py).

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import ConfigError
from core.messages import TRAIN_LOSS_NAMES
from core.loss.box_ops import box_cxcywh_to_xyxy, paired_box_iou, paired_generalized_box_iou
from core.loss.fdr_ops import bbox2distance
from core.loss.mask_ops import box_regions, cropped_bce_loss, cropped_dice_loss, resize_masks
from core.loss.matcher import HungarianMatcher, Indices

DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "loss_vfl": 1.0,
    "loss_bbox": 5.0,
    "loss_giou": 2.0,
    "loss_fgl": 0.15,
    "loss_ddf": 1.5,
    "loss_mask_bce": 1.0,
    "loss_mask_dice": 1.0,
    "loss_mal": 1.0,  # DEIM's classification loss (cls_loss="mal"); the config's `vfl` weight sets it
}
MAL_GAMMA = 1.5  # DEIM's configs (configs/base/deim.yml: DEIMCriterion gamma)
MASK_LOSS_KEYS = ("loss_mask_bce", "loss_mask_dice")
DDF_TEMPERATURE = 5.0
Task = Literal["segment", "detect"]


def normalize_loss_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Accept ``{"vfl": 1}`` or ``{"loss_vfl": 1}`` style keys; unknown keys are a ConfigError."""
    merged = dict(DEFAULT_LOSS_WEIGHTS)
    for key, value in (weights or {}).items():
        name = key if key.startswith("loss_") else f"loss_{key}"
        if name not in DEFAULT_LOSS_WEIGHTS:
            allowed = ", ".join(k.removeprefix("loss_") for k in DEFAULT_LOSS_WEIGHTS)
            raise ConfigError(f"unknown loss weight {key!r}; allowed: {allowed}")
        merged[name] = float(value)
    return merged


@dataclass
class _Layer:
    """One decoder output the losses are applied to, with the matches it uses."""

    suffix: str
    outputs: Mapping[str, Any]
    indices: Indices  # for VFL and masks
    box_indices: Indices  # for L1/GIoU
    local_indices: Indices  # for FGL/DDF
    num_boxes: float
    box_num_boxes: float
    targets: Sequence[Mapping[str, Tensor]]
    is_dn: bool = False


@dataclass
class _CallState:
    """Per-forward state: DDF's positive/negative balance comes from the non-denoising layers and
    is reused for the denoising ones, as upstream does."""

    num_pos: Tensor | None = None
    num_neg: Tensor | None = None


class DFineCriterion(nn.Module):
    """D-FINE(-seg) loss. ``forward(outputs, targets)`` returns a flat dict of *weighted* losses
    (``loss_vfl``, ``loss_vfl_aux_0``, ``loss_bbox_enc_0``, ``loss_mask_dice_dn_2`` ...); their sum
    is the training loss (see ``total_loss`` / ``summarize_losses``)."""

    def __init__(
        self,
        num_classes: int,
        task: Task = "segment",
        weight_dict: Mapping[str, float] | None = None,
        matcher: HungarianMatcher | None = None,
        matcher_costs: Mapping[str, float] | None = None,
        alpha: float = 0.75,
        gamma: float = 2.0,
        reg_max: int = 32,
        cls_loss: Literal["vfl", "mal"] = "vfl",
        mal_gamma: float = MAL_GAMMA,
    ) -> None:
        super().__init__()
        if cls_loss not in ("vfl", "mal"):
            raise ConfigError(f"cls_loss must be 'vfl' or 'mal', got {cls_loss!r}")
        self.cls_loss = cls_loss
        self.mal_gamma = float(mal_gamma)
        if task not in ("segment", "detect"):
            raise ConfigError(f"task must be 'segment' or 'detect', got {task!r}")
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.task: Task = task
        self.weight_dict = normalize_loss_weights(weight_dict)
        if cls_loss == "mal" and not any(k in (weight_dict or {}) for k in ("mal", "loss_mal")):
            self.weight_dict["loss_mal"] = self.weight_dict["loss_vfl"]  # the one classification weight
        if matcher is None:
            costs = dict(matcher_costs or {})
            if task == "detect":  # no masks to match on
                costs.update(cost_mask=0.0, cost_mask_dice=0.0)
            matcher = HungarianMatcher.from_costs(costs)
        self.matcher = matcher
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.reg_max = int(reg_max)

    # ------------------------------------------------------------------ losses on one layer

    @staticmethod
    def _iou_targets(outputs: Mapping[str, Any], targets, indices: Indices
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, one-hot of the matched class per query, matched box IoU per query): what VFL
        and MAL both build their targets from."""
        logits = outputs["pred_logits"]
        idx = _src_idx(indices, logits.device)
        src_boxes = outputs["pred_boxes"][idx]
        tgt_boxes = _matched(targets, indices, "boxes", logits.device)
        ious = paired_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes)).detach()

        num_cls = logits.shape[-1]
        classes = torch.full(logits.shape[:2], num_cls, dtype=torch.int64, device=logits.device)
        classes[idx] = _matched(targets, indices, "labels", logits.device)
        onehot = F.one_hot(classes, num_classes=num_cls + 1)[..., :-1].to(logits.dtype)
        score = torch.zeros(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        score[idx] = ious.to(logits.dtype)
        return logits, onehot, score

    def loss_vfl(self, outputs: Mapping[str, Any], targets, indices: Indices, num_boxes: float) -> dict:
        """Varifocal loss: positives target their box IoU, negatives are down-weighted by
        alpha * p^gamma; summed over queries and classes, divided by num_boxes."""
        logits, onehot, score = self._iou_targets(outputs, targets, indices)
        target_score = score.unsqueeze(-1) * onehot
        pred_score = logits.detach().sigmoid()
        weight = self.alpha * pred_score.pow(self.gamma) * (1 - onehot) + target_score
        loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")
        return {"loss_vfl": loss.sum() / num_boxes}

    def loss_mal(self, outputs: Mapping[str, Any], targets, indices: Indices, num_boxes: float) -> dict:
        """DEIM's matchability-aware loss: BCE with target IoU^gamma for matched (query, class) pairs,
        weight 1 there and p^gamma on every other pair; summed, divided by num_boxes. Unlike VFL the
        positives are not weighted by their IoU target, and a poorly overlapping match (common early,
        and with many objects per image) asks for a correspondingly low score."""
        logits, onehot, score = self._iou_targets(outputs, targets, indices)
        target_score = (score.unsqueeze(-1) * onehot).pow(self.mal_gamma)
        pred_score = logits.detach().sigmoid()
        weight = pred_score.pow(self.mal_gamma) * (1 - onehot) + onehot
        loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")
        return {"loss_mal": loss.sum() / num_boxes}

    def loss_boxes(self, outputs: Mapping[str, Any], targets, indices: Indices, num_boxes: float) -> dict:
        """L1 on normalised cxcywh and 1 - GIoU, summed over matches, divided by num_boxes."""
        boxes = outputs["pred_boxes"]
        idx = _src_idx(indices, boxes.device)
        src = boxes[idx]
        tgt = _matched(targets, indices, "boxes", boxes.device)
        giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
        return {
            "loss_bbox": F.l1_loss(src, tgt, reduction="sum") / num_boxes,
            "loss_giou": (1 - giou).sum() / num_boxes,
        }

    def loss_local(
        self,
        outputs: Mapping[str, Any],
        targets,
        indices: Indices,
        num_boxes: float,
        state: _CallState,
        is_dn: bool,
    ) -> dict:
        """FGL (always, when the layer has edge distributions) and DDF (when it has a teacher)."""
        if "pred_corners" not in outputs:
            return {}
        bins = self.reg_max + 1
        boxes = outputs["pred_boxes"]
        idx = _src_idx(indices, boxes.device)
        tgt_boxes = _matched(targets, indices, "boxes", boxes.device)
        pred_corners = outputs["pred_corners"][idx].reshape(-1, bins)
        ref_points = outputs["ref_points"][idx].detach()
        with torch.no_grad():
            target_corners, weight_right, weight_left = bbox2distance(
                ref_points, box_cxcywh_to_xyxy(tgt_boxes), self.reg_max, outputs["reg_scale"], outputs["up"]
            )
        ious = paired_box_iou(box_cxcywh_to_xyxy(boxes[idx]), box_cxcywh_to_xyxy(tgt_boxes)).detach()
        weight_targets = ious.unsqueeze(-1).repeat(1, 4).reshape(-1)
        losses = {
            "loss_fgl": fgl_loss(pred_corners, target_corners, weight_right, weight_left, weight_targets)
            / num_boxes
        }
        if "teacher_corners" in outputs and outputs["teacher_corners"] is not None:
            losses["loss_ddf"] = self._ddf(outputs, idx, ious, state, is_dn)
        return losses

    def _ddf(self, outputs: Mapping[str, Any], idx, ious: Tensor, state: _CallState, is_dn: bool) -> Tensor:
        """Decoupled distillation focal loss: KL(teacher || student) on every query's edge
        distributions at temperature T, weighted by the teacher's confidence (or the IoU for
        matched queries), matched and unmatched queries balanced by sqrt of their counts."""
        bins = self.reg_max + 1
        pred = outputs["pred_corners"].reshape(-1, bins)
        teacher = outputs["teacher_corners"].reshape(-1, bins)
        if torch.equal(pred, teacher):  # the last layer is its own teacher
            return pred.sum() * 0
        with torch.no_grad():
            weight = outputs["teacher_logits"].sigmoid().max(dim=-1)[0]
            matched = torch.zeros_like(weight, dtype=torch.bool)
            matched[idx] = True
            weight[idx] = ious.to(weight.dtype)
            matched = matched.unsqueeze(-1).repeat(1, 1, 4).reshape(-1)
            weight = weight.unsqueeze(-1).repeat(1, 1, 4).reshape(-1)
        t = DDF_TEMPERATURE
        kl = F.kl_div(
            F.log_softmax(pred / t, dim=1), F.softmax(teacher.detach() / t, dim=1), reduction="none"
        )
        loss = weight * (t**2) * kl.sum(-1)
        if not is_dn or state.num_pos is None:
            batch_scale = 8 / outputs["pred_boxes"].shape[0]  # independent of the per-GPU batch size
            state.num_pos = (matched.sum() * batch_scale) ** 0.5
            state.num_neg = ((~matched).sum() * batch_scale) ** 0.5
        assert state.num_pos is not None and state.num_neg is not None  # set together above or earlier
        pos = loss[matched].mean() if matched.any() else 0
        neg = loss[~matched].mean() if (~matched).any() else 0
        return (pos * state.num_pos + neg * state.num_neg) / (state.num_pos + state.num_neg)

    def loss_masks(self, outputs: Mapping[str, Any], targets, indices: Indices) -> dict:
        """Box-cropped BCE (normalised by the box area) and Dice, averaged over matched instances
        that have a mask; GT masks are bilinearly resized to the mask-head resolution."""
        pred_masks = outputs.get("pred_masks")
        if pred_masks is None:
            return {}
        height, width = pred_masks.shape[-2:]
        b_idx, q_idx = _src_idx(indices, pred_masks.device)
        gt, boxes, keep = [], [], []
        for t, (_, j) in zip(targets, indices):
            j = j.to(t["boxes"].device)
            gt.append(resize_masks(t["masks"][j].to(pred_masks.device), (height, width)))
            boxes.append(t["boxes"][j].to(pred_masks.device))
            has = t.get("has_mask")
            keep.append(
                has[j].to(pred_masks.device) if has is not None else torch.ones_like(j, dtype=torch.bool)
            )
        keep_t = (
            torch.cat(keep).bool() if keep else torch.zeros(0, dtype=torch.bool, device=pred_masks.device)
        )
        pred = pred_masks[b_idx, q_idx][keep_t]
        # mean over the matched instances of the *global* batch: under DDP each rank scales its
        # local mean by local / (all-reduced mean count), so averaging gradients over ranks gives
        # sum / total count. Called on every rank (collective) before any early return.
        n_local = pred.shape[0]
        scale = n_local / _global_mean_count(n_local, pred_masks.device)
        if n_local == 0:
            zero = pred_masks.sum() * 0.0
            return {"loss_mask_bce": zero, "loss_mask_dice": zero}
        gt_t = torch.cat(gt)[keep_t]
        regions, area = box_regions(torch.cat(boxes)[keep_t], height, width)
        return {
            "loss_mask_bce": cropped_bce_loss(pred, gt_t, regions, area) * scale,
            "loss_mask_dice": cropped_dice_loss(pred, gt_t, regions) * scale,
        }

    def _layer_losses(self, layer: _Layer, state: _CallState) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        cls = self.loss_mal if self.cls_loss == "mal" else self.loss_vfl
        out.update(cls(layer.outputs, layer.targets, layer.indices, layer.num_boxes))
        out.update(self.loss_boxes(layer.outputs, layer.targets, layer.box_indices, layer.box_num_boxes))
        out.update(
            self.loss_local(
                layer.outputs, layer.targets, layer.local_indices, layer.box_num_boxes, state, layer.is_dn
            )
        )
        if self.task == "segment":
            out.update(self.loss_masks(layer.outputs, layer.targets, layer.indices))
        return {k + layer.suffix: v * self.weight_dict[k] for k, v in out.items()}

    # ------------------------------------------------------------------ whole model output

    def forward(
        self, outputs: Mapping[str, Any], targets: Sequence[Mapping[str, Tensor]]
    ) -> dict[str, Tensor]:
        outputs = _to_float32(outputs)  # AMP outputs: losses are computed in float32, as upstream
        targets = self._prepare_targets(outputs, targets)
        device = outputs["pred_logits"].device
        main = {k: v for k, v in outputs.items() if "aux" not in k}
        indices = self.matcher(main, targets)["indices"]

        aux = list(outputs.get("aux_outputs") or [])
        pre = outputs.get("pre_outputs")
        enc = list(outputs.get("enc_aux_outputs") or [])
        enc_targets = targets
        if enc and (outputs.get("enc_meta") or {}).get("class_agnostic", False):
            enc_targets = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]

        aux_indices = [self.matcher(a, targets)["indices"] for a in aux]
        pre_indices = self.matcher(pre, targets)["indices"] if pre is not None else None
        enc_indices = [self.matcher(e, enc_targets)["indices"] for e in enc]
        if aux:
            union_of = aux_indices + ([pre_indices] if pre_indices is not None else []) + enc_indices
            go_indices = go_union_indices(indices, union_of)
        else:
            go_indices = indices

        num_boxes = _global_mean_count(sum(len(t["labels"]) for t in targets), device)
        num_go = _global_mean_count(sum(len(i) for i, _ in go_indices), device)
        shared = {"up": outputs.get("up"), "reg_scale": outputs.get("reg_scale")}

        layers = [_Layer("", main, indices, go_indices, go_indices, num_boxes, num_go, targets)]
        for i, (a, ind) in enumerate(zip(aux, aux_indices)):
            layers.append(
                _Layer(f"_aux_{i}", {**a, **shared}, ind, go_indices, go_indices, num_boxes, num_go, targets)
            )
        if pre is not None and pre_indices is not None:  # (matched exactly when pre is there)
            layers.append(
                _Layer("_pre", pre, pre_indices, go_indices, go_indices, num_boxes, num_go, targets)
            )
        for i, (e, ind) in enumerate(zip(enc, enc_indices)):
            layers.append(_Layer(f"_enc_{i}", e, ind, go_indices, ind, num_boxes, num_go, enc_targets))
        layers += self._dn_layers(outputs, targets, num_boxes, shared)

        state = _CallState()
        losses: dict[str, Tensor] = {}
        for layer in layers:
            losses.update(self._layer_losses(layer, state))
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in losses.items()}

    def _dn_layers(self, outputs, targets, num_boxes: float, shared: dict) -> list[_Layer]:
        dn_outputs = list(outputs.get("dn_outputs") or [])
        meta = outputs.get("dn_meta")
        if not dn_outputs or not meta or not meta.get("dn_num_group") or meta.get("dn_positive_idx") is None:
            return []
        indices = denoising_indices(meta, targets)
        dn_num_boxes = num_boxes * meta["dn_num_group"]
        dn_num_boxes = dn_num_boxes if dn_num_boxes > 0 else 1.0
        if outputs.get("dn_pred_masks") is not None and "pred_masks" not in dn_outputs[-1]:
            dn_outputs[-1] = {**dn_outputs[-1], "pred_masks": outputs["dn_pred_masks"]}  # D-FINE-seg naming
        named = [(f"_dn_{i}", {**d, **shared}) for i, d in enumerate(dn_outputs)]
        if outputs.get("dn_pre_outputs") is not None:
            named.append(("_dn_pre", outputs["dn_pre_outputs"]))
        # denoising queries are matched by construction: one set of indices for every loss kind
        return [_Layer(name, out, indices, indices, indices, dn_num_boxes, dn_num_boxes, targets, True)
                for name, out in named]

    def _prepare_targets(
        self, outputs: Mapping[str, Any], targets: Sequence[Mapping[str, Tensor]]
    ) -> list[dict]:
        """Validate targets and, for segmentation, resize GT masks once to the mask resolution."""
        logits = outputs["pred_logits"]
        if len(targets) != logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {logits.shape[0]} images")
        pred_masks = outputs.get("pred_masks")
        if self.task == "segment" and pred_masks is None:
            raise ValueError("task is 'segment' but the model output has no 'pred_masks' (mask head off?)")
        device = logits.device
        prepared = []
        for n, t in enumerate(targets):
            labels = t["labels"].to(device=device, dtype=torch.int64)
            boxes = t["boxes"].to(device=device)
            if boxes.ndim != 2 or boxes.shape[-1] != 4 or len(boxes) != len(labels):
                raise ValueError(
                    f"target {n}: boxes {tuple(boxes.shape)} do not match labels {tuple(labels.shape)}"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"target {n}: class id {int(labels.max() if labels.max() >= self.num_classes else labels.min())} "
                    f"outside 0..{self.num_classes - 1}"
                )
            item = {"labels": labels, "boxes": boxes}
            if self.task == "segment":
                if t.get("masks") is None:
                    raise ValueError(f"target {n}: task is 'segment' but the target has no 'masks'")
                masks = t["masks"].to(device)
                if masks.ndim != 3 or len(masks) != len(labels):
                    raise ValueError(
                        f"target {n}: masks {tuple(masks.shape)} do not match {len(labels)} labels"
                    )
                if masks.numel() and masks.max() > 1:
                    raise ValueError(f"target {n}: masks must hold 0/1 values, found {float(masks.max())}")
                assert pred_masks is not None  # checked above for task 'segment'
                item["masks"] = resize_masks(masks, (pred_masks.shape[-2], pred_masks.shape[-1]))
                if t.get("has_mask") is not None:
                    item["has_mask"] = t["has_mask"].to(device=device, dtype=torch.bool)
            prepared.append(item)
        return prepared


# ---------------------------------------------------------------------- helpers


def fgl_loss(
    pred: Tensor, label: Tensor, weight_right: Tensor, weight_left: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Fine-grained localisation loss (sum, not normalised): cross-entropy of each edge
    distribution with its two neighbouring target bins, weighted by the interpolation weights
    (and by the box IoU)."""
    left = label.long()
    loss = F.cross_entropy(pred, left, reduction="none") * weight_left.reshape(-1) + F.cross_entropy(
        pred, left + 1, reduction="none"
    ) * weight_right.reshape(-1)
    if weight is not None:
        loss = loss * weight.float()
    return loss.sum()


def go_union_indices(indices: Indices, others: Sequence[Indices]) -> Indices:
    """Union of the matches of all layers: per image, each query keeps the target it was matched
    to most often; a target may get several queries.

    Ties (a query matched equally often to two targets) are broken by torch's default
    (unstable) argsort of the counts, the very call the official code makes, so the union equals
    the official one on the same machine. Which tied target wins is implementation-defined
    (above 16 pairs the AVX-512 sort differs from a stable one), for the official code as for us.
    """
    result: Indices = []
    for b, (rows, cols) in enumerate(indices):
        all_rows = torch.cat([rows] + [o[b][0] for o in others])
        all_cols = torch.cat([cols] + [o[b][1] for o in others])
        pairs = torch.stack([all_rows, all_cols], dim=1)
        if len(pairs) == 0:
            result.append((rows.new_zeros(0), cols.new_zeros(0)))
            continue
        unique, counts = torch.unique(pairs, return_counts=True, dim=0)
        order = torch.argsort(counts, descending=True)  # unstable, as the official code
        chosen: dict[int, int] = {}
        for q, g in unique[order].tolist():
            chosen.setdefault(q, g)
        result.append(
            (
                torch.tensor(list(chosen.keys()), dtype=torch.int64, device=rows.device),
                torch.tensor(list(chosen.values()), dtype=torch.int64, device=rows.device),
            )
        )
    return result


def denoising_indices(dn_meta: Mapping[str, Any], targets: Sequence[Mapping[str, Tensor]]) -> Indices:
    """Matches of the denoising queries: group g's positive query k reconstructs GT k."""
    positive, groups = dn_meta["dn_positive_idx"], dn_meta["dn_num_group"]
    out: Indices = []
    for i, t in enumerate(targets):
        device = t["labels"].device
        n = len(t["labels"])
        gt = torch.arange(n, dtype=torch.int64, device=device).tile(groups)
        pos = positive[i].to(device) if n else torch.zeros(0, dtype=torch.int64, device=device)
        if len(pos) != len(gt):
            raise ValueError(
                f"dn_meta: image {i} has {len(pos)} positive denoising queries, expected {len(gt)}"
            )
        out.append((pos, gt))
    return out


def total_loss(losses: Mapping[str, Tensor]) -> Tensor:
    """The training objective: the sum of all weighted losses."""
    return sum(losses.values())  # type: ignore[return-value]


def summarize_losses(losses: Mapping[str, Tensor]) -> dict[str, float]:
    """For logging: ``loss`` (total) and one entry per loss kind summed over all layers, named as
    ``core.messages.TrainLosses`` declares them (``loss_vfl``, ``loss_bbox``, ``loss_giou``,
    ``loss_fgl``, ``loss_ddf``, ``loss_mask_bce``, ``loss_mask_dice``; mask keys only for
    segmentation). A kind not declared there is kept under its own name, and the step event that
    carries it fails its validation: a new loss must be declared to be logged."""
    summary: dict[str, float] = {"loss": float(sum(float(v.detach()) for v in losses.values()))}
    by_kind: dict[str, float] = {}
    for key, value in losses.items():
        kind = _kind_of(key)
        by_kind[kind] = by_kind.get(kind, 0.0) + float(value.detach())
    for kind in sorted(by_kind, key=lambda k: TRAIN_LOSS_NAMES.index(k) if k in TRAIN_LOSS_NAMES else len(TRAIN_LOSS_NAMES)):
        summary[kind] = by_kind[kind]
    return summary


def _kind_of(key: str) -> str:
    for kind in sorted(TRAIN_LOSS_NAMES, key=len, reverse=True):
        if key == kind or key.startswith(kind + "_"):
            return kind
    return key


def _to_float32(value: Any) -> Any:
    """Half/bfloat16 tensors -> float32 (recursively through dicts, lists and tuples); float32
    tensors are returned as they are, so nothing is copied outside mixed precision."""
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, Mapping):
        return {k: _to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


def _src_idx(indices: Indices, device: torch.device) -> tuple[Tensor, Tensor]:
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)]).to(device)
    src = torch.cat([src for src, _ in indices]).to(device)
    return batch, src


def _matched(targets, indices: Indices, key: str, device: torch.device) -> Tensor:
    return torch.cat([t[key][j.to(t[key].device)] for t, (_, j) in zip(targets, indices)]).to(device)


def _global_mean_count(count: int, device: torch.device) -> float:
    """Matched-box count averaged over DDP ranks, at least 1 (upstream's num_boxes)."""
    value = torch.as_tensor([float(count)], dtype=torch.float, device=device)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value)
        world = dist.get_world_size()
    return torch.clamp(value / world, min=1).item()
