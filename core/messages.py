"""The typed contract for everything that crosses a process or file boundary (issue #17).

Job events are one JSON object per line (``--events -`` on stdout, ``runs/<name>/events.jsonl``);
:data:`Event` is one pydantic union keyed on ``event``. Writers build their lines with
:func:`make_event` (which validates) and readers parse with :func:`parse_event`, so a field
renamed on one side fails a test instead of silently breaking the GUI.

Kinds shared by every long verb (export, weights, later analyze/val/bench):

- ``progress``: verb, stage, progress (0..1) and/or done/total, message
- ``result``: verb, paths {what: path}, message (the last line of a successful run)
- ``cancelled``: verb, message
- ``warning``: message;  ``error``: message, type

Kinds of the trainer (``dfine train``): ``start``, ``step``, ``epoch``, ``metrics``,
``checkpoint``, ``done``. Extra fields are allowed on every event (old readers ignore them);
required fields are what readers rely on.

The export report (``exports/<name>/report.json``) is :class:`ExportReport`; the analysis result
(``review/label_issues.json``) is :class:`LabelIssuesFile`; the person's review decisions
(``review/decisions.json``) are :class:`ReviewDecisionsFile`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from core.bounded_input import loads_json, read_regular_bytes
from core.errors import UserFacingError

__all__ = [
    "Event", "ExportReport", "LabelIssueRecord", "LabelIssuesFile", "ReportRow", "ReviewDecision",
    "ReviewDecisionsFile", "TRAIN_LOSS_NAMES", "TRAIN_METRICS_PLOTTED", "TRAIN_METRIC_NAMES", "TrainLosses",
    "TrainMetrics", "event_line", "make_event", "parse_event", "plain", "read_export_report",
    "read_model_file", "validate_model",
]


def plain(value: Any) -> Any:
    """JSON-safe: floats stay numbers (NaN/inf become null so every line is strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return plain(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    time: float


# ------------------------------------------------------------------ kinds every long verb uses


class ProgressEvent(_Event):
    event: Literal["progress"]
    verb: str
    stage: str
    progress: float | None = Field(None, ge=0.0, le=1.0)  # within the stage
    done: float | None = None
    total: float | None = None
    message: str = ""
    # out-of-fold analysis: which fold (1-based) of how many, and what it is doing
    fold: int | None = None
    folds: int | None = None
    phase: Literal["train", "predict"] | None = None
    # weights download: the file and, on stage "start", the bytes already on disk (a resumed .part)
    name: str | None = None
    resume_from: int | None = None

    def fraction(self) -> float | None:
        """How far the stage is (0..1): ``progress``, else done/total, else unknown."""
        if self.progress is not None:
            return self.progress
        if self.done is not None and self.total:
            return min(1.0, max(0.0, self.done / self.total))
        return None




class CancelledEvent(_Event):
    event: Literal["cancelled"]
    verb: str
    message: str = ""
    name: str | None = None  # ``dfine weights get``: the file and the bytes kept in its .part
    bytes: int | None = None


class WarningEvent(_Event):
    event: Literal["warning"]
    message: str
    about: str | None = None  # what it concerns: "model" (the Review panel shows it), "image", "folds" ...


class ErrorEvent(_Event):
    event: Literal["error"]
    message: str
    type: str = "Error"


# ------------------------------------------------------------------ the trainer's kinds


class TrainStartEvent(_Event):
    event: Literal["start"]
    run: str
    run_dir: str
    epochs: int
    steps_per_epoch: int
    total_steps: int
    device: str
    world_size: int
    num_train: int
    num_val: int
    classes: list[str]
    resumed: bool
    epoch: int
    step: int


class TrainLosses(BaseModel):
    """The losses of one training step (the ``losses`` of a ``step`` event), each summed over the
    decoder layers and denoising groups (``core.loss.criterion.summarize_losses``); the total is the
    event's ``loss``. The names are declared here only: the criterion's weights, the Train panel's
    loss plot, ``losses.png`` and the W&B sink use them. A loss the run does not compute is None
    (absent from the line): ``loss_vfl`` or ``loss_mal`` (``train.cls_loss``), the mask losses for
    segmentation only, ``loss_ddf`` only with a teacher (GO-LSD)."""

    model_config = ConfigDict(extra="forbid")
    loss_vfl: float | None = None
    loss_mal: float | None = None
    loss_bbox: float | None = None
    loss_giou: float | None = None
    loss_fgl: float | None = None
    loss_ddf: float | None = None
    loss_mask_bce: float | None = None
    loss_mask_dice: float | None = None

    def present(self) -> dict[str, float]:
        """The losses this step has, in declared order."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


#: every loss name of a step event's ``losses``, in declared order (the total is ``loss``)
TRAIN_LOSS_NAMES: tuple[str, ...] = tuple(TrainLosses.model_fields)


class TrainStepEvent(_Event):
    event: Literal["step"]
    epoch: int
    step: int
    epoch_step: int
    steps_per_epoch: int
    total_steps: int
    loss: float | None
    losses: TrainLosses
    lr: float
    lr_backbone: float | None = None  # the backbone's group, when it has its own lr
    img_per_s: float | None
    eta_s: float | None


class TrainEpochEvent(_Event):
    event: Literal["epoch"]
    epoch: int
    step: int
    loss: float | None
    time_s: float


class TrainMetrics(BaseModel):
    """One validation of a training run: the ``metrics`` of a ``metrics`` event and one row of
    ``metrics.csv`` (after ``epoch``, ``step``). The names are declared here only: the trainer
    (``core.eval.evaluator.EvalSummary.headline``), the plots, the Train panel and the README use them.

    ``f1``/``precision``/``recall``/``iou`` are at the fixed threshold ``infer.conf`` (mask IoU for
    segmentation), ``best_threshold`` the conf with the best F1, ``box_map``/``box_map50`` the COCO
    box AP (0.5:0.95 and 0.5); ``mask_*`` the same on masks (segmentation only)."""

    model_config = ConfigDict(extra="forbid")
    f1: float | None
    precision: float | None
    recall: float | None
    iou: float | None
    best_threshold: float | None = None
    box_map: float | None = None
    box_map50: float | None = None
    mask_map: float | None = None
    mask_map50: float | None = None

    def headline(self, name: str, task: str) -> float | None:
        """The value of a ``train.best_metric`` name: ``map``/``map50`` are the mask AP for
        segmentation and the box AP for detection; the others are fields."""
        if name in ("map", "map50"):
            name = f"{'mask' if task == 'segment' else 'box'}_{name}"
        return getattr(self, name)


#: every metric name, in the order of ``metrics.csv``'s columns
TRAIN_METRIC_NAMES: tuple[str, ...] = tuple(TrainMetrics.model_fields)
#: the curves drawn in ``metrics.png`` and the Train panel (all in 0..1)
TRAIN_METRICS_PLOTTED: tuple[str, ...] = ("f1", "precision", "recall", "iou", "box_map50", "box_map",
                                          "mask_map50", "mask_map")


class ResultEvent(_Event):
    event: Literal["result"]
    verb: str
    paths: dict[str, str] = Field(default_factory=dict)
    message: str = ""
    metrics: TrainMetrics | None = None  # ``dfine val``: the validation's numbers
    mode: str | None = None  # ``dfine analyze``: out-of-fold / in-sample / given
    name: str | None = None  # ``dfine weights get``: the file, its size and how it was checked
    bytes: int | None = None
    check: str | None = None


class TrainMetricsEvent(_Event):
    event: Literal["metrics"]
    epoch: int
    step: int
    metrics: TrainMetrics
    best_metric: str
    value: float | None
    is_best: bool


class TrainCheckpointEvent(_Event):
    event: Literal["checkpoint"]
    kind: Literal["last", "best"]
    path: str
    epoch: int
    step: int


class TrainDoneEvent(_Event):
    event: Literal["done"]
    epochs_done: int
    step: int
    stopped: Literal["finished", "signal", "time"]  # "time": train.time_budget_min ran out mid-epoch
    best_metric: str
    best_value: float | None
    best_epoch: int | None


Event = Annotated[
    Union[ProgressEvent, ResultEvent, CancelledEvent, WarningEvent, ErrorEvent, TrainStartEvent,  # noqa: UP007
          TrainStepEvent, TrainEpochEvent, TrainMetricsEvent, TrainCheckpointEvent, TrainDoneEvent],
    Field(discriminator="event"),
]
EVENT_KINDS = ("progress", "result", "cancelled", "warning", "error", "start", "step", "epoch", "metrics",
               "checkpoint", "done")
_ADAPTER: TypeAdapter = TypeAdapter(Event)


def parse_event(data: dict | str) -> Any:
    """One event (a dict or a JSON line) as its model; ValueError naming the problem otherwise."""
    try:
        if isinstance(data, str):
            return _ADAPTER.validate_json(data)
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        kind = data.get("event") if isinstance(data, dict) else None
        first = exc.errors()[0]
        loc = list(first["loc"])[1:] if first["loc"] and first["loc"][0] == kind else first["loc"]
        where = ".".join(str(p) for p in loc) or "event"
        raise ValueError(f"bad {kind or ''} event: {where}: {first['msg']}".replace("bad  ", "bad ")) from None


def make_event(kind: str, /, **fields: Any) -> dict:
    """A validated event dict (``event`` and ``time`` added, values made JSON-safe)."""
    record = {"event": kind, "time": round(time.time(), 3), **plain(fields)}
    parse_event(record)
    return record


def event_line(record: dict) -> str:
    """The record as one strict-JSON line (no newline)."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


# ------------------------------------------------------------------ exports/<name>/report.json


class ReportRow(BaseModel):
    """One format x precision (the first row is the torch reference). ``val_*`` are the val metrics
    of ``core.eval.validate`` (f1, precision, recall, iou), the validator training and ``dfine val``
    use too; latency keys only when timed."""

    model_config = ConfigDict(extra="allow")
    format: str
    precision: Literal["fp32", "fp16", "int8"]
    file: str | None = None
    size_mb: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None
    raw_p50_ms: float | None = None
    raw_p95_ms: float | None = None
    val_f1: float | None = None
    val_precision: float | None = None
    val_recall: float | None = None
    val_iou: float | None = None
    f1_delta_vs_torch: float | None = None


class ReportMachine(BaseModel):
    platform: str
    processor: str
    device: str


class ReportModel(BaseModel):
    size: str | None = None
    task: str
    image_size: list[int]
    classes: list[str]
    source: str | None = None
    mask_head: str | None = None  # segment: the mask head the model was trained with


class ExportReport(BaseModel):
    created: str
    machine: ReportMachine
    model: ReportModel
    conf: float
    val_images: int
    timed_images: int
    int8: dict[str, Any] = Field(default_factory=dict)
    results: list[ReportRow]


def read_export_report(path: Path) -> ExportReport:
    """The report of ``path``; ValueError naming the file and the first bad field otherwise."""
    return read_model_file(path, ExportReport, "an export report")


# ------------------------------------------------------------------ review/label_issues.json

IssueKindName = Literal["missing_label", "wrong_class", "bad_geometry", "duplicate_label", "spurious_label",
                        "out_of_image", "degenerate_geometry"]


class LabelIssueRecord(BaseModel):
    """One flagged label (``core.analysis.issues.LabelIssue`` as written). ``box`` is xyxy pixels;
    ``instance`` indexes the image's labels (null for a missing label); ``fix`` is the suggestion
    ({"action": add | set_class | replace_geometry | delete | clip, "class_id", "polygons", "box"})."""

    model_config = ConfigDict(extra="allow")
    kind: IssueKindName
    image: str
    instance: int | None = None
    box: list[float] = Field(min_length=4, max_length=4)
    class_id: int | None = None
    score: float = 0.0
    evidence: dict[str, Any] = Field(default_factory=dict)
    fix: dict[str, Any] = Field(default_factory=dict)
    message: str = ""
    id: str = ""


class LabelIssuesFile(BaseModel):
    """``review/label_issues.json``: what ``dfine analyze`` found, best-ranked first."""

    model_config = ConfigDict(extra="allow")
    version: int = 1
    created: str | None = None
    class_names: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    # where the predictions came from: out-of-fold (K models, each judging images it never saw),
    # in-sample (one model on its own training images) or given (a results file); None = older files
    mode: Literal["out-of-fold", "in-sample", "given"] | None = None
    folds: int | None = None
    calibration: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per class name (find_mistakes)
    issues: list[LabelIssueRecord]


# ------------------------------------------------------------------ review/decisions.json


class ReviewDecision(BaseModel):
    """A person's decision on one flagged item. An accepted fix keeps the image's labels from
    before and after it (``before``/``after``: instance dicts, see ``Instance.to_dict``) so it can
    be undone later, from the CLI or the GUI, as long as the file still holds ``after``."""

    model_config = ConfigDict(extra="allow")
    decision: Literal["accepted", "dismissed"]
    image: str
    kind: str | None = None
    class_id: int | None = None
    box: list[float] | None = None
    issue_id: str = ""
    time: str = ""
    seq: int = 0  # order of decisions (undo takes the newest accepted one)
    change: str = ""
    before: list[dict[str, Any]] | None = None
    after: list[dict[str, Any]] | None = None


class ReviewDecisionsFile(BaseModel):
    """``review/decisions.json``: decisions keyed by ``core.analysis.review.decision_key``."""

    model_config = ConfigDict(extra="allow")
    version: int = 1
    decisions: dict[str, ReviewDecision] = Field(default_factory=dict)


def validate_model(data: Any, model: type[BaseModel], source: Path | str, what: str) -> Any:
    """``data`` (parsed JSON) as ``model``; ValueError naming ``source``, ``what`` it should be and
    the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise ValueError(f"{source}: not {what}: {where}: {first['msg']}") from None


def read_model_file(path: Path, model: type[BaseModel], what: str) -> Any:
    """The JSON file ``path`` as ``model`` (size/depth-bounded parse); ValueError naming the file,
    ``what`` it should be and the problem otherwise."""

    path = Path(path)
    try:
        data = loads_json(read_regular_bytes(path), path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UserFacingError as exc:
        raise ValueError(str(exc)) from None
    except ValueError as exc:  # JSON syntax, bad UTF-8
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return validate_model(data, model, path, what)


def run_with_events(events: bool, body) -> int:
    """A long verb's entry: ``body(emit, out_stream)`` with ``emit(kind, **fields)`` printing events
    on stdout when ``events`` (human output then goes to stderr); a UserFacingError is also sent as
    an ``error`` event before it propagates to the CLI's one-line message."""
    import sys


    def emit(kind: str, **fields: Any) -> None:
        if events:
            print(event_line(make_event(kind, **fields)), flush=True)

    try:
        return body(emit, sys.stderr if events else sys.stdout)
    except UserFacingError as exc:
        emit("error", message=str(exc), type=exc.__class__.__name__)
        raise
