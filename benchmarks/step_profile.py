"""Where one training step's time goes: size N at 256 px on the demo recipe (issue #36).

    PYTHONPATH=$PWD .venv/bin/python -m core demo /tmp/demo
    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/step_profile.py --project /tmp/demo --threads 2 --steps 8

The trainer's own objects (``Trainer._build`` on the project: model, criterion, optimizer, EMA,
dataset with the recipe's augmentation) and its step, split into: data loading (the dataset's
``__getitem__`` x batch + collate, as a worker does it), forward, the loss (of which: the Hungarian
matcher over all decoder outputs, and the mask losses), backward, and optimizer + EMA. Then the
same step without the denoising groups (``model.decoder.num_denoising = 0``) and, for DEIM, the data
loading with its dense composition (mosaic 0.5). Medians over ``--steps`` steps after 2 warm-up steps;
every variant sees the same batches. Numbers are wall seconds on whatever else the machine runs
(the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


class Acc:
    def __init__(self) -> None:
        self.t = 0.0
        self.n = 0

    def wrap(self, fn):
        def inner(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t += time.perf_counter() - t0
                self.n += 1
        return inner


def build(project: Path, overrides: list[str]):
    from core.train.trainer import Trainer, TrainOptions

    tr = Trainer(TrainOptions(project=project, run_dir=Path("/tmp/step_profile_run"), device="cpu",
                              overrides=["train.workers=0", *overrides], progress=False))
    tr._build()
    return tr


def load_batch(tr, indices: list[int], epoch: int):
    from core.data.dataset import collate

    tr.train_set.set_epoch(epoch)
    t0 = time.perf_counter()
    images, targets, _ = collate([tr.train_set[i] for i in indices])
    return images, targets, time.perf_counter() - t0


def _one_step(tr, images, targets, match: Acc, masks: Acc) -> dict[str, float]:
    from core.loss.criterion import total_loss
    from core.train.trainer import _float_outputs

    crit, model = tr.criterion, tr.model
    match.t = masks.t = 0.0
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=tr.amp_dtype, enabled=tr.amp_dtype is not None):
        outputs = model(images, targets=targets)
    t1 = time.perf_counter()
    loss = total_loss(crit(_float_outputs(outputs), targets))
    t2 = time.perf_counter()
    loss.backward()
    t3 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), tr.cfg.train.clip_max_norm)
    tr.optimizer.step()
    tr.optimizer.zero_grad(set_to_none=True)
    tr.ema.update(model)
    t4 = time.perf_counter()
    return {"forward": t1 - t0, "loss": t2 - t1, "matcher": match.t, "mask_loss": masks.t, "backward": t3 - t2,
            "optimizer_ema": t4 - t3, "step": t4 - t0}


def profile_interleaved(trainers: dict, batches, steps: int) -> dict[str, dict[str, float]]:
    """Each batch through every variant in turn (after 2 warm-up batches), so a burst of load from
    elsewhere hits all variants alike; medians per variant."""
    accs = {}
    for name, tr in trainers.items():
        match, masks = Acc(), Acc()
        tr.criterion.matcher.forward = match.wrap(tr.criterion.matcher.forward)
        tr.criterion.loss_masks = masks.wrap(tr.criterion.loss_masks)
        accs[name] = (match, masks)
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in trainers}
    for k, (images, targets) in enumerate(batches[: steps + 2]):
        for name, tr in trainers.items():
            r = _one_step(tr, images, targets, *accs[name])
            if k >= 2:
                for key, v in r.items():
                    rows[name].setdefault(key, []).append(v)
    return {name: {k: statistics.median(v) for k, v in r.items()} for name, r in rows.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--set", dest="overrides", nargs="*", default=[])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average at start {os.getloadavg()[0]:.2f}", file=sys.stderr)

    tr = build(args.project, args.overrides)
    n = len(tr.train_set)
    bs = tr.local_batch
    order = [[(k * bs + j) % n for j in range(bs)] for k in range(args.steps + 2)]
    batches, data_s = [], []
    for idx in order:  # epoch 0: the recipe's augmentation as its first epoch
        images, targets, dt = load_batch(tr, idx, 0)
        batches.append((images, targets))
        data_s.append(dt)
    tr2 = build(args.project, args.overrides)
    tr2.model.decoder.num_denoising = 0
    results = profile_interleaved({"recipe": tr, "no denoising": tr2}, batches, args.steps)
    results["recipe"]["data"] = statistics.median(data_s)

    tr3 = build(args.project, [*args.overrides, "train.matching=deim", "train.no_aug_epochs=0"])
    dense = tr3.layout.dense_start or 0
    results["deim dense phase"] = {"data": statistics.median(load_batch(tr3, idx, dense)[2] for idx in order)}
    tr4 = build(args.project, [*args.overrides, "train.no_aug_epochs=0"])
    results["heavy aug (dfine, mosaic 0.5)"] = {"data": statistics.median(load_batch(tr4, idx, 0)[2] for idx in order)}

    keys = ["data", "forward", "loss", "matcher", "mask_loss", "backward", "optimizer_ema", "step"]
    print("| variant | " + " | ".join(keys) + " | img/s (step + data) |")
    print("|---|" + "---|" * (len(keys) + 1))
    base_data = results["recipe"]["data"]
    for name, r in results.items():
        cells = [f"{r[k]:.3f}" if k in r else "-" for k in keys]
        total = r.get("step", results["recipe"]["step"]) + r.get("data", base_data)
        print(f"| {name} | " + " | ".join(cells) + f" | {bs / total:.2f} |")
    print(f"\nbatch {bs}, image size {tr.cfg.model.image_size}, amp {tr.amp_dtype}, "
          f"load average at end {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
