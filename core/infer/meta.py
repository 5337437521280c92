"""What a predictor needs to know besides the weights: classes, task, input size.

Exports write it as ``meta.json`` next to the model files (and into ONNX metadata),
so an export folder is self-describing and `Predictor.load` needs no project.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import WeightsError

META_FILE = "meta.json"


@dataclass
class ModelMeta:
    class_names: list[str]
    task: str = "segment"  # "segment" | "detect"
    image_size: tuple[int, int] = (640, 640)  # network input (h, w)
    top_k: int = 100
    model_size: str = ""
    source: str = ""  # checkpoint the export was made from
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_size = tuple(int(v) for v in self.image_size)  # type: ignore[assignment]
        if self.task not in ("segment", "detect"):
            raise WeightsError(f"model task must be 'segment' or 'detect', got {self.task!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> ModelMeta:
        known = {k: d[k] for k in ("class_names", "task", "image_size", "top_k", "model_size", "source", "extra")
                 if k in d}
        return cls(**known)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / META_FILE
        path.write_text(self.to_json())
        return path


def find_meta(model_path: Path) -> ModelMeta:
    """meta.json beside the model file, or one or two folders up (export root)."""
    model_path = Path(model_path)
    start = model_path if model_path.is_dir() else model_path.parent
    for folder in (start, start.parent, start.parent.parent):
        candidate = folder / META_FILE
        if candidate.is_file():
            try:
                return ModelMeta.from_dict(json.loads(candidate.read_text()))
            except (json.JSONDecodeError, TypeError) as exc:
                raise WeightsError(f"{candidate}: not a valid export meta.json ({exc})") from exc
    raise WeightsError(f"{model_path}: no {META_FILE} found beside it or in the export folder; "
                       "export with `dfine export` to get one")
