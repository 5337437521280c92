"""Training throughput: images/s and peak memory of one full training step
(forward + loss + backward + grad clip + AdamW step + EMA) for D-FINE-seg sizes, batch 4, 640x640.

Each (implementation, size) runs in a fresh process so peak memory is its own. Inputs are the
same for every implementation: demo images (core.demo) resized to the input size with their
rasterised instance masks. Optionally the upstream framework (`pip install dfine-seg`, ArgoHA/
D-FINE-seg) is measured side by side when ``--upstream-python`` points at an interpreter that
can import ``dfine_seg``.

    python benchmarks/train_throughput.py --sizes n s --device cpu --steps 3
    python benchmarks/train_throughput.py --upstream-python /tmp/upstream-venv/bin/python
    python benchmarks/train_throughput.py --sizes n --device cpu --amp   # bf16 on AVX512-BF16/AMX CPUs
    python benchmarks/train_throughput.py --sizes n --device cpu --levers channels_last   # or compile

Peak memory: CUDA max_memory_allocated on GPU; peak RSS of the process on CPU (and the RSS
before the model was built, so the model's share is visible).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


LEVERS = ("channels_last", "compile")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def make_batch(batch: int, image_size: int):
    """Demo images + targets in the D-FINE format (cxcywh normalised boxes, uint8 masks)."""
    import numpy as np
    import torch

    from core.data.augment import Sample, eval_transform
    from core.data.dataset import image_to_tensor, rasterize_instance, sample_to_target
    from core.demo import HEIGHT, WIDTH, render_demo_image

    images, targets = [], []
    for i in range(batch):
        bgr, instances = render_demo_image(i)
        masks = np.stack([rasterize_instance(inst, WIDTH, HEIGHT) for inst in instances])
        labels = np.array([inst.class_id for inst in instances], np.int64)
        s = eval_transform(Sample(bgr[:, :, ::-1].copy(), masks, labels), image_size)
        images.append(image_to_tensor(s.image))
        targets.append(sample_to_target(s, with_masks=True))
    return torch.stack(images), targets


def _ours(size: str, num_classes: int, image_size: int, device, mask_head: str = "paper"):
    from core.loss.criterion import DFineCriterion, total_loss
    from core.model import build_model
    from core.train.optim import build_optimizer

    model = build_model(size, num_classes, "segment", image_size, mask_head=mask_head).to(device).train()
    crit = DFineCriterion(num_classes, "segment")
    opt = build_optimizer(model, 2.5e-4, 1.25e-5, 1.25e-4)
    return model, lambda out, tg: total_loss(crit(out, tg)), opt


def _upstream(size: str, num_classes: int, image_size: int, device, mask_head: str = "paper"):
    try:
        import torchvision  # noqa: F401
    except Exception:  # its pin does not import with our torch wheel: the inert stand-in (learning_parity)
        sys.path.insert(0, str(REPO / "benchmarks"))
        from learning_parity import install_upstream_imports

        install_upstream_imports()
    from dfine_seg.model.dfine import build_loss, build_model, build_optimizer

    model = build_model(size, num_classes, enable_mask_head=True, device=device,
                        img_size=[image_size, image_size]).train()
    crit = build_loss(size, num_classes, label_smoothing=0.0, enable_mask_head=True)
    opt = build_optimizer(model, lr=2.5e-4, backbone_lr=1.25e-5, betas=(0.9, 0.999), weight_decay=1.25e-4,
                          base_lr=2.5e-4)
    return model, lambda out, tg: sum(crit(out, tg).values()), opt


def worker(impl: str, size: str, image_size: int, batch: int, steps: int, warmup: int, device_name: str,
           amp_on: bool = False, levers: tuple[str, ...] = (), mask_head: str = "paper") -> dict:
    import torch

    from core.train.ema import ModelEMA

    torch.manual_seed(0)
    device = torch.device(device_name)
    rss_before = _rss_mb()
    images, targets = make_batch(batch, image_size)
    images = images.to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    build = _ours if impl == "ours" else _upstream
    model, loss_fn, opt = build(size, 3, image_size, device, mask_head)
    if "channels_last" in levers:  # NHWC activations: oneDNN's preferred layout for CPU convolutions
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if "compile" in levers else model
    ema = ModelEMA(model, 0.9999, 2000)
    from core.train.trainer import amp_dtype

    # the trainer's policy (bf16/fp16 on CUDA, bf16 on CPUs with native bf16), same for both impls
    dtype = amp_dtype(device, amp_on or device.type == "cuda")
    amp = dtype is not None

    def step() -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            out = forward(images, targets=targets)
        with torch.autocast(device.type, enabled=False):
            loss = loss_fn(out, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model)
        return float(loss.detach())

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    peak = (torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else _rss_mb()
    return {"impl": impl if impl == "upstream" else f"ours ({mask_head} head)", "size": size, "image_size": image_size, "batch": batch, "device": device_name,
            "steps": steps, "step_s_median": median, "img_per_s": batch / median, "peak_mem_mb": peak,
            "rss_before_model_mb": rss_before if device.type != "cuda" else None,
            "threads": torch.get_num_threads(), "amp": (str(dtype).replace("torch.", "") if amp else "fp32")
            + "".join(f"+{lever}" for lever in levers)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["n", "s"])
    p.add_argument("--image-size", type=int, default=640)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES", "") != "" else "cpu")
    p.add_argument("--upstream-python", help="interpreter with dfine_seg importable (side-by-side ratio)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--levers", default="", help="comma-separated CPU-training levers, applied to every "
                   "implementation run: channels_last (NHWC model + input), compile (torch.compile of the "
                   "model's forward)")
    p.add_argument("--amp", action="store_true",
                   help="autocast as the trainer does on this device (CPU: bf16 where native); CUDA always uses it")
    p.add_argument("--mask-head", default="paper", help="our mask head preset(s), comma-separated "
                   "(core.model.builder.MASK_HEADS; narrow = upstream's N widths; upstream keeps its own: 128-wide at N, 256 from S)")
    p.add_argument("--worker", choices=["ours", "upstream"], help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    unknown = sorted(set(x for x in a.levers.split(",") if x) - set(LEVERS))
    if unknown:
        p.error(f"--levers: unknown {', '.join(unknown)} (choose from {', '.join(LEVERS)})")
    if not a.worker:  # checked in the parent only: the upstream worker's venv cannot import core.model
        from core.model.builder import MASK_HEADS

        bad_heads = sorted(set(a.mask_head.split(",")) - set(MASK_HEADS))
        if bad_heads:
            p.error(f"--mask-head: unknown {', '.join(bad_heads)} (choose from {', '.join(MASK_HEADS)})")
    if a.worker:
        print(json.dumps(worker(a.worker, a.size, a.image_size, a.batch, a.steps, a.warmup, a.device, a.amp,
                                tuple(x for x in a.levers.split(",") if x), a.mask_head)))
        return 0
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runs = [("ours", sys.executable, head) for head in a.mask_head.split(",")]
    runs += [("upstream", a.upstream_python, "paper")] if a.upstream_python else []
    results = []
    for size in a.sizes:
        for impl, python, head in runs:
            cmd = [python, str(Path(__file__).resolve()), "--worker", impl, "--size", size, "--image-size",
                   str(a.image_size), "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup),
                   "--device", a.device, "--levers", a.levers, "--mask-head", head] + (["--amp"] if a.amp else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
            if proc.returncode != 0:
                print(f"{impl} {size}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(res)
            print(f"{res['impl']:>8} {size} ({res['amp']}): {res['img_per_s']:.2f} img/s  step {res['step_s_median']:.2f} s  "
                  f"peak {res['peak_mem_mb']:.0f} MB", flush=True)
    print("\n| size | impl | precision | img/s | step (s) | peak mem (MB) |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['size']} | {r['impl']} | {r['amp']} | {r['img_per_s']:.2f} | {r['step_s_median']:.2f} "
              f"| {r['peak_mem_mb']:.0f} |")
    for size in a.sizes:
        up = [r for r in results if r["size"] == size and r["impl"] == "upstream"]
        for o in (r for r in results if r["size"] == size and r["impl"] != "upstream"):
            if up:
                print(f"size {size}: {o['impl']}/upstream img/s ratio {o['img_per_s'] / up[0]['img_per_s']:.2f}, "
                      f"peak memory ratio {o['peak_mem_mb'] / up[0]['peak_mem_mb']:.2f}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
