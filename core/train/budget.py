"""A training run laid out for a wall-clock budget: `train.time_budget_min` / `dfine train --time 15m`.

As Ultralytics' ``time=``, the budget replaces ``train.epochs``: the trainer measures its own step
time (a few steps after the start, then every epoch: loader start-up, validation and checkpoint
saves included) and plans how many epochs fit. Everything that depends on the run length is then
laid out for that plan, as a fixed-epoch run would lay it out for ``train.epochs``: the warm-up,
the flat phase and cosine of the learning rate, the no-augmentation tail and the EMA. Each epoch
end re-plans from the measured times, and a step that would leave too little time for the final
validation and save ends the run early, so it finishes on time with ``best.pt``.

All functions here are pure (numbers in, numbers out), so the plan is tested exactly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.errors import ConfigError

_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m(?:in)?)?(?:(\d+(?:\.\d*)?)s)?$")
MAX_BUDGET_MIN = 7 * 24 * 60  # a week; config validation has the same bound

# before anything is measured: validation costs about this fraction of a training step per image
# (forward only, plus post-processing and metrics), and an epoch end (last.pt, plots) this long
VAL_PER_IMAGE_OF_STEP = 0.5
FIRST_SAVE_S = 2.0
CALIBRATION_STEPS = 3  # steps timed before the first plan (the first one is warm-up and not counted)
MAX_EPOCHS = 100_000
EMA_WINDOW_FRACTION = 0.2  # with a budget the EMA averages at most the last fifth of the run
DENSE_START_FRACTION = 4 / 72  # DEIM's dense phase starts after 4 epochs of its 72-epoch schedule


def parse_duration_min(text: str) -> float:
    """``"15m"`` -> 15.0, ``"90s"`` -> 1.5, ``"1h"`` -> 60.0, ``"1h30m"`` -> 90.0, ``"20"`` -> 20.0
    (a bare number is minutes, the unit of ``train.time_budget_min``)."""
    s = str(text).strip().lower().replace(" ", "")
    value: float | None = None
    try:
        value = float(s)
    except ValueError:
        m = _DURATION.match(s)
        if m and any(m.groups()):
            h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
            value = 60.0 * h + mi + sec / 60.0
    if value is None or not math.isfinite(value):
        raise ConfigError(f"--time {text!r}: expected a duration such as 15m, 90s, 1h or 1h30m")
    if value <= 0 or value > MAX_BUDGET_MIN:
        raise ConfigError(f"--time {text!r}: must be more than 0 and at most {MAX_BUDGET_MIN // 1440} days")
    return value


def format_minutes(minutes: float) -> str:
    """15.0 -> '15m', 1.5 -> '1m30s', 90.0 -> '1h30m' (for messages and the GUI)."""
    total_s = round(minutes * 60)
    h, rem = divmod(total_s, 3600)
    m, s = divmod(rem, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"


@dataclass
class Timings:
    """Measured (or, before the first measurement, estimated) wall-clock costs in seconds."""

    step_s: float  # one optimizer step, data wait included
    epoch_s: float  # one whole epoch of steps, loader start-up included
    val_s: float  # one validation
    save_s: float  # one epoch end without validation: last.pt (+ best.pt) and plots


def validations_between(epoch: int, end_epoch: int, val_every: int) -> int:
    """How many validations epochs ``epoch .. end_epoch-1`` run (every ``val_every``-th, and the last)."""
    if end_epoch <= epoch:
        return 0
    n = end_epoch // val_every - epoch // val_every
    return n + (1 if end_epoch % val_every else 0)


def cost_to_finish(end_epoch: int, epoch: int, epoch_step: int, steps_per_epoch: int, val_every: int,
                   t: Timings) -> float:
    """Seconds from now (``epoch_step`` steps into ``epoch``) to the end of epoch ``end_epoch - 1``."""
    if end_epoch <= epoch:
        return 0.0
    rest_of_this = (steps_per_epoch - epoch_step) * t.step_s
    whole = (end_epoch - epoch - 1) * t.epoch_s
    return (rest_of_this + whole + validations_between(epoch, end_epoch, val_every) * t.val_s
            + (end_epoch - epoch) * t.save_s)


def plan_epochs(remaining_s: float, epoch: int, epoch_step: int, steps_per_epoch: int, val_every: int,
                t: Timings) -> int:
    """The most epochs (counted from the start of the run) that fit in ``remaining_s``; at least
    ``epoch + 1`` (the epoch under way always ends the run, early if time runs out)."""
    best = epoch + 1
    for end in range(epoch + 2, MAX_EPOCHS + 1):
        if cost_to_finish(end, epoch, epoch_step, steps_per_epoch, val_every, t) > remaining_s:
            break
        best = end
    return best


@dataclass(frozen=True)
class Layout:
    """Everything that depends on the run's length, in optimizer steps (or epochs for the data)."""

    epochs: int
    total_steps: int
    warmup_iters: int
    flat_iters: int
    no_aug_epochs: int
    no_aug_iters: int
    ema_decay: float
    ema_warmups: int
    dense_start: int | None = None  # DEIM's dense one-to-one phase, epochs [dense_start, dense_end)
    dense_end: int | None = None


def layout_run(epochs: int, steps_per_epoch: int, warmup_iters: int, flat_epochs: int | None,
               no_aug_epochs: int | None, ema_decay: float, ema_warmups: int, budgeted: bool,
               dense: bool = False) -> Layout:
    """Lay a run of ``epochs`` out as the config asks. The lr warm-up is capped at a tenth of the run,
    ``flat_epochs`` None is half the run and ``no_aug_epochs`` None a tenth of it (at least 1), as for a
    fixed-epoch run. With a budget (``budgeted``) the EMA is laid out too: its warm-up ramp at most a
    tenth of the run and its averaging window 1 / (1 - decay) at most a fifth of it, so the average
    never reaches back to weights from early in a short run. With ``dense`` (``train.matching: deim``)
    DEIM's dense one-to-one phase runs from 4/72 of the run (DEIM's 4 plain epochs) to the end of the
    flat lr phase, as DEIM ties its mosaic/mixup stage to the flat phase."""
    total = epochs * steps_per_epoch
    warmup = min(warmup_iters, max(1, total // 10)) if warmup_iters else 0
    flat = epochs // 2 if flat_epochs is None else min(flat_epochs, epochs)
    no_aug = min(epochs, max(1, epochs // 10) if no_aug_epochs is None else no_aug_epochs)
    decay, ramp = float(ema_decay), int(ema_warmups)
    if budgeted:
        window = max(2.0, EMA_WINDOW_FRACTION * total)
        decay = min(decay, 1.0 - 1.0 / window)
        ramp = min(ramp, max(1, total // 10))
    start = end = None
    if dense:
        start = round(epochs * DENSE_START_FRACTION)
        end = max(start, flat)
    return Layout(epochs, total, warmup, flat * steps_per_epoch, no_aug, no_aug * steps_per_epoch, decay, ramp,
                  start, end)


def first_timings(step_s: float, steps_per_epoch: int, num_val: int, batch_size: int) -> Timings:
    """Estimates from the first measured step time, before an epoch, a validation or a save."""
    val = num_val / max(1, batch_size) * step_s * VAL_PER_IMAGE_OF_STEP if num_val else 0.0
    return Timings(step_s=step_s, epoch_s=step_s * steps_per_epoch, val_s=val, save_s=FIRST_SAVE_S)


def should_stop_now(now: float, deadline: float, t: Timings) -> bool:
    """True when one more step would leave too little time for the final validation and save."""
    return now + t.step_s + t.val_s + t.save_s > deadline
