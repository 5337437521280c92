"""Learning parity: our training step vs upstream D-FINE-seg (`pip install dfine-seg`) on the very
same batches, step for step, evaluated by the same code.

    .venv/bin/python benchmarks/learning_parity.py --upstream-python benchmarks/.venv-dfine-seg/bin/python \
        --image-size 192 --steps 400 --seeds 0 1 --out benchmarks/out/learning_parity

Data: benchmarks/label_mistakes_data.py's generator with its TRUE labels (no injected mistakes):
four shape classes on textured backgrounds with occlusion, 256x256 originals; images
0..n_train-1 train, the next n_val are the held-out val set. The parent process builds every
input once (uint8 train images at the model size with their targets, the val batch as our
preprocessing makes it, the batch order per seed, the lr of every step) into one file both
workers read, so both implementations see bitwise the same tensors in the same order.

Each seed runs ours and upstream CONCURRENTLY, one process each, 1 thread each (same conditions,
so the per-step wall-time ratio is fair). Same for both: size N from scratch, fp32, AdamW
(lr = backbone lr, weight decay 1.25e-4, betas 0.9/0.999), our flat-cosine schedule (quadratic
warm-up over a tenth, flat to half, cosine to half the lr, flat over the last tenth) applied to
every parameter group, grad clip 0.1, EMA 0.9999 with a 2000-update warm-up, no augmentation,
`torch.manual_seed(seed)` before the model is built.
  ours:     core.model.build_model, DFineCriterion, core.train.optim.build_optimizer, ModelEMA,
            FlatCosineSchedule, and the trainer's own step (`Trainer._train_step`).
  upstream: dfine_seg.model.dfine build_model / build_loss / build_optimizer, dfine_seg.dl.train
            ModelEMA and training_forward, its optimizer_step's clip/step/zero_grad/EMA order.
At each --eval-at step a worker runs its EMA model on the val batch and keeps the top 100
(query, class) pairs as DeployModel does (`top_k_outputs`); the parent scores both with our
evaluator (core.infer.postprocess + core.eval.Evaluator: mask F1 at conf 0.5 / IoU 0.5 by the
paper's rules, COCO mask mAP50). Upstream's eval output has our layout (pred_logits, pred_boxes,
pred_masks at stride 4) except that its masks are probabilities, ours logits.

Upstream needs its own venv (its torchvision pin does not import with our torch wheel); see
benchmarks/README.md "Learning parity" for the recipe. torchvision is replaced by the inert
stand-in of benchmarks/official_parity.py plus the real `box_area` (upstream's GIoU calls it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 4
TOP_K = 100
EMA_DECAY, EMA_WARMUPS = 0.9999, 2000
CLIP_MAX_NORM = 0.1
WEIGHT_DECAY = 1.25e-4


# ---------------------------------------------------------------------- shared inputs (parent)


def batch_order(n_train: int, batch: int, steps: int, seed: int) -> list[list[int]]:
    """Indices of every step's batch: a fresh permutation per epoch from rng([seed, epoch]),
    the incomplete last batch of an epoch dropped (as the trainer's sampler does)."""
    per_epoch = n_train // batch
    if per_epoch == 0:
        raise ValueError(f"batch {batch} is larger than the {n_train} training images")
    order: list[list[int]] = []
    epoch = 0
    while len(order) < steps:
        perm = np.random.default_rng([seed, epoch]).permutation(n_train)
        order += [perm[i * batch:(i + 1) * batch].tolist() for i in range(per_epoch)]
        epoch += 1
    return order[:steps]


def lr_schedule(steps: int, lr: float) -> list[float]:
    """The lr of every step as our trainer sets it for a run of ``steps`` steps (warm-up = a tenth,
    flat = half, no-aug tail = a tenth, minimum = lr * 0.5)."""
    from core.train.schedule import flat_cosine_lr

    warmup, flat, no_aug = schedule_parts(steps)
    return [flat_cosine_lr(s, steps, warmup, flat, no_aug, lr, lr * 0.5) for s in range(steps)]


def schedule_parts(steps: int) -> tuple[int, int, int]:
    """(warm-up, flat, no-aug) step counts: the trainer's defaults with one step per 'epoch'."""
    return min(2000, max(1, steps // 10)), steps // 2, max(1, steps // 10)


def build_data(n_train: int, n_val: int, image_size: int, data_seed: int) -> dict:
    """Train images (uint8 [N,3,S,S] RGB at the model size) and targets, the val batch as our
    inference preprocessing makes it (float32 [V,3,S,S]) and the val labels at full size."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from label_mistakes_data import SIZE, render

    from core.data.augment import Sample, eval_transform
    from core.data.dataset import rasterize_instance, sample_to_target
    from core.infer.preprocess import preprocess

    images, targets = [], []
    for i in range(n_train):
        bgr, insts, _ = render(i, data_seed)
        masks = np.stack([rasterize_instance(inst, SIZE, SIZE) for inst in insts])
        labels = np.array([inst.class_id for inst in insts], np.int64)
        s = eval_transform(Sample(bgr[:, :, ::-1].copy(), masks, labels), image_size)
        images.append(torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1))))
        targets.append(sample_to_target(s, with_masks=True))
    val_bgr, val_labels = [], []
    for i in range(n_train, n_train + n_val):
        bgr, insts, _ = render(i, data_seed)
        val_bgr.append(bgr)
        val_labels.append([inst.to_dict() for inst in insts])
    val, sizes = preprocess(val_bgr, (image_size, image_size))
    return {"train_images": torch.stack(images), "train_targets": targets, "val_images": torch.from_numpy(val),
            "val_sizes": sizes, "val_labels": val_labels, "image_size": image_size, "data_seed": data_seed}


def step_batch(data: dict, indices: list[int]) -> tuple[torch.Tensor, list[dict]]:
    """One step's input: images as float [0, 1] (as core.data.dataset.image_to_tensor) and fresh
    copies of the targets (a criterion may write into them)."""
    images = data["train_images"][indices].float().div_(255.0)
    targets = [{k: v.clone() for k, v in data["train_targets"][i].items()} for i in indices]
    return images, targets


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- model outputs -> scores


def top_k_outputs(out: dict, top_k: int, mask_logits: bool) -> dict[str, torch.Tensor]:
    """Eval outputs (pred_logits [B,Q,C], pred_boxes cxcywh [B,Q,4], pred_masks [B,Q,h,w]) -> the
    DeployModel layout: the top_k (query, class) pairs by sigmoid score, boxes xyxy, masks as
    probabilities (``mask_logits``: the masks are logits, as ours; upstream's are sigmoids)."""
    logits, boxes = out["pred_logits"].float(), out["pred_boxes"].float()
    num_classes = logits.shape[-1]
    scores, index = torch.topk(torch.sigmoid(logits).flatten(1), top_k, dim=-1)
    query = torch.div(index, num_classes, rounding_mode="floor")
    labels = index - query * num_classes
    cx, cy, w, h = boxes.gather(1, query.unsqueeze(-1).expand(-1, -1, 4)).unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
    masks = out["pred_masks"].float()
    masks = masks.gather(1, query[..., None, None].expand(-1, -1, *masks.shape[-2:]))
    return {"labels": labels, "boxes": xyxy, "scores": scores,
            "masks": torch.sigmoid(masks) if mask_logits else masks}


def score_outputs(raw: dict[str, np.ndarray], val_labels: list[list[dict]], sizes: list[tuple[int, int]],
                  conf: float = 0.5) -> dict[str, float]:
    """Our evaluator on DeployModel-layout outputs of the val set: the shared post-processing
    at conf 0.01 (COCO AP), mask F1/precision/recall at ``conf`` and IoU 0.5."""
    from core.annotation import ImageAnnotation, Instance
    from core.eval.evaluator import Evaluator
    from core.eval.records import ImagePred, gt_from_annotation
    from core.infer.postprocess import postprocess

    sys.path.insert(0, str(REPO / "benchmarks"))
    from label_mistakes_data import CLASSES

    dets = postprocess(raw, sizes, conf=0.01, class_names=CLASSES, rle=True)
    ev = Evaluator(NUM_CLASSES, CLASSES, "segment", conf=conf)
    for i, (labels, det, (h, w)) in enumerate(zip(val_labels, dets, sizes)):
        ann = ImageAnnotation(Path(f"val_{i:04d}.png"), w, h, [Instance.from_dict(d) for d in labels])
        ev.add(gt_from_annotation(ann, with_masks=True), ImagePred.from_detections(det, str(ann.image_path)))
    summary = ev.summary()
    m = summary.headline().model_dump()
    return {"mask_f1": m["f1"], "precision": m["precision"], "recall": m["recall"], "mask_map50": m["mask_map50"],
            "mask_map": m["mask_map"], "best_f1": summary.curve.best_f1, "best_threshold": summary.curve.best_threshold}


# ---------------------------------------------------------------------- workers (one per process)


class _OurStep:
    """What the trainer's step reads from ``self``; the step itself is the trainer's own code."""

    def __init__(self, model, optimizer, schedule, criterion, ema, train_cfg) -> None:
        from types import SimpleNamespace

        from core.train.trainer import Trainer

        self.model, self.optimizer, self.schedule, self.criterion, self.ema = model, optimizer, schedule, criterion, ema
        self.cfg = SimpleNamespace(train=train_cfg)
        self.amp_dtype = None  # fp32, as upstream on a CPU
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)
        self.dist = SimpleNamespace(enabled=False)
        self.device = torch.device("cpu")
        self.global_step = 0
        self._step = Trainer._train_step

    def __call__(self, images: torch.Tensor, targets: list[dict]) -> dict[str, float]:
        losses = self._step(self, [(images, targets)])
        self.global_step += 1
        return losses


def load_detector(model: torch.nn.Module, path: Path) -> int:
    """Every weight but the mask head's from a saved state dict (a finished run's EMA): the heads
    compared then start from one trained detector, as a user's run starts from a COCO checkpoint
    with its mask head fresh. Returns how many tensors were loaded."""
    detector = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("mask_head.")}
    missing, unexpected = model.load_state_dict(detector, strict=False)
    if unexpected or any(not k.startswith("mask_head.") for k in missing):
        raise ValueError(f"{path}: not a size-N state dict of this model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return len(detector)


def _ours(image_size: int, steps: int, lr: float, amp: bool = False, mask_head: str = "paper",
          init_detector: Path | None = None):
    from core.config import TrainConfig
    from core.loss.criterion import DFineCriterion
    from core.model import build_model
    from core.train.ema import ModelEMA
    from core.train.optim import build_optimizer
    from core.train.schedule import FlatCosineSchedule
    from core.train.trainer import loss_weight_dict

    cfg = TrainConfig(lr=lr, backbone_lr=lr, weight_decay=WEIGHT_DECAY, clip_max_norm=CLIP_MAX_NORM,
                      ema_decay=EMA_DECAY, ema_warmups=EMA_WARMUPS, amp=False)
    from types import SimpleNamespace

    model = build_model("n", NUM_CLASSES, "segment", image_size, mask_head=mask_head).train()
    if init_detector is not None:
        load_detector(model, init_detector)
    opt = build_optimizer(model, cfg.lr, cfg.backbone_lr, cfg.weight_decay)
    warmup, flat, no_aug = schedule_parts(steps)
    schedule = FlatCosineSchedule(opt, 1, steps, warmup, flat, no_aug)
    crit = DFineCriterion(NUM_CLASSES, "segment", loss_weight_dict(SimpleNamespace(train=cfg)))
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_warmups)
    stepper = _OurStep(model, opt, schedule, crit, ema, cfg)
    if amp:  # the trainer's policy: bf16 autocast on CPUs with native bf16, fp32 otherwise
        from core.train.trainer import amp_dtype

        stepper.amp_dtype = amp_dtype(torch.device("cpu"), True)

    def lrs() -> list[float]:
        return [g["lr"] for g in opt.param_groups]

    return stepper, ema.module, lrs, True


def install_upstream_imports() -> None:
    """torchvision as official_parity's inert stand-in, with the one function upstream's model
    and loss really call (box_area, in its box IoU / GIoU) as the real formula."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from official_parity import install_torchvision_stand_in

    install_torchvision_stand_in()
    import torchvision.ops.boxes as tv_boxes

    tv_boxes.box_area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _upstream(image_size: int, steps: int, lr: float):
    install_upstream_imports()
    from dfine_seg.dl.train import ModelEMA, training_forward
    from dfine_seg.model.dfine import build_loss, build_model, build_optimizer

    model = build_model("n", NUM_CLASSES, enable_mask_head=True, device=torch.device("cpu"),
                        img_size=[image_size, image_size]).train()
    crit = build_loss("n", NUM_CLASSES, label_smoothing=0.0, enable_mask_head=True)
    opt = build_optimizer(model, lr=lr, backbone_lr=lr, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY, base_lr=lr)
    ema = ModelEMA(model, EMA_DECAY)
    state = {"iter": 0}

    def step(images: torch.Tensor, targets: list[dict], lr_now: float) -> float:
        for g in opt.param_groups:  # our schedule on every group (upstream's own is OneCycleLR)
            g["lr"] = lr_now
        loss_dict = training_forward(model, crit, None, images, targets, enabled=False, dtype=torch.bfloat16)
        loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"upstream loss is {float(loss)} at step {state['iter'] + 1}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_MAX_NORM)  # its optimizer_step, fp32 branch
        opt.step()
        opt.zero_grad()
        state["iter"] += 1
        ema.update(state["iter"], model)
        return float(loss.detach())

    def lrs() -> list[float]:
        return [g["lr"] for g in opt.param_groups]

    return step, ema.model, lrs, False


@torch.no_grad()
def predict_val(model: torch.nn.Module, val: torch.Tensor, mask_logits: bool, chunk: int = 8) -> dict[str, torch.Tensor]:
    model.eval()
    parts = [top_k_outputs(model(val[i:i + chunk]), TOP_K, mask_logits) for i in range(0, len(val), chunk)]
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    out["masks"] = out["masks"].half()  # probabilities; halves the file, far below the 0.5 threshold's scale
    return out


def worker(impl: str, data_path: Path, seed: int, steps: int, eval_at: list[int], out_dir: Path, lr: float,
           threads: int, amp: bool = False, mask_head: str = "paper", init_detector: Path | None = None) -> dict:
    torch.set_num_threads(threads)
    data = torch.load(data_path, weights_only=False)
    order, lr_list = data["orders"][seed][:steps], data["lrs"]
    torch.manual_seed(seed)
    if impl == "ours":
        step, ema_model, lrs, mask_logits = _ours(data["image_size"], steps, lr, amp, mask_head, init_detector)
    else:
        step, ema_model, lrs, mask_logits = _upstream(data["image_size"], steps, lr)
    times, losses, checks = [], [], {}
    evals: dict[int, str] = {}
    term_sums: dict[int, dict[str, float]] = {}
    nonfinite: list = []
    for s, idx in enumerate(order):
        images, targets = step_batch(data, idx)
        t0 = time.perf_counter()
        if impl == "ours":
            terms = step(images, targets)
            loss = terms["loss"]
            for k, v in terms.items():  # every logged term, per 100 steps (the stability check)
                acc = term_sums.setdefault(s // 100, {})
                acc[k] = acc.get(k, 0.0) + v
                if not np.isfinite(v):
                    nonfinite.append((s + 1, k, v))
            if not all(abs(v - lr_list[s]) <= 1e-12 * max(1.0, lr_list[s]) for v in lrs()):
                raise AssertionError(f"step {s}: our schedule gave {lrs()}, the shared list {lr_list[s]}")
        else:
            loss = step(images, targets, lr_list[s])
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        if s + 1 in eval_at:
            pred = predict_val(ema_model, data["val_images"], mask_logits)
            path = out_dir / f"{impl}_seed{seed}_step{s + 1}.pt"
            torch.save(pred, path)
            evals[s + 1] = str(path)
            if impl == "ours" and "deploy_max_diff" not in checks:
                checks.update(_deploy_check(ema_model, data["val_images"][:4]))
        print(json.dumps({"impl": impl, "seed": seed, "step": s + 1, "loss": loss, "step_s": times[-1]}),
              file=sys.stderr, flush=True)
    if impl == "upstream":
        with torch.no_grad():
            raw = ema_model.eval()(data["val_images"][:1])
        checks["upstream_eval_keys"] = sorted(raw)
        checks["upstream_pred_masks_shape"] = list(raw["pred_masks"].shape)
        checks["upstream_masks_in_0_1"] = bool(raw["pred_masks"].min() >= 0 and raw["pred_masks"].max() <= 1)
    checks["ema_finite"] = all(bool(torch.isfinite(v).all()) for v in ema_model.state_dict().values()
                               if v.dtype.is_floating_point)
    if impl == "ours":
        torch.save(ema_model.state_dict(), out_dir / f"ours_seed{seed}_ema.pt")  # a later --init-detector
        checks["nonfinite_terms"] = nonfinite[:20]
        checks["terms_per_100"] = {f"{100 * b + 1}-{min(100 * (b + 1), steps)}": {
            k: v / (min(100 * (b + 1), steps) - 100 * b) for k, v in sums.items()} for b, sums in term_sums.items()}
    return {"impl": impl, "seed": seed, "steps": steps, "threads": torch.get_num_threads(), "losses": losses,
            "mask_head": mask_head if impl == "ours" else "upstream",
            "init_detector": str(init_detector) if init_detector else None,
            "dtype": str(getattr(step, "amp_dtype", None) or "fp32").replace("torch.", ""),
            "step_s": times, "evals": evals, "checks": checks,
            "input_digest": digest(data["train_images"], data["val_images"]),
            "order_digest": hashlib.sha256(json.dumps(order).encode()).hexdigest()[:16]}


def _deploy_check(model: torch.nn.Module, images: torch.Tensor) -> dict:
    """Our top_k_outputs on the eval dict == DeployModel (unfused) on the same weights."""
    from core.model import DeployModel

    with torch.no_grad():
        mine = top_k_outputs(model.eval()(images), TOP_K, mask_logits=True)
        dep = dict(zip(("labels", "boxes", "scores", "masks"), DeployModel(model, TOP_K, fuse=False)(images)))
    return {"deploy_labels_equal": bool(torch.equal(mine["labels"], dep["labels"])),
            "deploy_max_diff": max(float((mine[k] - dep[k]).abs().max()) for k in ("boxes", "scores", "masks"))}


# ---------------------------------------------------------------------- parent


def run_pair(args, seed: int, data_path: Path, eval_at: list[int]) -> dict[str, dict]:
    """Ours and upstream for one seed, concurrently, each with ``--threads`` threads under nice."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    procs = {}
    impls = [("ours", sys.executable)] + ([] if args.only else [("upstream", args.upstream_python)])
    for impl, python in impls:
        cmd = ["nice", "-n", str(args.nice), python, str(Path(__file__).resolve()), "--worker", impl, "--data",
               str(data_path), "--seed", str(seed), "--steps", str(args.steps), "--eval-at",
               *map(str, eval_at), "--out", str(args.out), "--lr", str(args.lr), "--threads", str(args.threads)]
        cmd += ["--amp"] if args.amp and impl == "ours" else []
        cmd += ["--mask-head", args.mask_head] if impl == "ours" else []
        cmd += ["--init-detector", str(args.init_detector)] if args.init_detector and impl == "ours" else []
        log = open(args.out / f"{impl}_seed{seed}.log", "w")  # noqa: SIM115 - closed below
        procs[impl] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO), log)
    results = {}
    for impl, (proc, log) in procs.items():
        stdout, _ = proc.communicate()
        log.close()
        if proc.returncode != 0:
            raise RuntimeError(f"{impl} seed {seed} failed (rc {proc.returncode}); see {args.out}/{impl}_seed{seed}.log")
        results[impl] = json.loads(stdout.strip().splitlines()[-1])
    return results


def summarize(run: dict, data: dict) -> dict:
    evals = {}
    for step, path in run["evals"].items():
        pred = torch.load(path, weights_only=False)
        raw = {k: v.float().numpy() if k != "labels" else v.numpy() for k, v in pred.items()}
        evals[int(step)] = score_outputs(raw, data["val_labels"], data["val_sizes"])
    t = run["step_s"]
    return {"seed": run["seed"], "impl": run["impl"], "dtype": run.get("dtype", "fp32"),
            "mask_head": run.get("mask_head", "paper" if run["impl"] == "ours" else "upstream"),
            "init_detector": run.get("init_detector"),
            "evals": evals, "step_s_median": statistics.median(t),
            "step_s_mean": statistics.fmean(t), "loss_first": run["losses"][0], "loss_last": run["losses"][-1],
            "losses": run["losses"], "step_s": t, "checks": run["checks"], "input_digest": run["input_digest"],
            "order_digest": run["order_digest"]}


def overlap_medians(a: list[float], b: list[float]) -> tuple[float, float, int, int]:
    """Median step time of each run over the steps both were running concurrently: a run that
    finishes first leaves the other alone on the CPU, whose later steps are not comparable.
    Returns (median a, median b, steps of a, steps of b) within the common wall-time window."""
    end = min(sum(a), sum(b))
    na = max(1, int(np.searchsorted(np.cumsum(a), end, side="right")))
    nb = max(1, int(np.searchsorted(np.cumsum(b), end, side="right")))
    return statistics.median(a[:na]), statistics.median(b[:nb]), na, nb


def log_rows(log: Path) -> list[dict]:
    """The per-step records a worker wrote to its log (stderr), in order."""
    rows = []
    for line in log.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step_s" in row:
            rows.append(row)
    return rows


def recover(out_dir: Path, data: dict | None = None) -> list[dict]:
    """Results of workers that did not finish (stopped at the deadline): step times and losses
    from their logs, scores from the eval files they saved."""
    import re

    results = []
    for log in sorted(out_dir.glob("*_seed*.log")):
        impl, seed = re.fullmatch(r"(ours|upstream)_seed(\d+)\.log", log.name).groups()
        rows = log_rows(log)
        evals = {int(m.group(1)): str(f) for f in out_dir.glob(f"{impl}_seed{seed}_step*.pt")
                 if (m := re.search(r"_step(\d+)\.pt$", f.name))}
        run = {"impl": impl, "seed": int(seed), "losses": [r["loss"] for r in rows], "step_s": [r["step_s"] for r in rows],
               "evals": evals, "checks": {"recovered_from_log": True, "steps_done": len(rows)},
               "input_digest": None, "order_digest": None}
        results.append(summarize(run, data))
    return results


def run_label(r: dict) -> str:
    """'ours', 'upstream', 'ours narrow' (another mask head than the paper's), 'ours bfloat16' (the
    trainer's CPU autocast), 'ours lite bfloat16': runs that differ in either never share a column."""
    parts = [r["impl"]]
    if r["impl"] == "ours" and r.get("mask_head", "paper") != "paper":
        parts.append(r["mask_head"])
    if r.get("dtype", "fp32") != "fp32":
        parts.append(r["dtype"])
    return " ".join(parts)


def noise_row(name: str, step: int, metric: str, mine: list[float], theirs: list[float]) -> str | None:
    """One row of the noise table: mean difference, its SE from the seeds, and the ±2 SE verdict."""
    d = difference_vs_noise(mine, theirs)
    if d is None:
        return None
    diff, se = d
    verdict = "ahead" if diff > 2 * se else "behind" if diff < -2 * se else "within noise"
    return f"| {name} | {step} | {metric} | {diff:+.3f} | {se:.3f} | {verdict} |"


def difference_vs_noise(mine: list[float], theirs: list[float]) -> tuple[float, float] | None:
    """(mean of mine - mean of theirs, standard error of that difference from the seed-to-seed
    spread, the two sample variances pooled): the run-to-run noise the issue measures with 2 seeds."""
    if len(mine) < 2 or len(theirs) < 2:
        return None
    pooled = (statistics.variance(mine) * (len(mine) - 1) + statistics.variance(theirs) * (len(theirs) - 1)) / (
        len(mine) + len(theirs) - 2)
    return statistics.fmean(mine) - statistics.fmean(theirs), math.sqrt(pooled * (1 / len(mine) + 1 / len(theirs)))


def noise_table(by: dict, seeds: list[int], impls: list[str], eval_at: list[int],
                baseline: str = "upstream") -> list[str]:
    """Each other run minus the baseline run (upstream, or e.g. our paper head when a lighter head
    is judged) per step against the seed noise: 'behind' only when more than 2 standard errors
    below (with 2 seeds per side a wide band: the SE column says how wide)."""
    rows = []
    for mine in [i for i in impls if i != baseline]:
        for step in eval_at:
            for metric in ("mask_f1", "mask_map50"):
                vals = [[by[(i, s)]["evals"][step][metric] for s in seeds if (i, s) in by and step in by[(i, s)]["evals"]]
                        for i in (mine, baseline)]
                row = noise_row(mine, step, metric, *vals)
                if row is not None:
                    rows.append(row)
    if not rows:
        return []
    return ["", f"| run | step | metric | minus {baseline} (mean) | SE from the seeds | verdict (±2 SE) |",
            "|---|---|---|---|---|---|", *rows]


def markdown(results: list[dict], eval_at: list[int], baseline: str = "upstream") -> str:
    seeds = sorted({r["seed"] for r in results})
    impls = list(dict.fromkeys(run_label(r) for r in sorted(results, key=lambda r: r["impl"] != "ours")))
    by = {(run_label(r), r["seed"]): r for r in results}
    lines = ["| step | metric | " + " | ".join(f"{i} s{s}" for s in seeds for i in impls)
             + " | " + " | ".join(f"{i} mean" for i in impls) + " |",
             "|---|---|" + "---|" * (len(seeds) * len(impls) + len(impls))]
    for step in eval_at:
        for metric in ("mask_f1", "best_f1", "mask_map50"):
            vals = {impl: [by[(impl, s)]["evals"][step][metric] for s in seeds
                           if (impl, s) in by and step in by[(impl, s)]["evals"]] for impl in impls}
            cells = [f"{by[(impl, s)]['evals'][step][metric]:.3f}"
                     if (impl, s) in by and step in by[(impl, s)]["evals"] else "-"
                     for s in seeds for impl in impls]
            means = [f"{statistics.fmean(v):.3f}" if v else "-" for v in vals.values()]
            lines.append(f"| {step} | {metric} | " + " | ".join(cells + means) + " |")
    lines += noise_table(by, seeds, impls, eval_at, baseline)
    lines += ["", "| seed | run | precision | step s (median) | step s (mean) | first loss | last loss |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['seed']} | {run_label(r)} | {r.get('dtype', 'fp32')} | {r['step_s_median']:.2f} | {r['step_s_mean']:.2f} "
                     f"| {r['loss_first']:.2f} | {r['loss_last']:.2f} |")
    lines.append("")
    for s in seeds:  # wall-time ratios only for runs that ran side by side (one invocation's pair)
        for mine in [i for i in impls if i.startswith("ours")]:
            a, b = by.get((mine, s)), by.get(("upstream", s))
            if a is None or b is None or a.get("pair") != b.get("pair"):
                continue
            mo, mu, no, nu = overlap_medians(a["step_s"], b["step_s"])
            lines.append(f"seed {s}: wall time per step {mine}/upstream {mo / mu:.2f} (medians {mo:.2f} / {mu:.2f} s over "
                         f"the {no} / {nu} steps both ran concurrently)  ")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream-python", help="interpreter that imports dfine_seg (benchmarks/.venv-dfine-seg)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-at", type=int, nargs="+", help="default: 4 evenly spaced points")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-val", type=int, default=80)
    p.add_argument("--data-seed", type=int, default=19)
    p.add_argument("--lr", type=float, default=2.5e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--mask-head", default="paper", help="our model's mask head (core.model.builder."
                   "MASK_HEADS): e.g. lite's or cpu's quality against paper's on the same batches (issue #16); "
                   "narrow = upstream's N widths")
    p.add_argument("--amp", action="store_true",
                   help="ours with the trainer's CPU autocast (bf16 where native); upstream stays fp32 (its AMP is CUDA-only)")
    p.add_argument("--init-detector", type=Path, help="ours: start every weight but the mask head's from this "
                   "state dict (an earlier run's ours_seed<N>_ema.pt); lighter-head quality at a lower seed noise")
    p.add_argument("--only", choices=["ours"], help="ours alone (no upstream venv; e.g. the long stability run)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "learning_parity")
    p.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                   help="only combine the results.json of earlier runs (e.g. one per seed) into --out")
    p.add_argument("--baseline", default="upstream",
                   help="with --merge: the run the noise table subtracts (a run label: upstream, ours, 'ours lite', ...)")
    p.add_argument("--worker", choices=["ours", "upstream"], help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    eval_at = sorted(set(a.eval_at or [a.steps * k // 4 for k in range(1, 5)]))
    if a.worker:
        print(json.dumps(worker(a.worker, a.data, a.seed, a.steps, eval_at, a.out, a.lr, a.threads, a.amp,
                                a.mask_head, a.init_detector)))
        return 0
    if a.merge:
        results = []
        for d in a.merge:  # scored afresh from the logs and eval files (also of runs stopped early)
            done = json.loads((d / "results.json").read_text())["results"] if (d / "results.json").is_file() else []
            finished = {(r["impl"], r["seed"]): r for r in done}
            for r in recover(d, torch.load(next(d.glob("data_*.pt")), weights_only=False)):
                if (r["impl"], r["seed"]) in finished:
                    f = finished[(r["impl"], r["seed"])]
                    r.update(checks=f["checks"], input_digest=f["input_digest"], order_digest=f["order_digest"],
                             dtype=f.get("dtype", "fp32"), mask_head=f.get("mask_head", r["mask_head"]),
                             init_detector=f.get("init_detector"))
                r["pair"] = str(d)
                results.append(r)
        steps = sorted({s for r in results for s in r["evals"]})
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.json").write_text(json.dumps({"merged": [str(d) for d in a.merge], "eval_at": steps,
                                                        "results": results}, indent=1))
        md = markdown(results, steps, a.baseline)
        (a.out / "results.md").write_text(md)
        print(md)
        return 0
    if not a.upstream_python and not a.only:
        p.error("--upstream-python is needed (or --only ours)")
    if a.init_detector and not a.only:
        p.error("--init-detector starts our model only: use it with --only ours")
    a.out.mkdir(parents=True, exist_ok=True)
    data_path = a.out / f"data_{a.image_size}_{a.n_train}_{a.n_val}_{a.data_seed}.pt"
    t0 = time.perf_counter()
    data = build_data(a.n_train, a.n_val, a.image_size, a.data_seed)
    data["orders"] = {s: batch_order(a.n_train, a.batch, a.steps, s) for s in a.seeds}
    data["lrs"] = lr_schedule(a.steps, a.lr)
    torch.save(data, data_path)
    print(f"data: {a.n_train} train / {a.n_val} val at {a.image_size} px in {time.perf_counter() - t0:.0f} s", flush=True)
    results = []
    for seed in a.seeds:
        t_pair = time.perf_counter()
        runs = run_pair(a, seed, data_path, eval_at)
        for impl in runs:
            r = summarize(runs[impl], data)
            results.append(r)
            ev = " ".join(f"{k}: F1 {v['mask_f1']:.3f} mAP50 {v['mask_map50']:.3f}" for k, v in r["evals"].items())
            print(f"seed {seed} {impl:>8}: step {r['step_s_median']:.2f} s  {ev}", flush=True)
        print(f"seed {seed}: pair wall {time.perf_counter() - t_pair:.0f} s", flush=True)
        (a.out / "results.json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(a).items()}, "eval_at": eval_at, "results": results}, indent=1))
    md = markdown(results, eval_at)
    (a.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
