"""`dfine analyze <project> (--weights <ckpt|export> | --predictions results.json) [--out review/]`.

Runs a model over the labelled images (or reads its predictions from a COCO
results file), ranks likely label mistakes and writes review/label_issues.json,
.csv and a contact-sheet PNG of the top items.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from core.analysis.find_mistakes import AnalysisConfig, analyze, issues_per_kind
from core.analysis.report import write_report
from core.annotation import ImageAnnotation
from core.errors import ConfigError, UserFacingError, WeightsError
from core.eval.records import ImagePred
from core.messages import run_with_events


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="checkpoint (.pt) or export (onnx / openvino / tensorrt)")
    src.add_argument("--predictions", type=Path, help="predictions in COCO results format (JSON)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <project>/review)")
    p.add_argument("--split", choices=("all", "train", "val"), default="all", help="which images (default all)")
    p.add_argument("--conf", type=float, default=AnalysisConfig.conf,
                   help="a prediction at least this confident is evidence of an object (default 0.5)")
    p.add_argument("--device", default="cpu", help="device for --weights (cpu, cuda, cuda:1)")
    p.add_argument("--category-offset", type=int, default=1,
                   help="class index = category_id - offset for a plain results list (default 1, COCO style)")
    p.add_argument("--top", type=int, default=24, help="items on the contact sheet (default 24)")
    p.add_argument("--events", metavar="DEST", choices=["-"],
                   help="'-': JSON lines on stdout (core.messages: progress per image in stage 'images', "
                   "stage 'report', then a result event with the written files); the human output goes to stderr")


def _model_predictions(weights: Path, anns: Sequence[ImageAnnotation], device: str, conf: float,
                       num_classes: int) -> Iterator[ImagePred]:
    try:
        from core.infer.predictor import Predictor
    except ImportError as exc:  # the inference engine is optional for this verb
        raise WeightsError(f"{weights}: running a model needs core.infer ({exc}); "
                           "pass --predictions <coco_results.json> instead") from exc
    from core.data.images import read_image

    predictor = Predictor.load(weights, device=device, conf=conf)
    for ann in anns:
        det = predictor.predict([read_image(ann.image_path)], rle=True)[0]
        if len(det) and int(det.labels.max()) >= num_classes:
            raise WeightsError(f"{weights}: the model predicts class {int(det.labels.max())} but the project "
                               f"has {num_classes} classes")
        yield ImagePred.from_detections(det, str(ann.image_path))


def weak_model_warning(num_labels: int, not_found: int) -> str | None:
    """A model that misses most labels makes the list its own misses, not label mistakes: say so
    rather than let the user "fix" hundreds of good labels."""
    if num_labels == 0 or not_found < 0.5 * num_labels:
        return None
    return (f"the model finds no match for {not_found} of {num_labels} labels, so most items are "
            "its misses rather than label mistakes; train longer (or pass better --weights / "
            "--predictions) before reviewing")


def run(args: argparse.Namespace) -> int:
    """The analysis; with ``--events -`` a failure is also an ``error`` event before the usual message."""
    return run_with_events(args.events == "-", lambda emit, out: _run(args, emit, out))


def _counted(items: Iterable, total: int, emit: Callable[..., None]) -> Iterator:
    """``items`` unchanged, with a progress event after each (one per image)."""
    for i, item in enumerate(items):
        yield item
        emit("progress", verb="analyze", stage="images", done=i + 1, total=total)


def _run(args: argparse.Namespace, emit: Callable[..., None], out_stream: IO[str]) -> int:
    from core.data.images import read_image
    from core.project import Project

    if not 0.0 <= args.conf <= 1.0:
        raise ConfigError(f"--conf must be in [0, 1], got {args.conf}")
    project = Project.open(args.project)
    anns, errors = project.load_all()
    for e in errors:
        print(f"dfine analyze: skipped: {e}", file=sys.stderr)
        emit("warning", message=f"skipped: {e}", about="label_file")
    if args.split != "all":
        wanted = {str(p) for p in project.split_images(args.split)}
        anns = [a for a in anns if str(a.image_path) in wanted]
    if not anns:
        raise UserFacingError(f"{project.root}: no labelled images to analyse (split {args.split})")
    cfg = AnalysisConfig(conf=args.conf)
    task = project.config.task
    names = project.class_names
    emit("progress", verb="analyze", stage="images", done=0, total=len(anns))
    if args.predictions is not None:
        from core.eval.coco_results import load_coco_results

        preds = load_coco_results(args.predictions, anns, names, project.image_dir, args.category_offset,
                                  with_masks=task == "segment")
        source = {"predictions": str(args.predictions)}
    else:
        preds = _model_predictions(args.weights, anns, args.device, cfg.support_score, len(names))
        source = {"weights": str(args.weights)}
    issues = analyze(anns, _counted(preds, len(anns), emit), task=task, cfg=cfg)
    out = args.out if args.out is not None else project.review_dir
    emit("progress", verb="analyze", stage="report", done=0, total=1)
    paths = write_report(out, issues, anns, names, read_image,
                         {"project": str(project.root), "task": task, "images": len(anns), **source,
                          "settings": vars(cfg)}, top=args.top)
    per_kind = issues_per_kind(issues)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(per_kind.items())) or "none"
    summary = f"{len(issues)} likely label issues in {len(anns)} images ({counts})"
    print(summary, file=out_stream)
    warning = weak_model_warning(sum(len(a.instances) for a in anns), per_kind.get("spurious_label", 0))
    if warning:
        print(f"dfine analyze: warning: {warning}", file=sys.stderr)
        emit("warning", message=warning, about="model")  # the Review panel shows this one
    for p in paths.values():
        print(f"wrote {p}", file=out_stream)
    emit("result", verb="analyze", paths={k: str(v) for k, v in paths.items()}, message=summary)
    return 0
