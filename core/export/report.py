"""exports/<name>/report.json: per format x precision — file size, end-to-end and raw latency
on this machine (the benchmark's protocol), val F1/P/R/IoU and the F1 difference to torch."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.export.pipeline import ExportResult, Progress, no_progress
from core.infer.meta import ModelMeta
from core.infer.timing import time_predictor
from core.eval.validate import validate_predictor
from core.messages import ExportReport


def model_size_bytes(path: Path) -> int:
    """Size on disk; an OpenVINO IR counts its .xml and .bin."""
    path = Path(path)
    if path.suffix == ".xml":
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size
    return path.stat().st_size


def build_report(result: ExportResult, model, meta: ModelMeta, val_items: list, timing_images: list[np.ndarray],
                 conf: float = 0.5, device: str = "cpu", log: Callable[[str], None] = print,
                 progress: Progress = no_progress) -> dict:
    """Measure every exported model against the torch model and write report.json (the shape is
    ``core.messages.ExportReport``; it is validated before writing)."""
    from core.infer.predictor import Predictor

    entries = [("torch", "fp32", None)] + [(b, p, f) for (b, p), f in result.files.items()]
    rows = []
    torch_f1: float | None = None
    for i, (backend, precision, file) in enumerate(entries):
        log(f"measuring {backend} {precision} ...")
        progress("measure", i, len(entries), f"measuring {backend} {precision}")
        predictor = (Predictor.from_module(model, meta, device=device, conf=conf) if file is None
                     else Predictor.load(file, device=device, conf=conf))
        row: dict = {"format": backend, "precision": precision,
                     "file": str(Path(file).relative_to(result.folder)) if file else None,
                     "size_mb": round(model_size_bytes(file) / 2**20, 2) if file else None}
        if timing_images:
            s = time_predictor(predictor, timing_images, batch_size=1).summary()
            row.update({k: round(s[k], 2) for k in ("e2e_p50_ms", "e2e_p95_ms", "raw_p50_ms", "raw_p95_ms")})
        if val_items:
            metrics = validate_predictor(predictor, val_items, conf).headline()
            row.update({f"val_{k}": round(getattr(metrics, k), 4) for k in ("f1", "precision", "recall", "iou")})
            if backend == "torch":
                torch_f1 = metrics.f1
            row["f1_delta_vs_torch"] = (round(metrics.f1 - torch_f1, 4)
                                        if torch_f1 is not None and metrics.f1 is not None else None)
        rows.append(row)
    report = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "device": device},
        "model": {"size": meta.model_size, "task": meta.task, "image_size": list(meta.image_size),
                  "classes": meta.class_names, "source": meta.source, "mask_head": meta.mask_head or None},
        "conf": conf, "val_images": len(val_items), "timed_images": len(timing_images),
        "int8": result.int8_info, "results": rows,
    }
    progress("report", 0, 1, "writing report.json")
    report = ExportReport.model_validate(report).model_dump(mode="json", exclude_unset=True)  # the same keys
    (result.folder / "report.json").write_text(json.dumps(report, indent=2))
    return report


def report_table(report: dict) -> str:
    """The report as a small text table for the terminal."""
    head = f"{'format':<12} {'prec':<5} {'MB':>7} {'e2e ms':>8} {'raw ms':>8} {'F1':>6} {'dF1':>7}"
    lines = [head]
    for r in report["results"]:
        def f(key: str, fmt: str, row: dict = r) -> str:
            v = row.get(key)
            return format(v, fmt) if v is not None else "-"
        lines.append(f"{r['format']:<12} {r['precision']:<5} {f('size_mb', '7.1f'):>7} {f('e2e_p50_ms', '8.1f'):>8} "
                     f"{f('raw_p50_ms', '8.1f'):>8} {f('val_f1', '6.3f'):>6} {f('f1_delta_vs_torch', '+7.3f'):>7}")
    return "\n".join(lines)
