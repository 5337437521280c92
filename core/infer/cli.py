"""`dfine infer <export|checkpoint> <image|folder|video|camera index> [--save out/] [--conf 0.5]`

Writes overlays (masks, boxes, class names, scores) and the detections as a COCO
"results" JSON; a video is processed frame by frame with a progress bar.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

from core.cli_types import config_range, int_range
from core.config import InferConfig
from core.errors import UserFacingError
from core.infer.runner_base import BACKENDS, backend_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="export folder, model file (.onnx, .xml, .engine), checkpoint (.pt) or run folder")
    p.add_argument("source", help="image, image folder, video file, or camera index (0, 1, ...)")
    p.add_argument("--save", type=Path, metavar="DIR", help="write overlays and results.json here")
    conf = InferConfig().conf
    p.add_argument("--conf", type=config_range(InferConfig, "conf"), default=conf, help=f"confidence threshold (default {conf}, as infer.conf)")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] (torch/onnx/tensorrt); "
                   "CPU | GPU | NPU | AUTO for OpenVINO (default cpu)")
    p.add_argument("--backend", type=backend_name, choices=list(BACKENDS),
                   help="pick one model in an export folder (default: the fastest there)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="pick a precision in an export folder")
    p.add_argument("--batch-size", type=int_range(1), default=1, help="images per forward for folders (default 1)")
    p.add_argument("--max-frames", type=int_range(1), help="stop after this many frames (video/camera)")
    p.add_argument("--no-overlay", action="store_true", help="only results.json, no drawn images/video")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _writer_for(out: Path, name: str, fps: float, shape) -> cv2.VideoWriter:
    h, w = shape[:2]
    path = out / f"{Path(name).stem}_pred.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps or 25.0, (w, h))
    if not writer.isOpened():
        raise UserFacingError(f"{path}: OpenCV cannot write this video")
    return writer


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.infer.overlay import draw_detections
    from core.infer.predictor import Predictor
    from core.infer.sources import open_source

    predictor = Predictor.load(args.model, device=args.device, conf=args.conf, backend=args.backend,
                               precision=args.precision)
    predictor.batch_size = args.batch_size
    source = open_source(args.source, args.max_frames)
    is_stream = source.kind in ("video", "camera")
    out: Path | None = args.save
    if out is not None:
        if out.exists() and not out.is_dir():
            raise UserFacingError(f"--save {out}: is a file, not a folder; pick a folder for the results")
        out.mkdir(parents=True, exist_ok=True)
    overlay_names: set[str] = set()  # same.jpg and same.png must not overwrite one overlay
    print(f"model: {predictor.backend} {predictor.precision} ({len(predictor.class_names)} classes: "
          f"{', '.join(predictor.class_names)}); source: {source.kind} {source.spec}", file=sys.stderr)

    rows: list[dict] = []
    writer = None
    n_frames = n_dets = 0
    t0 = time.perf_counter()
    bar = tqdm(total=source.total, unit="frame" if is_stream else "img", disable=args.no_progress, file=sys.stderr)
    batch: list = []

    def flush() -> None:
        nonlocal writer, n_frames, n_dets
        dets = predictor.predict([f.image for f in batch])
        for frame, det in zip(batch, dets):
            n_frames += 1
            n_dets += len(det)
            image_id = frame.index if is_stream else frame.name
            if out is not None:
                rows.extend(det.to_coco_results(image_id, list(range(1, len(predictor.class_names) + 1))))
                if not args.no_overlay:
                    drawn = draw_detections(frame.image, det)
                    if is_stream:
                        writer = writer or _writer_for(out, Path(source.spec).name if source.kind == "video"
                                                       else f"camera{source.spec}", source.fps, drawn.shape)
                        writer.write(drawn)
                    else:
                        name = f"{Path(frame.name).stem}_pred.jpg"
                        k = 1
                        while name in overlay_names:
                            k += 1
                            suffix = Path(frame.name).suffix.lstrip(".") or "img"
                            name = f"{Path(frame.name).stem}_{suffix}{'' if k == 2 else k - 1}_pred.jpg"
                        overlay_names.add(name)
                        cv2.imwrite(str(out / name), drawn)
            elif not is_stream or args.no_progress:
                labels = ", ".join(f"{predictor.class_names[lab]} {s:.2f}" for lab, s in zip(det.labels, det.scores))
                print(f"{frame.name}: {len(det)} found{': ' + labels if labels else ''}")
        bar.update(len(batch))
        batch.clear()

    try:
        for frame in source:
            batch.append(frame)
            if len(batch) >= (1 if is_stream else args.batch_size):
                flush()
        if batch:
            flush()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        bar.close()
        if writer is not None:
            writer.release()
    for problem in source.skipped:
        print(f"skipped: {problem}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    if out is not None:
        (out / "results.json").write_text(json.dumps(rows))
        print(f"wrote {out / 'results.json'} ({len(rows)} detections)", file=sys.stderr)
    fps = n_frames / elapsed if elapsed > 0 else 0.0
    print(f"{n_frames} frames, {n_dets} detections, {fps:.1f} frames/s", file=sys.stderr)
    return 0 if n_frames or not source.skipped else 2
