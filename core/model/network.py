"""The whole network: HGNetV2 -> HybridEncoder -> D-FINE decoder (+ D-FINE-seg mask head), and
the deployment wrapper that keeps only the top-K detections.

Submodule names (`backbone`, `decoder`, `encoder`, registered in that order as upstream) make
`state_dict()` identical to the official D-FINE; the mask head adds keys under `mask_head.` only.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.model.box_ops import box_cxcywh_to_xyxy
from core.model.deploy_fuse import fuse_for_deploy

if TYPE_CHECKING:
    from core.model.decoder import DFINETransformer
    from core.model.mask_head import MaskHead

__all__ = ["DFINEModel", "DeployModel"]


class DFINEModel(nn.Module):
    """D-FINE / D-FINE-seg. Call `model(images, targets=None)`; images float [B,3,H,W] RGB in
    [0, 1] (no mean/std), H and W multiples of 32.

    Eval output: `pred_logits` [B,Q,C] (sigmoid -> scores), `pred_boxes` [B,Q,4] cxcywh
    normalised, and for segmentation `pred_masks` [B,Q,H/4,W/4] logits.
    Training output (needs `targets`: list of {labels int64 [n], boxes [n,4] cxcywh normalised,
    masks optional} for denoising): additionally `pred_corners`, `ref_points`, `up`,
    `reg_scale`, `aux_outputs` (one dict per earlier decoder layer: pred_logits, pred_boxes,
    pred_corners, ref_points, teacher_corners, teacher_logits [+ pred_masks]), `enc_aux_outputs`,
    `pre_outputs`, `enc_meta`, and with denoising `dn_outputs` (one dict per decoder layer, same
    keys [+ pred_masks for the dn queries]), `dn_pre_outputs`, `dn_meta` — as the official
    DFINETransformer.
    """

    def __init__(self, backbone: nn.Module, encoder: nn.Module, decoder: DFINETransformer,
                 mask_head: MaskHead | None = None):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.encoder = encoder
        self.mask_head = mask_head  # registered last: its keys follow the official ones
        self.size: str = "?"
        self.task: str = "segment" if mask_head is not None else "detect"
        self.num_classes: int = decoder.num_classes
        self.image_size: tuple[int, int] = (640, 640)
        self.mask_head_preset: str | None = None  # builder.MASK_HEADS key for segment models

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None) -> dict:
        feats = self.encoder(self.backbone(images))
        with_masks = self.mask_head is not None
        out = self.decoder(feats, targets, return_hidden=with_masks)
        if not with_masks:
            return out
        assert self.mask_head is not None
        hidden = out.pop("_hidden")          # [L,B,Q,C]: all layers (train) / last layer (eval)
        dn_hidden = out.pop("_dn_hidden", None)
        mask_feat = self.mask_head.features(feats)
        masks = self.mask_head.logits(hidden, mask_feat)  # one batched matmul over layers
        out["pred_masks"] = masks[-1]
        if "aux_outputs" in out:
            for aux, m in zip(out["aux_outputs"], masks[:-1]):
                aux["pred_masks"] = m
        if dn_hidden is not None and "dn_outputs" in out:
            dn_masks = self.mask_head.logits(dn_hidden, mask_feat)
            for aux, m in zip(out["dn_outputs"], dn_masks):
                aux["pred_masks"] = m
        return out

    def deploy_forward(self, images: torch.Tensor, top_k: int = 100):
        """Top-K inference path, see `DeployModel`. Returns (labels, boxes, scores[, masks])."""
        return DeployModel(self, top_k, fuse=False)(images)


class DeployModel(nn.Module):
    """Inference wrapper for export (ONNX/OpenVINO/TensorRT) and the torch Predictor.

    `DeployModel(model, top_k=100)(images)` with images float [B,3,H,W] RGB in [0,1] returns
    a tuple, names in `output_names`:
      labels [B,K] int64, boxes [B,K,4] float (x1,y1,x2,y2) normalised to [0,1] of the network
      input, scores [B,K] float (sigmoid), and for segmentation masks [B,K,H/4,W/4] float
      mask probabilities (sigmoid of the logits) at stride 4.
    K = top_k best (query, class) pairs over Q x C as the official postprocessor (a query may
    appear with two classes). Masks are computed only for those K: the query hidden states are
    gathered before the dot product with the stride-4 features. The graph has no data-dependent
    Python control flow; every shape is static except the batch dimension, so it traces with
    `torch.onnx.export(DeployModel(m.eval(), k), x, dynamic_axes={"images": {0: "batch"}, ...})`.
    Put the model in eval mode first (the wrapper does it).

    `num_queries` (default: the model's 300) runs the decoder on fewer of the encoder's top
    proposals: a deploy-time speed lever (CPU INT8 at S/640: 300 -> 100 queries is about -18 %,
    benchmarks/anchor_yolo26.py) whose accuracy cost is measured per model
    (benchmarks/decoder_queries.py, and the export report's F1).

    `fuse=True` (default) wraps a re-parameterised deep copy (`core.model.deploy_fuse`: BNs
    folded into the convs, RepVGG blocks merged to one 3x3 conv): same outputs up to float
    rounding, faster, and `model` itself (its mode, weights, state_dict keys) is left untouched,
    so later changes to `model` are not seen by the wrapper. `fuse=False` wraps `model` itself
    and puts it in eval mode.
    """

    def __init__(self, model: DFINEModel, top_k: int = 100, fuse: bool = True, num_queries: int | None = None):
        super().__init__()
        trained, nc = model.decoder.num_queries, model.decoder.num_classes
        nq = trained if num_queries is None else num_queries
        if not 1 <= nq <= trained:
            raise ValueError(f"decoder queries must be in [1, {trained}] (the count the model has), got {nq}")
        if not 1 <= top_k <= nq * nc:
            raise ValueError(f"top_k must be in [1, {nq * nc}], got {top_k}")
        self.fused = fuse
        self.model = fuse_for_deploy(model) if fuse else model.eval()
        if nq != trained:
            if not fuse:  # never change the caller's model
                self.model = copy.deepcopy(model).eval()
            self.model.decoder.num_queries = nq  # the encoder's top-k picks this many
        self.num_queries = nq
        self.top_k = top_k
        self.with_masks = model.mask_head is not None
        self.output_names = ("labels", "boxes", "scores") + (("masks",) if self.with_masks else ())
        self.eval()

    def train(self, mode: bool = True) -> DeployModel:
        """Inference only: stays in eval mode (exporters toggle train/eval around tracing)."""
        return super().train(False)

    def forward(self, images: torch.Tensor):
        m = self.model
        feats = m.encoder(m.backbone(images))
        out = m.decoder(feats, None, return_hidden=self.with_masks)
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        num_classes = logits.shape[-1]
        scores, index = torch.topk(torch.sigmoid(logits).flatten(1), self.top_k, dim=-1)
        query = torch.div(index, num_classes, rounding_mode="floor")
        labels = index - query * num_classes
        boxes = box_cxcywh_to_xyxy(boxes.gather(1, query.unsqueeze(-1).expand(-1, -1, 4)))
        if not self.with_masks:
            return labels, boxes, scores
        assert m.mask_head is not None
        hidden = out["_hidden"][-1]  # [B,Q,C]
        hidden = hidden.gather(1, query.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        masks = torch.sigmoid(m.mask_head.logits(hidden, m.mask_head.features(feats)))
        return labels, boxes, scores, masks
