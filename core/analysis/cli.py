"""`dfine analyze <project> [--folds K [--fold i | --merge-only]] [--weights W] [--predictions R]`.

Three ways to get the predictions the labels are compared with:

- out-of-fold (the default, ``--folds 5``): K models, each trained with the project's recipe
  (``--set``/``--epochs`` bound it; ``--weights`` fine-tunes from a checkpoint) on K-1 folds,
  predict the fold they never saw (core.analysis.folds). Finished folds are reused, so a
  cancelled run resumes; ``--fold i`` runs one fold alone (one per GPU or machine, under
  torchrun if wanted) and ``--merge-only`` ranks once every fold is done.
- in-sample (``--weights`` without ``--folds``): one model over the images it was trained on;
  quick, but a model that learned a wrong label will not flag it. Says so in its output.
- given (``--predictions results.json``): a COCO results file from anywhere.

Writes review/label_issues.json (with ``mode``), .csv and a contact-sheet PNG of the top items.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from core.analysis import folds
from core.analysis.calibration import calibrate
from core.analysis.find_mistakes import AnalysisConfig, analyze, issues_per_kind
from core.analysis.report import write_report
from core.annotation import ImageAnnotation
from core.cli_types import config_range, int_range, probability
from core.config import TrainConfig
from core.errors import ConfigError, UserFacingError, WeightsError
from core.eval.records import ImagePred
from core.messages import run_with_events


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("--folds", type=int_range(2), default=None,
                   help="out-of-fold analysis with K folds (the default, K=5, when neither --weights nor "
                   "--predictions is given)")
    p.add_argument("--fold", type=int_range(1), default=None,
                   help="with --folds: train and predict only fold i (1..K), e.g. one per GPU/machine; "
                   "ranks too when it was the last one missing")
    p.add_argument("--merge-only", action="store_true",
                   help="with --folds: rank the finished folds' predictions without training (fails "
                   "naming the folds that are not done)")
    p.add_argument("--seed", type=int_range(0), default=0, help="fold assignment seed (default 0)")
    p.add_argument("--epochs", type=config_range(TrainConfig, "epochs"), default=None, help="with --folds: train.epochs of each fold model")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="with --folds: override the project's recipe for the fold models (as `dfine train --set`)")
    p.add_argument("--weights", type=Path,
                   help="alone: in-sample analysis with this checkpoint or export (quick; a model trained "
                   "on these labels has learned their mistakes); with --folds: fine-tune each fold model from it")
    p.add_argument("--predictions", type=Path, help="predictions in COCO results format (JSON)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <project>/review)")
    p.add_argument("--split", choices=("all", "train", "val"), default="all", help="which images (default all)")
    p.add_argument("--conf", type=probability(), default=AnalysisConfig.conf,
                   help="a prediction at least this confident is evidence of an object (default 0.5)")
    p.add_argument("--device", default="cpu", help="device for --weights and fold predictions (cpu, cuda, cuda:1)")
    p.add_argument("--train-device", default=None, help="with --folds: device of the fold training "
                   "(default: the project's train.device)")
    p.add_argument("--category-offset", type=int_range(0), default=1,
                   help="class index = category_id - offset for a plain results list (default 1, COCO style)")
    p.add_argument("--top", type=int_range(1), default=24, help="items on the contact sheet (default 24)")
    p.add_argument("--events", metavar="DEST", choices=["-"],
                   help="'-': JSON lines on stdout (core.messages: progress per fold in stages 'fold i/K train' "
                   "and 'fold i/K predict' (fields fold, folds, phase), per image in stage 'images', then 'rank', 'report' and a result "
                   "event with the written files); the human output goes to stderr")


def _model_predictions(weights: Path, anns: Sequence[ImageAnnotation], device: str, conf: float,
                       class_names: list[str]) -> Iterator[ImagePred]:
    try:
        from core.infer.predictor import Predictor
    except ImportError as exc:  # the inference engine is optional for this verb
        raise WeightsError(f"{weights}: running a model needs core.infer ({exc}); "
                           "pass --predictions <coco_results.json> instead") from exc
    from core.data.images import read_image
    from core.model.checkpoint import require_project_classes

    predictor = Predictor.load(weights, device=device, conf=conf)
    require_project_classes(weights, predictor.class_names, class_names)  # as `dfine val` does
    num_classes = len(class_names)
    for ann in anns:
        det = predictor.predict([read_image(ann.image_path)], rle=True)[0]
        if len(det) and int(det.labels.max()) >= num_classes:
            raise WeightsError(f"{weights}: the model predicts class {int(det.labels.max())} but the project "
                               f"has {num_classes} classes")
        yield ImagePred.from_detections(det, str(ann.image_path))


def weak_model_warning(num_labels: int, not_found: int, no_deletes: bool = False) -> str | None:
    """A model that misses most labels makes the list its own misses, not label mistakes: say so
    rather than let the user "fix" hundreds of good labels (and, when it finds almost none, the
    list has no delete suggestions at all: core.analysis.calibration.USELESS_RECALL)."""
    if num_labels == 0 or not_found < 0.5 * num_labels:
        return None
    return (f"the model finds no match for {not_found} of {num_labels} labels, so most items are "
            "its misses rather than label mistakes" + ("; no label is suggested for deletion" if no_deletes else "")
            + "; train longer (or pass better --weights / --predictions) before reviewing")


def run(args: argparse.Namespace) -> int:
    """The analysis; with ``--events -`` a failure is also an ``error`` event before the usual message."""
    return run_with_events(args.events == "-", lambda emit, out: _run(args, emit, out))


def _counted(items: Iterable, total: int, emit: Callable[..., None]) -> Iterator:
    """``items`` unchanged, with a progress event after each (one per image)."""
    for i, item in enumerate(items):
        yield item
        emit("progress", verb="analyze", stage="images", done=i + 1, total=total)


def _mode(args: argparse.Namespace) -> str:
    """out-of-fold | in-sample | given, with a clear error for combinations that mean nothing."""
    if args.predictions is not None:
        if args.folds is not None or args.weights is not None:
            raise ConfigError("--predictions is analysed as given: leave out --folds and --weights")
        return "given"
    if args.weights is not None and args.folds is None:
        if args.fold is not None or args.merge_only:
            raise ConfigError("--fold and --merge-only need --folds K")
        return "in-sample"
    if args.folds is None:
        args.folds = 5
    if args.fold is not None and not 1 <= args.fold <= args.folds:
        raise ConfigError(f"--fold must be in 1..{args.folds}, got {args.fold}")
    if args.fold is not None and args.merge_only:
        raise ConfigError("--fold trains one fold; --merge-only trains none: pick one")
    return "out-of-fold"


def _load_annotations(project, args: argparse.Namespace, emit: Callable[..., None]) -> list[ImageAnnotation]:
    anns, errors = project.load_all()
    for e in errors:
        print(f"dfine analyze: skipped: {e}", file=sys.stderr)
        emit("warning", message=f"skipped: {e}", about="label_file")
    if not anns:
        raise UserFacingError(f"{project.root}: no labelled images to analyse")
    return anns


def _in_split(project, anns: list[ImageAnnotation], split: str) -> list[int]:
    if split == "all":
        return list(range(len(anns)))
    wanted = {str(p) for p in project.split_images(split)}
    return [n for n, a in enumerate(anns) if str(a.image_path) in wanted]


class _Cancelled(Exception):
    """SIGTERM (the GUI's Cancel) between or inside folds."""


@contextmanager
def _sigterm_as_cancel() -> Iterator[None]:
    """SIGTERM raises _Cancelled while the folds run (the trainer handles it itself while it
    trains: it finishes the step and saves last.pt); outside the main thread nothing changes."""
    def handler(signum, frame):
        raise _Cancelled

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling main() from a worker)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _out_of_fold(project, anns: list[ImageAnnotation], args: argparse.Namespace, emit: Callable[..., None],
                 out_stream: IO[str]) -> tuple[list[ImagePred], list[ImagePred], dict] | None:
    """Run the missing folds (or the one asked for); the merged predictions once all are done,
    None when some are still missing (another machine's, or a stopped one)."""

    plan = folds.make_plan(project, anns, args.folds, args.seed)
    for w in plan.warnings:
        print(f"dfine analyze: warning: {w}", file=sys.stderr)
        emit("warning", message=w, about="folds")
    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs is not None else [])
    training = folds.FoldTraining(weights=str(args.weights) if args.weights else None, overrides=overrides,
                                  device=args.train_device, predict_device=args.device)
    todo = [] if args.merge_only else ([args.fold - 1] if args.fold is not None else plan.missing_folds())
    with _sigterm_as_cancel():
        try:
            for i in todo:
                if plan.is_done(i):
                    print(f"fold {i + 1}/{plan.k}: already done ({plan.fold_dir(i)})", file=out_stream)
                    continue
                print(f"fold {i + 1}/{plan.k}: training on {len(plan.train_images(i))} images, "
                      f"predicting {len(plan.fold_images(i))}", file=out_stream)
                if not folds.run_fold(project, plan, i, training, emit):
                    raise _Cancelled
        except _Cancelled:
            msg = (f"stopped; finished folds are kept in {plan.root} and the next `dfine analyze --folds {plan.k}` "
                   f"resumes (a fold's training from its last.pt)")
            print(msg, file=out_stream)
            emit("cancelled", verb="analyze", message=msg)
            return None
    if int(os.environ.get("RANK", "0")) != 0:
        return None  # under torchrun the other ranks only help train; rank 0 predicts and ranks
    missing = plan.missing_folds()
    if missing and not args.merge_only:
        print(f"{plan.k - len(missing)}/{plan.k} folds done ({plan.root}); rank when all are: "
              f"`dfine analyze {project.root} --folds {plan.k} --merge-only`", file=out_stream)
        emit("result", verb="analyze", paths={"folds": str(plan.root)},
             message=f"{plan.k - len(missing)}/{plan.k} folds done")
        return None
    preds, flips = folds.load_fold_predictions(project, plan, anns)
    return preds, flips, {"folds": plan.k, "fold_seed": plan.seed, "folds_dir": str(plan.root)}


def _run(args: argparse.Namespace, emit: Callable[..., None], out_stream: IO[str]) -> int:
    from core.data.images import read_image
    from core.project import Project

    mode = _mode(args)
    project = Project.open(args.project)
    anns = _load_annotations(project, args, emit)
    task = project.config.task
    names = project.class_names
    cfg = AnalysisConfig(conf=args.conf)
    flips: list[ImagePred] | None = None
    if mode == "out-of-fold":
        merged = _out_of_fold(project, anns, args, emit, out_stream)
        if merged is None:
            return 0
        preds, flips, source = merged
    elif mode == "given":
        from core.eval.coco_results import load_coco_results

        emit("progress", verb="analyze", stage="images", done=0, total=len(anns))
        preds = list(_counted(load_coco_results(args.predictions, anns, names, project.image_dir,
                                                args.category_offset, with_masks=task == "segment"), len(anns), emit))
        source = {"predictions": str(args.predictions)}
        print("dfine analyze: --predictions: no mirrored view, so the model's one-off false positives are not "
              "filtered by agreement; the ranking leans on this project's own calibration (precision at each "
              "score and object size, recall by size, the image's edges)", file=sys.stderr)
    else:
        emit("progress", verb="analyze", stage="images", done=0, total=len(anns))
        preds = list(_counted(_model_predictions(args.weights, anns, args.device, cfg.support_score,
                                                 list(names)), len(anns), emit))
        source = {"weights": str(args.weights)}
        print("dfine analyze: in-sample: the model was trained on these labels, so it may have learned "
              "their mistakes; `--folds 5` judges each image by a model that never saw it", file=sys.stderr)
    keep = _in_split(project, anns, args.split)
    if not keep:
        raise UserFacingError(f"{project.root}: no labelled images to analyse (split {args.split})")
    anns, preds = [anns[n] for n in keep], [preds[n] for n in keep]
    flips = [flips[n] for n in keep] if flips is not None else None
    emit("progress", verb="analyze", stage="rank", done=0, total=1)
    calibration = calibrate(anns, preds, task, cfg, flips=flips, num_classes=len(names))
    issues = analyze(anns, preds, task=task, cfg=cfg, flips=flips, calibration=calibration, class_names=names)
    emit("progress", verb="analyze", stage="rank", done=1, total=1)
    out = args.out if args.out is not None else project.review_dir
    emit("progress", verb="analyze", stage="report", done=0, total=1)
    paths = write_report(out, issues, anns, names, read_image,
                         {"project": str(project.root), "task": task, "images": len(anns), "mode": mode, **source,
                          "settings": vars(cfg), "calibration": calibration.to_dict(names)}, top=args.top)
    per_kind = issues_per_kind(issues)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(per_kind.items())) or "none"
    summary = f"{mode}: {len(issues)} likely label issues in {len(anns)} images ({counts})"
    print(summary, file=out_stream)
    overall = calibration.overall
    n_labels = overall.labels if overall is not None else sum(len(a.instances) for a in anns)
    not_found = n_labels - overall.found if overall is not None else per_kind.get("spurious_label", 0)
    warning = weak_model_warning(n_labels, not_found, calibration.model_finds_almost_nothing)
    if warning:
        print(f"dfine analyze: warning: {warning}", file=sys.stderr)
        emit("warning", message=warning, about="model")  # the Review panel shows this one
    for p in paths.values():
        print(f"wrote {p}", file=out_stream)
    emit("result", verb="analyze", paths={k: str(v) for k, v in paths.items()}, message=summary, mode=mode)
    return 0
