"""Training checkpoints (last.pt / best.pt): plain types and tensors only, written atomically.

Why plain: ``torch.load(weights_only=True)`` refuses arbitrary pickled objects, so a checkpoint
from someone else cannot run code on load. Why atomic: the GUI's cancel (SIGTERM) or a crash
while saving must leave the previous last.pt intact. They are read back by
``core.model.checkpoint.read_training_checkpoint`` (the one reader, shared with inference).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from core.atomic_io import atomic_write_with


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as tensors / plain types."""
    version, py_state, gauss = random.getstate()
    # the legacy tuple form (the default; the dict form is only for legacy=False)
    name, keys, pos, has_gauss, cached = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    state: dict[str, Any] = {
        "python": [int(version), torch.tensor(py_state, dtype=torch.int64), gauss],
        "numpy": [str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in py_state.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a SIGKILL mid-save leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda f: torch.save(payload, f))
