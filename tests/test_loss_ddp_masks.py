"""Under DDP the mask losses are a mean over the matched instances of the global batch (like
num_boxes), not a mean of per-rank means: ranks with 1 and 3 instances, gradients averaged over
ranks as DDP does, must equal the single-process mean over all 4 instances."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.loss.criterion import DFineCriterion

H = W = 8


def _case(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 5, H, W, generator=g)
    boxes = torch.tensor([[0.5, 0.5, 0.5 + 0.1 * i, 0.6] for i in range(n)])
    masks = (torch.rand(n, 32, 32, generator=g) > 0.5).float()
    target = {"labels": torch.zeros(n, dtype=torch.long), "boxes": boxes, "masks": masks}
    indices = [(torch.arange(n), torch.arange(n))]
    return logits, target, indices


def _rank_loss(crit: DFineCriterion, n: int, seed: int) -> float:
    logits, target, indices = _case(n, seed)
    out = crit.loss_masks({"pred_masks": logits}, [target], indices)
    return float(out["loss_mask_bce"] + out["loss_mask_dice"])


def _worker(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        crit = DFineCriterion(num_classes=2)
        results[rank] = _rank_loss(crit, n=(1, 3)[rank], seed=rank)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mask_loss_is_a_global_mean_under_ddp() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    ddp_mean = (results[0] + results[1]) / 2  # what gradient averaging over ranks optimises

    crit = DFineCriterion(num_classes=2)
    # single process: per-instance losses of both ranks' instances, one mean over all 4
    per_instance = []
    for n, seed in ((1, 0), (3, 1)):
        logits, target, _ = _case(n, seed)
        for i in range(n):
            one = {"labels": target["labels"][i:i + 1], "boxes": target["boxes"][i:i + 1],
                   "masks": target["masks"][i:i + 1]}
            out = crit.loss_masks({"pred_masks": logits[:, i:i + 1]}, [one], [(torch.tensor([0]), torch.tensor([0]))])
            per_instance.append(float(out["loss_mask_bce"] + out["loss_mask_dice"]))
    assert abs(ddp_mean - sum(per_instance) / 4) < 1e-5
    # and it is not the mean of per-rank means (the bug this guards against)
    assert abs(ddp_mean - (per_instance[0] + sum(per_instance[1:]) / 3) / 2) > 1e-3
