"""Live view on a video played in real time: displayed FPS and capture-to-display latency,
one-loop (read -> predict -> draw, the old capture thread) vs the grabber pipeline
(core.infer.live_pipeline: capture on its own thread, inference on the newest frame).

A frame k of a video at F fps is "captured" at t0 + k/F, as a camera would deliver it; its
capture-to-display latency is the time it is drawn minus that. A one-loop viewer slower than the
camera shows ever older frames (latency grows with the clip); the pipeline drops stale ones.

    .venv/bin/python benchmarks/live_pipeline.py --model demo_project/exports/demo/openvino_int8 \\
        [--video clip.mp4 | --frames 150 --fps 30]
    .venv/bin/python benchmarks/live_pipeline.py --random-size s   # latency only, random weights
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_video(path: Path, frames: int, fps: float, size: tuple[int, int] = (640, 480)) -> Path:
    import cv2

    from core.demo import render_demo_image

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(cv2.resize(render_demo_image(i % 16)[0], size))
    writer.release()
    return path


def load_frames(video: Path) -> tuple[list[np.ndarray], float]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out, fps


def camera(frames: list[np.ndarray], fps: float):
    """A camera clock over decoded frames: read() blocks until frame k exists (t0 + k/fps) and
    returns the oldest unread one, as a buffered capture does; ``t0`` is set on the first read."""
    state = {"k": 0, "t0": None}

    def read():
        k = state["k"]
        if k >= len(frames):
            return None
        if state["t0"] is None:
            state["t0"] = time.monotonic()
        wait = state["t0"] + k / fps - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        state["k"] = k + 1
        return frames[k]

    return read, state


def one_loop(frames, fps, predict, draw) -> dict:
    """The old viewer: read the next buffered frame, predict, draw; latency vs the camera clock."""
    read, state = camera(frames, fps)
    latencies, shown_at = [], []
    k = 0
    while (image := read()) is not None:
        draw(image, predict(image))
        now = time.monotonic()
        latencies.append((now - (state["t0"] + k / fps)) * 1000)
        shown_at.append(now)
        k += 1
    return summary(latencies, shown_at, len(frames), 0)


def pipeline(frames, fps, predict, draw) -> dict:
    from core.infer.live_pipeline import FrameGrabber

    grabber = FrameGrabber(iter_reader(frames), pace_fps=fps).start()
    latencies, shown_at = [], []
    while (grabbed := grabber.take()) is not None:
        draw(grabbed.image, predict(grabbed.image))
        now = time.monotonic()
        latencies.append((now - grabbed.captured_at) * 1000)
        shown_at.append(now)
    grabber.stop()
    return summary(latencies, shown_at, grabber.frames_read, grabber.frames_stale)


def iter_reader(frames):
    it = iter(frames)
    return lambda: next(it, None)


def summary(latencies, shown_at, read, stale) -> dict:
    fps = (len(shown_at) - 1) / (shown_at[-1] - shown_at[0]) if len(shown_at) > 1 else 0.0
    return {"shown": len(latencies), "read": read, "stale": stale, "display_fps": round(fps, 2),
            "latency_p50_ms": round(float(np.median(latencies)), 1),
            "latency_p95_ms": round(float(np.percentile(latencies, 95)), 1),
            "latency_last_ms": round(latencies[-1], 1)}


def build_predictor(args):
    from core.infer.predictor import Predictor

    if args.model:
        return Predictor.load(args.model, conf=0.5, threads=args.threads)
    from core.bench import synthetic_model
    from core.export.onnx_export import export_onnx
    from core.export.openvino_export import export_openvino
    from core.infer.meta import ModelMeta
    from core.model import DeployModel

    out = Path(tempfile.mkdtemp(prefix="live-bench-"))
    model = synthetic_model(args.random_size, 3, 640)
    meta = ModelMeta(["a", "b", "c"], "segment", (640, 640), 100, args.random_size, source="random weights")
    meta.save(out)
    onnx_path = export_onnx(DeployModel(model, meta.top_k), out / "model.onnx", meta)
    export_openvino(onnx_path, out / "openvino_fp32", "fp32")
    return Predictor.load(out, backend="openvino", precision="fp32", conf=0.5, threads=args.threads)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="export folder / model file / checkpoint (e.g. exports/<name>/openvino_int8)")
    p.add_argument("--random-size", default="s", help="without --model: random weights of this size, OpenVINO FP32")
    p.add_argument("--video", type=Path, help="a video file (default: a generated 640x480 clip)")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    from core.infer.overlay import draw_detections

    video = args.video or make_video(Path(tempfile.mkdtemp()) / "clip.avi", args.frames, args.fps)
    frames, fps = load_frames(video)
    predictor = build_predictor(args)

    def predict(image):
        return predictor.predict([image])[0]

    def draw(image, det):
        draw_detections(image, det)

    for image in frames[:5]:  # warm-up
        draw(image, predict(image))
    rows = {"one loop (old)": one_loop(frames, fps, predict, draw), "grabber pipeline": pipeline(frames, fps, predict, draw)}
    print(f"{len(frames)} frames at {fps:g} fps, model {args.model or f'random {args.random_size} OpenVINO FP32'}")
    print("| viewer | shown/read | stale | display FPS | capture→display p50 ms | p95 ms | last frame ms |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['shown']}/{r['read']} | {r['stale']} | {r['display_fps']} | {r['latency_p50_ms']} | "
              f"{r['latency_p95_ms']} | {r['latency_last_ms']} |")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "live_pipeline.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
