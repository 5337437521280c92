"""Exponential moving average of the weights, used for validation and saved in checkpoints.

Why the warm-up: with decay 0.9999 the average would stay near the random init for
thousands of steps; D-FINE ramps the decay up as ``decay * (1 - exp(-updates / warmups))``
so early EMA weights follow the model closely.
"""

# Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/optim/ema.py).

from __future__ import annotations

import math
from copy import deepcopy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module under DDP/DataParallel wrappers."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, warmups: int = 2000) -> None:
        self.module = deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmups = int(warmups)
        self.updates = 0

    def decay_at(self, updates: int) -> float:
        if self.warmups <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-updates / self.warmups))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay_at(self.updates)
        msd = unwrap(model).state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach().to(v.dtype), alpha=1.0 - d)
            else:  # integer buffers (BN counters) are copied, as they cannot be averaged
                v.copy_(msd[k])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates,
                "decay": self.decay, "warmups": self.warmups}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
