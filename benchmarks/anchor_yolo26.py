"""Ours vs Ultralytics YOLO26-seg S on OpenVINO FP32/INT8, end to end, in the same run (issue #16).

Two roles in one file, in two virtual environments (Ultralytics needs torchvision, which our pinned
torch lacks, so it lives in its own venv; see benchmarks/README.md for the recipe):

* driver (our venv): ``.venv/bin/python benchmarks/anchor_yolo26.py [--heads paper,lite] [--levers]``
  builds our seg S per mask head (random weights made input-dependent, ``core.bench.synthetic_model``),
  exports OpenVINO FP32/INT8 (INT8 calibrated on the timed images), starts the anchor below as a
  subprocess in the YOLO26 venv and times both *interleaved*: round r times every configuration
  on the 8 frames in turn (rotating the order), so all of them see the same machine load.
* anchor (YOLO26 venv): ``--anchor`` builds YOLO26-seg S from its yaml (no download; random
  weights, BatchNorm statistics from the frames so that outputs depend on the image; latency
  only), exports it with Ultralytics (``format=openvino``, NMS-free head,
  ``quantize=8`` for INT8, calibrated on the same frames) and times ``model.predict`` with
  ``retina_masks=True`` (full-resolution masks). ``--serve`` answers timing requests on stdin;
  without it, it times every frame once per precision and prints one JSON line (what
  ``dfine bench`` uses through core/bench_anchor.py).

Protocol, as ``dfine bench`` (core/bench.py): images already decoded in memory, warm-up on 10
images, then per image preprocess + forward + postprocess returning boxes, scores, labels and
full-resolution masks; batch 1; median. Frames: the 8 coco8-seg images letterboxed to 640x480,
repeated ``--rounds`` times. Random weights have no natural score scale, so each model file's
confidence threshold keeps ~10 instances per frame on average (FP32 and INT8 alike, as a trained
model would): every row post-processes about the same number of full-resolution masks.

The anchor part imports only numpy, cv2, ultralytics, openvino, nncf and torch (never ``core``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ANCHOR_YAML = "yolo26{size}-seg.yaml"  # size n|s|m|l|x (Ultralytics' scales); S by default
WARMUP = 10
TARGET_INSTANCES = 10
TOP_K = 100  # ours keeps the top 100 queries (ModelMeta.top_k); YOLO's max_det is set the same
FRAME = (640, 480)
# What our OpenVINO runner compiles with on a CPU (core.infer.runner_openvino.CPU_CONFIG, spelled out
# because the anchor's venv does not import our package; a test keeps them equal). Ultralytics keeps
# OpenVINO's defaults, which on a CPU with native bf16 (AVX512-BF16, AMX) run an "FP32" model in bf16
# and requantize INT8 models' activations at run time: the anchor gets ours unless asked otherwise,
# so "FP32" is f32 on both sides on every CPU.
OURS_CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
# the shared fixtures beside the checkout (as tests/conftest.py finds them), or $DFINE_SHARED
COCO8 = Path(os.environ.get("DFINE_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "data" / "coco8-seg"
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ both environments


def letterbox(img: np.ndarray, size: tuple[int, int], pad: int = 114) -> np.ndarray:
    """``img`` scaled to fit ``size`` (w, h), aspect kept, centred on a grey canvas."""
    import cv2

    w, h = size
    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    out = np.full((h, w, 3), pad, np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out


def read_frames(folder: Path) -> list[np.ndarray]:
    import cv2

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"{folder}: no frames (.png/.jpg)")
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


def summary(e2e_ms: list[float], raw_ms: list[float], instances: int) -> dict:
    e2e, raw = np.array(e2e_ms), np.array(raw_ms)
    return {"e2e_p50_ms": float(np.median(e2e)), "e2e_p95_ms": float(np.percentile(e2e, 95)),
            "raw_p50_ms": float(np.median(raw)), "timings": len(e2e_ms),
            "inst_per_img": instances / max(1, len(e2e_ms))}


def parse_hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def keep_about(scores_per_frame: list[np.ndarray], k: int = TARGET_INSTANCES) -> float:
    """A threshold keeping ~k instances per frame on average over the frames: between the
    (k * frames)-th and the next highest of all their scores (random weights give some frames
    many near-equal scores, so a per-frame rule would swing between 0 and 100 instances)."""
    pooled = np.sort(np.concatenate([np.asarray(s, np.float64).ravel() for s in scores_per_frame]))[::-1]
    n = k * len(scores_per_frame)
    if len(pooled) <= n:
        return 0.0
    return float((pooled[n - 1] + pooled[n]) / 2)


# ------------------------------------------------------------------------ anchor (YOLO26 venv)


class YoloAnchor:
    """YOLO26-seg S built from its yaml, exported per precision, timed through ``model.predict``."""

    def __init__(self, frames_dir: Path, work: Path, precisions: list[str], seed: int = 0,
                 imgsz: tuple[int, int] = (640, 640), size: str = "s"):
        import torch
        from ultralytics import YOLO

        self.frames = read_frames(frames_dir)
        self.imgsz = list(imgsz)  # (h, w)
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)  # Ultralytics writes the exports next to the yaml name, i.e. here
        torch.manual_seed(seed)
        net = YOLO(ANCHOR_YAML.format(size=size), task="segment")
        self._batchnorm_from_frames(net.model, self.frames, imgsz)
        self.models = {}
        for prec in precisions:
            kwargs: dict = {"format": "openvino", "imgsz": self.imgsz, "nms": False, "batch": 1}
            if prec == "int8":
                kwargs.update(quantize=8, data=str(self._calibration_yaml(frames_dir, work)), fraction=1.0)
            elif prec != "fp32":
                raise SystemExit(f"anchor precision must be fp32 or int8, got {prec!r}")
            self.models[prec] = YOLO(net.export(**kwargs), task="segment")
        self.conf: dict[str, float] = {}
        for prec, model in self.models.items():  # each precision's own threshold (random weights)
            self.conf[prec] = 0.0
            scores = [self._predict(model, f, prec)[0].boxes.conf.numpy() for f in self.frames]
            self.conf[prec] = keep_about(scores)

    @staticmethod
    def _batchnorm_from_frames(model, frames: list[np.ndarray], imgsz: tuple[int, int]) -> None:
        """Fresh YOLO weights make activations vanish layer by layer (every score and box is then
        the same, whatever the image): BatchNorm statistics measured on the frames make each layer's
        output unit-scaled and input-dependent, so predictions (and post-processing) are real."""
        import torch
        from torch import nn

        x = torch.stack([torch.from_numpy(letterbox(f, (imgsz[1], imgsz[0]))[:, :, ::-1].copy()).permute(2, 0, 1)
                         for f in frames]).float() / 255.0
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None  # running stats = the average over this pass
        model.train()
        with torch.no_grad():
            model(x)
        model.eval()

    @staticmethod
    def _calibration_yaml(frames_dir: Path, work: Path) -> Path:
        """A dataset of the timed frames (no labels: INT8 calibration needs images only)."""
        root = work / "calibration"
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        for p in sorted(Path(frames_dir).iterdir()):
            if p.suffix.lower() in (".png", ".jpg"):
                (root / "images" / p.name).write_bytes(p.read_bytes())
                (root / "labels" / f"{p.stem}.txt").write_text("")
        names = "\n".join(f"  {i}: class{i}" for i in range(80))
        yaml = work / "calibration.yaml"
        yaml.write_text(f"path: {root}\ntrain: images\nval: images\nnames:\n{names}\n")
        return yaml

    def _predict(self, model, frame: np.ndarray, prec: str):
        return model.predict(frame, imgsz=self.imgsz, conf=self.conf[prec], max_det=TOP_K, retina_masks=True,
                             verbose=False, device="cpu")

    def time(self, prec: str, n: int, warmup: int = 1) -> dict:
        """``warmup`` untimed frames, then ``n`` timed ones (cycling through the frames)."""
        model, e2e, raw, inst = self.models[prec], [], [], 0
        for k in range(warmup + n):
            frame = self.frames[k % len(self.frames)]
            t0 = time.perf_counter()
            r = self._predict(model, frame, prec)[0]
            masks = r.masks.data.numpy() if r.masks is not None else np.zeros((0, *frame.shape[:2]), bool)
            t1 = time.perf_counter()
            if k >= warmup:
                assert masks.shape[1:] == frame.shape[:2], masks.shape  # full-resolution masks
                e2e.append((t1 - t0) * 1e3)
                raw.append(float(r.speed["inference"]))
                inst += len(r)
        return {"e2e_ms": e2e, "raw_ms": raw, "instances": inst}


def pin_cpu_config(pinned: dict) -> list[str]:
    """Every OpenVINO CPU compile in this process gets ``pinned`` over the caller's own settings.
    Returns a list that each compile appends its effective inference precision to (for the report)."""
    import openvino as ov

    seen: list[str] = []
    original = ov.Core.compile_model

    def compile_model(self, model, device_name=None, config=None, **kwargs):
        if str(device_name or "CPU").upper().startswith("CPU"):
            config = {**(config or {}), **pinned}
        compiled = original(self, model, device_name, config or {}, **kwargs)
        seen.append(str(compiled.get_property("INFERENCE_PRECISION_HINT")))
        return compiled

    ov.Core.compile_model = compile_model
    return seen


def anchor_versions(size: str) -> dict:
    import nncf
    import openvino
    import ultralytics

    return {"model": ANCHOR_YAML.format(size=size).replace(".yaml", ""), "ultralytics": ultralytics.__version__,
            "openvino": openvino.__version__.split("-")[0], "nncf": nncf.__version__}


def anchor_main(args: argparse.Namespace) -> int:
    """Runs in the YOLO26 venv. Protocol lines go to the real stdout; everything else to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # Ultralytics' logging (and any C-level print) goes to stderr
    sys.stdout = sys.stderr
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(args.work) / "ultralytics_config"))
    precisions = [p for p in args.precisions.split(",") if p]
    compiled_as = pin_cpu_config(OURS_CPU_CONFIG) if args.anchor_openvino == "ours" else []
    # absolute: the anchor changes into its work folder (Ultralytics exports into the current one)
    anchor = YoloAnchor(Path(args.frames).resolve(), Path(args.work).resolve(), precisions, imgsz=parse_hw(args.input),
                        size=args.size)
    head = {**anchor_versions(args.size), "input": args.input, "conf": anchor.conf, "frames": len(anchor.frames),
            "precisions": precisions, "openvino_cpu_config": OURS_CPU_CONFIG if compiled_as else "Ultralytics' own",
            "compiled_precision": sorted(set(compiled_as))}
    for prec in precisions:
        anchor.time(prec, 0, warmup=WARMUP)
    if not args.serve:  # dfine bench: every frame once per precision after the warm-up
        rows = {}
        for prec in precisions:
            t = anchor.time(prec, len(anchor.frames), warmup=0)
            rows[prec] = summary(t["e2e_ms"], t["raw_ms"], t["instances"])
        proto.write(json.dumps({**head, "rows": rows}) + "\n")
        return 0
    proto.write(json.dumps({"ready": True, **head}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        proto.write(json.dumps(anchor.time(req["precision"], int(req["n"]), int(req.get("warmup", 1)))) + "\n")
    return 0


# ------------------------------------------------------------------------ driver (our venv)


def coco8_frames(root: Path, frame: tuple[int, int] = FRAME) -> list[np.ndarray]:
    import cv2

    paths = sorted((root / "images").rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"{root}: no images under images/")
    return [letterbox(cv2.imread(str(p), cv2.IMREAD_COLOR), frame) for p in paths]


class AnchorProcess:
    """The anchor in the YOLO26 venv, serving timing requests over a pipe."""

    def __init__(self, python: Path, frames_dir: Path, work: Path, precisions: list[str], hw: str = "640x640",
                 openvino_config: str = "ours"):
        import subprocess

        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--anchor", "--serve", "--frames", str(frames_dir),
             "--work", str(work), "--precisions", ",".join(precisions), "--input", hw,
             "--anchor-openvino", openvino_config],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the YOLO26 anchor stopped (exit {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def time(self, prec: str, n: int) -> dict:
        self.proc.stdin.write(json.dumps({"precision": prec, "n": n}) + "\n")
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


class Ours:
    """One of our exported models; ``hint``/``streams`` recompile it with other OpenVINO settings."""

    def __init__(self, label: str, xml: Path, conf: float, hint: str | None = None, streams: int | None = None):
        from core.infer.predictor import Predictor

        self.label, self.xml = label, xml
        self.predictor = Predictor.load(xml, conf=conf)
        if hint or streams:
            import openvino as ov

            config = {"PERFORMANCE_HINT": hint or "LATENCY", **OURS_CPU_CONFIG}
            if streams:
                config["NUM_STREAMS"] = streams
            runner = self.predictor.runner
            core = ov.Core()
            runner.compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
            runner.request = runner.compiled.create_infer_request()

    def time(self, frames: list[np.ndarray], n: int, warmup: int = 1) -> dict:
        from core.bench import time_predictor

        if n == 0:  # warm-up only
            for k in range(warmup):
                self.predictor.predict([frames[k % len(frames)]])
            return {"e2e_ms": [], "raw_ms": [], "instances": 0}
        seq = [frames[k % len(frames)] for k in range(n)]
        t = time_predictor(self.predictor, seq, 1, warmup=warmup)
        return {"e2e_ms": t.e2e_ms, "raw_ms": t.raw_ms, "instances": t.instances}


def soften_scores(model, frames: list[np.ndarray], hw: tuple[int, int], spread: float = 2.0) -> None:
    """Scale the final class head so its logits on ``frames`` have std ``spread``: with 80 classes
    the synthetic weights saturate many scores at exactly 1.0, and no threshold can then pick ~10."""
    import torch

    from core.infer.preprocess import preprocess

    x, _ = preprocess(frames, hw)
    with torch.no_grad():
        logits = model(torch.from_numpy(x))["pred_logits"]
        t = max(1.0, float(logits.std()) / spread)
        head = model.decoder.dec_score_head[-1]
        head.weight.div_(t)
        head.bias.div_(t)


def export_ours(head: str, task: str, out: Path, calib: list[Path], precisions: list[str],
                model_types: list[str | None], frames: list[np.ndarray], reuse: bool = False,
                hw: tuple[int, int] = (640, 640), queries: int = 300) -> dict:
    """{(precision, model_type): xml} for our seg S with ``head`` (random weights, 80 classes)."""
    from core.bench import synthetic_model
    from core.export.onnx_export import export_onnx
    from core.export.openvino_export import export_openvino, quantize_int8
    from core.export.pipeline import calibration_batches
    from core.infer.meta import ModelMeta
    from core.model import DeployModel

    names = {("fp32", None): "openvino_fp32"} if "fp32" in precisions else {}
    if "int8" in precisions:
        names.update({("int8", mt): "openvino_int8" + (f"_{mt}" if mt else "") for mt in model_types})
    files = {key: out / name / "model.xml" for key, name in names.items()}
    if reuse and all(f.is_file() for f in files.values()):
        return files  # the same seed and code make the same model: no need to export again
    model = synthetic_model("s", 80, hw, mask_head=head if task == "segment" else "paper", task=task)
    # decoder queries at inference: the encoder's top-k picks them, so fewer is a deploy-time choice
    # (a trained model would need its accuracy checked with it)
    model.decoder.num_queries = queries
    soften_scores(model, frames, hw)
    meta = ModelMeta([f"class{i}" for i in range(80)], task, hw, TOP_K, "s", source="random weights")
    out.mkdir(parents=True, exist_ok=True)
    meta.save(out)
    onnx = export_onnx(DeployModel(model, TOP_K), out / "model.onnx", meta)
    for (prec, mt), name in names.items():
        if prec == "fp32":
            export_openvino(onnx, out / name, "fp32")
        else:
            quantize_int8(onnx, out / name, calibration_batches(calib, meta.image_size), len(calib),
                          model_type=mt, log=lambda m: None)
    return files


def ours_conf(xml: Path, frames: list[np.ndarray]) -> float:
    from core.infer.predictor import Predictor

    p = Predictor.load(xml, conf=0.0)
    return keep_about([d.scores for d in p.predict(frames)])


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def anchor_python(explicit: str | None) -> Path | None:
    from core.bench_anchor import find_anchor_python

    return Path(explicit) if explicit else find_anchor_python()


def driver(args: argparse.Namespace) -> int:
    import cv2

    heads = [h for h in args.heads.split(",") if h]
    precisions = [p for p in args.precisions.split(",") if p]
    out = Path(args.out)
    work = out / "anchor_yolo26"
    frames = coco8_frames(Path(args.data))
    frames_dir = work / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    calib = []
    for i, f in enumerate(frames):
        calib.append(frames_dir / f"frame_{i:02d}.png")
        cv2.imwrite(str(calib[-1]), f)
    log = print
    log(f"load average at start: {loadavg()}")
    configs: list[tuple[str, str, object]] = []  # (label, precision, timer)
    confs: dict[str, float] = {}
    queries = [int(q) for q in args.queries.split(",") if q]
    variants = [(h, "segment", q) for h in heads for q in queries] + ([("", "detect", 300)] if args.levers else [])
    for head, task, nq in variants:
        name = (f"seg S {head}" if task == "segment" else "det S (no mask head)") + (f" {nq} queries" if nq != 300 else "")
        t0 = time.time()
        lever = args.levers and task == "segment" and head == args.lever_head
        model_types: list[str | None] = [None, "transformer"] if lever else [None]
        suffix = ("" if args.input == "640x640" else f"_{args.input}") + ("" if nq == 300 else f"_q{nq}")
        files = export_ours(head, task, work / f"ours_{head if task == 'segment' else 'detect'}{suffix}", calib,
                            precisions, model_types, frames, reuse=args.reuse_exports, hw=parse_hw(args.input),
                            queries=nq)
        done = ", ".join(p + (f"/{mt}" if mt else "") for p, mt in files)
        log(f"{name}: exported {done} "
            f"in {time.time() - t0:.0f} s (load {loadavg()})")
        for (prec, mt), xml in files.items():  # each file's own threshold (random weights)
            label = f"ours {name}" + (" NNCF transformer" if mt else "")
            conf = confs[f"{label} {prec}"] = ours_conf(xml, frames)
            configs.append((label, prec, Ours(name, xml, conf)))
            if lever and mt is None:
                configs.append((f"ours {name} THROUGHPUT hint", prec, Ours(name, xml, conf, hint="THROUGHPUT")))
                configs.append((f"ours {name} LATENCY streams=1", prec, Ours(name, xml, conf, streams=1)))
    python = anchor_python(args.anchor_python)
    anchor = None
    if python is None:
        log("YOLO26 anchor: not installed (see benchmarks/README.md); timing ours only")
    else:
        t0 = time.time()
        anchor = AnchorProcess(python, frames_dir, work / f"yolo26_{args.input}", precisions, args.input,
                               args.anchor_openvino)
        log(f"YOLO26 anchor ready in {time.time() - t0:.0f} s: {anchor.info}")
        for prec in precisions:
            configs.append(("YOLO26-seg S", prec, anchor))
    results: dict[tuple[str, str], dict] = {(lbl, p): {"e2e_ms": [], "raw_ms": [], "instances": 0}
                                           for lbl, p, _ in configs}

    def one(prec: str, timer, n: int) -> dict:  # one untimed frame first, both sides alike
        return timer.time(prec, n) if isinstance(timer, AnchorProcess) else timer.time(frames, n, warmup=1)

    for _label, _prec, timer in configs:  # warm-up: 10 frames each
        if isinstance(timer, AnchorProcess):
            continue  # the anchor warmed up its models itself (WARMUP frames each)
        timer.time(frames, 0, warmup=WARMUP)
    loads = [loadavg()]
    for r in range(args.rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for label, prec, timer in order:
            got = one(prec, timer, len(frames))
            acc = results[(label, prec)]
            acc["e2e_ms"] += got["e2e_ms"]
            acc["raw_ms"] += got["raw_ms"]
            acc["instances"] += got["instances"]
        loads.append(loadavg())
        log(f"round {r + 1}/{args.rounds} done (load {loads[-1]})")
    if anchor is not None:
        anchor.close()
    rows = []
    for (label, prec), acc in results.items():
        rows.append({"model": label, "precision": prec, **summary(acc["e2e_ms"], acc["raw_ms"], acc["instances"])})
    info = {"frames": f"{len(frames)} coco8-seg images letterboxed to {FRAME[0]}x{FRAME[1]}, network input "
                      f"{args.input} (HxW) for every model",
            "rounds": args.rounds, "loadavg": loads, "conf": confs,
            "anchor": anchor.info if anchor else None, "cpu": _cpu_label()}
    md = markdown(rows, info)
    out.mkdir(parents=True, exist_ok=True)
    (out / "anchor_yolo26.md").write_text(md)
    (out / "anchor_yolo26.json").write_text(json.dumps({"rows": rows, **info}, indent=2))
    print(md)
    return 0


def module_of(node_name: str) -> str:
    """Which part of our network an OpenVINO node belongs to, from its ONNX-derived name."""
    if any(k in node_name for k in ("mask_head", "pixel_decoder", "query_mlp")):
        return "mask head"
    for part in ("backbone", "encoder", "decoder"):
        if part in node_name:
            return part
    return "other"


def profile_parts(xml: Path, frame: np.ndarray, runs: int = 5) -> tuple[dict, dict]:
    """Per-module and per-(module, op type) CPU ms of one inference (OpenVINO PERF_COUNT, mean of
    ``runs`` after one warm-up); node times of parallel threads add up to more than wall time."""
    import collections

    import openvino as ov

    from core.infer.meta import find_meta
    from core.infer.preprocess import preprocess

    x, _ = preprocess([frame], find_meta(xml).image_size)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY", **OURS_CPU_CONFIG, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    parts: collections.Counter = collections.Counter()
    ops: collections.Counter = collections.Counter()
    for k in range(runs + 1):
        request.infer({0: x})
        if k == 0:
            continue
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1e3 / runs
            parts[module_of(info.node_name)] += ms
            ops[(module_of(info.node_name), info.node_type)] += ms
    return dict(parts), dict(ops)


def profile_main(xmls: list[str], frames: list[np.ndarray]) -> int:
    print(f"load average: {loadavg()}")
    print("| model | " + " | ".join(("backbone", "encoder", "decoder", "mask head", "other")) + " | top ops (ms) |")
    print("|---|---|---|---|---|---|---|")
    for xml in xmls:
        parts, ops = profile_parts(Path(xml), frames[0])
        total = sum(parts.values())
        cells = [f"{parts.get(k, 0.0):.0f} ms ({100 * parts.get(k, 0.0) / total:.0f} %)"
                 for k in ("backbone", "encoder", "decoder", "mask head", "other")]
        top = ", ".join(f"{m} {t} {v:.0f}" for (m, t), v in sorted(ops.items(), key=lambda kv: -kv[1])[:6])
        print(f"| {xml} | " + " | ".join(cells) + f" | {top} |")
    return 0


def _cpu_label() -> str:
    try:
        from core import cpu_isa

        return cpu_isa.detect().label
    except Exception:  # noqa: BLE001 - only a label for the table
        return "unknown CPU"


def markdown(rows: list[dict], info: dict) -> str:
    """One row per model x precision: e2e/raw p50, INT8/FP32 and the ratio to YOLO26-seg S."""
    by = {(r["model"], r["precision"]): r for r in rows}
    lines = ["| model | precision | e2e p50 ms | e2e p95 ms | raw p50 ms | inst/img | INT8/FP32 | "
             "ours / YOLO26 (same precision) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fp32 = by.get((r["model"], "fp32"))
        if r["model"].endswith("NNCF transformer"):
            fp32 = by.get((r["model"].replace(" NNCF transformer", ""), "fp32"))
        yolo = by.get(("YOLO26-seg S", r["precision"]))
        int8_ratio = f"{r['e2e_p50_ms'] / fp32['e2e_p50_ms']:.2f}" if r["precision"] == "int8" and fp32 else ""
        vs = "" if r["model"].startswith("YOLO26") or not yolo else f"**{r['e2e_p50_ms'] / yolo['e2e_p50_ms']:.2f}x**"
        lines.append(f"| {r['model']} | {r['precision'].upper()} | {r['e2e_p50_ms']:.1f} | {r['e2e_p95_ms']:.1f} | "
                     f"{r['raw_p50_ms']:.1f} | {r['inst_per_img']:.1f} | {int8_ratio} | {vs} |")
    anchor = info.get("anchor") or {}
    lines += ["", f"- {info['frames']}, {info['rounds']} interleaved rounds ({rows[0]['timings'] if rows else 0} "
                  f"timings per row), batch 1, warm-up {WARMUP}; CPU: {info['cpu']}",
              f"- load average (1/5/15 min) at each round: {'; '.join(info['loadavg'])}",
              "- random weights (latency only): each model file gets the confidence threshold that keeps ~10 "
              "instances per frame on average (inst/img), so every row post-processes about the same number of "
              "full-resolution masks, as a trained model's FP32 and INT8 would: "
              + ", ".join(f"{k} {v:.4g}" for k, v in info["conf"].items())
              + ("".join(f", YOLO26 {p} {c:.4g}" for p, c in anchor["conf"].items()) if anchor else "")]
    if anchor:
        lines.append(f"- anchor: {anchor['model']} from its yaml, Ultralytics {anchor['ultralytics']}, OpenVINO "
                     f"{anchor['openvino']}, NNCF {anchor['nncf']}; `model.predict(retina_masks=True)`, NMS-free "
                     "head (export `nms=False`), INT8 = Ultralytics' `quantize=8` on the same frames")
        lines.append(f"- OpenVINO CPU settings of the anchor: {anchor.get('openvino_cpu_config', 'not recorded')}; "
                     f"compiled inference precision {', '.join(anchor.get('compiled_precision') or ['not recorded'])} "
                     "(ours: f32, always)")
    else:
        lines.append("- YOLO26 anchor: not installed (see benchmarks/README.md)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--anchor", action="store_true", help="run the YOLO26 part (inside its venv)")
    p.add_argument("--serve", action="store_true", help="anchor: answer timing requests on stdin")
    p.add_argument("--frames", help="anchor: folder of the frames to time")
    p.add_argument("--work", help="anchor: folder for its exports")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--anchor-openvino", choices=["ours", "ultralytics"], default="ours",
                   help="YOLO26's OpenVINO CPU settings: ours (f32 inference precision, no run-time activation "
                   "requantization: the same as our runner) or Ultralytics' own (OpenVINO defaults: bf16 on CPUs "
                   "with native bf16)")
    p.add_argument("--size", default="s", choices=["n", "s", "m", "l", "x"], help="anchor: YOLO26-seg size")
    p.add_argument("--input", default="640x640", help="network input HxW for ours and YOLO26 alike (default "
                   "640x640; 480x640 fits the 4:3 frames without padding)")
    p.add_argument("--heads", default="paper,lite", help="driver: our mask heads (core.model.builder.MASK_HEADS)")
    p.add_argument("--levers", action="store_true", help="driver: add, for --lever-head, NNCF model_type "
                   "transformer INT8 and OpenVINO hints (THROUGHPUT; LATENCY + NUM_STREAMS 1), and the detector "
                   "without mask head")
    p.add_argument("--lever-head", default="lite")
    p.add_argument("--queries", default="300", help="driver: decoder queries of ours, comma-separated "
                   "(default 300, D-FINE's; e.g. 300,100 to measure fewer)")
    p.add_argument("--reuse-exports", action="store_true", help="driver: keep our exports from an earlier run "
                   "in the same --out (same seed and code = same model)")
    p.add_argument("--rounds", type=int, default=8, help="driver: interleaved rounds over the 8 frames (default 8)")
    p.add_argument("--data", default=str(COCO8), help="driver: coco8-seg folder")
    p.add_argument("--anchor-python", help="driver: the YOLO26 venv's python (default: found by core.bench_anchor)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    p.add_argument("--profile", nargs="+", metavar="XML", help="instead: CPU time per module (backbone, "
                   "encoder, decoder, mask head) of our OpenVINO exports, e.g. <out>/anchor_yolo26/ours_lite/"
                   "openvino_int8/model.xml")
    args = p.parse_args(argv)
    if args.anchor:
        if not args.frames or not args.work:
            p.error("--anchor needs --frames and --work")
        return anchor_main(args)
    sys.path.insert(0, str(REPO))
    if args.profile:
        return profile_main(args.profile, coco8_frames(Path(args.data)))
    return driver(args)


if __name__ == "__main__":
    raise SystemExit(main())
