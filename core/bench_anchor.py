"""The YOLO26-seg S anchor for `dfine bench`: find its venv, run it on the timed frames, and turn
its numbers into "ours / YOLO26" ratio lines.

Ultralytics cannot live in our environment (it needs torchvision, which our pinned torch lacks), so
the anchor is ``benchmarks/anchor_yolo26.py --anchor`` run by the python of a separate venv
(recipe in benchmarks/README.md). When that venv is missing, or the anchor fails, the bench still
completes and says why in one line; nothing here raises.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ANCHOR_SCRIPT = REPO / "benchmarks" / "anchor_yolo26.py"
VENV_DIR = REPO / "benchmarks" / ".venv-yolo26"
PYTHON_ENV = "DFINE_YOLO26_PYTHON"  # another interpreter for the anchor (overrides VENV_DIR)
NOT_INSTALLED = "not installed (see benchmarks/README.md)"
TIMEOUT_S = 3600.0
ANCHOR_PRECISIONS = ("fp32", "int8")


@dataclass
class AnchorResult:
    """The anchor's e2e/raw p50 per precision, and what it was (model, versions, conf)."""

    rows: dict[str, dict]
    info: dict


def find_anchor_python() -> Path | None:
    """$DFINE_YOLO26_PYTHON, else the venv's python next to this checkout; None when neither exists."""
    explicit = os.environ.get(PYTHON_ENV)
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for rel in ("bin/python", "Scripts/python.exe"):
        if (VENV_DIR / rel).is_file():
            return VENV_DIR / rel
    return None


def run_anchor(frames: list[np.ndarray], precisions: list[str], work: Path, size: str = "s",
               input_hw: tuple[int, int] = (640, 640), timeout: float = TIMEOUT_S) -> tuple[AnchorResult | None, str]:
    """Time YOLO26-seg of ``size`` at network input ``input_hw`` on ``frames`` (batch 1, the bench's
    protocol) -> (result, "") or (None, reason)."""
    import cv2

    python = find_anchor_python()
    wanted = [p for p in ANCHOR_PRECISIONS if p in precisions]
    if python is None or not ANCHOR_SCRIPT.is_file():
        return None, NOT_INSTALLED
    if not wanted:
        return None, f"no OpenVINO precision to compare (it times {', '.join(ANCHOR_PRECISIONS)})"
    work = Path(work).resolve()
    frames_dir = work / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(frames_dir / f"frame_{i:03d}.png"), f)
    cmd = [str(python), str(ANCHOR_SCRIPT), "--anchor", "--frames", str(frames_dir), "--work",
           str(work / "yolo26"), "--precisions", ",".join(wanted), "--size", size,
           "--input", f"{input_hw[0]}x{input_hw[1]}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {timeout:.0f} s"
    except OSError as exc:
        return None, f"cannot start {python} ({exc})"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"failed (exit {done.returncode}): {tail}"
    return parse_anchor_output(done.stdout, wanted)


def parse_anchor_output(stdout: str, precisions: list[str]) -> tuple[AnchorResult | None, str]:
    """The anchor's last stdout line is one JSON object with ``rows`` per precision."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    try:
        data = json.loads(lines[-1])
        rows = {p: {k: float(data["rows"][p][k]) for k in ("e2e_p50_ms", "raw_p50_ms", "inst_per_img")}
                for p in precisions}
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable output ({type(exc).__name__}: {exc})"
    if any(r["e2e_p50_ms"] <= 0 for r in rows.values()):
        return None, "unreadable output (non-positive latency)"
    return AnchorResult(rows, {k: v for k, v in data.items() if k != "rows"}), ""


def ratio_lines(rows: list[dict], result: AnchorResult | None, reason: str) -> list[str]:
    """'YOLO26 anchor: ...' lines: ours (OpenVINO, batch 1) / YOLO26 e2e p50 per precision."""
    if result is None:
        return [f"YOLO26 anchor: {reason}"]
    info = result.info
    lines = [f"YOLO26 anchor: {info.get('model', 'yolo26s-seg')} (random weights, Ultralytics "
             f"{info.get('ultralytics', '?')}, OpenVINO {info.get('openvino', '?')}), input "
             f"{info.get('input', '?')}, same frames, batch 1"]
    for prec, theirs in result.rows.items():
        ours = next((r for r in rows if r["model"] == f"openvino {prec}" and r["batch"] == 1), None)
        text = (f"  {prec}: YOLO26 e2e p50 {theirs['e2e_p50_ms']:.1f} ms (raw {theirs['raw_p50_ms']:.1f} ms)")
        if ours is None:
            lines.append(text + f"; ours: no openvino {prec} batch-1 row to compare")
        else:
            lines.append(text + f"; ours {ours['e2e_p50_ms']:.1f} ms -> ours/YOLO26 "
                         f"{ours['e2e_p50_ms'] / theirs['e2e_p50_ms']:.2f}x")
    return lines


def anchor_report(rows: list[dict], frames: list[np.ndarray], args, meta=None) -> list[str]:
    """What `dfine bench` prints after its table (``args``: its parsed arguments; ``meta``: the timed
    model's ModelMeta, whose size and input the anchor matches, S at 640x640 when unknown); the
    anchor's numbers also go to <out>/anchor_yolo26.json."""
    if getattr(args, "no_anchor", False):
        return ["YOLO26 anchor: skipped (--no-anchor)"]
    formats = [f.strip() for f in args.formats.split(",")]
    precisions = [p.strip() for p in args.precision.split(",")] if "openvino" in formats else []
    size = getattr(meta, "model_size", "") or "s"
    hw = tuple(getattr(meta, "image_size", (640, 640)))
    result, reason = run_anchor(frames, precisions, Path(args.out) / "anchor_yolo26", size if size in ("n", "s", "m", "l", "x") else "s", hw)
    if result is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "anchor_yolo26.json").write_text(json.dumps({"rows": result.rows, **result.info}, indent=2))
    return ratio_lines(rows, result, reason)
