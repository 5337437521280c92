"""`dfine train <project>` and `dfine val <project> --weights ckpt`.

Multi-GPU / multi-process: the same command under torchrun, e.g.
``torchrun --nproc_per_node 4 -m core train my_project``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli_types import config_range
from core.config import InferConfig
from core.errors import UserFacingError
from core.messages import event_line, make_event, run_with_events
from core.train.budget import parse_duration_min


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder (with project.yaml)")
    p.add_argument("--events", metavar="DEST", choices=["-"],
                   help="'-': print one JSON event per line on stdout (for the GUI / scripts)")
    p.add_argument("--name", help="run name (folder under runs/); default train, train2, ...")
    p.add_argument("--resume", action="store_true",
                   help="continue runs/<name>/last.pt (the newest run when --name is not given)")
    p.add_argument("--weights", help="start from a checkpoint: a name from `dfine weights list` "
                   "(e.g. dfine_s_coco, downloaded once) or a file (official D-FINE or one of ours)")
    p.add_argument("--backbone-weights", help="start the backbone from HGNetV2 ImageNet weights "
                   "(a name such as hgnetv2_b0, or a file)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a project.yaml setting, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--device", help="cpu | cuda | cuda:N | mps | auto (default: train.device)")
    p.add_argument("--time", metavar="DURATION", type=_duration,
                   help="train for this long instead of train.epochs, e.g. 15m, 90s, 1h30m (train.time_budget_min): "
                   "the schedule is laid out from the measured step time and the run ends on time with best.pt")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (torchrun)")
    p.add_argument("--no-progress", action="store_true", help="no terminal progress bar")
    p.add_argument("--no-denoising", action="store_true", help=argparse.SUPPRESS)


def _duration(text: str) -> float:
    """``--time`` in minutes (argparse turns the ConfigError into a usage error)."""
    try:
        return parse_duration_min(text)
    except UserFacingError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--time {text!r}: ")) from None


def run_train(args: argparse.Namespace) -> int:
    from core.train.trainer import Trainer, TrainOptions

    overrides = list(args.overrides)
    if getattr(args, "time", None) is not None:
        overrides.append(f"train.time_budget_min={args.time!r}")
    opts = TrainOptions(
        project=args.project, run_name=args.name, resume=args.resume, weights=args.weights,
        backbone_weights=args.backbone_weights, overrides=overrides, device=args.device,
        events_stdout=args.events == "-", sync_bn=args.sync_bn, no_denoising=args.no_denoising,
        progress=not args.no_progress,
    )
    try:
        trainer = Trainer(opts)
    except UserFacingError as exc:  # before the run folder exists: still tell an --events reader
        if opts.events_stdout:
            print(event_line(make_event("error", message=str(exc), type=exc.__class__.__name__)), flush=True)
        raise
    return trainer.run()


def add_val_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder (with project.yaml)")
    p.add_argument("--weights", required=True, help="a checkpoint (runs/<name>/best.pt or last.pt)")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | mps | auto")
    p.add_argument("--conf", type=config_range(InferConfig, "conf"), default=None,
                   help="confidence threshold for F1/P/R (infer.conf)")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights, not the EMA")
    p.add_argument("--json", action="store_true", help="print the full summary as JSON")
    p.add_argument("--events", metavar="DEST", choices=["-"],
                   help="'-': JSON lines on stdout (core.messages: progress per batch in stage 'images', then "
                   "a result event with the metrics); the human output goes to stderr")


def run_val(args: argparse.Namespace) -> int:

    return run_with_events(args.events == "-", lambda emit, out: _run_val(args, emit, out))


def _run_val(args: argparse.Namespace, emit, out) -> int:
    from core.eval.validate import load_val_items, validate_predictor
    from core.infer.checkpoint_loader import meta_from_info
    from core.infer.predictor import Predictor
    from core.model.checkpoint import load_trained_model, require_project_classes
    from core.project import Project
    from core.train.trainer import resolve_device

    project = Project.open(args.project)
    model, info, _ = load_trained_model(args.weights, use_ema=not args.no_ema)
    require_project_classes(args.weights, list(info.class_names), project.class_names)
    device = resolve_device(args.device or project.config.infer.device)
    conf = project.config.infer.conf if args.conf is None else args.conf
    predictor = Predictor.from_module(model, meta_from_info(info, Path(args.weights)), device=str(device), conf=conf)
    bad: list[str] = []
    items = load_val_items(project, project.split_images(args.split), info.task, bad)
    emit("progress", verb="val", stage="images", done=0, total=len(items))
    summary = validate_predictor(predictor, items, conf, bad,
                                 progress=lambda done, total: emit("progress", verb="val", stage="images",
                                                                   done=done, total=total))
    for b in bad:
        print(f"skipped: {b}", file=sys.stderr)
        emit("warning", message=f"skipped: {b}", about="image")
    head = summary.headline()
    if args.json:
        print(json.dumps(summary.to_dict(), default=float), file=out)
    else:
        print(f"{args.split}: {summary.images} images, conf {conf:g}", file=out)
        for k, v in head.model_dump().items():
            print(f"  {k:>14}: " + ("—" if v is None else f"{v:.4f}"), file=out)
    emit("result", verb="val", message=f"{args.split}: {summary.images} images, conf {conf:g}",
         metrics=head.model_dump(), split=args.split, conf=conf)
    return 0
