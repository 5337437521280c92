"""Live view on a video played in real time: displayed FPS and capture-to-display latency,
one-loop (read -> predict -> draw, the old capture thread) vs the grabber pipeline
(core.infer.live_pipeline: capture on its own thread, inference on the newest frame), ours vs
Ultralytics YOLO26-seg S (issue #16).

A frame k of a video at F fps is "captured" at t0 + k/F, as a camera would deliver it; its
capture-to-display latency is the time it is drawn minus that. A one-loop viewer slower than the
camera shows ever older frames (latency grows with the clip); the pipeline drops stale ones.

    .venv/bin/python benchmarks/live_pipeline.py --model demo_project/exports/demo/openvino_int8 \\
        [--video clip.mp4 | --frames 150 --fps 30]
    .venv/bin/python benchmarks/live_pipeline.py --random-size s   # latency only, random weights
    .venv/bin/python benchmarks/live_pipeline.py --heads lite,paper --anchor   # S INT8 vs YOLO26, same run

``--heads``: our seg S per mask head, random weights made input-dependent and exported to OpenVINO
INT8 as benchmarks/anchor_yolo26.py does (calibrated on the clip's frames, each file's threshold
keeping ~10 instances per frame). ``--anchor``: then, in the same run, YOLO26-seg S INT8 in its
own venv (benchmarks/README.md; found like `dfine bench` finds it): once as Ultralytics runs a
video, ``model.predict(source=video, stream=True)`` with ``result.plot()`` as the display (every
frame, in order: a file source is not dropped from), and once in our grabber pipeline (same
pipeline, their model). For the Ultralytics loop the camera clock is started at the first read,
as for ours; its latencies are exact while it is slower than the camera, which it is here.
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


def head_predictors(heads: list[str], frames: list[np.ndarray], work: Path, reuse: bool,
                    queries: int = 300) -> dict:
    """{label: Predictor} of our seg S INT8 per mask head with `queries` decoder queries, exported as
    the YOLO26 anchor does."""
    import cv2
    from anchor_yolo26 import export_ours, ours_conf

    from core.infer.predictor import Predictor

    sample = distinct_frames(frames)
    (work / "frames").mkdir(parents=True, exist_ok=True)
    calib = [work / "frames" / f"frame_{i:02d}.png" for i in range(len(sample))]
    for path, f in zip(calib, sample):
        cv2.imwrite(str(path), f)
    out = {}
    for head in heads:
        suffix = f"_q{queries}" if queries != 300 else ""
        xml = export_ours(head, "segment", work / f"ours_{head}{suffix}", calib, ["int8"], [None], sample,
                          reuse=reuse, queries=queries)[("int8", None)]
        label = f"ours seg S {head}" + (f" {queries} queries" if queries != 300 else "") + " INT8"
        out[label] = Predictor.load(xml, conf=ours_conf(xml, sample))
    return out


def distinct_frames(frames: list[np.ndarray], n: int = 8) -> list[np.ndarray]:
    """Calibration / threshold frames: n spread over the clip."""
    step = max(1, len(frames) // n)
    return frames[::step][:n]


def warm_up(frames, predict, draw, n: int = 5) -> None:
    for image in frames[:n]:
        draw(image, predict(image))


def run_viewers(frames, fps, predict, draw) -> dict:
    warm_up(frames, predict, draw)
    return {"one loop (old)": one_loop(frames, fps, predict, draw),
            "grabber pipeline": pipeline(frames, fps, predict, draw)}


def anchor_rows(python: Path, video: Path, work: Path) -> dict:
    """YOLO26-seg S INT8 rows from its venv (this file run there with --yolo26-worker)."""
    import os
    import subprocess

    result = work / "yolo26_live.json"
    result.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--yolo26-worker", "--video", str(video.resolve()),
           "--work", str((work / "yolo26").resolve()), "--frames-dir", str((work / "frames").resolve()),
           "--result", str(result.resolve())]
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 or not result.is_file():
        raise SystemExit(f"the YOLO26 live worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def inert_torchvision_if_broken() -> None:
    """Ultralytics imports torchvision when its source is a video only "to trigger torchvision NMS
    use"; YOLO26's NMS-free head never calls it. The torchvision wheel that pairs with the CPU torch
    2.13 here is a CUDA build whose C extension does not load, so the import fails: put an inert
    module in its place, whose every attribute raises, so any real use would still fail loudly."""
    import types

    try:
        import torchvision  # noqa: F401
        return
    except (ImportError, RuntimeError, OSError):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    class Inert(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError(f"torchvision.{name} used, but torchvision does not load in this venv")

    sys.modules["torchvision"] = Inert("torchvision")


def yolo26_worker(args) -> int:
    """Runs in the YOLO26 venv: Ultralytics' own stream loop, then its model in our grabber pipeline."""
    import os

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(args.work) / "ultralytics_config"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from anchor_yolo26 import OURS_CPU_CONFIG, TOP_K, YoloAnchor, pin_cpu_config

    inert_torchvision_if_broken()
    pin_cpu_config(OURS_CPU_CONFIG)  # as benchmarks/anchor_yolo26.py: f32 float parts on both sides
    frames, fps = load_frames(args.video)
    anchor = YoloAnchor(Path(args.frames_dir), Path(args.work), ["int8"])
    model, conf = anchor.models["int8"], anchor.conf["int8"]
    opts = {"imgsz": anchor.imgsz, "conf": conf, "max_det": TOP_K, "retina_masks": True, "verbose": False,
            "device": "cpu"}

    def predict(image):
        return model.predict(image, **opts)[0]

    def draw(image, result):
        result.plot()

    warm_up(frames, predict, draw)
    latencies, shown_at = [], []
    t0 = time.monotonic()
    for k, result in enumerate(model.predict(source=str(args.video), stream=True, **opts)):
        result.plot()
        now = time.monotonic()
        latencies.append((now - (t0 + k / fps)) * 1000)
        shown_at.append(now)
    rows = {"YOLO26-seg S INT8, Ultralytics predict(stream=True)": summary(latencies, shown_at, len(frames), 0),
            "YOLO26-seg S INT8, grabber pipeline": pipeline(frames, fps, predict, draw)}
    Path(args.result).write_text(json.dumps(rows))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="export folder / model file / checkpoint (e.g. exports/<name>/openvino_int8)")
    p.add_argument("--random-size", default="s", help="without --model/--heads: random weights of this size, "
                   "OpenVINO FP32")
    p.add_argument("--heads", help="our seg S INT8 per mask head, comma-separated (e.g. lite,paper)")
    p.add_argument("--anchor", action="store_true", help="add YOLO26-seg S INT8 from its venv (same run)")
    p.add_argument("--anchor-python", help="the YOLO26 venv's python (default: found as dfine bench does)")
    p.add_argument("--queries", type=int, default=300, help="--heads: decoder queries of ours (e.g. 100, the "
                   "CPU pick's export setting)")
    p.add_argument("--reuse-exports", action="store_true", help="keep --heads exports of an earlier run in --out")
    p.add_argument("--video", type=Path, help="a video file (default: a generated 640x480 clip)")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    p.add_argument("--yolo26-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--frames-dir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.yolo26_worker:
        return yolo26_worker(args)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from anchor_yolo26 import loadavg

    from core.infer.overlay import draw_detections

    work = args.out / "live_pipeline"
    work.mkdir(parents=True, exist_ok=True)
    video = args.video or make_video(work / "clip.avi", args.frames, args.fps)
    frames, fps = load_frames(video)
    loads = [loadavg()]
    if args.heads:
        predictors = head_predictors([h for h in args.heads.split(",") if h], frames, work, args.reuse_exports,
                                     args.queries)
    else:
        predictors = {args.model or f"random {args.random_size} OpenVINO FP32": build_predictor(args)}

    def draw(image, det):
        draw_detections(image, det)

    rows = {}
    for label, predictor in predictors.items():
        def predict(image, predictor=predictor):
            return predictor.predict([image])[0]

        for viewer, r in run_viewers(frames, fps, predict, draw).items():
            rows[f"{label}, {viewer}"] = r
        loads.append(loadavg())
    if args.anchor:
        from core.bench_anchor import find_anchor_python

        python = Path(args.anchor_python) if args.anchor_python else find_anchor_python()
        if python is None:
            print("YOLO26 anchor: not installed (benchmarks/README.md has the recipe); ours only")
        else:
            rows.update(anchor_rows(python, video, work))
            loads.append(loadavg())
    print(f"{len(frames)} frames at {fps:g} fps ({frames[0].shape[1]}x{frames[0].shape[0]}), load average "
          f"{' -> '.join(loads)}")
    print("| model, viewer | shown/read | stale | display FPS | capture→display p50 ms | p95 ms | last frame ms |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['shown']}/{r['read']} | {r['stale']} | {r['display_fps']} | {r['latency_p50_ms']} | "
              f"{r['latency_p95_ms']} | {r['latency_last_ms']} |")
    (args.out / "live_pipeline.json").write_text(json.dumps({"rows": rows, "loadavg": loads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
