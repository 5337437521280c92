"""Evaluation memory/time benchmark: 1,000 images of 1920x1080, 50 GT + 50 predicted masks each.

Masks are generated directly as RLE (random polygons rasterised by pycocotools),
never as dense arrays, and fed to the streaming ``Evaluator`` image by image.
Pass: peak RSS growth < 500 MB. Prints time and RSS numbers.

    .venv/bin/python benchmarks/eval_memory.py [--images 1000] [--per-image 50]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
from pycocotools import mask as mask_utils

from core.eval.evaluator import Evaluator
from core.eval.records import ImageGT, ImagePred

H, W, C = 1080, 1920, 5


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def polygons(rng: np.random.Generator, n: int) -> tuple[list[list[float]], np.ndarray]:
    cx, cy = rng.uniform(0, W, n), rng.uniform(0, H, n)
    r = rng.uniform(10, 120, n)
    polys = []
    for i in range(n):
        ang = np.sort(rng.uniform(0, 2 * np.pi, 12))
        rad = r[i] * rng.uniform(0.6, 1.0, 12)
        polys.append(np.stack([cx[i] + rad * np.cos(ang), cy[i] + rad * np.sin(ang)], 1).ravel().tolist())
    return polys, r


def image_pair(rng: np.random.Generator, n: int) -> tuple[ImageGT, ImagePred]:
    polys, r = polygons(rng, n)
    gt_rles = mask_utils.frPyObjects(polys, H, W)
    labels = rng.integers(0, C, n)
    noisy = [(np.asarray(p) + rng.normal(0, r[i] * 0.04, len(p))).tolist() for i, p in enumerate(polys)]
    n_fp = n // 10  # replace a tenth of the predictions by random false positives
    noisy[:n_fp] = polygons(rng, n_fp)[0]
    pr_rles = mask_utils.frPyObjects(noisy, H, W)

    def boxes(rles):
        b = mask_utils.toBbox(rles).astype(np.float64)
        b[:, 2:] += b[:, :2]
        return b

    gt = ImageGT(H, W, boxes(gt_rles), labels, gt_rles)
    pred = ImagePred(boxes(pr_rles), rng.uniform(0.05, 1.0, n), labels, pr_rles)
    return gt, pred


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--per-image", type=int, default=50)
    ap.add_argument("--limit-mb", type=float, default=500.0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    image_pair(rng, 2)  # import/warm-up before the baseline
    base_rss, base_peak = rss_mb(), peak_rss_mb()
    ev = Evaluator(C, task="segment")
    t0 = time.perf_counter()
    gen_s = 0.0
    for i in range(args.images):
        g0 = time.perf_counter()
        gt, pred = image_pair(rng, args.per_image)
        gen_s += time.perf_counter() - g0
        ev.add(gt, pred)
        if (i + 1) % 200 == 0:
            print(f"  {i + 1} images, RSS {rss_mb():.0f} MB", flush=True)
    add_s = time.perf_counter() - t0 - gen_s
    t1 = time.perf_counter()
    s = ev.summary()
    summary_s = time.perf_counter() - t1
    growth = peak_rss_mb() - base_peak
    print(f"images {args.images} x {args.per_image} GT + {args.per_image} pred masks, {W}x{H}")
    print(f"time: generate {gen_s:.1f} s, add {add_s:.1f} s, summary {summary_s:.1f} s")
    print(f"RSS: baseline {base_rss:.0f} MB, final {rss_mb():.0f} MB, peak growth {growth:.0f} MB "
          f"(limit {args.limit_mb:.0f} MB)")
    print(f"F1 {s.fixed.f1:.3f}  mask mAP {s.coco['segm']['map']:.3f}  box mAP {s.coco['bbox']['map']:.3f}")
    ok = growth < args.limit_mb
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
