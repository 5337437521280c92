"""The paper's latency protocol, shared by `dfine bench` and the export report.

Warm up on 10 images; then for each image (batch) already in memory: synchronize, start the
timer, preprocess (resize, normalise, device transfer) + forward + postprocess (box scaling,
mask resize to the original size, cleanup) returning labels, scores, boxes and full-resolution
masks, synchronize, stop = end-to-end latency. The raw forward (runner only) is timed
separately inside the same call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from core.errors import UserFacingError

WARMUP = 10


@dataclass
class Timing:
    batch_size: int
    e2e_ms: list[float] = field(default_factory=list)  # per batch
    raw_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    instances: int = 0
    images: int = 0

    def summary(self) -> dict[str, float]:
        e2e, raw = np.array(self.e2e_ms), np.array(self.raw_ms)
        return {"batch": self.batch_size, "e2e_p50_ms": float(np.percentile(e2e, 50)),
                "e2e_p95_ms": float(np.percentile(e2e, 95)), "raw_p50_ms": float(np.percentile(raw, 50)),
                "raw_p95_ms": float(np.percentile(raw, 95)), "post_p50_ms": float(np.percentile(self.post_ms, 50)),
                "img_per_s": float(self.batch_size * 1000.0 / e2e.mean()),
                "e2e_over_raw": float(np.percentile(e2e, 50) / np.percentile(raw, 50)),
                "inst_per_img": self.instances / max(1, self.images)}


def _sync(runner) -> None:
    if getattr(runner, "device", "cpu").startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_predictor(predictor, images: list[np.ndarray], batch_size: int = 1, warmup: int = WARMUP,
                   naive_post: bool = False) -> Timing:
    """End-to-end and raw latency of ``predictor`` over ``images`` (already decoded, in memory)."""
    from core.infer.postprocess import postprocess
    from core.infer.preprocess import preprocess

    runner, meta = predictor.runner, predictor.meta
    batches = [images[i:i + batch_size] for i in range(0, len(images) - batch_size + 1, batch_size)]
    if not batches:
        raise UserFacingError(f"need at least {batch_size} images to time batch size {batch_size}")
    warm = [images[i % len(images):i % len(images) + 1] * batch_size for i in range(max(1, warmup // batch_size))]
    timing = Timing(batch_size)
    for k, chunk in enumerate(warm + batches):
        _sync(runner)
        t0 = time.perf_counter()
        x, sizes = preprocess(chunk, meta.image_size)
        _sync(runner)
        t1 = time.perf_counter()
        raw = runner.run(x)  # returns host arrays: includes the device sync and copy back
        t2 = time.perf_counter()
        dets = postprocess(raw, sizes, predictor.conf, meta.class_names, naive=naive_post)
        _sync(runner)
        t3 = time.perf_counter()
        if k >= len(warm):
            timing.e2e_ms.append((t3 - t0) * 1e3)
            timing.raw_ms.append((t2 - t1) * 1e3)
            timing.post_ms.append((t3 - t2) * 1e3)
            timing.instances += sum(len(d) for d in dets)
            timing.images += len(chunk)
    return timing


def postprocess_speedup(predictor, images: list[np.ndarray], repeats: int = 3) -> dict[str, float | str]:
    """Crop-then-resize vs full-frame mask post-processing on the same raw outputs."""
    from core.infer.postprocess import postprocess
    from core.infer.preprocess import preprocess

    raws = []
    for im in images:
        x, sizes = preprocess([im], predictor.meta.image_size)
        raws.append((predictor.runner.run(x), sizes))
    out: dict[str, float | str] = {}
    ms: dict[str, float] = {}
    for naive in (False, True):
        best = []
        for raw, sizes in raws:
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                postprocess(raw, sizes, predictor.conf, naive=naive)
                ts.append(time.perf_counter() - t0)
            best.append(min(ts) * 1e3)
        out["naive_ms" if naive else "crop_ms"] = ms["naive_ms" if naive else "crop_ms"] = float(np.median(best))
    n = [int((raw["scores"][0] >= predictor.conf).sum()) for raw, _ in raws]
    out["speedup"] = ms["naive_ms"] / max(ms["crop_ms"], 1e-9)
    out["inst_per_img"] = float(np.mean(n))
    out["image_size"] = f"{images[0].shape[1]}x{images[0].shape[0]}"
    return out
