"""Deploy-time fusion latency: DeployModel(fuse=False) vs fuse=True (see benchmarks/README.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_fuse.py --runs 9
"""

from __future__ import annotations

import torch

from core.model import DeployModel, build_model


def _latency(runs: int = 5, image: int = 640) -> None:
    """Single-thread CPU latency of DeployModel(fuse=False) vs fuse=True, size S, batch 1."""
    import statistics
    import time

    torch.set_num_threads(1)
    x = torch.rand(1, 3, image, image)
    print(f"CPU, 1 thread, {image}x{image}, batch 1, top_k 100, median of {runs} (alternating)")
    print("| task | unfused ms wall / cpu | fused ms wall / cpu | fused/unfused cpu |")
    print("|---|---|---|---|")
    for task in ("detect", "segment"):
        torch.manual_seed(0)
        model = build_model("s", 80, task=task, image_size=image).eval()
        deploys = {False: DeployModel(model, 100, fuse=False), True: DeployModel(model, 100)}
        times: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        with torch.inference_mode():
            for d in deploys.values():
                d(x)  # warm-up
            for _ in range(runs):
                for fuse, d in deploys.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    d(x)
                    times[fuse].append((time.perf_counter() - t0) * 1e3)
                    cpu[fuse].append((time.process_time() - c0) * 1e3)
        (u, uc), (f, fc) = [(statistics.median(times[k]), statistics.median(cpu[k])) for k in (False, True)]
        print(f"| {task} | {u:.0f} / {uc:.0f} | {f:.0f} / {fc:.0f} | {fc / uc:.2f} |", flush=True)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="deploy fusion latency (run by hand)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", type=int, default=640)
    args = ap.parse_args()
    _latency(args.runs, args.image)
