"""D-FINE-seg losses: Hungarian matcher (class, box and mask costs) and the criterion
(VFL, L1, GIoU, FGL, DDF, box-cropped mask BCE and Dice) over all decoder outputs."""

from core.loss.criterion import (
    DEFAULT_LOSS_WEIGHTS,
    DFineCriterion,
    normalize_loss_weights,
    summarize_losses,
    total_loss,
)
from core.loss.matcher import DEFAULT_MATCHER_COSTS, HungarianMatcher

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "DEFAULT_MATCHER_COSTS",
    "DFineCriterion",
    "HungarianMatcher",
    "normalize_loss_weights",
    "summarize_losses",
    "total_loss",
]
