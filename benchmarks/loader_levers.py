"""CPU training: what the data loader costs a training step, and what overlapping it buys
(issue #19's loader levers: data-loader workers, cached decoded images = `train.cache_images`).

One run, two copies of the demo project: its own 640x480 JPEGs, and the same images re-encoded
at phone-camera size (4032x3024, JPEG quality 95; the labels are normalised, so they still fit).
For each:

1. **per-sample cost** in the trainer's own dataset (SegmentationDataset + TrainAugment, the
   template's mosaic probability), in this process: image decode (`read_image`) alone, the whole
   `load_sample` (decode + downscale to 2x the model size + rasterise), the same from a warm
   `train.cache_images` cache, and load + augment (mosaic loads more images).
2. **trainer step wall time** (`dfine train`'s Trainer on the project, size N, batch 4, the
   trainer's CPU precision policy) for `train.workers` x `train.cache_images` (the cache warmed
   first): the median time between two step events, which includes waiting for the loader.
   workers=0 loads each batch on the training thread; >0 overlaps loading with the step, in
   processes that compete with the step's own threads for this machine's cores.

    .venv/bin/python benchmarks/loader_levers.py --out benchmarks/out/loader_levers [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIG = (4032, 3024)


def log(msg: str) -> None:
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"[{time.strftime('%H:%M:%S')} load {' '.join(load)}] {msg}", flush=True)


def make_projects(out: Path) -> dict[str, Path]:
    """The demo project and a copy with every image upscaled to BIG (labels are normalised)."""
    from core.demo import make_demo_project

    small = out / "demo_640x480"
    if not (small / "project.yaml").is_file():
        make_demo_project(small)
    big = out / f"demo_{BIG[0]}x{BIG[1]}"
    if not (big / ".loader_levers_done").is_file():
        shutil.rmtree(big, ignore_errors=True)
        shutil.copytree(small, big, ignore=shutil.ignore_patterns("runs", ".dfine"))
        for p in sorted((big / "images").iterdir()):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            cv2.imwrite(str(p), cv2.resize(img, BIG, interpolation=cv2.INTER_CUBIC), [cv2.IMWRITE_JPEG_QUALITY, 95])
        (big / ".loader_levers_done").write_text("ok")
    return {"640x480": small, f"{BIG[0]}x{BIG[1]}": big}


def sample_costs(project_dir: Path, image_size: int, n: int) -> dict:
    """Median per-sample milliseconds of decode, load_sample and load + augment (trainer's dataset)."""
    from core.data.augment import AugmentConfig, TrainAugment
    from core.data.dataset import load_sample
    from core.data.images import read_image
    from core.project import Project

    project = Project.open(project_dir)
    cfg = project.config
    paths = sorted((project_dir / "images").iterdir())[:n]
    classes = len(project.class_names)
    aug = TrainAugment(AugmentConfig(image_size=image_size, mosaic_prob=cfg.train.mosaic_prob, epochs=10,
                                     no_aug_epochs=0))
    cache = warm_cache(project_dir, image_size)
    decode, load, cached, full = [], [], [], []
    for i, p in enumerate(paths):
        t0 = time.perf_counter()
        read_image(p)
        t1 = time.perf_counter()
        s = load_sample(p, project.load_annotation, classes, 2 * image_size)
        t2 = time.perf_counter()
        aug(s, np.random.default_rng(i), 0,
            load_other=lambda j: load_sample(paths[j % len(paths)], project.load_annotation, classes, 2 * image_size),
            num_samples=len(paths))
        t3 = time.perf_counter()
        load_sample(p, project.load_annotation, classes, 2 * image_size, cache)
        cached.append(time.perf_counter() - t3)
        decode.append(t1 - t0)
        load.append(t2 - t1)
        full.append(t3 - t1)
    ms = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    return {"decode_ms": ms(decode), "load_sample_ms": ms(load), "cached_load_sample_ms": ms(cached),
            "load_and_augment_ms": ms(full),
            "decode_share_of_load_and_augment": round(statistics.median(decode) / statistics.median(full), 3),
            "samples": len(paths)}


def warm_cache(project_dir: Path, image_size: int):
    """Every image in the project's train.cache_images cache (the state from the second epoch on)."""
    from core.data.image_cache import CACHE_DIR, DecodedImageCache

    cache = DecodedImageCache(project_dir / CACHE_DIR, 2 * image_size)
    for p in sorted((project_dir / "images").iterdir()):
        cache.get(p)
    return cache


def trainer_steps(project_dir: Path, run_dir: Path, workers: int, cache_images: bool, steps_wanted: int,
                  image_size: int) -> dict:
    """Median wall time between step events of a real Trainer run (first two steps dropped)."""
    from core.train.trainer import Trainer, TrainOptions

    shutil.rmtree(run_dir, ignore_errors=True)
    times: list[float] = []
    trainer_box: list = []

    def on_event(rec: dict) -> None:
        if rec.get("event") == "step":
            times.append(time.perf_counter())
            if len(times) >= steps_wanted + 3:  # two warm-up steps, then steps_wanted gaps
                trainer_box[0].stop.requested = True

    overrides = [f"train.workers={workers}", f"train.cache_images={str(cache_images).lower()}", "train.epochs=50", "train.batch_size=4", "train.val_every=1000",
                 "model.size=n", f"model.image_size={image_size}", "train.device=cpu"]
    opts = TrainOptions(project=project_dir, run_dir=run_dir, overrides=overrides, progress=False,
                        val_images=[], on_event=on_event)
    trainer = Trainer(opts)
    trainer_box.append(trainer)
    trainer.run()
    gaps = [b - a for a, b in zip(times[2:], times[3:])]
    return {"workers": workers, "cache_images": cache_images, "steps_timed": len(gaps), "step_s_median": round(statistics.median(gaps), 3),
            "precision": str(trainer.amp_dtype or "fp32").replace("torch.", "")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/loader_levers")
    ap.add_argument("--image-size", type=int, default=640)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per trainer run")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cache", choices=["off", "on", "both"], default="both", help="train.cache_images runs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    projects = make_projects(args.out)
    results: dict = {}
    for name, proj in projects.items():
        log(f"{name}: per-sample costs")
        results[name] = {"samples": sample_costs(proj, args.image_size, args.samples), "trainer": []}
        for cache in {"off": [False], "on": [True], "both": [False, True]}[args.cache]:
            if cache:
                warm_cache(proj, args.image_size)
            for w in args.workers:
                log(f"{name}: trainer, workers={w}, cache_images={cache}")
                results[name]["trainer"].append(trainer_steps(
                    proj, args.out / "runs" / f"{name}_w{w}_c{int(cache)}", w, cache, args.steps, args.image_size))
    print("\n| images | decode ms | load_sample ms | cached load_sample ms | load + augment ms | decode share |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        s = r["samples"]
        print(f"| {name} | {s['decode_ms']} | {s['load_sample_ms']} | {s['cached_load_sample_ms']} "
              f"| {s['load_and_augment_ms']} | {s['decode_share_of_load_and_augment']:.0%} |")
    print(f"\n| images | train.workers | cache_images | precision | step s (median of {args.steps}) | vs first row |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        base = r["trainer"][0]["step_s_median"]
        for t in r["trainer"]:
            print(f"| {name} | {t['workers']} | {'on' if t['cache_images'] else 'off'} | {t['precision']} "
                  f"| {t['step_s_median']:.2f} | {t['step_s_median'] / base:.2f} |")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
