"""`train.time_budget_min` / `dfine train --time`: the plan and layout math exactly, the config and
CLI checks, and a real run on a tiny project that ends on time with best.pt."""

from __future__ import annotations

import math

import pytest
import torch
from test_train_helpers import dfine, events_of, tiny_project

from core.config import apply_overrides, parse_config_text
from core.errors import ConfigError
from core.train import budget as b
from core.train.schedule import flat_cosine_lr


def test_parse_duration():
    assert b.parse_duration_min("15m") == 15.0
    assert b.parse_duration_min("90s") == 1.5
    assert b.parse_duration_min("1h") == 60.0
    assert b.parse_duration_min("1h30m") == 90.0
    assert b.parse_duration_min("2.5min") == 2.5
    assert b.parse_duration_min(" 20 ") == 20.0  # a bare number is minutes
    for bad in ("", "m", "5x", "-3m", "0", "nan", "1e9"):
        with pytest.raises(ConfigError, match="--time"):
            b.parse_duration_min(bad)
    assert b.format_minutes(15) == "15m" and b.format_minutes(1.5) == "1m30s" and b.format_minutes(90) == "1h30m"


def test_validations_between_counts_every_nth_and_the_last():
    assert b.validations_between(0, 10, 5) == 2  # after epochs 4 and 9
    assert b.validations_between(0, 7, 5) == 2  # after 4, and 6 as the last
    assert b.validations_between(3, 4, 1) == 1
    assert b.validations_between(5, 5, 1) == 0
    assert b.validations_between(0, 3, 10**9) == 1  # (no val images: the caller passes a huge cadence)


def test_plan_epochs_exact():
    t = b.Timings(step_s=2.0, epoch_s=25.0, val_s=4.0, save_s=1.0)
    # from the start (epoch 0, 3 steps done of 11): 8 steps left = 16 s; each further epoch 25 s; one
    # validation every 5 epochs and at the end; one save per epoch
    # E epochs cost 16 + 25 (E-1) + 4 val(E) + E
    def cost(e):
        return 16 + 25 * (e - 1) + 4 * b.validations_between(0, e, 5) + e
    assert b.cost_to_finish(7, 0, 3, 11, 5, t) == cost(7) == 16 + 150 + 8 + 7
    budget = 600.0
    expected = max(e for e in range(1, 100) if cost(e) <= budget)
    assert b.plan_epochs(budget, 0, 3, 11, 5, t) == expected == 22
    # no time at all: the epoch under way is the last one
    assert b.plan_epochs(0.0, 4, 2, 11, 5, t) == 5
    # at an epoch end (all steps of epoch 4 done): only whole epochs remain
    assert b.cost_to_finish(6, 4, 11, 11, 1, t) == 25 + 2 * 4 + 2 * 1


def test_layout_matches_a_fixed_epoch_run_and_lays_out_the_ema_only_with_a_budget():
    fixed = b.layout_run(60, 11, warmup_iters=2000, flat_epochs=None, no_aug_epochs=None, ema_decay=0.9999,
                         ema_warmups=2000, budgeted=False)
    assert fixed == b.Layout(epochs=60, total_steps=660, warmup_iters=66, flat_iters=330, no_aug_epochs=6,
                             no_aug_iters=66, ema_decay=0.9999, ema_warmups=2000)
    timed = b.layout_run(30, 11, warmup_iters=2000, flat_epochs=None, no_aug_epochs=60, ema_decay=0.99,
                         ema_warmups=20, budgeted=True)
    # 330 steps: warm-up 33, flat 15 epochs, no-aug tail capped at the run, EMA window <= 66 steps
    assert timed == b.Layout(epochs=30, total_steps=330, warmup_iters=33, flat_iters=165, no_aug_epochs=30,
                             no_aug_iters=330, ema_decay=pytest.approx(1 - 1 / 66), ema_warmups=20)
    assert b.layout_run(3, 2, 2000, 10, None, 0.9999, 2000, True).flat_iters == 6  # flat_epochs capped
    # the same schedule function as a fixed run: lr at the end of the warm-up, flat, tail
    lay = timed
    lr = [flat_cosine_lr(s, lay.total_steps, lay.warmup_iters, lay.flat_iters, lay.no_aug_iters, 1.0, 0.5)
          for s in (0, 33, 165, 200)]
    assert lr == [0.0, 1.0, 1.0, 0.5]  # a whole-run no-aug tail sits at the minimum after the flat phase


def test_should_stop_now_leaves_room_for_the_final_validation_and_save():
    t = b.Timings(step_s=2.0, epoch_s=22.0, val_s=5.0, save_s=1.0)
    assert not b.should_stop_now(now=91.9, deadline=100.0, t=t)
    assert b.should_stop_now(now=92.1, deadline=100.0, t=t)
    first = b.first_timings(step_s=2.0, steps_per_epoch=11, num_val=20, batch_size=4)
    assert first == b.Timings(2.0, 22.0, 20 / 4 * 2.0 * b.VAL_PER_IMAGE_OF_STEP, b.FIRST_SAVE_S)


def test_config_and_cli_check_the_budget(tmp_path):
    cfg = parse_config_text("classes: [a]\ntrain:\n  time_budget_min: 15\n")
    assert cfg.train.time_budget_min == 15.0
    assert apply_overrides(cfg, ["train.time_budget_min=null"]).train.time_budget_min is None
    with pytest.raises(ConfigError, match=r"project.yaml:3: train.time_budget_min: must be > 0"):
        parse_config_text("classes: [a]\ntrain:\n  time_budget_min: -1\n")
    root = tiny_project(tmp_path / "p", n_train=1, n_val=1)
    proc = dfine("train", str(root), "--time", "5x", check=False)
    assert proc.returncode == 2 and "--time" in proc.stderr and "15m" in proc.stderr and "Traceback" not in proc.stderr


def plan_of(run):
    return torch.load(run / "last.pt", weights_only=True)["budget"]


def test_a_budget_run_ends_on_time_with_best_pt(tmp_path):
    budget_s = 30.0
    root = tiny_project(tmp_path / "p", n_train=6, n_val=1)
    proc = dfine("train", str(root), "--events", "-", "--name", "timed", "--device", "cpu", "--time", f"{budget_s:g}s",
                 "--set", "train.batch_size=1", "train.workers=0", "train.epochs=1000", "train.warmup_iters=2",
                 "train.lr=0.0005")
    events = events_of(proc.stdout)
    start = next(e for e in events if e["event"] == "start")
    done = next(e for e in events if e["event"] == "done")
    assert start["time_budget_s"] == budget_s
    steps = [e for e in events if e["event"] == "step"]
    # the budget counts from before the start event (setup): start..done is within it, give or take
    # the step under way when time ran out (a step is not interrupted; on a loaded 2-core machine the
    # first steps of a process take 10-20 s) and the estimate of the final validation and plots
    longest_step = max(1 / e["img_per_s"] for e in steps)
    assert done["time"] - start["time"] <= budget_s + longest_step + 4.0, (done["time"] - start["time"], longest_step)
    assert done["stopped"] in ("finished", "time")
    # train.epochs (1000) was replaced by the plan: the run stops far short of 6000 steps, and after the
    # plan every step reports the planned length
    run = root / "runs" / "timed"
    assert 0 < len(steps) < 1000 and (steps[-1]["total_steps"] < 6000 or plan_of(run)["timings"] is None)
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    assert any(e["event"] == "metrics" for e in events)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    plan = ckpt["budget"]
    assert plan["epochs"] * 6 == steps[-1]["total_steps"] or plan["timings"] is None
    assert 0 < plan["elapsed_s"] <= budget_s + longest_step + 4.0
    assert plan["timings"] is None or (math.isfinite(plan["timings"]["step_s"]) and plan["timings"]["step_s"] > 0)
    # the lr followed the laid-out schedule: the last step's lr is on the planned cosine (or its tail)
    assert ckpt["scheduler"]["total"] == steps[-1]["total_steps"]
