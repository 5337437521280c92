"""The known official checkpoints (registry.yaml) and name lookup.

Why one data file: the release names and addresses are facts copied from the official D-FINE
README and hgnetv2.py; keeping them as data (not code) makes them easy to check against the
source and to extend. `DFINE_WEIGHTS_MIRROR` replaces the release address (a company mirror,
or a local server in the tests): a file is then fetched from ``<mirror>/<file>``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["MIRROR_ENV", "WeightsEntry", "backbone_sizes", "entries", "find_entry"]

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")
MIRROR_ENV = "DFINE_WEIGHTS_MIRROR"
# HGNetV2 variant -> the D-FINE sizes built on it (official configs; same as builder.SIZE_CONFIGS)
_BACKBONE_OF_SIZE = {"n": "B0", "s": "B0", "m": "B2", "l": "B4", "x": "B5"}


@dataclass(frozen=True)
class WeightsEntry:
    """One release file. `size` is the D-FINE size of a detector (None for a backbone)."""

    name: str
    file: str
    kind: str                 # detector | backbone
    backbone: str             # HGNetV2 variant, B0..B6
    dataset: str
    url: str
    size: str | None = None
    classes: int | None = None
    ap: float | None = None
    params: str | None = None

    @property
    def sizes(self) -> tuple[str, ...]:
        """D-FINE sizes this file can start: its own, or those built on this backbone."""
        if self.size:
            return (self.size,)
        return backbone_sizes(self.backbone)

    def download_url(self) -> str:
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        return mirror.rstrip("/") + "/" + self.file if mirror else self.url


def backbone_sizes(variant: str) -> tuple[str, ...]:
    return tuple(s for s, b in _BACKBONE_OF_SIZE.items() if b == variant)


@functools.cache
def entries() -> tuple[WeightsEntry, ...]:
    """Every known checkpoint, detectors first, in the registry's order."""
    data = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))
    base = data["base_url"]
    out = []
    for kind, rows in (("detector", data["detectors"]), ("backbone", data["backbones"])):
        for row in rows:
            out.append(WeightsEntry(name=row["name"], file=row["file"], kind=kind,
                                    backbone=row["backbone"], dataset=str(row["dataset"]),
                                    url=base + row["file"], size=row.get("size"),
                                    classes=row.get("classes"), ap=row.get("ap"),
                                    params=row.get("params")))
    return tuple(out)


def _key(text: str) -> str:
    name = Path(str(text).strip()).name
    for suffix in (".pth", ".pt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name.lower()


def find_entry(name: str) -> WeightsEntry | None:
    """The entry called `name` (case-insensitive; the release file name, with or without .pth,
    works too, so `dfine_s_coco.pth` and `PPHGNetV2_B0_stage1` are found)."""
    key = _key(name)
    for entry in entries():
        if key in (entry.name.lower(), _key(entry.file)):
            return entry
    return None
