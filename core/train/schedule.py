"""Learning-rate schedule: quadratic warm-up, flat, cosine decay, flat minimum for the no-aug tail.

As D-FINE's FlatCosineLRScheduler: lr(t) = base * (t / warmup)^2 while t <= warmup, then base
until ``flat_iters``, then a half cosine down to ``base * lr_gamma`` reached when the last
``no_aug_iters`` begin, which keep the minimum. It is a pure function of the optimizer-step
index, so resuming only needs that index.
"""

# Adapted from D-FINE (Apache-2.0), Peterande/D-FINE (src/optim/lr_scheduler.py).

from __future__ import annotations

import math

from torch.optim import Optimizer


def flat_cosine_lr(step: int, total: int, warmup: int, flat: int, no_aug: int, base: float, minimum: float) -> float:
    if warmup > 0 and step <= warmup:
        return base * (step / warmup) ** 2
    if step <= flat:
        return base
    if step >= total - no_aug:
        return minimum
    span = max(1, total - flat - no_aug)
    return minimum + (base - minimum) * 0.5 * (1.0 + math.cos(math.pi * (step - flat) / span))


class FlatCosineSchedule:
    def __init__(self, optimizer: Optimizer, iters_per_epoch: int, epochs: int, warmup_iters: int,
                 flat_epochs: int, no_aug_epochs: int, lr_gamma: float = 0.5) -> None:
        self.base_lrs = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        for g, lr in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = lr
        self.lr_gamma = lr_gamma
        self.total = int(iters_per_epoch * epochs)
        self.warmup = int(warmup_iters)
        self.flat = int(iters_per_epoch * flat_epochs)
        self.no_aug = int(iters_per_epoch * no_aug_epochs)
        self.last_step = 0

    def lr_at(self, step: int) -> list[float]:
        return [flat_cosine_lr(step, self.total, self.warmup, self.flat, self.no_aug, b, b * self.lr_gamma)
                for b in self.base_lrs]

    def step(self, step: int, optimizer: Optimizer) -> None:
        """Set every group's lr for optimizer step ``step`` (0-based count of steps done)."""
        self.last_step = step
        for g, lr in zip(optimizer.param_groups, self.lr_at(step)):
            g["lr"] = lr

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), "last_step": self.last_step, "total": self.total,
                "warmup": self.warmup, "flat": self.flat, "no_aug": self.no_aug, "lr_gamma": self.lr_gamma}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.last_step = int(state["last_step"])
        for key in ("total", "warmup", "flat", "no_aug"):
            setattr(self, key, int(state[key]))
        self.lr_gamma = float(state["lr_gamma"])
