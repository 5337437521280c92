"""`dfine bench`: latency and F1 per format x precision x batch size, by the paper's protocol.

Protocol (D-FINE-seg paper): ``core.infer.timing`` (shared with the export report).

Writes <out>/bench.csv, bench.md (markdown table) and bench.png, plus the crop-resize vs
full-frame post-processing speed-up at 1920x1080.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast, get_args

import numpy as np

from core.bench_anchor import anchor_report
from core.cli_types import config_range, frame_size, int_range, positive_int_list
from core.config import ExportConfig, InferConfig, ModelConfig
from core.errors import UserFacingError
from core.infer.meta import ModelMeta, find_meta
from core.infer.runner_base import backend_name
from core.infer.timing import postprocess_speedup, time_predictor
from core.messages import run_with_events

# ------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="run folder / checkpoint (exports it first) or an export folder")
    p.add_argument("--project", type=Path, help="project for val F1 and INT8 calibration (default: found from "
                   "the run folder)")
    p.add_argument("--random-size", choices=["n", "s", "m", "l", "x"],
                   help="no trained model: random weights of this size (latency only, F1 not measured)")
    p.add_argument("--image-size", type=int_range(64, 4096, multiple_of=32), default=640, help="network input for --random-size (default 640)")
    heads = get_args(ModelConfig.model_fields["mask_head"].annotation)
    p.add_argument("--mask-head", default="paper", help=f"mask head for --random-size (model.mask_head: "
                   f"{', '.join(heads)}; default paper; cpu is the CPU pick)")
    p.add_argument("--queries", type=config_range(ExportConfig, "queries"), help="decoder queries for --random-size (default 300, as trained; the "
                   "CPU pick exports 100, as export.queries)")
    p.add_argument("--formats", default="torch,onnx,openvino",
                   help="backends to time (default torch,onnx,openvino; as `dfine export --formats`)")
    export_cfg, infer_cfg = ExportConfig(), InferConfig()
    precisions = ",".join(export_cfg.precisions)
    p.add_argument("--precision", default=precisions, help=f"OpenVINO precisions (default {precisions}, as "
                   "export.precisions)")
    p.add_argument("--batch-sizes", type=positive_int_list(), default="1,4,8", help="default 1,4,8")
    p.add_argument("--images", type=int_range(1), default=24, help="timed images per configuration (default 24)")
    p.add_argument("--frame", type=frame_size(), default="1920x1080", help="size of the timed images (default 1920x1080)")
    p.add_argument("--conf", type=config_range(InferConfig, "conf"), default=infer_cfg.conf, help=f"default {infer_cfg.conf} (infer.conf)")
    p.add_argument("--threads", type=int_range(1), help="CPU threads for the runtimes (default: all)")
    p.add_argument("--calibration-images", type=config_range(ExportConfig, "calibration_images"), default=export_cfg.calibration_images,
                   help=f"INT8 calibration images (default {export_cfg.calibration_images}, as export.calibration_images)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="where CSV/markdown/plot go")
    p.add_argument("--events", metavar="DEST", choices=["-"],
                   help="'-': JSON lines on stdout (core.messages: stage 'prepare' (export, F1), stage 'time' "
                   "with done/total per model x batch size, then a result event with the written files); "
                   "the human output goes to stderr")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-anchor", action="store_true", help="skip the YOLO26-seg anchor (core/bench_anchor.py)")


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _bench_frames(project, n: int, frame: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Timed images: the project's val images (or demo renders) resized to ``frame`` (w, h)."""
    import cv2

    from core.data.images import read_image

    if project is not None:
        paths = project.split_images("val") or project.image_paths()
        sources = [read_image(p) for p in paths[:n]]
    else:
        from core.demo import render_demo_image

        sources = [render_demo_image(i)[0] for i in range(min(n, 16))]
    w, h = frame
    return [cv2.resize(sources[i % len(sources)], (w, h), interpolation=cv2.INTER_LINEAR) for i in range(n)]


def synthetic_model(size: str, num_classes: int, image_size: int, seed: int = 0, mask_head: str = "paper",
                    task: str = "segment"):
    """Random weights that behave like a trained model for timing and parity: N(0, 0.1) noise makes
    the output depend on the input, a scaled class head spreads the scores over (0, 1) and a
    scaled mask-embedding MLP makes crisp masks, so post-processing has real instances to do."""
    import torch

    from core.model import build_model

    torch.manual_seed(seed)
    model = build_model(size, num_classes, task, image_size, mask_head=mask_head).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        head = cast(torch.nn.Linear, model.decoder.dec_score_head[-1])
        head.weight.mul_(4.0)
        head.bias.add_(-2.5)
        if model.mask_head is not None:
            last = model.mask_head.query_mlp.linear(-1)
            last.weight.mul_(20.0)
            last.bias.mul_(20.0)
    return model


@dataclass
class BenchSetup:
    models: list  # (label, Predictor, core.messages.TrainMetrics of the val split or None)
    project: object | None
    notes: list[str]


def prepare_models(args: argparse.Namespace, log=print) -> BenchSetup:
    """Export (if needed) and open every model to time; F1 on the project's val split when there is one."""
    import tempfile

    from core.export.pipeline import export_all, limit_queries, project_for
    from core.infer.checkpoint_loader import load_checkpoint
    from core.infer.predictor import Predictor, export_layout, resolve_model
    from core.eval.validate import load_val_items, validate_predictor
    from core.project import newest_run

    formats = [backend_name(f) for f in _csv_list(args.formats)]
    precisions = _csv_list(args.precision)
    notes: list[str] = []
    if args.random_size:
        model = synthetic_model(args.random_size, 3, args.image_size, mask_head=args.mask_head)
        meta = ModelMeta(["class0", "class1", "class2"], "segment", (args.image_size, args.image_size), 100,
                         args.random_size, source="random weights", mask_head=args.mask_head)
        if args.queries is not None:
            limit_queries(meta, args.queries, model.decoder.num_queries, what="--queries")
            # on the model itself, so the torch row runs the count the exports run
            model.decoder.num_queries = args.queries
        project = project_for(args.project) if args.project else None
        notes.append(f"size {args.random_size.upper()} with random weights (no trained model), mask head "
                     f"{args.mask_head}, {model.decoder.num_queries} queries: latency only; "
                     "INT8 calibrated on the demo/project images")
    else:
        if not args.model:
            raise UserFacingError("give a run folder, checkpoint or export folder (or --random-size)")
        path = Path(args.model)
        project = project_for(path, args.project)
    files: dict = {}
    if not args.random_size and (path / "meta.json").is_file():
        # an export folder: time what is there; torch too when its checkpoint is still around
        meta = find_meta(path)
        files = {(m.backend, m.precision): m.path for m in export_layout(path) if m.path.is_file()}
        model = load_checkpoint(meta.source)[0] if meta.source and Path(meta.source).is_file() else None
    else:
        if not args.random_size:
            model, meta = load_checkpoint(resolve_model(newest_run(path), backend="torch").path)
        calib: list[Path] = []
        if project is not None:
            calib = (project.split_images("train") or project.image_paths())[:args.calibration_images]
        elif "int8" in precisions:
            from core.demo import make_demo_project
            from core.project import Project

            demo = make_demo_project(Path(tempfile.mkdtemp(prefix="dfine-bench-")) / "demo")
            calib = Project.open(demo).image_paths()[:args.calibration_images]
        export_dir = args.out / f"export_{meta.model_size}_{meta.image_size[0]}"
        export_formats = [f for f in ("openvino", "tensorrt") if f in formats]
        files = export_all(model, meta, export_dir, export_formats, precisions, calibration=calib, log=log).files
    predictors = []
    if "torch" in formats and model is not None:
        predictors.append(("torch fp32", Predictor.from_module(model, meta, conf=args.conf)))
    for (backend, prec), file in files.items():
        if backend in formats and (backend == "onnx" or prec in precisions):
            predictors.append((f"{backend} {prec}", Predictor.load(file, conf=args.conf, threads=args.threads)))
    if not predictors:
        raise UserFacingError(f"nothing to time for formats {', '.join(formats)} / precisions {', '.join(precisions)}")
    if args.random_size:
        # a threshold that keeps about 10 instances per 1080p frame, measured on the torch/FP32 model
        frames = _bench_frames(project, 8, (1920, 1080))
        ref = predictors[0][1]
        ref.conf = 0.0
        tenth = [np.sort(d.scores)[::-1][min(9, len(d) - 1)] for d in ref.predict(frames)]
        conf = float(np.median(tenth))
        for _, p in predictors:
            p.conf = conf
        notes.append(f"confidence threshold {conf:.3f} (keeps ~10 instances per frame on the FP32 model)")
    items = (load_val_items(project, project.split_images("val"), meta.task)
             if project is not None and not args.random_size else [])
    models = []
    for label, p in predictors:
        f1 = validate_predictor(p, items, p.conf).headline() if items else None
        models.append((label, p, f1))
    if items and project is not None:  # (items come from the project)
        notes.append(f"F1/P/R/IoU on {len(items)} val images of {project.root} at conf {args.conf}")
    return BenchSetup(models, project, notes)


def run(args: argparse.Namespace) -> int:
    return run_with_events(getattr(args, "events", None) == "-", lambda emit, out: _run(args, emit, out))


def _run(args: argparse.Namespace, emit, out) -> int:
    batch_sizes, frame = args.batch_sizes, args.frame  # checked by core.cli_types
    emit("progress", verb="bench", stage="prepare", progress=0.0, message="exporting and opening the models")
    setup = prepare_models(args, log=lambda m: print(m, file=sys.stderr))
    frames = _bench_frames(setup.project, max(args.images, max(batch_sizes)), frame)
    rows: list[dict] = []
    total = len(setup.models) * len(batch_sizes)
    for label, predictor, f1 in setup.models:
        for bs in batch_sizes:
            emit("progress", verb="bench", stage="time", done=len(rows), total=total, message=f"{label} bs={bs}")
            t = time_predictor(predictor, frames, bs)
            row = {"model": label, **t.summary(), **{k: getattr(f1, k) if f1 else None for k in
                                                     ("f1", "precision", "recall", "iou")}}
            rows.append(row)
            print(f"{label:>22} bs={bs}: e2e p50 {row['e2e_p50_ms']:.1f} ms, raw p50 {row['raw_p50_ms']:.1f} ms, "
                  f"{row['img_per_s']:.2f} img/s, e2e/raw {row['e2e_over_raw']:.2f}", file=sys.stderr)
    emit("progress", verb="bench", stage="time", done=total, total=total)
    reference = setup.models[0][1]
    speed = postprocess_speedup(reference, frames[:8])
    write_outputs(args.out, rows, speed, setup.notes)
    print((args.out / "bench.md").read_text(), file=out)
    anchor = anchor_report(rows, frames, args, setup.models[0][1].meta)
    print("\n".join(anchor), file=out)
    paths = {k: str(args.out / f"bench.{k}") for k in ("csv", "json", "md", "png") if (args.out / f"bench.{k}").is_file()}
    emit("result", verb="bench", paths=paths, message=f"{len(rows)} timings in {args.out}", anchor=anchor)
    return 0


def write_outputs(out: Path, rows: list[dict], speed: dict, notes: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "bench.json").write_text(json.dumps({"rows": rows, "postprocess": speed, "notes": notes}, indent=2))
    (out / "bench.md").write_text(markdown_table(rows, speed, notes))
    plot(rows, out / "bench.png")


def _fmt(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_table(rows: list[dict], speed: dict, notes: list[str]) -> str:
    lines = ["| model | batch | e2e p50 ms | e2e p95 ms | raw p50 ms | e2e/raw | img/s | inst/img | F1 | P | R | IoU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {_fmt(r['e2e_p50_ms'])} | {_fmt(r['e2e_p95_ms'])} | "
                     f"{_fmt(r['raw_p50_ms'])} | {_fmt(r['e2e_over_raw'], 2)} | {_fmt(r['img_per_s'], 2)} | "
                     f"{_fmt(r['inst_per_img'])} | {_fmt(r['f1'], 3)} | {_fmt(r['precision'], 3)} | "
                     f"{_fmt(r['recall'], 3)} | {_fmt(r['iou'], 3)} |")
    lines.append("")
    lines.append(f"Mask post-processing at {speed['image_size']} ({speed['inst_per_img']:.1f} instances/image): "
                 f"crop-then-resize {speed['crop_ms']:.2f} ms vs full-frame {speed['naive_ms']:.2f} ms "
                 f"(speed-up {speed['speedup']:.1f}x).")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(batches))
    for j, b in enumerate(batches):
        sel = [next((r for r in rows if r["model"] == m and r["batch"] == b), None) for m in models]
        xs = np.arange(len(models)) + j * width
        axes[0].bar(xs, [r["e2e_p50_ms"] / b if r else 0 for r in sel], width, label=f"batch {b}")
        axes[1].bar(xs, [r["img_per_s"] if r else 0 for r in sel], width, label=f"batch {b}")
    for ax, title in zip(axes, ["e2e latency per image (ms, p50 / batch)", "throughput (img/s)"]):
        ax.set_xticks(np.arange(len(models)) + width * (len(batches) - 1) / 2)
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
