"""INT8 accuracy per NNCF overflow-fix setting, on this CPU and with oneDNN capped at AVX2 (no VNNI).

Two measurements, each one subprocess per (ISA, overflow_fix) so the ISA cap applies from the start:

- agreement: the random-weight N model of tests/test_export_parity.py (256 px), INT8 vs its own
  FP32 output as ground truth (F1 of agreement; 12 calibration images);
- trained (``--run <project>/runs/<name>``): `dfine export` of that run with FP32 and INT8, the val F1
  of each from its report.json and the INT8 drop.

    .venv/bin/python benchmarks/int8_overflow.py [--run demo_project/runs/demo] [--fixes enable first_layer_only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISAS = {"native": {}, "AVX2 (forced)": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}


def agreement_f1(overflow_fix: str) -> dict:
    """Runs inside the subprocess: the test model's INT8 agreement with its FP32 output."""
    import numpy as np

    from core.bench import synthetic_model
    from core.demo import render_demo_image
    from core.eval.evaluator import Evaluator
    from core.eval.records import ImageGT, ImagePred
    from core.export.onnx_export import export_onnx
    from core.export.openvino_export import quantize_int8
    from core.infer.meta import ModelMeta
    from core.infer.predictor import Predictor
    from core.infer.preprocess import preprocess
    from core.model import DeployModel

    size, classes = 256, ["circle", "triangle", "rectangle"]
    root = Path(tempfile.mkdtemp(prefix="int8-overflow-"))
    model = synthetic_model("n", len(classes), size)
    meta = ModelMeta(classes, "segment", (size, size), 100, "n")
    meta.save(root)
    onnx_path = export_onnx(DeployModel(model, meta.top_k), root / "model.onnx", meta)
    images = [render_demo_image(i)[0] for i in range(4)]
    conf = 0.6
    reference = Predictor.from_module(model, meta, conf=conf).predict(images)
    calib = [preprocess([render_demo_image(i)[0]], (size, size))[0] for i in range(4, 16)]
    _, info = quantize_int8(onnx_path, root / "openvino_int8", calib, subset_size=12, overflow_fix=overflow_fix,
                            log=lambda m: None)
    p = Predictor.load(root, conf=conf, backend="openvino", precision="int8")
    ev = Evaluator(len(classes), classes, "segment", conf=conf, coco=False)
    for ref, det in zip(reference, p.predict(images)):
        h, w = ref.image_size
        ev.add(ImageGT(h, w, ref.boxes, ref.labels, ref.masks), ImagePred.from_detections(det))
    return {"agreement_f1": round(ev.summary().fixed.f1, 3), "instances": int(sum(len(r) for r in reference)),
            "cpu": info["cpu"]["label"], "mean_abs_score": float(np.mean([d.scores.mean() for d in reference if len(d)]))}


def trained_f1(run: Path, overflow_fix: str) -> dict:
    """`dfine export` of a trained run (FP32 + INT8) and the val F1 of each from report.json."""
    out = Path(tempfile.mkdtemp(prefix="int8-overflow-run-"))
    cmd = [sys.executable, "-m", "core", "export", str(run), "--formats", "onnx,openvino", "--precision",
           "fp32,int8", "--int8-overflow-fix", overflow_fix, "--out", str(out), "--timing-images", "2"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}
    report = json.loads((out / "report.json").read_text())
    rows = {(row["format"], row["precision"]): row for row in report["results"]}
    fp32, int8 = rows[("openvino", "fp32")], rows[("openvino", "int8")]
    return {"fp32_f1": fp32.get("val_f1"), "int8_f1": int8.get("val_f1"),
            "int8_drop": round(int8["val_f1"] - fp32["val_f1"], 4), "val_images": report["val_images"],
            "cpu": report["int8"]["cpu"]["label"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a trained run folder (runs/<name>/) for the val F1 measurement")
    p.add_argument("--fixes", nargs="+", default=["enable", "first_layer_only", "disable"])
    p.add_argument("--skip-agreement", action="store_true")
    p.add_argument("--one", nargs=2, metavar=("KIND", "FIX"), help=argparse.SUPPRESS)  # subprocess entry
    args = p.parse_args()
    if args.one:
        kind, fix = args.one
        result = agreement_f1(fix) if kind == "agreement" else trained_f1(args.run, fix)
        print("RESULT " + json.dumps(result))
        return 0
    kinds = ([] if args.skip_agreement else ["agreement"]) + (["trained"] if args.run else [])
    rows = []
    for kind in kinds:
        for isa, env in ISAS.items():
            for fix in args.fixes:
                cmd = [sys.executable, __file__, "--one", kind, fix] + (["--run", str(args.run)] if args.run else [])
                r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                                   capture_output=True, text=True)
                line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
                result = json.loads(line[7:]) if line else {"error": (r.stderr or "no output")[-300:]}
                rows.append({"kind": kind, "isa": isa, "overflow_fix": fix, **result})
                print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_overflow.json").write_text(json.dumps(rows, indent=2))
    print("\n| measurement | ISA | overflow_fix | result |\n|---|---|---|---|")
    for row in rows:
        if "error" in row:
            value = f"error: {row['error']}"
        elif row["kind"] == "agreement":
            value = f"agreement F1 {row['agreement_f1']:.3f} ({row['instances']} FP32 instances; {row['cpu']})"
        else:
            value = (f"val F1 FP32 {row['fp32_f1']:.3f} → INT8 {row['int8_f1']:.3f} (drop {row['int8_drop']:+.3f}; "
                     f"{row['val_images']} val images; {row['cpu']})")
        print(f"| {row['kind']} | {row['isa']} | {row['overflow_fix']} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
