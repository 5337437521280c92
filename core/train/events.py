"""Training events: one JSON object per line, the GUI's (and any script's) view of a run.

Every event has ``event`` (its kind) and ``time`` (unix seconds). The models are in
``core.messages`` (the one schema; ``emit`` validates every record). Kinds and their fields:

- ``start``: run, run_dir, project, task, size, image_size, epochs, steps_per_epoch, total_steps,
  batch_size (global), device, world_size, num_train, num_val, classes, resumed (bool), epoch, step
- ``step``: epoch, step (optimizer steps done, global), epoch_step, steps_per_epoch, total_steps,
  loss, losses (``core.messages.TrainLosses``: loss_vfl | loss_mal, loss_bbox, loss_giou, loss_fgl,
  loss_ddf, loss_mask_bce, loss_mask_dice; those the run computes), lr (main group), lr_backbone,
  img_per_s, eta_s
- ``epoch``: epoch, step, loss (mean over the epoch), time_s
- ``metrics``: epoch, step, metrics (``core.messages.TrainMetrics``: f1, precision, recall, iou,
  best_threshold, box_map, box_map50, mask_map, mask_map50), best_metric, value, is_best
- ``checkpoint``: kind ("last" | "best"), path, epoch, step
- ``warning``: message (e.g. a skipped unreadable sample, named)
- ``done``: epochs_done, step, stopped ("finished" | "signal" | "time"), best_metric, best_value, best_epoch
  ("time": a ``train.time_budget_min`` run ended mid-epoch to finish on time; it validated and saved first)
- ``error``: message, type

Written to ``runs/<name>/events.jsonl`` always and to stdout with ``--events -``. Only rank 0
writes. A ``warning`` is also one human line on stderr (``dfine train: warning: ...``): a skipped
image must reach the person at the terminal, not only a file they may never open. ``metrics.csv`` gets one
row per validation (epoch, step, then ``core.messages.TRAIN_METRIC_NAMES``); plots are redrawn after each
epoch (``metrics.png``: ``TRAIN_METRICS_PLOTTED``, mAP included; ``losses.png``: the total and every
``TRAIN_LOSS_NAMES`` loss of the run, over all its attempts).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core.messages import (
    TRAIN_LOSS_NAMES,
    TRAIN_METRIC_NAMES,
    TRAIN_METRICS_PLOTTED,
    TrainMetrics,
    TrainMetricsEvent,
    TrainStartEvent,
    TrainStepEvent,
    event_line,
    make_event,
    parse_event,
    plain,
)

TRAIN_KINDS = ("start", "step", "epoch", "metrics", "checkpoint", "warning", "done", "error")

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class EventLog:
    """Append-only JSON-lines log (+ optional stream). ``enabled=False`` on non-zero ranks."""

    def __init__(self, run_dir: Path, stream: IO[str] | None = None, enabled: bool = True,
                 notices: IO[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.stream = stream
        self.notices = notices  # where warnings go as human lines (stderr; None: events only)
        self.enabled = enabled
        self.sinks: list[Any] = []  # extra consumers with .log(record) (e.g. WandbSink)
        self._file: IO[str] | None = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.run_dir / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - held for the run

    def emit(self, kind: str, /, **fields: Any) -> dict:
        """Validate against ``core.messages`` (a wrong field is a bug: ValueError) and write."""
        if kind not in TRAIN_KINDS:
            raise ValueError(f"unknown training event kind {kind!r}")
        record = make_event(kind, **fields)
        if not self.enabled:
            return record
        line = event_line(record)
        assert self._file is not None
        self._file.write(line + "\n")
        self._file.flush()
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        for sink in self.sinks:
            sink.log(record)
        if kind == "warning" and self.notices is not None:
            self._notice(f"dfine train: warning: {record['message']}")
        return record

    def _notice(self, text: str) -> None:
        """One line on the notices stream, above a running tqdm bar instead of through it."""
        from tqdm import tqdm

        tqdm.write(" ".join(text.split()), file=self.notices)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []
        if self._file is not None:
            self._file.close()
            self._file = None


class WandbSink:
    """Forwards step losses/lr and validation metrics to Weights & Biases. Optional: created only
    when ``train.wandb`` is on; ``create`` returns None (and the caller warns) if wandb is missing."""

    def __init__(self, run: Any) -> None:
        self.run = run

    @classmethod
    def create(cls, run_name: str, config: dict) -> WandbSink | None:
        try:
            import wandb
        except ImportError:
            return None
        return cls(wandb.init(project="dfine-studio", name=run_name, config=config, resume="allow"))

    def log(self, record: dict) -> None:
        """One event (as written): a step's loss, lr, speed and every loss it has
        (``core.messages.TrainLosses``); a validation's numbers (``TrainMetrics``); nothing else."""
        if record.get("event") not in ("step", "metrics"):
            return
        ev = parse_event(record)
        if isinstance(ev, TrainStepEvent):
            data = {"train/loss": ev.loss, "train/lr": ev.lr, "train/img_per_s": ev.img_per_s}
            data.update({f"train/{k}": v for k, v in ev.losses.present().items()})
            self.run.log(data, step=ev.step)
        elif isinstance(ev, TrainMetricsEvent):
            self.run.log({f"val/{k}": v for k, v in ev.metrics.model_dump().items() if v is not None}, step=ev.step)

    def close(self) -> None:
        self.run.finish()


def validate_event(record: dict) -> None:
    """Raise ValueError when ``record`` is not a valid event (``core.messages.parse_event``)."""
    parse_event(record)


def read_events(path: Path) -> list[dict]:
    """All complete events of a run (a torn last line after a crash is ignored)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def append_metrics_csv(path: Path, epoch: int, step: int, metrics: TrainMetrics) -> None:
    """One row per validation: epoch, step, then every ``TRAIN_METRIC_NAMES`` column (empty when
    the value is unknown, e.g. mask AP of a detection run)."""
    path = Path(path)
    fields = ["epoch", "step", *TRAIN_METRIC_NAMES]
    rows: list[dict[str, Any]] = []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields += [k for k in reader.fieldnames or [] if k not in fields]  # a file of an older version
            rows = list(reader)
    rows.append({"epoch": epoch, "step": step, **plain(metrics.model_dump())})
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


@dataclass
class RunHistory:
    """What a run did, as one history over all its attempts (a start, cancels, resumes): the
    ``step`` and ``metrics`` events in step order."""

    steps: list[TrainStepEvent] = field(default_factory=list)
    metrics: list[TrainMetricsEvent] = field(default_factory=list)


def run_history(events: list[dict]) -> RunHistory:
    """The history of a run's events (``events.jsonl`` holds every attempt of a resumed run, one
    after the other). Each ``start`` at step s cuts what an earlier attempt logged after s: a run
    killed after its last checkpoint is resumed from that checkpoint and does those steps again.
    Lines that are not valid events (a file of an older version) are left out."""
    history = RunHistory()
    for record in events:
        kind = record.get("event") if isinstance(record, dict) else None
        if kind not in ("start", "step", "metrics"):
            continue
        try:
            ev = parse_event(record)
        except ValueError:
            continue
        if isinstance(ev, TrainStartEvent):
            history.steps = [s for s in history.steps if s.step <= ev.step]
            history.metrics = [m for m in history.metrics if m.step <= ev.step]
        elif isinstance(ev, TrainStepEvent):
            history.steps.append(ev)
        elif isinstance(ev, TrainMetricsEvent):
            history.metrics.append(ev)
    return history


def read_run_history(run_dir: Path) -> RunHistory:
    """:func:`run_history` of ``run_dir/events.jsonl`` (empty when there is none)."""
    path = Path(run_dir) / "events.jsonl"
    try:
        return run_history(read_events(path))
    except (OSError, UnicodeDecodeError):
        return RunHistory()


def metric_series(events: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """The validation curves of a run's events: {name: (epochs, values)} for each
    ``TRAIN_METRICS_PLOTTED`` name that has a value (``metrics.png`` draws these)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for ev in run_history(events).metrics:
        for name in TRAIN_METRICS_PLOTTED:
            value = getattr(ev.metrics, name)
            if value is not None:
                xs, ys = series.setdefault(name, ([], []))
                xs.append(ev.epoch)
                ys.append(value)
    return series


def _nan_if_none(v: float | None) -> float:
    """A missing value as a gap in the plot (what matplotlib makes of None too)."""
    return float("nan") if v is None else v


def _save(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_series(steps: list[TrainStepEvent]) -> dict[str, tuple[list[int], list[float]]]:
    """The loss curves of a run's steps: {name: (steps, values)} for the total ``loss`` and each
    ``TRAIN_LOSS_NAMES`` loss the run has, in that order (``losses.png`` draws these)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for ev in steps:
        for name, value in (("loss", ev.loss), *ev.losses.present().items()):
            if value is not None:
                xs, ys = series.setdefault(name, ([], []))
                xs.append(ev.step)
                ys.append(value)
    return {name: series[name] for name in ("loss", *TRAIN_LOSS_NAMES) if name in series}


def plot_run(run_dir: Path) -> list[Path]:
    """losses.png, lr.png, metrics.png from events.jsonl (matplotlib Agg, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    events = read_events(run_dir / "events.jsonl")
    steps = run_history(events).steps  # every attempt of a resumed run, in step order
    curves = metric_series(events)
    written: list[Path] = []
    if steps:
        xs = [e.step for e in steps]
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, (sx, sy) in loss_series(steps).items():
            ax.plot(sx, sy, label=name, lw=1.5 if name == "loss" else 0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        _save(fig, run_dir / "losses.png")
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot(xs, [e.lr for e in steps], label="lr")
        if any(e.lr_backbone is not None for e in steps):
            ax.plot(xs, [_nan_if_none(e.lr_backbone) for e in steps], label="backbone lr")
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
        _save(fig, run_dir / "lr.png")
        written += [run_dir / "losses.png", run_dir / "lr.png"]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, (xs, ys) in curves.items():
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.legend()
        ax.grid(alpha=0.3)
        _save(fig, run_dir / "metrics.png")
        written.append(run_dir / "metrics.png")
    return written


def stdout_stream() -> IO[str]:
    return sys.stdout
