"""The one validated project config (``project.yaml``), plus ``key=value`` overrides.

Why pydantic with ``extra="forbid"``: a typo (``epoch: 5``) must not silently train
with the default. Every problem becomes a :class:`ConfigError` that names the file,
the line, the key path and what is allowed (``project.yaml:31: train.epochs: must be
> 0, got -3``; ``train.epoch: unknown key, did you mean 'epochs'?``), never a traceback.
Defaults follow the official D-FINE configs (AdamW lr 2.5e-4, backbone lr 1.25e-5,
weight decay 1.25e-4, EMA 0.9999 with 2000 warm-up steps, grad clip 0.1) and the
D-FINE-seg paper's loss weights. ``projects_template/project.yaml`` documents each key.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.bounded_input import compose_yaml, read_regular_bytes
from core.errors import ConfigError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

CONFIG_FILE = "project.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


NUM_QUERIES = 300  # core.model.builder.SizeConfig.num_queries


class ModelConfig(_Section):
    size: Literal["n", "s", "m", "l", "x"] = "s"
    image_size: int = Field(640, ge=64, le=4096)
    mask_head: Literal["paper", "lite", "lite_s8", "narrow", "cpu"] = "paper"  # segment only; see the template
    weights: str | None = None  # a checkpoint to start from: a path or a name (dfine_s_coco)
    backbone_weights: str | None = None  # HGNetV2 ImageNet weights: a path or a name (hgnetv2_b0)
    weights_dir: str | None = None  # weights cache (None: $DFINE_WEIGHTS_DIR or the platform cache)
    download_weights: bool = True  # fetch a named checkpoint missing from the cache

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32, got {v}")
        return v

    @model_validator(mode="after")
    def _enough_positions(self) -> ModelConfig:
        # the decoder picks its 300 queries among the encoder's feature positions (strides 16/32 for
        # size n, 8/16/32 otherwise; core.model.builder.SIZE_CONFIGS): fewer positions fail in train
        strides = (16, 32) if self.size == "n" else (8, 16, 32)
        positions = sum((self.image_size // s) ** 2 for s in strides)
        if positions < NUM_QUERIES:
            smallest = next(v for v in range(32, 4097, 32) if sum((v // s) ** 2 for s in strides) >= NUM_QUERIES)
            raise ValueError(f"image_size {self.image_size} is too small for size {self.size}: the model needs "
                             f"at least {smallest} px ({positions} feature positions for {NUM_QUERIES} queries)")
        return self


class LossWeights(_Section):
    vfl: float = Field(1.0, ge=0)
    l1: float = Field(5.0, ge=0)
    giou: float = Field(2.0, ge=0)
    fgl: float = Field(0.15, ge=0)
    ddf: float = Field(1.5, ge=0)
    mask_bce: float = Field(1.0, ge=0)
    mask_dice: float = Field(1.0, ge=0)


DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


BACKBONE_LR_RATIO = 0.05  # official D-FINE: backbone 1.25e-5 vs 2.5e-4


class TrainConfig(_Section):
    epochs: int = Field(50, gt=0)
    # minutes of wall-clock time for the whole run (None: train `epochs`); replaces epochs, see core.train.budget
    time_budget_min: float | None = Field(None, gt=0, le=7 * 24 * 60)
    batch_size: int = Field(8, gt=0)
    lr: float = Field(2.5e-4, gt=0)
    backbone_lr: float | None = Field(None, ge=0)  # None: see backbone_lr_for()
    weight_decay: float = Field(1.25e-4, ge=0)
    warmup_iters: int = Field(2000, ge=0)
    flat_epochs: int | None = Field(None, ge=0)  # None: half of epochs
    no_aug_epochs: int | None = Field(None, ge=0)  # None: max(1, epochs // 10)
    mosaic_prob: float = Field(0.5, ge=0, le=1)
    matching: Literal["dfine", "deim"] = "dfine"  # deim: dense one-to-one composition + MAL (core.train.budget.layout_run)
    mixup_prob: float = Field(0.5, ge=0, le=1)  # matching: deim only
    ema_decay: float = Field(0.9999, gt=0, lt=1)
    ema_warmups: int = Field(2000, ge=0)
    clip_max_norm: float = Field(0.1, ge=0)
    grad_accum: int = Field(1, gt=0)
    amp: bool = True
    workers: int = Field(2, ge=0)
    cache_images: bool = False  # decoded, downscaled images on disk (core.data.image_cache)
    seed: int = 0
    val_every: int = Field(1, gt=0)
    best_metric: Literal["f1", "map", "map50", "iou", "precision", "recall"] = "f1"
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    loss_weights: LossWeights = Field(default_factory=LossWeights)
    wandb: bool = False

    @model_validator(mode="after")
    def _epochs_fit(self) -> TrainConfig:
        # (no_aug_epochs may exceed epochs: "the last N epochs" then means the whole run, so lowering
        # epochs in the GUI never turns a valid project into an error)
        if self.flat_epochs is not None and self.flat_epochs > self.epochs:
            raise ValueError(f"flat_epochs: must be <= epochs ({self.epochs}), got {self.flat_epochs}")
        return self

    @property
    def flat_epochs_resolved(self) -> int:
        return self.epochs // 2 if self.flat_epochs is None else self.flat_epochs

    def backbone_lr_for(self, pretrained: bool) -> float:
        """The backbone's lr: as set, or (null) the official ratio 1.25e-5 / 2.5e-4 of ``lr`` when the
        backbone starts from pretrained weights, and ``lr`` itself from scratch — a random backbone
        trained at 1/20 of the rate barely moves, which is why from-scratch runs looked stuck."""
        if self.backbone_lr is not None:
            return self.backbone_lr
        return self.lr * BACKBONE_LR_RATIO if pretrained else self.lr

    @property
    def no_aug_epochs_resolved(self) -> int:
        n = max(1, self.epochs // 10) if self.no_aug_epochs is None else self.no_aug_epochs
        return min(self.epochs, n)


class SplitConfig(_Section):
    val_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = 0
    group_by: Literal["none", "csv", "pattern"] = "none"
    group_pattern: str = r"^(.+?)_\d+$"  # regex on the image path (posix, no extension)

    @field_validator("group_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc}): {v!r}") from None
        return v


def _drop_retired(data: Any, keys: tuple[str, ...]) -> Any:
    """Keys that never did anything (issue #17) are accepted in old project.yaml files and dropped."""
    if isinstance(data, dict) and any(k in data for k in keys):
        return {k: v for k, v in data.items() if k not in keys}
    return data


ExportFormat = Literal["onnx", "openvino", "tensorrt"]
Precision = Literal["fp32", "fp16", "int8"]


def _default_formats() -> list[ExportFormat]:
    return ["onnx", "openvino"]


def _default_precisions() -> list[Precision]:
    return ["fp32", "fp16", "int8"]


class ExportConfig(_Section):
    formats: list[ExportFormat] = Field(default_factory=_default_formats)
    precisions: list[Precision] = Field(default_factory=_default_precisions)
    calibration_images: int = Field(300, gt=0)
    accuracy_control: bool = False
    max_drop: float = Field(0.01, ge=0, le=1)
    # NNCF overflow fix: "enable" (7-bit weights in every layer) keeps INT8 right on CPUs without VNNI
    int8_overflow_fix: Literal["enable", "first_layer_only", "disable"] = "enable"
    opset: int = Field(17, ge=17)  # the deploy graph needs opset 17 (core.export.onnx_export.MIN_OPSET)
    queries: int | None = Field(None, ge=1, le=NUM_QUERIES)  # decoder queries in the export (None: all)

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        return _drop_retired(data, ("batch_size", "dynamic_batch"))  # exports always have a dynamic batch


class InferConfig(_Section):
    conf: float = Field(0.5, ge=0, le=1)
    device: str = Field("auto", pattern=DEVICE_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        return _drop_retired(data, ("backend",))  # the model file decides the backend (Predictor.load)


class ProjectConfig(_Section):
    classes: list[str]
    task: Literal["segment", "detect"] = "segment"
    image_root: str | None = None  # None: <project>/images; relative paths are to the project folder
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    infer: InferConfig = Field(default_factory=InferConfig)

    @field_validator("classes", mode="before")
    @classmethod
    def _names_as_text(cls, v: Any) -> Any:
        # `- 1` in YAML is an int; a class called "1" is legitimate
        if isinstance(v, list):
            return [str(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x for x in v]
        return v

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, v: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for i, name in enumerate(v):
            if not name.strip():
                raise ValueError(f"class {i} has an empty name")
            problem = class_name_problem(name)
            if problem:
                raise ValueError(f"class name {name!r} {problem}")
            if name in seen:
                raise ValueError(f"duplicate class name {name!r} (classes {seen[name]} and {i})")
            seen[name] = i
        return v


# ----------------------------------------------------------------------------- class names

_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def class_name_problem(name: str) -> str | None:
    """What makes ``name`` unusable as a class name, or None. Why one printable line: names are
    written one per line (classes.txt, data.yaml, CSV reports, the GUI's class list), so a line
    break would turn one class into two on the next read and shift every class id after it."""
    if not name.strip():
        return "is empty"
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        kind = "a line break" if bad in _LINE_BREAKS else "a control character"
        return f"contains {kind} ({bad!r}); a class name must be one line of printable text"
    if name != name.strip():
        return "has leading/trailing spaces"
    return None


def check_class_name(name: str) -> str:
    """``name`` unchanged, or a ConfigError naming it and what is wrong."""
    problem = class_name_problem(name) if isinstance(name, str) else "is not text"
    if problem:
        raise ConfigError(f"class name {name!r} {problem}")
    return name


# ----------------------------------------------------------------------------- loading


def load_config(path: Path | str) -> ProjectConfig:
    """Read and validate ``project.yaml``; every problem is a ConfigError naming file and line."""
    path = Path(path)
    try:
        text = read_regular_bytes(path, 16 << 20).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    return parse_config_text(text, str(path))


def parse_config_text(text: str, source: str = CONFIG_FILE) -> ProjectConfig:

    try:
        # compose once, bounded (aliases, depth, repeated keys), then build the values from it
        node = compose_yaml(text, source)
        loader = yaml.SafeLoader("")
        try:
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping of settings (key: value), got {type(data).__name__}")
    return validate_config(data, source, node)


def validate_config(data: dict, source: str = CONFIG_FILE, node: yaml.Node | None = None) -> ProjectConfig:
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(e, source, node) for e in exc.errors())) from None


def apply_overrides(cfg: ProjectConfig, overrides: list[str], source: str = "command line") -> ProjectConfig:
    """A new config with ``section.key=value`` overrides applied (values parsed as YAML).

    ``apply_overrides(cfg, ["train.epochs=5", "export.formats=[onnx]"])``.
    """
    data = cfg.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r} must look like section.key=value (e.g. train.epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        target: Any = data
        model: type[BaseModel] | None = ProjectConfig
        for depth, part in enumerate(parts):
            if not isinstance(target, dict) or model is None:
                raise ConfigError(f"{source}: {'.'.join(parts[:depth])} is a value, not a section (in {item!r})")
            if part not in model.model_fields:
                raise ConfigError(f"{source}: {'.'.join(parts[: depth + 1])}: unknown key{_suggest(part, model)}")
            if depth == len(parts) - 1:
                target[part] = value
            else:
                target = target[part]
                model = _sub_model(model, part)
    return validate_config(data, source)


# ----------------------------------------------------------------------------- messages


def _sub_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    field = model.model_fields.get(name)
    ann = field.annotation if field else None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = ProjectConfig
    for part in loc:
        if model is None or not isinstance(part, str):
            return None
        model = _sub_model(model, part)
    return model


def _suggest(key: str, model: type[BaseModel]) -> str:
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
    hint = f", did you mean {close[0]!r}?" if close else ""
    return f"{hint} (allowed: {', '.join(allowed)})"


def _loc_str(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the key/value at ``loc`` in the composed YAML (best effort)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if k.value == part:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _describe(err: ErrorDetails, source: str, node: yaml.Node | None) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    line = _line_of(node, loc)
    where = f"{source}:{line}" if line else source
    got = f", got {value!r}" if not isinstance(value, (int, float)) or isinstance(value, bool) else f", got {value}"
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        msg = "unknown key" + (_suggest(str(loc[-1]), parent) if parent else "")
    elif kind == "missing":
        hint = {"classes": " (a list of class names, e.g. classes: [cat, dog])"}.get(_loc_str(loc), "")
        msg = f"required setting is missing{hint}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        msg = f"must be {op} {bound}{got}"
    elif kind in ("literal_error", "enum"):
        msg = f"must be one of {ctx.get('expected', '?')}{got}"
    elif kind.startswith("int_"):
        msg = f"must be a whole number{got}"
    elif kind.startswith("float_"):
        msg = f"must be a number{got}"
    elif kind.startswith("bool_"):
        msg = f"must be true or false{got}"
    elif kind.startswith("string_pattern"):
        allowed = {"device": "auto, cpu, mps, cuda or cuda:N"}.get(str(loc[-1]) if loc else "", ctx.get("pattern"))
        msg = f"must be one of {allowed}{got}"
    elif kind.startswith("string_"):
        msg = f"must be text{got}"
    elif kind in ("list_type",):
        msg = f"must be a list{got}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"must be a section (key: value mapping){got}"
    elif kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
        if ":" in msg.split(" ")[0]:  # model validator naming a sub key, e.g. "flat_epochs: ..."
            sub, _, msg = msg.partition(": ")
            loc = (*loc, sub)
            line = _line_of(node, loc) or line
            where = f"{source}:{line}" if line else source
    else:
        msg = err["msg"] + got
    key = _loc_str(loc) or "(top level)"
    return f"{where}: {key}: {msg}"
