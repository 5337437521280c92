"""Per-size official hyper-parameters (configs/dfine/dfine_hgnetv2_{n,s,m,l,x}_coco.yml) and
`build_model`.

Values are those of D-FINE (Apache-2.0), Peterande/D-FINE, commit 4a1f73a, resolved through
`include/dfine_hgnetv2.yml`. Other modules read them, e.g. `SIZE_CONFIGS["n"].feat_strides`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import ConfigError
from core.model.decoder import DFINETransformer
from core.model.hgnetv2 import HGNetv2
from core.model.hybrid_encoder import HybridEncoder
from core.model.mask_head import MaskHead
from core.model.network import DFINEModel

__all__ = [
    "DEFAULT_MASK_HEAD",
    "MASK_HEADS",
    "SIZES",
    "SIZE_CONFIGS",
    "MaskHeadConfig",
    "SizeConfig",
    "build_model",
    "size_config",
]


@dataclass(frozen=True)
class SizeConfig:
    """Everything that differs between sizes (names follow the official YAML keys)."""

    backbone: str                   # HGNetv2.name
    return_idx: tuple[int, ...]     # HGNetv2.return_idx
    use_lab: bool                   # HGNetv2.use_lab
    freeze_norm: bool               # HGNetv2.freeze_norm (L/X: FrozenBatchNorm2d)
    freeze_at: int                  # HGNetv2.freeze_at (0 + freeze_stem_only: stem frozen)
    in_channels: tuple[int, ...]    # HybridEncoder.in_channels
    feat_strides: tuple[int, ...]   # HybridEncoder/DFINETransformer.feat_strides
    enc_hidden_dim: int             # HybridEncoder.hidden_dim (= decoder feat_channels)
    use_encoder_idx: tuple[int, ...]
    enc_dim_feedforward: int
    expansion: float
    depth_mult: float
    hidden_dim: int                 # DFINETransformer.hidden_dim
    dec_dim_feedforward: int
    num_levels: int
    num_layers: int
    num_points: tuple[int, ...]
    reg_scale: float
    # Shared by all sizes (include/dfine_hgnetv2.yml)
    nhead: int = 8
    num_encoder_layers: int = 1
    num_queries: int = 300
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    reg_max: int = 32
    eval_idx: int = -1
    layer_scale: float = 1
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MaskHeadConfig:
    """Mask head widths: lateral 1x1 convs -> fuse_dim; 3x3 fuse conv -> mid_dim; 3x3 stride-4
    conv and query embedding -> mask_dim. `upsample_last`: the second 3x3 conv runs at the finest
    PAN stride too and its output is upsampled to stride 4 (MaskPixelDecoder)."""

    fuse_dim: int
    mid_dim: int
    mask_dim: int
    upsample_last: bool = False


MASK_HEADS: dict[str, MaskHeadConfig] = {
    # D-FINE-seg paper / ArgoHA: common width 256 everywhere (param counts match the paper).
    "paper": MaskHeadConfig(256, 256, 256),
    # Same structure, narrower: CPU cost ~ +10 % at size S instead of ~ +85 % (paper widths).
    "lite": MaskHeadConfig(128, 64, 32),
    # "lite" with both 3x3 convs at stride 8 (16 for size N), then upsampled to stride 4: the same
    # parameters, ~0.35 GMAC less at 640 (out conv 0.47 -> 0.12 GMAC); see benchmarks/anchor_yolo26.py.
    "lite_s8": MaskHeadConfig(128, 64, 32, upsample_last=True),
    # The widths upstream D-FINE-seg 0.6.2 gives its size N (configs.py: mask_dim 128): 128 everywhere.
    # Its N head also fuses the backbone's stride-8 map (one more 1x1 lateral, 256 -> 128, and the
    # fuse conv at stride 8); ours keeps the paper's N inputs (PAN strides 16/32). The stride-4 conv,
    # most of the cost, is the same. For near like-for-like comparisons with that trainer.
    "narrow": MaskHeadConfig(128, 128, 128),
    # The pick for CPU deployment: narrow's 128-wide fuse conv (stride 8, 16 for N), lite's 32-channel
    # stride-4 conv and mask embedding. Holds the paper head's mask mAP50 (lite is 0.023 below it) at
    # lite's OpenVINO INT8 latency (the stride-4 conv, 128 -> 32, is cheap once quantized); measured in
    # benchmarks/README.md ("A CPU head that keeps the paper head's masks").
    "cpu": MaskHeadConfig(128, 128, 32),
}
DEFAULT_MASK_HEAD = "paper"


SIZE_CONFIGS: dict[str, SizeConfig] = {
    "n": SizeConfig("B0", (2, 3), True, False, -1, (512, 1024), (16, 32), 128, (1,), 512,
                    0.34, 0.5, 128, 512, 2, 3, (6, 6), 4.0),
    "s": SizeConfig("B0", (1, 2, 3), True, False, -1, (256, 512, 1024), (8, 16, 32), 256, (2,),
                    1024, 0.5, 0.34, 256, 1024, 3, 3, (3, 6, 3), 4.0),
    "m": SizeConfig("B2", (1, 2, 3), True, False, -1, (384, 768, 1536), (8, 16, 32), 256, (2,),
                    1024, 1.0, 0.67, 256, 1024, 3, 4, (3, 6, 3), 4.0),
    "l": SizeConfig("B4", (1, 2, 3), False, True, 0, (512, 1024, 2048), (8, 16, 32), 256, (2,),
                    1024, 1.0, 1.0, 256, 1024, 3, 6, (3, 6, 3), 4.0),
    "x": SizeConfig("B5", (1, 2, 3), False, True, 0, (512, 1024, 2048), (8, 16, 32), 384, (2,),
                    2048, 1.0, 1.0, 256, 1024, 3, 6, (3, 6, 3), 8.0),
}
SIZES: tuple[str, ...] = tuple(SIZE_CONFIGS)
TASKS = ("segment", "detect")


def size_config(size: str) -> SizeConfig:
    key = str(size).lower()
    if key not in SIZE_CONFIGS:
        raise ConfigError(f"model size must be one of {list(SIZES)}, got {size!r}")
    return SIZE_CONFIGS[key]


def build_model(size: str, num_classes: int, task: str = "segment",
                image_size: int | tuple[int, int] = 640,
                mask_head: str = DEFAULT_MASK_HEAD) -> DFINEModel:
    """Build D-FINE (task="detect") or D-FINE-seg (task="segment") with the official settings.

    `image_size` (int or (h, w), multiples of 32) fixes the cached anchors/position embeddings
    used in eval mode, as the official `eval_spatial_size`; other sizes still work (computed
    on the fly). `mask_head` picks the mask head widths (MASK_HEADS: "paper" | "lite" | "lite_s8" | "narrow" | "cpu").
    """
    cfg = size_config(size)
    if mask_head not in MASK_HEADS:
        raise ConfigError(f"mask_head must be one of {list(MASK_HEADS)}, got {mask_head!r}")
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or any(int(v) <= 0 or int(v) % 32 for v in hw):
        raise ConfigError(f"image_size must be a positive multiple of 32 (or (h, w) of them), got {image_size!r}")
    hw = (int(hw[0]), int(hw[1]))

    backbone = HGNetv2(cfg.backbone, use_lab=cfg.use_lab, return_idx=cfg.return_idx,
                       freeze_stem_only=True, freeze_at=cfg.freeze_at, freeze_norm=cfg.freeze_norm)
    encoder = HybridEncoder(
        in_channels=list(cfg.in_channels), feat_strides=list(cfg.feat_strides),
        hidden_dim=cfg.enc_hidden_dim, nhead=cfg.nhead, dim_feedforward=cfg.enc_dim_feedforward,
        use_encoder_idx=list(cfg.use_encoder_idx), num_encoder_layers=cfg.num_encoder_layers,
        expansion=cfg.expansion, depth_mult=cfg.depth_mult, eval_spatial_size=hw)
    decoder = DFINETransformer(
        num_classes=num_classes, hidden_dim=cfg.hidden_dim, num_queries=cfg.num_queries,
        feat_channels=[cfg.enc_hidden_dim] * len(cfg.feat_strides),
        feat_strides=list(cfg.feat_strides), num_levels=cfg.num_levels,
        num_points=list(cfg.num_points), nhead=cfg.nhead, num_layers=cfg.num_layers,
        dim_feedforward=cfg.dec_dim_feedforward, num_denoising=cfg.num_denoising,
        label_noise_ratio=cfg.label_noise_ratio, box_noise_scale=cfg.box_noise_scale,
        eval_spatial_size=hw, eval_idx=cfg.eval_idx, reg_max=cfg.reg_max,
        reg_scale=cfg.reg_scale, layer_scale=cfg.layer_scale)
    head = None
    if task == "segment":
        mh = MASK_HEADS[mask_head]
        head = MaskHead([cfg.enc_hidden_dim] * len(cfg.feat_strides), list(cfg.feat_strides),
                        cfg.hidden_dim, fuse_dim=mh.fuse_dim, mask_dim=mh.mask_dim,
                        mid_dim=mh.mid_dim, upsample_last=mh.upsample_last)
    model = DFINEModel(backbone, encoder, decoder, head)
    model.size, model.task, model.num_classes, model.image_size = size.lower(), task, num_classes, hw
    model.mask_head_preset = mask_head if task == "segment" else None
    return model
