"""D-FINE transformer decoder: query selection, deformable cross-attention, FDR, LQE, GO-LSD outputs.

Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/zoo/dfine/dfine_decoder.py,
dfine_utils.py, utils.py; itself modified from RT-DETR). Module names and registration order
follow upstream exactly: the official `decoder.*` state_dict keys load unchanged.

Besides the official outputs, the decoder can hand back each layer's query hidden state
(`return_hidden=True`) so the D-FINE-seg mask head can turn queries into mask embeddings.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from core.model.box_ops import box_xyxy_to_cxcywh, inverse_sigmoid
from core.model.denoising import contrastive_denoising_group
from core.model.grad_layout import BatchNorm2d
from core.model.hybrid_encoder import make_activation

__all__ = ["MLP", "DFINETransformer", "bias_init_with_prob", "distance2bbox", "weighting_function"]


def bias_init_with_prob(prior_prob: float = 0.01) -> float:
    """Bias so that sigmoid(bias) == prior_prob (focal-loss style head init)."""
    return float(-math.log((1 - prior_prob) / prior_prob))


def weighting_function(reg_max: int, up: torch.Tensor, reg_scale: torch.Tensor | float) -> torch.Tensor:
    """FDR's non-uniform bin values W(n), n = 0..reg_max ([reg_max + 1]).

    Symmetric around 0, bounded by +-2*|up|*|reg_scale|; small steps near 0 for fine edits.
    """
    ub1 = abs(up[0]) * (reg_scale.abs() if isinstance(reg_scale, torch.Tensor) else abs(reg_scale))
    ub2 = ub1 * 2
    step = (ub1 + 1) ** (2 / (reg_max - 2))
    left = [-(step ** i) + 1 for i in range(reg_max // 2 - 1, 0, -1)]
    right = [step ** i - 1 for i in range(1, reg_max // 2)]
    values = [-ub2] + left + [torch.zeros_like(up[0][None])] + right + [ub2]
    return torch.cat([v.reshape(1) for v in values], 0)


def distance2bbox(points: torch.Tensor, distance: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """Edge distances (l, t, r, b) relative to reference boxes (cxcywh) -> boxes cxcywh."""
    reg_scale = abs(reg_scale)
    x1 = points[..., 0] - (0.5 * reg_scale + distance[..., 0]) * (points[..., 2] / reg_scale)
    y1 = points[..., 1] - (0.5 * reg_scale + distance[..., 1]) * (points[..., 3] / reg_scale)
    x2 = points[..., 0] + (0.5 * reg_scale + distance[..., 2]) * (points[..., 2] / reg_scale)
    y2 = points[..., 1] + (0.5 * reg_scale + distance[..., 3]) * (points[..., 3] / reg_scale)
    return box_xyxy_to_cxcywh(torch.stack([x1, y1, x2, y2], -1))


class MLP(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 act: str = "relu"):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))
        self.act = make_activation(act)

    def linear(self, i: int) -> nn.Linear:
        """Layer `i` as its concrete type (ModuleList indexing is typed as plain Module)."""
        return cast(nn.Linear, self.layers[i])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = self.act(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


def deformable_attention_core(value: list[torch.Tensor], spatial_shapes: list[list[int]],
                              sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                              num_points_list: list[int]) -> torch.Tensor:
    """Bilinear sampling per level with grid_sample, weighted sum over all points.

    value: per level [B*heads... as B, heads, head_dim, H*W]; sampling_locations
    [B, Lq, heads, sum(points), 2] in [0, 1]; attention_weights [B, Lq, heads, sum(points)].
    Returns [B, Lq, heads*head_dim].
    """
    bs, n_head, c, _ = value[0].shape
    len_q = sampling_locations.shape[1]
    grids = (2 * sampling_locations - 1).permute(0, 2, 1, 3, 4).flatten(0, 1)
    grids_per_level = grids.split(num_points_list, dim=-2)
    sampled = []
    for level, (h, w) in enumerate(spatial_shapes):
        value_l = value[level].reshape(bs * n_head, c, h, w)
        sampled.append(F.grid_sample(value_l, grids_per_level[level], mode="bilinear",
                                     padding_mode="zeros", align_corners=False))
    weights = attention_weights.permute(0, 2, 1, 3).reshape(bs * n_head, 1, len_q, sum(num_points_list))
    out = (torch.cat(sampled, dim=-1) * weights).sum(-1).reshape(bs, n_head * c, len_q)
    return out.permute(0, 2, 1)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention with box-relative offsets (reference = box cxcywh)."""

    num_points_scale: torch.Tensor  # buffer

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, num_levels: int = 4,
                 num_points: int | list[int] = 4, offset_scale: float = 0.5):
        super().__init__()
        self.embed_dim, self.num_heads, self.num_levels = embed_dim, num_heads, num_levels
        self.offset_scale = offset_scale
        if isinstance(num_points, (list, tuple)):
            if len(num_points) != num_levels:
                raise ValueError(f"num_points {num_points} must have one entry per level ({num_levels})")
            self.num_points_list = list(num_points)
        else:
            self.num_points_list = [num_points] * num_levels
        scale = [1 / n for n in self.num_points_list for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32))
        self.total_points = num_heads * sum(self.num_points_list)
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
        self.sampling_offsets = nn.Linear(embed_dim, self.total_points * 2)
        self.attention_weights = nn.Linear(embed_dim, self.total_points)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        init.constant_(self.sampling_offsets.weight, 0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.reshape(self.num_heads, 1, 2).tile([1, sum(self.num_points_list), 1])
        scaling = torch.cat([torch.arange(1, n + 1) for n in self.num_points_list]).reshape(1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((grid * scaling).flatten())
        init.constant_(self.attention_weights.weight, 0)
        init.constant_(self.attention_weights.bias, 0)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor,
                value: list[torch.Tensor], spatial_shapes: list[list[int]]) -> torch.Tensor:
        """query [B,Lq,C]; reference_points [B,Lq,1,4] cxcywh in [0,1]."""
        bs, len_q = query.shape[:2]
        n_pts = sum(self.num_points_list)
        offsets = self.sampling_offsets(query).reshape(bs, len_q, self.num_heads, n_pts, 2)
        weights = F.softmax(
            self.attention_weights(query).reshape(bs, len_q, self.num_heads, n_pts), dim=-1)
        if reference_points.shape[-1] != 4:
            raise ValueError(f"reference_points must be boxes (last dim 4), got {reference_points.shape}")
        pts_scale = self.num_points_scale.to(dtype=query.dtype).unsqueeze(-1)
        offset = offsets * pts_scale * reference_points[:, :, None, :, 2:] * self.offset_scale
        locations = reference_points[:, :, None, :, :2] + offset
        return deformable_attention_core(value, spatial_shapes, locations, weights,
                                         self.num_points_list)


class Gate(nn.Module):
    """Gated fusion of the residual and the cross-attention output (replaces the residual add)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.gate = nn.Linear(2 * d_model, 2 * d_model)
        init.constant_(self.gate.bias, bias_init_with_prob(0.5))
        init.constant_(self.gate.weight, 0)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        g1, g2 = torch.sigmoid(self.gate(torch.cat([x1, x2], dim=-1))).chunk(2, dim=-1)
        return self.norm(g1 * x1 + g2 * x2)


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model: int = 256, n_head: int = 8, dim_feedforward: int = 1024,
                 dropout: float = 0.0, activation: str = "relu", n_levels: int = 4,
                 n_points: int | list[int] = 4, layer_scale: float | None = None):
        super().__init__()
        if layer_scale is not None:
            dim_feedforward = round(layer_scale * dim_feedforward)
            d_model = round(layer_scale * d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, n_levels, n_points)
        self.dropout2 = nn.Dropout(dropout)
        self.gateway = Gate(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = make_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        init.xavier_uniform_(self.linear1.weight)
        init.xavier_uniform_(self.linear2.weight)

    def forward(self, target: torch.Tensor, reference_points: torch.Tensor,
                value: list[torch.Tensor], spatial_shapes: list[list[int]],
                attn_mask: torch.Tensor | None = None,
                query_pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        q = k = target if query_pos_embed is None else target + query_pos_embed
        attn, _ = self.self_attn(q, k, value=target, attn_mask=attn_mask, need_weights=False)
        target = self.norm1(target + self.dropout1(attn))
        cross = self.cross_attn(target if query_pos_embed is None else target + query_pos_embed,
                                reference_points, value, spatial_shapes)
        target = self.gateway(target, self.dropout2(cross))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(target))))
        target = target + self.dropout4(ffn)
        return self.norm3(target.clamp(min=-65504, max=65504))


class Integral(nn.Module):
    """Expected edge offset: sum_n softmax(logits)_n * W(n), per box edge."""

    def __init__(self, reg_max: int = 32):
        super().__init__()
        self.reg_max = reg_max

    def forward(self, x: torch.Tensor, project: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = F.softmax(x.reshape(-1, self.reg_max + 1), dim=1)
        x = F.linear(x, project.to(x.device)).reshape(-1, 4)
        return x.reshape(list(shape[:-1]) + [-1])


class LQE(nn.Module):
    """Location Quality Estimator: adds a score from the top-k distribution statistics."""

    def __init__(self, k: int, hidden_dim: int, num_layers: int, reg_max: int):
        super().__init__()
        self.k, self.reg_max = k, reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden_dim, 1, num_layers)
        init.constant_(self.reg_conf.linear(-1).bias, 0)
        init.constant_(self.reg_conf.linear(-1).weight, 0)

    def forward(self, scores: torch.Tensor, pred_corners: torch.Tensor) -> torch.Tensor:
        b, n, _ = pred_corners.size()
        prob = F.softmax(pred_corners.reshape(b, n, 4, self.reg_max + 1), dim=-1)
        topk, _ = prob.topk(self.k, dim=-1)
        stat = torch.cat([topk, topk.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stat.reshape(b, n, -1))


class TransformerDecoder(nn.Module):
    """Decoder layers with Fine-grained Distribution Refinement (FDR) of the box edges."""

    def __init__(self, hidden_dim: int, decoder_layer: nn.Module, decoder_layer_wide: nn.Module,
                 num_layers: int, num_head: int, reg_max: int, reg_scale: nn.Parameter,
                 up: nn.Parameter, eval_idx: int = -1, layer_scale: float = 2):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.layer_scale = layer_scale
        self.num_head = num_head
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        # Shared with DFINETransformer: registered here too, as upstream (two state_dict keys).
        self.up, self.reg_scale, self.reg_max = up, reg_scale, reg_max
        self.layers = nn.ModuleList(
            [copy.deepcopy(decoder_layer) for _ in range(self.eval_idx + 1)]
            + [copy.deepcopy(decoder_layer_wide) for _ in range(num_layers - self.eval_idx - 1)])
        self.lqe_layers = nn.ModuleList([copy.deepcopy(LQE(4, 64, 2, reg_max)) for _ in range(num_layers)])

    def _value(self, memory: torch.Tensor, spatial_shapes: list[list[int]]) -> list[torch.Tensor]:
        value = memory.reshape(memory.shape[0], memory.shape[1], self.num_head, -1)
        split = [h * w for h, w in spatial_shapes]
        return list(value.permute(0, 2, 3, 1).split(split, dim=-1))

    def forward(self, target, ref_points_unact, memory, spatial_shapes, bbox_head, score_head,
                query_pos_head, pre_bbox_head, integral, up, reg_scale, attn_mask=None,
                return_hidden: bool = False):
        """Returns (boxes, logits, corners, refs) stacked over the emitted layers, the layer-0
        pre-boxes/pre-logits and, if asked, the stacked hidden states [L,B,Q,C]."""
        output = target
        output_detach: torch.Tensor | float = 0
        pred_corners_undetach: torch.Tensor | float = 0
        value = self._value(memory, spatial_shapes)
        out_boxes, out_logits, out_corners, out_refs, hidden = [], [], [], [], []
        project = weighting_function(self.reg_max, up, reg_scale)
        ref_points_detach = torch.sigmoid(ref_points_unact)
        ref_points_initial = pre_boxes = pre_scores = None

        for i, layer in enumerate(self.layers):
            ref_input = ref_points_detach.unsqueeze(2)
            query_pos = query_pos_head(ref_points_detach).clamp(min=-10, max=10)
            if i >= self.eval_idx + 1 and self.layer_scale > 1:  # wider auxiliary layers
                query_pos = F.interpolate(query_pos, scale_factor=self.layer_scale)
                value = self._value(F.interpolate(memory, size=query_pos.shape[-1]), spatial_shapes)
                output = F.interpolate(output, size=query_pos.shape[-1])
                output_detach = output.detach()

            output = layer(output, ref_input, value, spatial_shapes, attn_mask, query_pos)

            if i == 0:
                pre_boxes = torch.sigmoid(pre_bbox_head(output) + inverse_sigmoid(ref_points_detach))
                pre_scores = score_head[0](output)
                ref_points_initial = pre_boxes.detach()

            assert ref_points_initial is not None  # set by layer 0
            pred_corners = bbox_head[i](output + output_detach) + pred_corners_undetach
            inter_ref_bbox = distance2bbox(ref_points_initial, integral(pred_corners, project),
                                           reg_scale)

            if self.training or i == self.eval_idx:
                scores = self.lqe_layers[i](score_head[i](output), pred_corners)
                out_logits.append(scores)
                out_boxes.append(inter_ref_bbox)
                out_corners.append(pred_corners)
                out_refs.append(ref_points_initial)
                if return_hidden:
                    hidden.append(output)
                if not self.training:
                    break

            pred_corners_undetach = pred_corners
            ref_points_detach = inter_ref_bbox.detach()
            output_detach = output.detach()

        return (torch.stack(out_boxes), torch.stack(out_logits), torch.stack(out_corners),
                torch.stack(out_refs), pre_boxes, pre_scores,
                torch.stack(hidden) if return_hidden else None)


class DFINETransformer(nn.Module):
    """The D-FINE head: encoder-side query selection, then the FDR decoder.

    forward(feats, targets) -> dict as the official DFINETransformer (see core.model.network).
    """

    def __init__(self, num_classes: int = 80, hidden_dim: int = 256, num_queries: int = 300,
                 feat_channels: Sequence[int] = (512, 1024, 2048),
                 feat_strides: Sequence[int] = (8, 16, 32),
                 num_levels: int = 3, num_points: int | list[int] = 4, nhead: int = 8,
                 num_layers: int = 6, dim_feedforward: int = 1024, dropout: float = 0.0,
                 activation: str = "relu", num_denoising: int = 100,
                 label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0,
                 eval_spatial_size: tuple[int, int] | None = None, eval_idx: int = -1,
                 eps: float = 1e-2, aux_loss: bool = True, reg_max: int = 32,
                 reg_scale: float = 4.0, layer_scale: float = 1):
        super().__init__()
        channels, strides = list(feat_channels), list(feat_strides)
        if len(channels) > num_levels or len(strides) != len(channels):
            raise ValueError("feat_channels/feat_strides must match and not exceed num_levels")
        for _ in range(num_levels - len(strides)):
            strides.append(strides[-1] * 2)
        self.hidden_dim = hidden_dim
        scaled_dim = round(layer_scale * hidden_dim)
        self.nhead = nhead
        self.feat_strides = strides
        self.num_levels = num_levels
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.eps = eps
        self.num_layers = num_layers
        self.eval_spatial_size = eval_spatial_size
        self.aux_loss = aux_loss
        self.reg_max = reg_max

        self._build_input_proj_layer(channels)
        self.up = nn.Parameter(torch.tensor([0.5]), requires_grad=False)
        self.reg_scale = nn.Parameter(torch.tensor([float(reg_scale)]), requires_grad=False)
        layer = TransformerDecoderLayer(hidden_dim, nhead, dim_feedforward, dropout, activation,
                                        num_levels, num_points)
        layer_wide = TransformerDecoderLayer(hidden_dim, nhead, dim_feedforward, dropout,
                                             activation, num_levels, num_points,
                                             layer_scale=layer_scale)
        self.decoder = TransformerDecoder(hidden_dim, layer, layer_wide, num_layers, nhead, reg_max,
                                          self.reg_scale, self.up, eval_idx, layer_scale)
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim,
                                                      padding_idx=num_classes)
            init.normal_(self.denoising_class_embed.weight[:-1])
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        self.enc_output = nn.Sequential(OrderedDict([
            ("proj", nn.Linear(hidden_dim, hidden_dim)), ("norm", nn.LayerNorm(hidden_dim))]))
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        self.dec_score_head = nn.ModuleList(
            [nn.Linear(hidden_dim, num_classes) for _ in range(self.eval_idx + 1)]
            + [nn.Linear(scaled_dim, num_classes) for _ in range(num_layers - self.eval_idx - 1)])
        self.pre_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_bbox_head = nn.ModuleList(
            [MLP(hidden_dim, hidden_dim, 4 * (reg_max + 1), 3) for _ in range(self.eval_idx + 1)]
            + [MLP(scaled_dim, scaled_dim, 4 * (reg_max + 1), 3)
               for _ in range(num_layers - self.eval_idx - 1)])
        self.integral = Integral(reg_max)
        if eval_spatial_size:
            anchors, valid_mask = self._generate_anchors()
            self.register_buffer("anchors", anchors)
            self.register_buffer("valid_mask", valid_mask)
        else:
            self.anchors = self.valid_mask = None
        self._reset_parameters(channels)

    # ---- init -------------------------------------------------------------------------------
    def _reset_parameters(self, feat_channels: list[int]) -> None:
        bias = bias_init_with_prob(0.01)
        init.constant_(self.enc_score_head.bias, bias)
        for mlp in (self.enc_bbox_head, self.pre_bbox_head):
            init.constant_(mlp.linear(-1).weight, 0)
            init.constant_(mlp.linear(-1).bias, 0)
        for cls_, reg_ in zip(self.dec_score_head, self.dec_bbox_head):
            assert isinstance(cls_, nn.Linear) and isinstance(reg_, MLP)
            init.constant_(cls_.bias, bias)
            init.constant_(reg_.linear(-1).weight, 0)
            init.constant_(reg_.linear(-1).bias, 0)
        init.xavier_uniform_(cast(nn.Linear, self.enc_output[0]).weight)
        init.xavier_uniform_(self.query_pos_head.linear(0).weight)
        init.xavier_uniform_(self.query_pos_head.linear(1).weight)
        for m, c in zip(self.input_proj, feat_channels):
            if c != self.hidden_dim:
                init.xavier_uniform_(cast(nn.Conv2d, cast(nn.Sequential, m)[0]).weight)

    def reset_class_heads(self) -> list[str]:
        """Re-initialise every class-count-dependent layer (used when the class list changes).

        Returns the state_dict key prefixes (relative to this module) that were reset.
        """
        bias = bias_init_with_prob(0.01)
        heads = [("enc_score_head", self.enc_score_head)] + [
            (f"dec_score_head.{i}", cast(nn.Linear, h)) for i, h in enumerate(self.dec_score_head)]
        for _, lin in heads:
            lin.reset_parameters()
            init.constant_(lin.bias, bias)
        names = [n for n, _ in heads]
        if self.num_denoising > 0:
            with torch.no_grad():
                init.normal_(self.denoising_class_embed.weight)
                self.denoising_class_embed.weight[-1].zero_()
            names.append("denoising_class_embed")
        return names

    def _build_input_proj_layer(self, feat_channels: list[int]) -> None:
        self.input_proj = nn.ModuleList()
        for c in feat_channels:
            if c == self.hidden_dim:
                self.input_proj.append(nn.Identity())
            else:
                self.input_proj.append(nn.Sequential(OrderedDict([
                    ("conv", nn.Conv2d(c, self.hidden_dim, 1, bias=False)),
                    ("norm", BatchNorm2d(self.hidden_dim))])))
        c = feat_channels[-1]
        for _ in range(self.num_levels - len(feat_channels)):
            if c == self.hidden_dim:
                self.input_proj.append(nn.Identity())
            else:
                self.input_proj.append(nn.Sequential(OrderedDict([
                    ("conv", nn.Conv2d(c, self.hidden_dim, 3, 2, padding=1, bias=False)),
                    ("norm", BatchNorm2d(self.hidden_dim))])))
                c = self.hidden_dim

    # ---- helpers ----------------------------------------------------------------------------
    def _get_encoder_input(self, feats: list[torch.Tensor]):
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        n_in = len(proj)
        for i in range(n_in, self.num_levels):
            proj.append(self.input_proj[i](feats[-1] if i == n_in else proj[-1]))
        flat, shapes = [], []
        for f in proj:
            _, _, h, w = f.shape
            flat.append(f.flatten(2).permute(0, 2, 1))
            shapes.append([h, w])
        return torch.cat(flat, 1), shapes

    def _generate_anchors(self, spatial_shapes=None, grid_size: float = 0.05,
                          dtype=torch.float32, device=None):
        if spatial_shapes is None:
            if self.eval_spatial_size is None:
                raise ValueError("spatial_shapes is needed when the model has no eval_spatial_size")
            h0, w0 = self.eval_spatial_size
            spatial_shapes = [[int(h0 / s), int(w0 / s)] for s in self.feat_strides]
        per_level = []
        for lvl, (h, w) in enumerate(spatial_shapes):
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            xy = (torch.stack([gx, gy], dim=-1).unsqueeze(0) + 0.5) / torch.tensor([w, h], dtype=dtype)
            wh = torch.ones_like(xy) * grid_size * (2.0 ** lvl)
            per_level.append(torch.cat([xy, wh], dim=-1).reshape(-1, h * w, 4))
        anchors = torch.cat(per_level, dim=1)
        if device is not None:
            anchors = anchors.to(device)
        valid = ((anchors > self.eps) * (anchors < 1 - self.eps)).all(-1, keepdim=True)
        anchors = torch.log(anchors / (1 - anchors))
        anchors = torch.where(valid, anchors, torch.inf)
        return anchors, valid

    def _anchors_for(self, memory: torch.Tensor, spatial_shapes):
        n = sum(h * w for h, w in spatial_shapes)
        # Static (shape-based) choice: the cached buffer only fits the build image size.
        if self.training or self.anchors is None or self.anchors.shape[1] != n:
            return self._generate_anchors(spatial_shapes, device=memory.device)
        return self.anchors, self.valid_mask

    def _query_indices(self, scores: torch.Tensor, topk: int) -> torch.Tensor:
        """Indices of the `topk` best encoder positions ([B, topk], best first), as upstream's
        "default" query selection. Its own method so a test can replay a reference selection."""
        return torch.topk(scores, topk, dim=-1).indices

    def _select_topk(self, memory, logits, anchors_unact, topk: int):
        if logits.shape[1] < topk:  # static shape check, fine under tracing
            raise ValueError(f"input too small: {logits.shape[1]} feature positions for {topk} "
                             f"queries (strides {self.feat_strides}); use a larger image size")
        idx = self._query_indices(logits.max(-1).values, topk)
        top_anchors = anchors_unact.gather(1, idx.unsqueeze(-1).repeat(1, 1, anchors_unact.shape[-1]))
        top_logits = (logits.gather(1, idx.unsqueeze(-1).repeat(1, 1, logits.shape[-1]))
                      if self.training else None)
        top_memory = memory.gather(1, idx.unsqueeze(-1).repeat(1, 1, memory.shape[-1]))
        return top_memory, top_logits, top_anchors

    def _get_decoder_input(self, memory, spatial_shapes, dn_logits=None, dn_bbox_unact=None):
        anchors, valid_mask = self._anchors_for(memory, spatial_shapes)
        # Always expand (upstream skips it for batch 1, which bakes batch 1 into a traced graph).
        anchors = anchors.expand(memory.shape[0], -1, -1)
        memory = valid_mask.to(memory.dtype) * memory
        output_memory = self.enc_output(memory)
        enc_logits = self.enc_score_head(output_memory)
        top_memory, top_logits, top_anchors = self._select_topk(
            output_memory, enc_logits, anchors, self.num_queries)
        top_bbox_unact = self.enc_bbox_head(top_memory) + top_anchors
        enc_boxes_list, enc_logits_list = [], []
        if self.training:
            enc_boxes_list.append(torch.sigmoid(top_bbox_unact))
            enc_logits_list.append(top_logits)
        content = top_memory.detach()
        top_bbox_unact = top_bbox_unact.detach()
        if dn_bbox_unact is not None:
            top_bbox_unact = torch.cat([dn_bbox_unact, top_bbox_unact], dim=1)
            content = torch.cat([dn_logits, content], dim=1)
        return content, top_bbox_unact, enc_boxes_list, enc_logits_list

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, feats: list[torch.Tensor], targets: list[dict] | None = None,
                return_hidden: bool = False) -> dict:
        memory, spatial_shapes = self._get_encoder_input(feats)
        if self.training and self.num_denoising > 0:
            dn_logits, dn_bbox_unact, attn_mask, dn_meta = contrastive_denoising_group(
                targets, self.num_classes, self.num_queries, self.denoising_class_embed,
                num_denoising=self.num_denoising, label_noise_ratio=self.label_noise_ratio,
                box_noise_scale=self.box_noise_scale)
        else:
            dn_logits = dn_bbox_unact = attn_mask = dn_meta = None

        content, ref_unact, enc_boxes_list, enc_logits_list = self._get_decoder_input(
            memory, spatial_shapes, dn_logits, dn_bbox_unact)
        boxes, logits, corners, refs, pre_boxes, pre_logits, hidden = self.decoder(
            content, ref_unact, memory, spatial_shapes, self.dec_bbox_head, self.dec_score_head,
            self.query_pos_head, self.pre_bbox_head, self.integral, self.up, self.reg_scale,
            attn_mask=attn_mask, return_hidden=return_hidden)

        dn = None
        if self.training and dn_meta is not None:
            split = dn_meta["dn_num_split"]
            dn_pre_logits, pre_logits = torch.split(pre_logits, split, dim=1)
            dn_pre_boxes, pre_boxes = torch.split(pre_boxes, split, dim=1)
            dn_boxes, boxes = torch.split(boxes, split, dim=2)
            dn_logits_out, logits = torch.split(logits, split, dim=2)
            dn_corners, corners = torch.split(corners, split, dim=2)
            dn_refs, refs = torch.split(refs, split, dim=2)
            dn_hidden = None
            if hidden is not None:
                dn_hidden, hidden = torch.split(hidden, split, dim=2)
            dn = (dn_logits_out, dn_boxes, dn_corners, dn_refs, dn_pre_logits, dn_pre_boxes,
                  dn_hidden)

        if self.training:
            out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "pred_corners": corners[-1],
                   "ref_points": refs[-1], "up": self.up, "reg_scale": self.reg_scale}
        else:
            out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if hidden is not None:
            out["_hidden"] = hidden  # consumed (and removed) by the mask head wrapper

        if self.training and self.aux_loss:
            out["aux_outputs"] = _aux_list(logits[:-1], boxes[:-1], corners[:-1], refs[:-1],
                                           corners[-1], logits[-1])
            out["enc_aux_outputs"] = [{"pred_logits": a, "pred_boxes": b}
                                      for a, b in zip(enc_logits_list, enc_boxes_list)]
            out["pre_outputs"] = {"pred_logits": pre_logits, "pred_boxes": pre_boxes}
            out["enc_meta"] = {"class_agnostic": False}
            if dn is not None:
                dl, db, dc, dr, dpl, dpb, dh = dn
                out["dn_outputs"] = _aux_list(dl, db, dc, dr, dc[-1], dl[-1])
                out["dn_pre_outputs"] = {"pred_logits": dpl, "pred_boxes": dpb}
                out["dn_meta"] = dn_meta
                if dh is not None:
                    out["_dn_hidden"] = dh
        return out


def _aux_list(logits, boxes, corners, refs, teacher_corners, teacher_logits) -> list[dict]:
    return [{"pred_logits": a, "pred_boxes": b, "pred_corners": c, "ref_points": d,
             "teacher_corners": teacher_corners, "teacher_logits": teacher_logits}
            for a, b, c, d in zip(logits, boxes, corners, refs)]
