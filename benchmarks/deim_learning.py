"""Learning per step and per minute: today's recipe (`train.matching: dfine`) against DEIM
(`train.matching: deim`), the rest of a project's config as is, several seeds, all runs concurrently
with one thread each (issue #36).

    PYTHONPATH=$PWD .venv/bin/python -m core demo /tmp/demo
    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/deim_learning.py --project /tmp/demo \
        --epochs 30 --seeds 0 1 --out /tmp/deim_bench

Each (recipe, seed) trains the real trainer (`dfine train`) in its own copy of the project (images,
labels, splits, project.yaml), with ``--set train.epochs=E train.seed=S train.workers=0`` (data
loading inside the step: on one thread its cost belongs to the step) plus the recipe's settings.
Same seed = same initial weights and the same data order for both recipes; DEIM then composes some
samples as mosaics and mixes some batches, which is its point. Validation is the trainer's own
(every ``train.val_every`` epochs on the project's val split: mask mAP50 and F1 at conf 0.5 by the
paper's rules). The report is a table per validation step, seed by seed, the means, and the
difference DEIM - today against the seed-to-seed noise (``learning_parity.difference_vs_noise``),
plus the mean step time of each run (all runs share the machine, so read those as ratios).
``--merge DIR...`` re-reads earlier result folders and reports them together.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

RECIPES = {"dfine": [], "deim": ["train.matching=deim"]}


def copy_project(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("images", "labels", "splits"):
        shutil.copytree(src / name, dst / name)
    shutil.copy2(src / "project.yaml", dst / "project.yaml")


def launch(project: Path, out: Path, recipe: str, seed: int, epochs: int, extra: list[str], threads: int):
    run_root = out / "projects" / f"{recipe}_s{seed}"
    copy_project(project, run_root)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    sets = [f"train.epochs={epochs}", "train.time_budget_min=null", f"train.seed={seed}", "train.workers=0",
            *RECIPES[recipe], *extra]
    cmd = [sys.executable, "-m", "core", "train", str(run_root), "--name", "bench", "--device", "cpu",
           "--no-progress", "--set", *sets]
    log = open(out / f"{recipe}_s{seed}.log", "w")  # noqa: SIM115 - closed by the caller
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log, run_root


def collect(run_root: Path, recipe: str, seed: int) -> dict:
    run = run_root / "runs" / "bench"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    steps = [e for e in events if e["event"] == "step"]
    evals = {}
    for e in events:
        if e["event"] == "metrics":
            m = e["metrics"]
            evals[e["step"]] = {"mask_map50": m.get("mask_map50"), "mask_f1": m.get("f1"),
                                "box_map50": m.get("box_map50"), "time": e["time"]}
    start = next(e for e in events if e["event"] == "start")
    step_s = [4 / e["img_per_s"] for e in steps if e.get("img_per_s")]  # batch 4 (the demo recipe)
    return {"recipe": recipe, "seed": seed, "evals": evals, "start_time": start["time"],
            "batch_size": start["batch_size"], "steps": len(steps),
            "step_s_median": statistics.median(step_s) if step_s else None,
            "first_loss": steps[0]["loss"] if steps else None, "last_loss": steps[-1]["loss"] if steps else None}


def report(results: list[dict]) -> str:
    from learning_parity import noise_row

    seeds = sorted({r["seed"] for r in results})
    recipes = list(dict.fromkeys(r["recipe"] for r in results))
    by = {(r["recipe"], r["seed"]): r for r in results}
    eval_steps = sorted({int(s) for r in results for s in r["evals"]})
    lines = ["| step | metric | " + " | ".join(f"{rc} s{s}" for rc in recipes for s in seeds)
             + " | " + " | ".join(f"{rc} mean" for rc in recipes) + " |",
             "|---|---|" + "---|" * (len(recipes) * len(seeds) + len(recipes))]
    for step in eval_steps:
        for metric in ("mask_map50", "mask_f1"):
            cells, means = [], []
            for rc in recipes:
                vals = []
                for s in seeds:
                    ev = by.get((rc, s), {}).get("evals", {}).get(step) or by.get((rc, s), {}).get("evals", {}).get(str(step))
                    cells.append(f"{ev[metric]:.3f}" if ev else "-")
                    if ev:
                        vals.append(ev[metric])
                means.append(f"{statistics.fmean(vals):.3f}" if vals else "-")
            lines.append(f"| {step} | {metric} | " + " | ".join(cells + means) + " |")
    if "dfine" in recipes:
        lines += ["", "| run | step | metric | minus dfine (mean) | SE from the seeds | verdict (±2 SE) |",
                  "|---|---|---|---|---|---|"]
        for rc in [r for r in recipes if r != "dfine"]:
            for step in eval_steps:
                for metric in ("mask_map50", "mask_f1"):
                    vals = []
                    for who in (rc, "dfine"):
                        row = []
                        for s in seeds:
                            evs = by.get((who, s), {}).get("evals", {})
                            ev = evs.get(step) or evs.get(str(step))
                            if ev:
                                row.append(ev[metric])
                        vals.append(row)
                    row = noise_row(rc, step, metric, *vals)
                    if row is not None:
                        lines.append(row)
    lines += ["", "| run | seed | steps | step s (median, shared machine) | first loss | last loss |",
              "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['recipe']} | {r['seed']} | {r['steps']} | {r['step_s_median']:.2f} | "
                     f"{r['first_loss']:.2f} | {r['last_loss']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--set", dest="extra", nargs="*", default=[], help="more overrides for every run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--merge", type=Path, nargs="*", help="report earlier --out folders together")
    args = ap.parse_args()
    if args.merge:
        results = [r for d in args.merge for r in json.loads((d / "results.json").read_text())]
        print(report(results))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = []
    t0 = time.time()
    for seed in args.seeds:
        for recipe in args.recipes:
            proc, log, root = launch(args.project, args.out, recipe, seed, args.epochs, args.extra, args.threads)
            jobs.append((proc, log, root, recipe, seed))
    results = []
    for proc, log, root, recipe, seed in jobs:
        rc = proc.wait()
        log.close()
        if rc != 0:
            print(f"{recipe} seed {seed}: exit {rc}, see {args.out}/{recipe}_s{seed}.log", file=sys.stderr)
            continue
        results.append(collect(root, recipe, seed))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    text = report(results)
    (args.out / "report.md").write_text(text + "\n")
    print(text)
    print(f"\nwall time {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
