"""Our training checkpoint (last.pt / best.pt) -> model in eval mode + the inference `ModelMeta`
(the checkpoint itself is read by core.model.checkpoint, the one reader)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING


from core.infer.meta import ModelMeta, as_task
from core.model.checkpoint import CheckpointInfo, load_trained_model

if TYPE_CHECKING:
    from core.model.network import DFINEModel


def meta_from_info(info: CheckpointInfo, path: Path) -> ModelMeta:
    return ModelMeta(class_names=list(info.class_names), task=as_task(info.task), image_size=info.image_size,
                     model_size=info.size, source=str(Path(path).resolve()),
                     mask_head=info.mask_head if info.task == "segment" else "")


def load_checkpoint(path: Path | str, device: str = "cpu") -> tuple[DFINEModel, ModelMeta]:
    """Build the network the checkpoint describes and load its (EMA) weights."""
    model, info, _ = load_trained_model(path)
    return model.to(device), meta_from_info(info, Path(path))
