"""The training loop: one config drives data, model, loss, optimizer, schedule, EMA, AMP, DDP,
validation, checkpoints and events.

Exact resume: every source of randomness is either restored from last.pt (python / numpy /
torch / CUDA generators, saved after the last finished optimizer step) or a pure function of
(seed, epoch, index) (data order, augmentations), so k steps + SIGTERM + resume gives the
same losses and weights as one uninterrupted run. SIGTERM / Ctrl-C only set a flag: the step
in progress finishes, last.pt is written atomically and the process exits 0.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from core import cpu_isa
from core.atomic_io import atomic_write_text
from core.config import ProjectConfig, apply_overrides
from core.data.augment import AugmentConfig, TrainAugment
from core.data.dataset import SegmentationDataset, collate
from core.data.image_cache import cache_for_training
from core.project_paths import child_folder
from core.errors import ConfigError, UserFacingError
from core.eval.validate import load_val_items, validate_predictor
from core.infer.meta import ModelMeta
from core.model.checkpoint import read_training_checkpoint
from core.project_lock import training_marker
from core.train import budget as budget_plan
from core.train import distributed as ddp
from core.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from core.train.ema import ModelEMA, unwrap
from core.train.events import EventLog, WandbSink, append_metrics_csv, plot_run
from core.train.optim import build_optimizer
from core.train.schedule import FlatCosineSchedule
from core.weights import resolve_weights, weights_dir
from core.weights.progress import DownloadProgress

if TYPE_CHECKING:
    from core.model.network import DFINEModel

CHECKPOINT_VERSION = 1


@dataclass
class TrainOptions:
    project: Path
    run_name: str | None = None
    resume: bool = False
    weights: str | None = None
    backbone_weights: str | None = None
    overrides: list[str] = field(default_factory=list)
    device: str | None = None
    events_stdout: bool = False
    sync_bn: bool = False
    no_denoising: bool = False  # reproducibility checks (DDP == single process)
    progress: bool = True
    # callers that train on their own image lists (the out-of-fold analysis, core.analysis.folds):
    run_dir: Path | None = None  # this folder instead of runs/<name> (resume=True continues its last.pt)
    train_images: list[Path] | None = None  # instead of the project's train split
    val_images: list[Path] | None = None  # instead of the val split ([] = no validation)
    on_event: Callable[[dict], None] | None = None  # sees every event record (progress for a caller)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is available (use --device cpu)")
        return torch.device("cuda", local_rank if name == "cuda" else int(name.split(":")[1]))
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for, but MPS is not available (use --device cpu)")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX usable by oneDNN (``ONEDNN_MAX_CPU_ISA`` honoured). oneDNN's own "bf16
    supported" is also true on plain AVX-512, where bf16 is emulated and can be slower than fp32."""
    return cpu_isa.detect().native_bf16


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU supports it (no loss scaling needed), else fp16 on CUDA; on a CPU bf16
    only with native support — measured 1.7-2.2x faster per training step (size N, 256 px, batch 4)
    on an AVX512-BF16 CPU — and fp32 otherwise. Losses are computed in fp32 either way."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def loss_weight_dict(cfg: ProjectConfig) -> dict[str, float]:
    w = cfg.train.loss_weights.model_dump()
    w["bbox"] = w.pop("l1")  # config says l1, the criterion's key is loss_bbox (as upstream)
    return w


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between optimizer steps."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. embedded use): no signal handling
                pass

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
        self.requested = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    def __init__(self, opts: TrainOptions) -> None:
        from core.project import Project

        self.opts = opts
        self.project = Project.open(opts.project)
        cfg = self.project.config
        self.run_dir, resume_ckpt = self._pick_run(cfg)
        if resume_ckpt is not None:
            # the run's own config (bit-exact resume), plus any new --set (e.g. more epochs)
            cfg = ProjectConfig.model_validate(resume_ckpt["config"])
        cfg = apply_overrides(cfg, list(opts.overrides))
        if opts.device:
            cfg = apply_overrides(cfg, [f"train.device={opts.device}"])
        self.cfg = cfg
        self.resume_ckpt = resume_ckpt
        self.class_names = list(cfg.classes)
        self.task = cfg.task
        self.dist = ddp.init_distributed("cuda" if cfg.train.device.startswith("cuda") or (
            cfg.train.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(cfg.train.device, self.dist.local_rank)
        self.events = EventLog(self.run_dir, sys.stdout if opts.events_stdout else None, self.dist.is_main,
                               # with --events - the warning reaches the reader of stdout (the GUI log);
                               # a second copy on stderr would show twice there
                               notices=None if opts.events_stdout else sys.stderr)
        if opts.on_event is not None:
            self.events.sinks.append(_CallbackSink(opts.on_event))
        self.stop = StopFlag()

    # ------------------------------------------------------------------ setup

    def _pick_run(self, cfg: ProjectConfig) -> tuple[Path, dict | None]:
        if self.opts.run_dir is not None:
            last = Path(self.opts.run_dir) / "last.pt"
            return Path(self.opts.run_dir), read_training_checkpoint(last) if self.opts.resume and last.is_file() else None
        runs = self.project.runs_dir
        name = self.opts.run_name
        if name is not None:  # one folder under runs/, and no symlink out of it
            child_folder(runs, name, f"--name (a run folder under {runs})")
        if self.opts.resume:
            if self.opts.run_name:
                run_dir = runs / self.opts.run_name
            else:
                candidates = sorted(runs.glob("*/last.pt"), key=lambda p: p.stat().st_mtime)
                if not candidates:
                    raise UserFacingError(f"{runs}: no run with a last.pt to resume")
                run_dir = candidates[-1].parent
            last = run_dir / "last.pt"
            if not last.is_file():
                raise UserFacingError(f"{last}: nothing to resume (no last.pt in this run)")
            return run_dir, read_training_checkpoint(last)
        if self.opts.run_name:
            run_dir = runs / self.opts.run_name
            if (run_dir / "last.pt").exists():
                raise UserFacingError(f"{run_dir}: run exists; use --resume to continue it or pick another --name")
            return run_dir, None
        # train, train2, train3 ... (the Makefile's default WEIGHTS is runs/train/best.pt)
        run_dir, k = runs / "train", 1
        while run_dir.exists():
            k += 1
            run_dir = runs / f"train{k}"
        return run_dir, None

    def _build(self) -> None:
        from core.model import build_model

        cfg, t = self.cfg, self.cfg.train
        torch.manual_seed(t.seed)
        np.random.seed(t.seed % 2**32)
        world = self.dist.world_size
        if t.batch_size % world:
            raise ConfigError(f"train.batch_size ({t.batch_size}) must be divisible by the number of processes ({world})")
        self.local_batch = t.batch_size // world
        if self.local_batch % t.grad_accum:
            raise ConfigError(f"train.batch_size per process ({self.local_batch}) must be divisible by "
                              f"train.grad_accum ({t.grad_accum})")
        self.micro_batch = self.local_batch // t.grad_accum

        train_imgs, val_imgs = self._split_images()
        no_aug = t.no_aug_epochs_resolved
        aug = TrainAugment(AugmentConfig(image_size=cfg.model.image_size, mosaic_prob=t.mosaic_prob,
                                         epochs=t.epochs, no_aug_epochs=no_aug))
        cache = None
        if t.cache_images:
            cache, why_not = cache_for_training(self.project.root, train_imgs, 2 * cfg.model.image_size)
            if why_not and self.dist.is_main:
                self.events.emit("warning", message=why_not)
        self.train_set = SegmentationDataset(train_imgs, self.project.load_annotation, len(self.class_names),
                                             cfg.model.image_size, cfg.task, aug, seed=t.seed,
                                             max_side=2 * cfg.model.image_size, cache=cache)
        self.val_images = val_imgs
        self.sampler = ddp.EpochShardSampler(len(self.train_set), self.local_batch, self.dist.rank, world,
                                             seed=t.seed, shuffle=True, drop_last=True)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        # with a time budget, train.epochs is only the first guess: the plan replaces it (core.train.budget)
        self.budget_s = t.time_budget_min * 60.0 if t.time_budget_min else None
        self.budget_elapsed_before = 0.0  # seconds of this run spent in earlier sessions (resume)
        self.timings: budget_plan.Timings | None = None
        self.layout = self._layout_for(t.epochs)
        self.epochs_total = t.epochs
        self.total_steps = self.layout.total_steps
        aug.cfg.dense_start = self.layout.dense_start  # aug is the training set's augment
        aug.cfg.dense_end = self.layout.dense_end

        model = build_model(cfg.model.size, len(self.class_names), cfg.task, cfg.model.image_size,
                            mask_head=cfg.model.mask_head)
        if self.opts.no_denoising:
            model.decoder.num_denoising = 0
        self.init_report: dict[str, Any] = {}
        if self.resume_ckpt is None:  # a resume restores everything from last.pt instead
            from core.model import load_weights

            # backbone first, so a full checkpoint given as well wins where both provide tensors
            for key, path in (("backbone_weights", self.opts.backbone_weights or cfg.model.backbone_weights),
                              ("weights", self.opts.weights or cfg.model.weights)):
                if path:
                    self.init_report[key] = load_weights(model, self._weights_file(path)).summary()
        model.to(self.device)
        if self.opts.sync_bn and self.dist.enabled and self.device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA devices (torch's SyncBatchNorm has no CPU kernel); "
                              "on CPU each process normalises its own batch")
        self.model = ddp.wrap_model(model, self.dist, self.device, self.opts.sync_bn)
        self.ema = ModelEMA(self.model, self.layout.ema_decay, self.layout.ema_warmups)
        pretrained = bool(self.opts.weights or cfg.model.weights or self.opts.backbone_weights
                          or cfg.model.backbone_weights)
        self.backbone_lr = t.backbone_lr_for(pretrained)
        self.optimizer = build_optimizer(self.model, t.lr, self.backbone_lr, t.weight_decay)
        # a warm-up longer than a tenth of a short run would leave it at a tiny lr throughout
        self.warmup_iters = self.layout.warmup_iters
        self.schedule = FlatCosineSchedule(self.optimizer, self.steps_per_epoch, t.epochs, self.warmup_iters,
                                           self.layout.flat_iters // self.steps_per_epoch,
                                           self.layout.no_aug_epochs)
        from core.loss.criterion import DFineCriterion

        self.criterion = DFineCriterion(len(self.class_names), cfg.task, loss_weight_dict(cfg),
                                        cls_loss="mal" if t.matching == "deim" else "vfl")
        self.amp_dtype = amp_dtype(self.device, t.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch, self.epoch_step, self.global_step = 0, 0, 0
        self.best_value, self.best_epoch = -math.inf, -1
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)

    def _weights_file(self, spec: str) -> Path:
        """A `--weights` path, or a name (dfine_s_coco) from the weights cache; rank 0 downloads
        a missing one (model.download_weights), the other ranks wait for it."""

        m = self.cfg.model
        folder = weights_dir(self.project.root, m.weights_dir, read_config=False)
        path = None
        if self.dist.is_main:
            path = resolve_weights(spec, folder, self.project.root, m.size, m.download_weights,
                                   DownloadProgress(spec), should_stop=lambda: self.stop.requested)
        if self.dist.enabled:
            ddp.barrier()
        return path or resolve_weights(spec, folder, self.project.root, m.size, allow_download=False)

    def _split_images(self) -> tuple[list[Path], list[Path]]:
        o = self.opts
        train = self.project.split_images("train") if o.train_images is None else list(o.train_images)
        val = self.project.split_images("val") if o.val_images is None else list(o.val_images)
        if not train:
            raise UserFacingError(f"{self.project.root}: the train split is empty (label some images, then `dfine split`)")
        return train, val

    def _restore(self, ckpt: dict) -> None:
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        # a longer run (--set train.epochs=...) recomputes the step counts from the new config
        self.schedule.total = self.total_steps
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.epoch_step, self.global_step = (int(ckpt["epoch"]), int(ckpt["epoch_step"]),
                                                         int(ckpt["global_step"]))
        self.best_value = float(ckpt.get("best_value", -math.inf))
        self.best_epoch = int(ckpt.get("best_epoch", -1))
        saved = ckpt.get("budget")
        if self.budget_s is not None and saved:  # the plan and the time already spent carry over
            self.budget_elapsed_before = float(saved["elapsed_s"])
            self.timings = budget_plan.Timings(**saved["timings"]) if saved.get("timings") else None
            self._apply_layout(int(saved["epochs"]))
        rng = ckpt["rng"]
        if isinstance(rng, list):  # saved by a DDP run: one state per rank
            rng = rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0]
        self._rng_to_restore = rng

    # ------------------------------------------------------------------ time budget

    def _layout_for(self, epochs: int) -> budget_plan.Layout:
        t = self.cfg.train
        return budget_plan.layout_run(epochs, self.steps_per_epoch, t.warmup_iters, t.flat_epochs, t.no_aug_epochs,
                                      t.ema_decay, t.ema_warmups, budgeted=self.budget_s is not None,
                                      dense=t.matching == "deim")

    def _apply_layout(self, epochs: int) -> None:
        """Re-lay the run out for ``epochs``: lr schedule, no-aug tail (read by the next epoch's
        loader), EMA. Steps already taken keep the lr they had."""
        lay = self._layout_for(max(1, epochs))
        self.layout, self.epochs_total, self.total_steps = lay, lay.epochs, lay.total_steps
        self.warmup_iters = lay.warmup_iters
        s = self.schedule
        s.total, s.warmup, s.flat, s.no_aug = lay.total_steps, lay.warmup_iters, lay.flat_iters, lay.no_aug_iters
        aug = self.train_set.augment
        if aug is not None:
            aug.cfg.epochs, aug.cfg.no_aug_epochs = lay.epochs, lay.no_aug_epochs
            aug.cfg.dense_start, aug.cfg.dense_end = lay.dense_start, lay.dense_end
        self.ema.decay, self.ema.warmups = lay.ema_decay, lay.ema_warmups

    def _budget_state(self) -> dict | None:
        if self.budget_s is None:
            return None
        return {"elapsed_s": self._budget_elapsed(), "epochs": self.epochs_total,
                "timings": None if self.timings is None else vars(self.timings).copy()}

    def _budget_elapsed(self) -> float:
        return self.budget_elapsed_before + time.perf_counter() - self._t_run

    def _budget_remaining(self) -> float:
        assert self.budget_s is not None
        return self.budget_s - self._budget_elapsed()

    def _replan(self, epoch: int, epoch_step: int) -> None:
        """Plan the epochs that fit in the time left, from the current timings, and lay them out."""
        assert self.timings is not None
        planned = budget_plan.plan_epochs(self._budget_remaining(), epoch, epoch_step, self.steps_per_epoch,
                                          self.cfg.train.val_every if self.val_images else 10**9, self.timings)
        if self.dist.enabled:  # every rank runs the same plan (rank 0's clock)
            box = [planned]
            torch.distributed.broadcast_object_list(box, src=0)
            planned = int(box[0])
        if planned != self.epochs_total:
            self._apply_layout(planned)

    # ------------------------------------------------------------------ checkpoints

    def _payload(self) -> dict[str, Any]:
        rng: dict[str, Any] | list[Any] = rng_state()
        if self.dist.enabled:  # every rank's generators, so each rank resumes its own stream
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng = gathered
        return {
            "version": CHECKPOINT_VERSION,
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "global_step": self.global_step,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "best_metric": self.cfg.train.best_metric,
            "rng": rng,
            "config": self.cfg.model_dump(mode="json"),
            "class_names": list(self.class_names),
            "task": self.task,
            "size": self.cfg.model.size,
            "image_size": self.cfg.model.image_size,
            "world_size": self.dist.world_size,
            "budget": self._budget_state(),
        }

    def _save(self, kind: str, payload: dict | None = None) -> dict:
        payload = payload if payload is not None else self._payload()  # collective: all ranks
        if self.dist.is_main:
            path = self.run_dir / f"{kind}.pt"
            save_checkpoint(path, payload)
            self.events.emit("checkpoint", kind=kind, path=str(path), epoch=self.epoch, step=self.global_step)
        return payload

    # ------------------------------------------------------------------ loop

    def _loader(self, epoch: int, skip_batches: int) -> torch.utils.data.DataLoader:
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, skip_batches)
        workers = self.cfg.train.workers
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=self.micro_batch, sampler=self.sampler, num_workers=workers,
            collate_fn=collate, drop_last=False, pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # own generator: creating the iterator must not draw from the global torch RNG
            generator=torch.Generator().manual_seed(self.cfg.train.seed + epoch),
            prefetch_factor=2 if workers > 0 else None,
            worker_init_fn=_worker_ignores_signals if workers > 0 else None,
        )

    def _maybe_mixup(self, epoch: int, micro: int, images: torch.Tensor, targets: list[dict]):
        """DEIM's batch mixup inside the dense phase (train.matching: deim), with probability
        train.mixup_prob; its randomness is a pure function of (seed, step, micro-batch), so a resume
        mixes the same batches."""
        t = self.cfg.train
        aug = self.train_set.augment
        if t.matching != "deim" or t.mixup_prob <= 0 or aug is None or not aug.dense_on(epoch):
            return images, targets
        rng = np.random.default_rng([t.seed, self.global_step, micro, self.dist.rank, 0xDE1])
        if rng.random() >= t.mixup_prob:
            return images, targets
        from core.data.augment import mixup_batch

        return mixup_batch(images, targets, round(float(rng.uniform(0.45, 0.55)), 6))

    def _to_device(self, images: torch.Tensor, targets: list[dict]) -> tuple[torch.Tensor, list[dict]]:
        nb = self.device.type == "cuda"
        return (images.to(self.device, non_blocking=nb),
                [{k: v.to(self.device, non_blocking=nb) for k, v in t.items()} for t in targets])

    def _train_step(self, micro_batches: list) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns the logged losses."""
        from core.loss.criterion import summarize_losses, total_loss

        t = self.cfg.train
        model = self.model
        self.schedule.step(self.global_step, self.optimizer)
        sums: dict[str, float] = {}
        n = len(micro_batches)
        for i, (images, targets) in enumerate(micro_batches):
            # (distributed: self.model is the DistributedDataParallel wrapper, ddp.wrap_model)
            sync = (nullcontext() if (i == n - 1 or not self.dist.enabled)
                    else cast(DistributedDataParallel, model).no_sync())
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    outputs = model(images, targets=targets)
                # the loss in fp32: VFL / dice are unstable in half precision
                losses = self.criterion(_float_outputs(outputs), targets)
                loss = total_loss(losses)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {float(loss)} at step {self.global_step + 1}; "
                                             "lower train.lr or check the labels")
                self.scaler.scale(loss / n).backward()
            for k, v in summarize_losses(losses).items():
                sums[k] = sums.get(k, 0.0) + v / n
        if t.clip_max_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(model)
        if self.dist.enabled:  # log the global-batch loss, identical on every rank
            keys = sorted(sums)
            vec = ddp.all_reduce_mean(torch.tensor([sums[k] for k in keys], dtype=torch.float64,
                                                   device=self.device))
            sums = dict(zip(keys, vec.tolist()))
        return sums

    _t_run = 0.0

    def run(self) -> int:
        self._t_run = time.perf_counter()  # a time budget counts from here (setup included)
        self.stop.install()
        try:
            # class edits elsewhere see that this run reads the labels (and warn or ask)
            with training_marker(self.project.root):
                self._build()
                return self._loop()
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.events.emit("error", message=str(exc) or exc.__class__.__name__, type=exc.__class__.__name__)
            raise
        finally:
            self.stop.restore()
            self.events.close()

    def _start_event(self) -> None:
        cfg = self.cfg
        if self.dist.is_main and cfg.train.wandb:

            sink = WandbSink.create(self.run_dir.name, cfg.model_dump(mode="json"))
            if sink is None:
                self.events.emit("warning", message="train.wandb is on but wandb is not installed "
                                                    "(pip install wandb); logging to events.jsonl only")
            else:
                self.events.sinks.append(sink)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml",
                              yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
        self.events.emit(
            "start", run=self.run_dir.name, run_dir=str(self.run_dir), project=str(self.project.root),
            task=cfg.task, size=cfg.model.size, image_size=cfg.model.image_size, epochs=self.epochs_total,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, batch_size=cfg.train.batch_size,
            device=str(self.device), amp=str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            world_size=self.dist.world_size, num_train=len(self.train_set), num_val=len(self.val_images),
            time_budget_s=self.budget_s,
            classes=self.class_names, resumed=self.resume_ckpt is not None, epoch=self.epoch,
            step=self.global_step, init=self.init_report, warmup_iters=self.warmup_iters,
            lr=cfg.train.lr, backbone_lr=self.backbone_lr,
        )

    def _loop(self) -> int:
        t = self.cfg.train
        self._start_event()
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            set_rng_state(rng)  # last: building the model above drew from the generators
        stopped = "finished"
        bar = self._progress_bar()
        t_start, steps_at_start = time.perf_counter(), self.global_step
        warned: set[str] = set()
        session_steps, t_first_step = 0, 0.0
        while self.epoch < self.epochs_total:
            epoch = self.epoch
            t_epoch = time.perf_counter()
            whole_epoch = self.epoch_step == 0
            t_first_in_epoch, steps_in_epoch = 0.0, 0
            loss_sum, loss_n = 0.0, 0
            pending: list = []
            stop_now = time_up = False
            loader = self._loader(epoch, self.epoch_step * t.grad_accum)
            for images, targets, bad in loader:
                for b in bad:
                    if b.path not in warned:
                        warned.add(b.path)
                        self.events.emit("warning", message=f"skipped unreadable sample {b}")
                images, targets = self._maybe_mixup(epoch, len(pending), images, targets)
                pending.append(self._to_device(images, targets))
                if len(pending) < t.grad_accum:
                    continue
                t_step = time.perf_counter()
                losses = self._train_step(pending)
                pending = []
                self.global_step += 1
                self.epoch_step += 1
                now = time.perf_counter()
                session_steps, steps_in_epoch = session_steps + 1, steps_in_epoch + 1
                t_first_step = t_first_step or now
                t_first_in_epoch = t_first_in_epoch or now
                if self.budget_s is not None:
                    time_up = self._budget_after_step(epoch, now, session_steps, t_first_step, now - t_step, bar)
                loss_sum, loss_n = loss_sum + losses["loss"], loss_n + 1
                rate = (self.global_step - steps_at_start) / max(now - t_start, 1e-12)
                self._step_event(epoch, losses, now - t_step, rate)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{losses['loss']:.3f}")
                stop_now = ddp.any_rank(self.stop.requested, self.device)
                if self.budget_s is not None:
                    time_up = ddp.any_rank(time_up, self.device)
                if stop_now or time_up:
                    break
            if stop_now and self.epoch_step < self.steps_per_epoch:
                stopped = "signal"
                self._save("last")  # mid-epoch: resume skips the batches already done
                break
            if time_up and self.epoch_step < self.steps_per_epoch:
                stopped = "time"
                self._finish_on_time(epoch)
                break
            epoch_s = time.perf_counter() - t_epoch
            self.events.emit("epoch", epoch=epoch, step=self.global_step,
                             loss=loss_sum / loss_n if loss_n else None, time_s=epoch_s)
            if self.budget_s is not None and not stop_now:
                self._budget_epoch_end(epoch, epoch_s if whole_epoch else None, steps_in_epoch,
                                       time.perf_counter() - t_first_in_epoch if steps_in_epoch > 1 else None, bar)
            self._end_epoch(epoch, validate=not stop_now)
            if stop_now or ddp.any_rank(self.stop.requested, self.device):
                stopped = "signal"
                break
        if bar is not None:
            bar.close()
        self.events.emit("done", epochs_done=self.epoch, step=self.global_step, stopped=stopped,
                         best_metric=t.best_metric, best_value=self.best_value if self.best_epoch >= 0 else None,
                         best_epoch=self.best_epoch if self.best_epoch >= 0 else None)
        ddp.barrier()
        ddp.cleanup()
        return 0

    def _budget_after_step(self, epoch: int, now: float, session_steps: int, t_first_step: float,
                           last_step_s: float, bar) -> bool:
        """Time-budget bookkeeping after an optimizer step: the first plan once a few steps are timed,
        then True when one more step would not leave time for the final validation and save. Before
        the plan the last step's own time stands in (the first steps of a process are the slowest:
        kernels are built for each new input shape), so a budget shorter than a few steps still ends."""
        if self.timings is None:
            if session_steps < min(budget_plan.CALIBRATION_STEPS, self.steps_per_epoch):
                guess = budget_plan.first_timings(last_step_s, self.steps_per_epoch, len(self.val_images),
                                                  max(1, self.local_batch))
                return budget_plan.should_stop_now(self._budget_elapsed(), self.budget_s or 0.0, guess)
            step_s = (now - t_first_step) / (session_steps - 1) if session_steps > 1 else now - self._t_run
            self.timings = budget_plan.first_timings(step_s, self.steps_per_epoch, len(self.val_images),
                                                     max(1, self.local_batch))
            self._replan(epoch, self.epoch_step)
            self._sync_bar(bar)
        return budget_plan.should_stop_now(self._budget_elapsed(), self.budget_s or 0.0, self._timings_left())

    def _timings_left(self) -> budget_plan.Timings:
        """The timings for the stop rule (no validation cost without validation images)."""
        assert self.timings is not None
        return self.timings if self.val_images else budget_plan.Timings(
            self.timings.step_s, self.timings.epoch_s, 0.0, self.timings.save_s)

    def _budget_epoch_end(self, epoch: int, epoch_s: float | None, steps: int, steps_span_s: float | None,
                          bar) -> None:
        """Fold this epoch's measured times into the timings, then re-plan the run."""
        hist = self.__dict__.setdefault("_epoch_times", [])
        if epoch_s is not None:
            hist.append(epoch_s)
        step_s = steps_span_s / (steps - 1) if steps_span_s is not None and steps > 1 else None
        if self.timings is None:
            self.timings = budget_plan.first_timings(step_s or (epoch_s or 1.0) / max(1, steps), self.steps_per_epoch,
                                                     len(self.val_images), max(1, self.local_batch))
        if step_s is not None:
            self.timings.step_s = step_s
        if hist:
            recent = hist[-3:]
            self.timings.epoch_s = sum(recent) / len(recent)
        else:
            self.timings.epoch_s = self.timings.step_s * self.steps_per_epoch
        self._replan(epoch, self.steps_per_epoch)
        self._sync_bar(bar)

    def _sync_bar(self, bar) -> None:
        if bar is not None and bar.total != self.total_steps:
            bar.total = self.total_steps
            bar.refresh()

    def _finish_on_time(self, epoch: int) -> None:
        """The budget ran out mid-epoch: validate what there is, save last (resumable mid-epoch) and best."""
        self._last_was_best = False
        self._validate(epoch)
        payload = self._payload()
        self._save("last", payload)
        if self._last_was_best:
            self._save("best", payload)
        if self.dist.is_main:
            try:
                plot_run(self.run_dir)
            except Exception as exc:  # noqa: BLE001 - plots are a convenience; never stop training
                self.events.emit("warning", message=f"plotting failed: {exc}")

    def _progress_bar(self):
        """A tqdm bar on stderr for a person at a terminal (not with --events -, not on other ranks)."""
        if not (self.opts.progress and not self.opts.events_stdout and self.dist.is_main):
            return None
        from tqdm import tqdm

        return tqdm(total=self.total_steps, initial=self.global_step, unit="step", dynamic_ncols=True,
                    file=sys.stderr)

    def _step_event(self, epoch: int, losses: dict[str, float], step_s: float, rate: float) -> None:
        """The ``step`` event: losses, learning rates, speed and ETA (``rate``: steps/s this session)."""
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
        self.events.emit(
            "step", epoch=epoch, step=self.global_step, epoch_step=self.epoch_step,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, loss=losses["loss"],
            losses={k: v for k, v in losses.items() if k != "loss"},
            lr=lrs.get("default", next(iter(lrs.values()))), lr_backbone=lrs.get("backbone"),
            img_per_s=self.cfg.train.batch_size / max(step_s, 1e-9),
            eta_s=max(0.0, self._budget_remaining()) if self.budget_s is not None else (
                (self.total_steps - self.global_step) / rate if rate > 0 else None),
        )

    def _end_epoch(self, epoch: int, validate: bool) -> None:
        """After a full epoch: validate when due, save last (and best), redraw the plots."""
        t = self.cfg.train
        self.epoch, self.epoch_step = epoch + 1, 0
        self._last_was_best = False
        validated = validate and ((epoch + 1) % t.val_every == 0 or epoch + 1 == self.epochs_total)
        t0 = time.perf_counter()
        if validated:
            self._validate(epoch)
        t1 = time.perf_counter()
        payload = self._payload()
        self._save("last", payload)
        if self._last_was_best:
            self._save("best", payload)
        if self.dist.is_main and (validated or self.epoch == self.epochs_total):
            try:
                plot_run(self.run_dir)
            except Exception as exc:  # noqa: BLE001 - plots are a convenience; never stop training
                self.events.emit("warning", message=f"plotting failed: {exc}")
        if self.timings is not None:  # measured costs for the time budget's next plan
            if validated and self.val_images:
                self.timings.val_s = t1 - t0
            saves = self.__dict__.setdefault("_save_times", [])
            saves.append(time.perf_counter() - t1)
            self.timings.save_s = max(saves[-3:])  # epochs with plots cost more: plan for them

    _last_was_best = False
    _val_items: list | None = None

    def _validation_predictor(self):
        """The EMA model as the export's torch row sees it (``core.infer.Predictor``)."""
        from core.infer.predictor import Predictor

        model = cast("DFINEModel", self.ema.module)  # the EMA copy of the model built in __init__
        size = self.cfg.model.image_size
        top_k = min(100, model.decoder.num_queries * len(self.class_names))
        meta = ModelMeta(list(self.class_names), self.task, (size, size), top_k, self.cfg.model.size,
                         mask_head=self.cfg.model.mask_head if self.task == "segment" else "")
        return Predictor.from_module(model, meta, device=str(self.device), conf=self.cfg.infer.conf)

    def _validate(self, epoch: int) -> None:
        self._last_was_best = False
        if self.dist.is_main and self.val_images:
            bad: list[str] = []
            if self._val_items is None:  # the labels are read once (an unreadable one is named below)
                self._val_items = load_val_items(self.project, self.val_images, self.task, bad)
            summary = validate_predictor(self._validation_predictor(), self._val_items, self.cfg.infer.conf, bad)
            warned = self.__dict__.setdefault("_val_warned", set())
            for b in bad:  # left out of the metrics: say so once per file, not silently
                if b not in warned:
                    warned.add(b)
                    self.events.emit("warning", message=f"validation image left out of the metrics: {b}")
            metrics = summary.headline()
            headline = metrics.headline(self.cfg.train.best_metric, self.task)
            value = float("nan") if headline is None else float(headline)
            is_best = math.isfinite(value) and value > self.best_value
            if is_best:
                self.best_value, self.best_epoch = value, epoch
            self._last_was_best = is_best
            self.events.emit("metrics", epoch=epoch, step=self.global_step, metrics=metrics.model_dump(),
                             best_metric=self.cfg.train.best_metric, value=value, is_best=is_best)
            append_metrics_csv(self.run_dir / "metrics.csv", epoch, self.global_step, metrics)
        if self.dist.enabled:  # every rank must agree on whether best.pt is written
            flag: list[Any] = [self._last_was_best, self.best_value, self.best_epoch]
            torch.distributed.broadcast_object_list(flag, src=0)
            self._last_was_best, self.best_value, self.best_epoch = flag
        ddp.barrier()


class _CallbackSink:
    """An EventLog sink that hands each record to a function (TrainOptions.on_event)."""

    def __init__(self, fn: Callable[[dict], None]) -> None:
        self.fn = fn

    def log(self, record: dict) -> None:
        self.fn(record)

    def close(self) -> None:
        pass


def _worker_ignores_signals(worker_id: int) -> None:
    """Ctrl-C / `timeout` / `kill -TERM -<pgid>` reach the whole process group; the loader workers
    must survive them so the main process can finish its step and save last.pt (it stops the
    workers itself)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _float_outputs(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: _float_outputs(v) for k, v in outputs.items()}
    if isinstance(outputs, list):
        return [_float_outputs(v) for v in outputs]
    return outputs
