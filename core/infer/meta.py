"""What a predictor needs to know besides the weights: classes, task, input size.

Exports write it as ``meta.json`` next to the model files (and into ONNX metadata),
so an export folder is self-describing and `Predictor.load` needs no project.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from core.bounded_input import loads_json
from core.errors import UserFacingError, WeightsError

META_FILE = "meta.json"
Task = Literal["segment", "detect"]


def as_task(value: str) -> Task:
    """``value`` as a task name, or WeightsError (a checkpoint's or meta.json's task is data)."""
    if value == "segment":
        return "segment"
    if value == "detect":
        return "detect"
    raise WeightsError(f"model task must be 'segment' or 'detect', got {value!r}")


@dataclass
class ModelMeta:
    class_names: list[str]
    task: Task = "segment"  # checked in __post_init__ (meta.json is read as is)
    image_size: tuple[int, int] = (640, 640)  # network input (h, w)
    top_k: int = 100
    model_size: str = ""
    source: str = ""  # checkpoint the export was made from
    mask_head: str = ""  # the mask head it was trained with (model.mask_head: paper, cpu, ...); "" for detect
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        size = self.image_size
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 32 <= v <= 8192 for v in size)):
            raise WeightsError(f"image_size must be [height, width], whole numbers in 32..8192, got {size!r}")
        self.image_size = (int(size[0]), int(size[1]))
        self.task = as_task(self.task)
        names = self.class_names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise WeightsError(f"class_names must be a non-empty list of names, got {names!r}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 1:
            raise WeightsError(f"top_k must be a whole number >= 1, got {self.top_k!r}")
        if not isinstance(self.mask_head, str):
            raise WeightsError(f"mask_head must be a name, got {self.mask_head!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> ModelMeta:
        fields = ("class_names", "task", "image_size", "top_k", "model_size", "source", "mask_head", "extra")
        known = {k: d[k] for k in fields if k in d}
        return cls(**known)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / META_FILE
        path.write_text(self.to_json())
        return path


def find_meta_file(model_path: Path) -> Path:
    """meta.json beside the model file, or one or two folders up (export root)."""
    model_path = Path(model_path)
    start = model_path if model_path.is_dir() else model_path.parent
    for folder in (start, start.parent, start.parent.parent):
        candidate = folder / META_FILE
        if candidate.is_file():
            return candidate
    raise WeightsError(f"{model_path}: no {META_FILE} found beside it or in the export folder; "
                       "export with `dfine export` to get one")


def read_meta(path: Path) -> ModelMeta:
    """An export's meta.json, checked field by field (WeightsError naming the file)."""
    try:
        data = loads_json(path.read_bytes(), path)
        if not isinstance(data, dict):
            raise TypeError(f"top level must be an object, got {type(data).__name__}")
        return ModelMeta.from_dict(data)
    except (ValueError, TypeError, UnicodeDecodeError, UserFacingError) as exc:
        raise WeightsError(f"{path}: not a valid export meta.json ({exc})") from None


def find_meta(model_path: Path) -> ModelMeta:
    """meta.json beside the model file, or one or two folders up (export root)."""
    return read_meta(find_meta_file(model_path))


def check_meta_fits(meta: ModelMeta, meta_file: Path, model_path: Path, detections_per_image: int | None,
                    recorded_classes: int | None) -> None:
    """Refuse a meta.json that does not describe the model beside it (copied from another export,
    edited by hand): a wrong top_k or class count would otherwise be used as is, and the labels
    read against the wrong names. `detections_per_image`: the model's static output size (None:
    unknown); `recorded_classes`: the class count the model file itself records (ONNX metadata)."""
    if detections_per_image is not None and detections_per_image != meta.top_k:
        raise WeightsError(f"{meta_file}: top_k {meta.top_k} does not fit {model_path}: its outputs hold "
                           f"{detections_per_image} detections per image (a meta.json from another "
                           "export? re-export, or use the meta.json written with this model)")
    if recorded_classes is not None and recorded_classes != meta.num_classes:
        raise WeightsError(f"{meta_file}: lists {meta.num_classes} classes, {model_path} was exported for "
                           f"{recorded_classes} (a meta.json from another export? re-export, or use the "
                           "meta.json written with this model)")


def check_labels_fit(labels, meta: ModelMeta, meta_file: Path | str | None) -> None:
    """Refuse model output whose class ids the meta's class list cannot name: a meta.json with too
    few classes would otherwise drop or mislabel detections without a word."""
    top = int(labels.max()) if getattr(labels, "size", 0) else -1
    if top >= meta.num_classes:
        where = meta_file or "the model's class list"
        raise WeightsError(f"{where}: lists {meta.num_classes} classes ({', '.join(meta.class_names[:5])}"
                           f"{', ...' if meta.num_classes > 5 else ''}), the model predicts class id {top}: "
                           "the class list does not fit this model (a meta.json from another export?)")
