"""Forward latency, compute and peak memory of D-FINE (detect) vs D-FINE-seg (segment) per size.

    .venv/bin/python benchmarks/model_forward.py --sizes n s --batches 1 4 --runs 7
    .venv/bin/python benchmarks/model_forward.py --device cuda --threads 16   # on a GPU machine

Tasks: detect, segment (mask head "paper"), segment-lite (mask head "lite").
  * Latency: one subprocess per (size, batch) builds the three models and calls them round-
    robin, so all three see the same machine load; medians of `--runs`.
    fwd = eval `model(x)` (segment: masks for all 300 queries); deploy = `DeployModel(model,
    top_k)(x)` (segment: masks for the top-K only; what inference/export runs).
    Both wall ms and process CPU ms (robust when other jobs share the cores; with one thread
    it is the compute cost). On CUDA the timer brackets are synchronized and wall ms count.
  * Compute: GMAC of one deploy call (torch's FlopCounterMode: convolutions and matrix
    products, FLOPs / 2), so a latency ratio can be read against the work each model does.
  * Memory: one subprocess per (size, task, batch) runs deploy twice; peak RSS of that process
    (peak MiB) and its growth over the built model (+MiB).
seg/det = deploy CPU ms (CUDA: wall ms) of the segment model / of the detect model (same size,
batch, process); seg/det MAC = the same ratio of GMAC, the floor the latency ratio can approach
where every MAC costs the same.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TASKS = ("detect", "segment", "segment-lite")


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build(size: str, task: str, image: int):
    from core.model import build_model

    head = "lite" if task == "segment-lite" else "paper"
    return build_model(size, 80, task=task.split("-")[0], image_size=image, mask_head=head).eval()


def count_gmac(fn, x) -> float:
    """Multiply-accumulates of one call, in billions (convolutions and matrix products)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops() / 2e9


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_size(size: str, batch: int, image: int, runs: int, warmup: int, top_k: int,
              tasks: list[str], device: str = "cpu") -> list[dict]:
    import torch

    from core.model import DeployModel

    torch.manual_seed(0)
    models = {t: _build(size, t, image).to(device) for t in tasks}
    deploys = {t: DeployModel(m, top_k) for t, m in models.items()}
    x = torch.rand(batch, 3, image, image, device=device)
    t: dict[tuple[str, str], list[float]] = {}
    with torch.inference_mode():
        for _ in range(warmup):
            for task in tasks:
                models[task](x)
                deploys[task](x)
        for _ in range(runs):
            for task in tasks:
                for kind, fn in (("fwd", models[task]), ("deploy", deploys[task])):
                    _sync(device)
                    w0, c0 = time.perf_counter(), time.process_time()
                    fn(x)
                    _sync(device)
                    t.setdefault((task, kind), []).append((time.perf_counter() - w0) * 1e3)
                    t.setdefault((task, kind + "_cpu"), []).append((time.process_time() - c0) * 1e3)
    rows = []
    for task in tasks:
        row = {"size": size, "task": task, "batch": batch, "image": image, "device": device,
               "params_m": sum(p.numel() for p in models[task].parameters()) / 1e6,
               "gmac": count_gmac(deploys[task], x)}
        for kind in ("fwd", "fwd_cpu", "deploy", "deploy_cpu"):
            row[kind + "_ms"] = statistics.median(t[(task, kind)])
        rows.append(row)
    return rows


def memory_one(size: str, task: str, batch: int, image: int, top_k: int,
               device: str = "cpu") -> dict:
    """Peak RSS of the process (CPU) or peak allocated GPU memory (CUDA) over two deploy calls."""
    import torch

    from core.model import DeployModel

    model = _build(size, task, image).to(device)
    deploy = DeployModel(model, top_k)
    x = torch.rand(batch, 3, image, image, device=device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() / 2**20 if cuda else _rss_peak_mib()
    with torch.inference_mode():
        deploy(x)
        deploy(x)
    _sync(device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_peak_mib()
    return {"peak_mib": peak, "delta_mib": peak - base}


def _sub(args: argparse.Namespace, extra: list[str]) -> str:
    cmd = [sys.executable, os.path.abspath(__file__), "--image", str(args.image), "--runs",
           str(args.runs), "--warmup", str(args.warmup), "--top-k", str(args.top_k),
           "--threads", str(args.threads), "--device", args.device, "--tasks", *args.tasks, *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["n", "s"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--image", type=int, default=640)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--_time", nargs=2, help=argparse.SUPPRESS)  # size batch
    ap.add_argument("--_mem", nargs=3, help=argparse.SUPPRESS)   # size task batch
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args._time:
        rows = time_size(args._time[0], int(args._time[1]), args.image, args.runs, args.warmup,
                         args.top_k, args.tasks, args.device)
        print(json.dumps(rows))
        return 0
    if args._mem:
        print(json.dumps(memory_one(args._mem[0], args._mem[1], int(args._mem[2]), args.image,
                                    args.top_k, args.device)))
        return 0

    # One thread on CPU: process CPU time is the compute cost. On CUDA only wall time means anything.
    latency_key = "deploy_ms" if args.device.startswith("cuda") else "deploy_cpu_ms"
    fwd_key = latency_key.replace("deploy", "fwd")
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            got = json.loads(_sub(args, ["--_time", size, str(batch)]))
            for row in got:
                if not args.no_memory:
                    row.update(json.loads(_sub(args, ["--_mem", size, row["task"], str(batch)])))
                print(f"# {size} b{batch} {row['task']}: deploy {row[latency_key]:.1f} ms",
                      file=sys.stderr, flush=True)
            rows.extend(got)

    timer = "wall" if args.device.startswith("cuda") else "cpu"
    print(f"{args.device}, {args.threads} thread(s), {args.image}x{args.image}, top_k={args.top_k}, "
          f"median of {args.runs}; seg/det ratios of {timer} ms")
    print("| size | batch | task | params M | GMAC | fwd ms wall / cpu | deploy ms wall / cpu "
          "| peak MiB | +MiB | seg/det deploy | seg/det fwd | seg/det MAC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = ratio_fwd = ratio_mac = ""
        det = next((d for d in rows if d["task"] == "detect" and d["size"] == r["size"]
                    and d["batch"] == r["batch"]), None)
        if r["task"] != "detect" and det is not None:
            ratio = f"{r[latency_key] / det[latency_key]:.2f}"
            ratio_fwd = f"{r[fwd_key] / det[fwd_key]:.2f}"
            ratio_mac = f"{r['gmac'] / det['gmac']:.2f}"
        mem = (f"{r['peak_mib']:.0f} | {r['delta_mib']:.0f}" if "peak_mib" in r else " | ")
        print(f"| {r['size']} | {r['batch']} | {r['task']} | {r['params_m']:.2f} | {r['gmac']:.1f} | "
              f"{r['fwd_ms']:.1f} / {r['fwd_cpu_ms']:.0f} | {r['deploy_ms']:.1f} / "
              f"{r['deploy_cpu_ms']:.0f} | {mem} | {ratio} | {ratio_fwd} | {ratio_mac} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(main())
