"""Our training checkpoint (last.pt / best.pt) -> model in eval mode + `ModelMeta`.

A checkpoint is a dict with "model" (state_dict), optionally "ema" (the EMA weights,
preferred for inference, either a state_dict or {"module": state_dict} as the official
D-FINE stores it), "config" (the project config as a dict or pydantic model) and
"class_names".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.errors import WeightsError
from core.infer.meta import ModelMeta


def _get(obj: Any, *keys: str, default: Any = None) -> Any:
    """Nested lookup that works on dicts and on pydantic models alike."""
    for key in keys:
        if obj is None:
            return default
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return default if obj is None else obj


def _state_dict(ckpt: dict) -> dict:
    ema = ckpt.get("ema")
    if isinstance(ema, dict):
        if isinstance(ema.get("module"), dict):
            return ema["module"]
        if ema and all(isinstance(v, torch.Tensor) for v in ema.values()):
            return ema
    if isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    raise WeightsError("checkpoint has neither 'ema' nor 'model' weights")


def meta_from_checkpoint(ckpt: dict, path: Path) -> ModelMeta:
    config = ckpt.get("config")
    class_names = ckpt.get("class_names") or _get(config, "classes")
    if not class_names:
        raise WeightsError(f"{path}: checkpoint names no classes ('class_names' missing)")
    size = _get(config, "model", "image_size", default=640)
    image_size = (size, size) if isinstance(size, int) else tuple(size)
    return ModelMeta(class_names=list(class_names), task=_get(config, "task", default="segment"),
                     image_size=image_size, model_size=str(_get(config, "model", "size", default="s")),
                     source=str(Path(path).resolve()))


def load_checkpoint(path: Path | str, device: str = "cpu") -> tuple[torch.nn.Module, ModelMeta]:
    """Build the network the checkpoint describes and load its (EMA) weights."""
    from core.model import build_model
    from core.train.checkpoint import load_checkpoint as read_checkpoint  # weights_only: no code runs

    path = Path(path)
    ckpt = read_checkpoint(path)
    meta = meta_from_checkpoint(ckpt, path)
    model = build_model(meta.model_size, meta.num_classes, task=meta.task, image_size=meta.image_size,
                        mask_head=str(_get(ckpt.get("config"), "model", "mask_head", default="paper")))
    what = f"{path}: weights do not fit a size-{meta.model_size} {meta.task} model with {meta.num_classes} classes"
    try:
        missing, unexpected = model.load_state_dict(_state_dict(ckpt), strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc)[:200])
        raise WeightsError(f"{what} ({detail})") from None
    if missing or unexpected:
        raise WeightsError(f"{what} (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    return model.eval().to(device), meta
