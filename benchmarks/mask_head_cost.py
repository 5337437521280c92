"""What the D-FINE-seg mask head costs at size S, and whether any widths of it are both
paper-sized and cheap (issue #3: seg params within 5 % of the paper vs seg/det latency <= 1.15).

    .venv/bin/python benchmarks/mask_head_cost.py [--image 640] [--runs 7] [--no-runtimes]

1. Widths search: over every (common, mid, mask) width in steps of 8 up to 512, the cheapest
   head (GMAC at --image, top-100 masks) whose seg model lands within 5 % of the paper's S
   (11.9 M parameters at 59 classes). The closed forms are checked against the real
   `MaskHead` (parameters counted, MACs from torch's FlopCounterMode) for the paper and lite
   widths before they are used.
2. Runtimes: seg/det latency at S on ONNX Runtime and OpenVINO FP32 CPU (1 thread, the
   deployment graph exported as `dfine export` does: fused, simplified), paper and lite heads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PAPER_SEG_S_M = 11.9  # D-FINE-seg S, 59 classes (paper table)
LEVELS = (8, 16, 32)  # size S: PAN strides; every level has the encoder's 256 channels
ENC_CH = 256
HIDDEN = 256  # decoder hidden dim at S (the query MLP's input and width)
TOP_K = 100


def head_params(f, m, d):
    """Lateral 1x1 convs (no bias) + GNs, 3x3 fuse conv + GN, 3x3 stride-4 conv + GN, query MLP."""
    return (len(LEVELS) * (ENC_CH * f + 2 * f) + 9 * f * m + 2 * m + 9 * m * d + 2 * d
            + 2 * (HIDDEN * HIDDEN + HIDDEN) + HIDDEN * d + d)


def head_macs(f, m, d, image: int):
    """Convs at their strides, the top-K mask dot product at stride 4, the MLP on top-K queries."""
    px = [(image // s) ** 2 for s in LEVELS]
    s4 = (image // 4) ** 2
    return (sum(px) * ENC_CH * f + px[0] * 9 * f * m + s4 * 9 * m * d + TOP_K * s4 * d
            + TOP_K * (2 * HIDDEN * HIDDEN + HIDDEN * d))


def check_closed_forms(image: int) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from core.model.mask_head import MaskHead

    for f, m, d in ((256, 256, 256), (128, 64, 32)):
        head = MaskHead([ENC_CH] * len(LEVELS), list(LEVELS), HIDDEN, fuse_dim=f, mask_dim=d,
                        mid_dim=m).eval()
        feats = [torch.randn(1, ENC_CH, image // s, image // s) for s in LEVELS]
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            head.logits(torch.randn(1, TOP_K, HIDDEN), head.features(feats))
        n_params = sum(p.numel() for p in head.parameters())
        if n_params != head_params(f, m, d) or counter.get_total_flops() != 2 * head_macs(f, m, d, image):
            raise SystemExit(f"closed forms disagree with MaskHead at widths {(f, m, d)}")


def widths_search(image: int) -> None:
    import numpy as np

    from core.model import build_model

    check_closed_forms(image)
    detector = sum(p.numel() for p in build_model("s", 59, task="detect").parameters())
    lo, hi = PAPER_SEG_S_M * 0.95e6 - detector, PAPER_SEG_S_M * 1.05e6 - detector
    w = np.arange(8, 513, 8)
    f, m, d = np.meshgrid(w, w, w, indexing="ij")
    params, macs = head_params(f, m, d), head_macs(f, m, d, image)
    ok = (params >= lo) & (params <= hi)
    i = int(np.argmin(np.where(ok, macs, np.inf)))
    print(f"S detector at 59 classes: {detector / 1e6:.3f} M; a paper-sized seg model needs a head of "
          f"{lo / 1e6:.3f}-{hi / 1e6:.3f} M parameters")
    for name, (pf, pm, pd) in (("paper", (256, 256, 256)), ("lite", (128, 64, 32))):
        print(f"  {name} widths {pf}/{pm}/{pd}: {head_params(pf, pm, pd) / 1e6:.3f} M, "
              f"{head_macs(pf, pm, pd, image) / 1e9:.2f} GMAC")
    print(f"  cheapest paper-sized widths: {f.flat[i]}/{m.flat[i]}/{d.flat[i]}: "
          f"{params.flat[i] / 1e6:.3f} M, {macs.flat[i] / 1e9:.2f} GMAC at {image}x{image}")


def runtime_ratios(image: int, runs: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import openvino as ov
    import torch

    from core.export.onnx_export import export_onnx
    from core.infer.meta import ModelMeta
    from core.model import DeployModel, build_model

    torch.manual_seed(0)
    x = np.random.default_rng(0).random((1, 3, image, image), dtype=np.float32)
    core = ov.Core()
    ms: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, task, head in (("detect", "detect", "paper"), ("paper", "segment", "paper"),
                                  ("lite", "segment", "lite")):
            deploy = DeployModel(build_model("s", 80, task=task, image_size=image, mask_head=head).eval(), TOP_K)
            meta = ModelMeta([f"class{i}" for i in range(80)], task, (image, image), TOP_K, "s")
            path = export_onnx(deploy, Path(tmp) / f"{label}.onnx", meta)  # what `dfine export` writes
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            request = core.compile_model(core.read_model(str(path)), "CPU", {
                "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
            for runtime, fn in (("onnxruntime", lambda s=sess: s.run(None, {"images": x})),
                                ("openvino", lambda r=request: r.infer({0: x}))):
                fn()
                fn()
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t0) * 1e3)
                ms[(runtime, label)] = statistics.median(times)
    print(f"\nS, {image}x{image}, batch 1, 1 thread, random weights, median of {runs} (ms; seg/det)")
    print("| runtime | detect | paper head | lite head | seg/det paper | seg/det lite |")
    print("|---|---|---|---|---|---|")
    for runtime in ("onnxruntime", "openvino"):
        det, paper, lite = (ms[(runtime, k)] for k in ("detect", "paper", "lite"))
        print(f"| {runtime} fp32 | {det:.0f} | {paper:.0f} | {lite:.0f} | {paper / det:.2f} | {lite / det:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=int, default=640)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-runtimes", action="store_true", help="only the widths search")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    widths_search(args.image)
    if not args.no_runtimes:
        runtime_ratios(args.image, args.runs)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(main())
