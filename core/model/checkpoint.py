"""Loading weights into a D-FINE(-seg) model: official checkpoints, HGNetV2 backbone files, ours.

Every file is read with `torch.load(..., weights_only=True)`: a checkpoint never runs code.
Accepted layouts (EMA preferred when present):
  * official D-FINE: {"model": sd} and/or {"ema": {"module": sd, ...}}
  * our checkpoints (core.train.trainer): the same keys + class_names, task, config, ...; or a bare sd
  * HGNetV2 ImageNet "stage1" files: a bare HGNetv2 sd ("stem.*", "stages.*") -> backbone only
A class-count mismatch re-initialises only the class heads (+ the denoising class embedding);
a checkpoint made for another model size raises WeightsError naming the size it looks like.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.errors import WeightsError

if TYPE_CHECKING:
    from core.model.network import DFINEModel

__all__ = ["CheckpointInfo", "LoadReport", "checkpoint_info", "extract_state_dict", "first_non_finite",
           "guess_size", "load_trained_model", "load_weights", "read_training_checkpoint", "read_weights_only",
           "require_finite", "require_project_classes"]

log = logging.getLogger(__name__)

# Keys whose shape depends on the number of classes (relative to the model root).
_CLASS_HEAD_PREFIXES = ("decoder.enc_score_head.", "decoder.dec_score_head.",
                        "decoder.denoising_class_embed.")
# Keys whose shape depends on the build image size; recomputed, never an error.
_IMAGE_SIZE_KEYS = ("decoder.anchors", "decoder.valid_mask")


@dataclass
class LoadReport:
    """What `load_weights` did. `skipped` maps checkpoint key -> reason."""

    path: str
    source: str                                   # official-ema | official-model | ours | ours-ema | backbone | state_dict
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)   # model keys the file did not provide
    reinitialized: list[str] = field(default_factory=list)  # module prefixes reset (class heads)
    checkpoint_num_classes: int | None = None

    def summary(self) -> str:
        parts = [f"{self.path}: {self.source}, loaded {len(self.loaded)} tensors"]
        if self.skipped:
            reasons: dict[str, int] = {}
            for r in self.skipped.values():
                reasons[r] = reasons.get(r, 0) + 1
            parts.append("skipped " + "; ".join(f"{n} ({r})" for r, n in reasons.items()))
        mask = [k for k in self.missing if k.startswith("mask_head.")]
        if mask:  # a detector checkpoint into a segmentation model: the paper's fine-tuning start
            parts.append(f"mask head initialised fresh ({len(mask)} tensors, not in the file)")
        if len(self.missing) > len(mask):
            parts.append(f"{len(self.missing) - len(mask)} other model tensors not in file "
                         f"(kept initialisation)")
        if self.reinitialized:
            parts.append("re-initialised class heads: " + ", ".join(self.reinitialized))
        return "; ".join(parts)


def extract_state_dict(obj: object, path: str = "<memory>") -> tuple[dict[str, torch.Tensor], str]:
    """Pick the weights out of a loaded checkpoint object; returns (state_dict, source)."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: not a checkpoint (expected a dict, got {type(obj).__name__})")
    ema = obj.get("ema")
    if isinstance(ema, dict) and isinstance(ema.get("module"), dict) and ema["module"]:
        sd, source = ema["module"], "official-ema"
    elif isinstance(obj.get("model"), dict) and obj["model"]:
        sd, source = obj["model"], "official-model"
    elif isinstance(obj.get("state_dict"), dict):
        sd, source = obj["state_dict"], "state_dict"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, source = obj, "state_dict"
    else:
        raise WeightsError(f"{path}: no weights found (keys: {sorted(map(str, obj))[:8]}); expected "
                           "'model', 'ema'.'module' or a plain state_dict")
    if ("meta" in obj or "class_names" in obj) and source != "state_dict":  # our export / training run
        source = {"official-model": "ours", "official-ema": "ours-ema"}.get(source, source)
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if sd and all(k.startswith(("stem.", "stages.")) for k in sd):
        sd = {"backbone." + k: v for k, v in sd.items()}
        source = "backbone"
    return sd, source


def first_non_finite(sd: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """(key, 'NaN' | 'inf') of the first floating-point tensor holding a NaN or an infinity, in file
    order, else None."""
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if torch.isnan(value).any():
            return key, "NaN"
        if torch.isinf(value).any():
            return key, "inf"
    return None


def require_finite(sd: dict[str, torch.Tensor], label: str, what: str = "weights") -> None:
    """Refuse weights with NaN/inf: a diverged run or a corrupt file would otherwise load without
    complaint and predict nothing at all (every score NaN), which looks like a model that sees no
    objects rather than a broken file."""
    bad = first_non_finite(sd)
    if bad is not None:
        key, kind = bad
        raise WeightsError(f"{label}: the {what} hold {kind} values (first in tensor {key}): a corrupt "
                           "file or a training run that diverged; not used")


@functools.cache
def _size_signature(size: str) -> dict[str, tuple[int, ...]]:
    """Shapes of a detect model of `size`, built on the meta device (no memory, fast)."""
    from core.model.builder import build_model  # local: builder imports this package

    with torch.device("meta"):
        model = build_model(size, 80, task="detect", image_size=640)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.startswith(_CLASS_HEAD_PREFIXES) and k not in _IMAGE_SIZE_KEYS}


def guess_size(sd: dict[str, torch.Tensor]) -> tuple[str | None, float]:
    """The model size whose architecture the state_dict fits best, with the fraction matched
    (class heads, anchors and the mask head are ignored; backbone-only files vs backbones)."""
    from core.model.builder import SIZES

    keys = [k for k in sd if not k.startswith(_CLASS_HEAD_PREFIXES + ("mask_head.",))
            and k not in _IMAGE_SIZE_KEYS and not k.endswith("num_batches_tracked")]
    backbone_only = bool(keys) and all(k.startswith("backbone.") for k in keys)
    best, best_score = None, 0.0
    for size in SIZES:
        ref = {k: s for k, s in _size_signature(size).items()
               if not k.endswith("num_batches_tracked")
               and (not backbone_only or k.startswith("backbone."))}
        hits = sum(1 for k in keys if ref.get(k) == tuple(sd[k].shape))
        extra = sum(1 for k in keys if k not in ref)
        score = hits / max(len(ref) + extra, 1)
        if score > best_score + 1e-9:
            best, best_score = size, score
        elif best is not None and abs(score - best_score) <= 1e-9:
            best = f"{best}/{size}"  # e.g. a B0 backbone fits both n and s
    return best, best_score


def _class_count(sd: dict[str, torch.Tensor]) -> int | None:
    w = sd.get("decoder.enc_score_head.weight")
    return int(w.shape[0]) if w is not None else None


_TORCH_ADVICE = ("weights only load failed", "please file an issue", "check the documentation")


def _load_error_reason(text: str) -> str:
    """The line of a torch.load error that says what is wrong, first sentence only: torch wraps
    it in advice (re-run with weights_only=False, file an issue, read the docs) we do not pass on."""
    text = text.split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.lower().startswith(_TORCH_ADVICE)]
    return (lines[0].split(". ")[0] if lines else text.strip())[:160].rstrip(".")


def read_weights_only(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                      what: str = "weights file"):
    """`torch.load(path, weights_only=True)` with errors a user can act on.

    Why not torch's own message: for a file with pickled objects it advises re-running with
    `weights_only=False`, which is exactly how a checkpoint would run code; ours names what was
    refused and says how to re-save the weights instead.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {what} not found")
    try:
        with warnings.catch_warnings():  # files saved with pickle protocol > 2 load fine
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise WeightsError(
                f"{path}: not a weights-only checkpoint: it holds Python objects besides tensors "
                f"({_load_error_reason(str(exc))}). A checkpoint never runs code "
                f"here; re-save its weights where you trust the file: "
                f"torch.save(model.state_dict(), 'weights.pth')") from None
        reason = f"UnpicklingError: {_load_error_reason(str(exc))}"
    except Exception as exc:  # noqa: BLE001 - truncated zip, a text file, another format ...
        reason = f"{type(exc).__name__}: {_load_error_reason(str(exc))}"
    raise WeightsError(f"{path}: not a readable torch checkpoint (truncated, corrupt or another "
                       f"format; {reason})")


# ------------------------------------------------------------------ our training checkpoints (the one reader)


def read_training_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A dfine-studio training checkpoint (last.pt / best.pt) as its dict, weights-only."""
    path = Path(path)
    ckpt = read_weights_only(path, map_location, what="checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise WeightsError(f"{path}: not a dfine-studio training checkpoint (no 'model' entry)")
    return ckpt


def _get(obj: object, *keys: str, default: object = None) -> Any:  # config values are plain JSON
    """Nested lookup in dicts (the checkpoint's config is stored as a plain dict)."""
    for key in keys:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
    return default if obj is None else obj


@dataclass(frozen=True)
class CheckpointInfo:
    """What a training checkpoint says about the network it holds."""

    class_names: tuple[str, ...]
    task: str
    size: str
    image_size: tuple[int, int]
    mask_head: str


def checkpoint_info(ckpt: dict, path: str | os.PathLike) -> CheckpointInfo:
    """Classes, task, size, image size and mask head: top-level keys first (what the trainer
    writes), then the stored project config."""
    config = ckpt.get("config")
    names = ckpt.get("class_names") or _get(config, "classes")
    if not names:
        raise WeightsError(f"{path}: checkpoint names no classes ('class_names' missing)")
    size = ckpt.get("image_size") or _get(config, "model", "image_size", default=640)
    image_size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
    return CheckpointInfo(class_names=tuple(str(n) for n in names),
                          task=str(ckpt.get("task") or _get(config, "task", default="segment")),
                          size=str(ckpt.get("size") or _get(config, "model", "size", default="s")),
                          image_size=image_size,  # type: ignore[arg-type]
                          mask_head=str(_get(config, "model", "mask_head", default="paper")))


def require_project_classes(weights: str | os.PathLike, names: list[str] | tuple[str, ...],
                            project_names: list[str] | tuple[str, ...]) -> None:
    """A model evaluated against a project (`dfine val`, `dfine analyze --weights`) must predict the
    project's classes in the project's order: class ids are compared as numbers, so another list
    would score or flag every label against the wrong class."""
    if list(names) != list(project_names):
        raise WeightsError(f"{weights}: trained for classes {list(names)}, the project has {list(project_names)}")


def load_trained_model(path: str | os.PathLike, use_ema: bool = True
                       ) -> tuple[DFINEModel, CheckpointInfo, dict]:
    """The network a training checkpoint describes, with its EMA (or raw) weights, in eval mode on
    the CPU; returns (model, info, checkpoint dict). Every weight must fit: a checkpoint of another
    size or class count is an error here (`dfine train --weights` fine-tunes from those)."""
    from core.model.builder import build_model

    path = Path(path)
    ckpt = read_training_checkpoint(path)
    info = checkpoint_info(ckpt, path)
    model = build_model(info.size, len(info.class_names), task=info.task, image_size=info.image_size,
                        mask_head=info.mask_head)
    what = (f"{path}: weights do not fit a size-{info.size} {info.task} model with {len(info.class_names)} "
            f"classes at {info.image_size[0]} px (a checkpoint of another size or class count, or an official "
            "D-FINE one? `dfine train --weights` fine-tunes from those)")
    ema = ckpt.get("ema")
    if use_ema and isinstance(ema, dict) and isinstance(ema.get("module"), dict):
        state = ema["module"]
    elif use_ema and isinstance(ema, dict) and ema and all(isinstance(v, torch.Tensor) for v in ema.values()):
        state = ema  # an EMA saved as a bare state_dict
    else:
        state = ckpt.get("model")
    if not isinstance(state, dict):
        raise WeightsError(f"{what}: no {'EMA' if use_ema and ema is not None else 'model'} weights")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc)[:200])
        raise WeightsError(f"{what} ({detail})") from None
    if missing or unexpected:
        raise WeightsError(f"{what} (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    _require_finite_state(path, state, ckpt.get("model"), used_ema=state is not ckpt.get("model"))
    return model.eval(), info, ckpt


def _require_finite_state(path: Path, state: dict, raw: object, used_ema: bool) -> None:
    """require_finite for the weights a checkpoint is loaded with; when only the EMA is broken,
    say that the raw weights are usable (`dfine val --no-ema`)."""
    if not used_ema:
        require_finite(state, str(path), "model weights")
        return
    bad = first_non_finite(state)
    if bad is None:
        return
    raw_ok = isinstance(raw, dict) and first_non_finite(raw) is None
    hint = ("; its raw 'model' weights are finite (`dfine val --no-ema` evaluates those)" if raw_ok
            else "")
    raise WeightsError(f"{path}: the EMA weights hold {bad[1]} values (first in tensor {bad[0]}): a "
                       f"corrupt file or a training run that diverged; not used{hint}")


def load_weights(model: DFINEModel, path: str | os.PathLike, strict_size: bool = True) -> LoadReport:
    """Load `path` into `model` (in place) and return a LoadReport (also logged at INFO)."""
    path = Path(path)
    obj = read_weights_only(path)
    sd, source = extract_state_dict(obj, str(path))
    require_finite(sd, str(path))
    target = model.state_dict()
    report = LoadReport(path=str(path), source=source, checkpoint_num_classes=_class_count(sd))

    # Architecture check: everything but class heads / anchors / mask head must fit.
    arch_keys = [k for k in sd if k in target and not k.startswith(_CLASS_HEAD_PREFIXES)
                 and k not in _IMAGE_SIZE_KEYS and not k.startswith("mask_head.")]
    bad = [k for k in arch_keys if tuple(sd[k].shape) != tuple(target[k].shape)]
    unknown = [k for k in sd if k not in target and not k.startswith("mask_head.")
               and not k.endswith("num_batches_tracked")]
    ours_size = getattr(model, "size", "?")
    if strict_size and (bad or len(unknown) > 0.05 * max(len(sd), 1) or not arch_keys):
        guess, score = guess_size(sd)
        looks = (f"it looks like a size '{guess}' model ({score:.0%} of its tensors fit)"
                 if guess and score > 0.5 else "it does not look like any D-FINE size")
        example = bad[0] if bad else (unknown[0] if unknown else "")
        detail = (f"; e.g. {example}: file {tuple(sd[example].shape)} vs model "
                  f"{tuple(target[example].shape)}" if bad else
                  (f"; e.g. unexpected key {example}" if example else ""))
        raise WeightsError(f"{path}: does not fit the size '{ours_size}' model; {looks}{detail}")

    to_load: dict[str, torch.Tensor] = {}
    class_mismatch = False
    for k, v in sd.items():
        if k not in target:
            report.skipped[k] = "not in model"
        elif tuple(v.shape) != tuple(target[k].shape):
            if k.startswith(_CLASS_HEAD_PREFIXES):
                report.skipped[k] = (f"class count differs (file {report.checkpoint_num_classes}, "
                                     f"model {getattr(model, 'num_classes', '?')})")
                class_mismatch = True
            elif k in _IMAGE_SIZE_KEYS:
                report.skipped[k] = "built for another image size (recomputed)"
            else:
                report.skipped[k] = f"shape {tuple(v.shape)} != model {tuple(target[k].shape)}"
        else:
            to_load[k] = v.to(target[k].dtype) if v.is_floating_point() else v
    if class_mismatch:  # never keep a half-loaded head: drop every class-head tensor
        for k in [k for k in to_load if k.startswith(_CLASS_HEAD_PREFIXES)]:
            report.skipped[k] = "class head re-initialised (class count differs)"
            del to_load[k]
        report.reinitialized = ["decoder." + n for n in model.decoder.reset_class_heads()]

    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    reset = tuple(p + "." for p in report.reinitialized)
    report.missing = [k for k in target if k not in sd and not k.endswith("num_batches_tracked")
                      and not (reset and k.startswith(reset))]
    log.info("%s", report.summary())
    return report
