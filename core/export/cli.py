"""`dfine export <run dir or checkpoint> --formats onnx,openvino,tensorrt --precision fp32,fp16,int8
[--project P] [--accuracy-control]`: the whole export chain plus exports/<name>/report.json.

Unset options come from the project's `export:` section (project.yaml), then the defaults.
With ``--events -`` stdout carries only ``core.messages`` events (stages: pipeline.STAGES).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.cli_types import config_range, int_range
from core.config import ExportConfig, InferConfig
from core.project_paths import child_folder
from core.errors import UserFacingError
from core.export.openvino_export import OVERFLOW_FIX_CHOICES
from core.export.pipeline import export_all, openvino_validation_fn, project_for
from core.export.report import build_report, report_table
from core.eval.validate import load_val_items
from core.messages import run_with_events


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="run folder (runs/<name>/, uses best.pt), a checkpoint file, or a "
                   "project folder (its newest run)")
    p.add_argument("--formats", help="comma list of onnx, openvino, tensorrt (default: project export.formats)")
    p.add_argument("--precision", help="comma list of fp32, fp16, int8 (default: project export.precisions; "
                   "without a project the same less int8, which needs the project's images)")
    p.add_argument("--project", type=Path, help="project folder (default: the one holding the run)")
    p.add_argument("--accuracy-control", action="store_true", default=None,
                   help="INT8 with NNCF accuracy control on the val F1 (default: export.accuracy_control)")
    p.add_argument("--max-drop", type=config_range(ExportConfig, "max_drop"), help="largest F1 drop accuracy control accepts (default 0.01)")
    p.add_argument("--int8-overflow-fix", choices=OVERFLOW_FIX_CHOICES,
                   help="NNCF overflow fix for INT8 (default export.int8_overflow_fix: enable, right on CPUs "
                   "with and without VNNI)")
    p.add_argument("--calibration-images", type=config_range(ExportConfig, "calibration_images"), help="INT8 calibration images (default 300, fewer if the "
                   "project has fewer)")
    p.add_argument("--name", help="export name: exports/<name>/ (default: the run name)")
    p.add_argument("--out", type=Path, help="export folder (overrides <project>/exports/<name>)")
    p.add_argument("--conf", type=config_range(InferConfig, "conf"), help="confidence threshold for the report's F1 (default infer.conf)")
    p.add_argument("--opset", type=config_range(ExportConfig, "opset"), help="ONNX opset (>= 17; default export.opset)")
    p.add_argument("--queries", type=config_range(ExportConfig, "queries"), help="decoder queries in the exported model (default export.queries, "
                   "else all 300): fewer is faster on a CPU; the report's F1 shows the accuracy it costs")
    p.add_argument("--device", default="cpu", help="device for the report's latency (default cpu)")
    p.add_argument("--timing-images", type=int_range(1), default=20, help="images timed per model in the report")
    p.add_argument("--no-report", action="store_true", help="skip measuring (no report.json)")
    p.add_argument("--events", metavar="DEST", choices=["-"],
                   help="'-': JSON lines on stdout (core.messages: progress per stage, then a result event "
                   "with the paths; an error event on failure); the human output goes to stderr")


def _csv(text: str | None, default: Sequence[str]) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()] if text else list(default)


@dataclass
class ExportOptions:
    formats: list[str]
    precisions: list[str]
    accuracy_control: bool
    max_drop: float
    calibration_images: int
    opset: int
    overflow_fix: str
    conf: float
    queries: int | None = None


def export_options(args: argparse.Namespace, project) -> ExportOptions:
    """The flags, else the project's config, else the config model's defaults (never a literal here)."""
    cfg = project.config.export if project is not None else ExportConfig()
    infer_cfg = project.config.infer if project is not None else InferConfig()
    # without a project there are no images to calibrate INT8 on: its default is left out, not an error
    default_precisions = cfg.precisions if project is not None else [p for p in cfg.precisions if p != "int8"]
    return ExportOptions(
        formats=_csv(args.formats, cfg.formats),
        precisions=_csv(args.precision, default_precisions),
        accuracy_control=args.accuracy_control if args.accuracy_control is not None else cfg.accuracy_control,
        max_drop=args.max_drop if args.max_drop is not None else cfg.max_drop,
        calibration_images=args.calibration_images or cfg.calibration_images,
        opset=args.opset or cfg.opset,
        overflow_fix=args.int8_overflow_fix or cfg.int8_overflow_fix,
        conf=args.conf if args.conf is not None else infer_cfg.conf,
        queries=args.queries if args.queries is not None else cfg.queries,
    )


def run(args: argparse.Namespace) -> int:
    """The export; with ``--events -`` a failure is also an ``error`` event before the usual message."""
    return run_with_events(args.events == "-", lambda emit, out: _run(args, emit, out))


def _run(args: argparse.Namespace, emit, out_stream) -> int:
    from core.infer.checkpoint_loader import load_checkpoint
    from core.infer.predictor import resolve_model
    from core.project import newest_run

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    model_file = resolve_model(newest_run(args.model), backend="torch")
    if model_file.backend != "torch":
        raise UserFacingError(f"{args.model}: export starts from a checkpoint (.pt) or a run folder")
    project = project_for(args.model, args.project)
    o = export_options(args, project)
    formats, precisions, accuracy_control, conf = o.formats, o.precisions, o.accuracy_control, o.conf
    if accuracy_control and project is None:
        raise UserFacingError("--accuracy-control needs the project's val split: pass --project")

    model, meta = load_checkpoint(model_file.path)
    run_name = model_file.path.parent.name
    # --out is a folder the user names explicitly; --name (or the run's name) is one folder under exports/
    out = args.out or (child_folder(project.exports_dir, args.name or run_name, "--name (an export folder under "
                                    f"{project.exports_dir})") if project is not None
                       else model_file.path.parent / "export")
    calib = []
    val_items = []
    if project is not None:
        # calibrate on train images (val stays unseen for the accuracy numbers); fill up from val if few
        calib = (project.split_images("train") + project.split_images("val"))[:o.calibration_images]
        val_items = load_val_items(project, project.split_images("val"), meta.task)
    accuracy_fn = openvino_validation_fn(val_items, meta, conf) if accuracy_control else None
    log(f"exporting {model_file.path} -> {out} (formats {', '.join(formats)}; precisions {', '.join(precisions)}"
        + (f"; {o.queries} decoder queries" if o.queries else "") + ")")

    def progress(stage: str, done: int = 0, total: int = 0, message: str = "") -> None:
        emit("progress", verb="export", stage=stage, done=done, total=total, message=message)

    result = export_all(model, meta, out, formats, precisions, calibration=calib, accuracy_fn=accuracy_fn,
                        max_drop=o.max_drop, opset=o.opset, overflow_fix=o.overflow_fix, queries=o.queries, log=log,
                        progress=progress)
    paths = {"folder": str(out), **{f"{b}/{p}": str(f) for (b, p), f in result.files.items()}}
    for (backend, prec), path in result.files.items():
        print(f"{backend:<12} {prec:<5} {path}", file=out_stream)
    if args.no_report:
        emit("result", verb="export", paths=paths, message=f"exported {len(result.files)} model(s)")
        return 0
    from core.data.images import read_image

    timing = [read_image(it.path) for it in val_items[:args.timing_images]]
    if not timing:
        from core.demo import render_demo_image

        timing = [render_demo_image(i)[0] for i in range(args.timing_images)]
    report = build_report(result, model, meta, val_items, timing, conf, args.device, log, progress)
    print(report_table(report), file=out_stream)
    print(f"report: {out / 'report.json'}", file=out_stream)
    emit("result", verb="export", paths={**paths, "report": str(out / "report.json")},
         message=f"exported {len(result.files)} model(s); report.json written")
    return 0
