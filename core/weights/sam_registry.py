"""Promptable-segmentation ONNX pairs by name (sam.yaml): get, verify, add, list.

Why a pair and a signature check: a SAM-family model is two files (an image encoder run once per
image, a prompt decoder run per click) that only work together and only when called the way
their exporter meant. A download is therefore checked by what the runtime will rely on, the ONNX
inputs and outputs (names and ranks) of each half, not only by its bytes; a file with the wrong
signature never enters the cache. Files live in ``<weights dir>/<name>/`` under their release
names; ``DFINE_WEIGHTS_MIRROR`` serves them from ``<mirror>/<file>`` (a company mirror, the tests'
local server), as for the D-FINE checkpoints.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.atomic_io import atomic_write_with
from core.errors import WeightsError
from core.weights.download import DownloadError, ProgressFn, download
from core.weights.lock import download_lock
from core.weights.registry import MIRROR_ENV

__all__ = ["CONTRACTS", "SamEntry", "add_sam_file", "fetch_sam", "find_sam", "sam_entries", "sam_files",
           "sam_offline_advice", "verify_sam_file"]

REGISTRY_FILE = Path(__file__).with_name("sam.yaml")

# contract -> part -> (inputs {name or index: rank}, outputs {name or index: rank}). An int key is
# the position (exporters name an encoder's input freely); a str key must be present by name.
CONTRACTS: dict[str, dict[str, tuple[dict, dict]]] = {
    "sam": {  # Segment Anything ONNX (samexporter, with pre-processing): HWC float RGB, longest side 1024
        "encoder": ({0: 3}, {0: 4}),
        "decoder": ({"image_embeddings": 4, "point_coords": 3, "point_labels": 2, "mask_input": 4,
                     "has_mask_input": 1, "orig_im_size": 1}, {0: 4, 1: 2}),
    },
    "efficientsam": {  # EfficientSAM official split export: NCHW float RGB in [0, 1], any size
        "encoder": ({0: 4}, {0: 4}),
        "decoder": ({"image_embeddings": 4, "batched_point_coords": 4, "batched_point_labels": 3,
                     "orig_im_size": 1}, {0: 5, 1: 3}),
    },
}


@dataclass(frozen=True)
class SamEntry:
    name: str
    contract: str
    encoder_file: str
    encoder_url: str
    decoder_file: str
    decoder_url: str
    size_mb: float
    licence: str
    source: str

    def files(self) -> dict[str, str]:
        return {"encoder": self.encoder_file, "decoder": self.decoder_file}

    def download_url(self, part: str) -> str:
        file, url = ((self.encoder_file, self.encoder_url) if part == "encoder"
                     else (self.decoder_file, self.decoder_url))
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        return mirror.rstrip("/") + "/" + file if mirror else url


@functools.cache
def sam_entries() -> tuple[SamEntry, ...]:
    data = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))
    out = []
    for row in data["models"]:
        if row["contract"] not in CONTRACTS:
            raise ValueError(f"{REGISTRY_FILE}: {row['name']}: unknown contract {row['contract']!r}")
        out.append(SamEntry(row["name"], row["contract"], row["encoder"]["file"], row["encoder"]["url"],
                            row["decoder"]["file"], row["decoder"]["url"], float(row["size_mb"]),
                            str(row["licence"]), str(row["source"])))
    return tuple(out)


def find_sam(name: str) -> SamEntry | None:
    key = str(name).strip().lower()
    return next((e for e in sam_entries() if e.name.lower() == key), None)


def sam_files(entry: SamEntry, folder: Path) -> dict[str, Path]:
    """part -> the cached path (present or not) of each half of ``entry``."""
    return {part: Path(folder) / entry.name / file for part, file in entry.files().items()}


def sam_offline_advice(entry: SamEntry, folder: Path) -> str:
    urls = " and ".join(entry.download_url(p) for p in ("encoder", "decoder"))
    return (f"on a machine with internet download {urls} , bring both files here and run "
            f"`dfine weights add {entry.encoder_file} {entry.decoder_file} --name {entry.name}` "
            f"(each is checked, then copied to {Path(folder) / entry.name})")


def _rank(value_info) -> int:
    return len(value_info.type.tensor_type.shape.dim)


def verify_sam_file(path: Path | str, entry: SamEntry, part: str, label: str | None = None) -> str:
    """Raise WeightsError unless ``path`` is an ONNX model with the inputs/outputs (names, ranks)
    the ``part`` ("encoder" | "decoder") of ``entry``'s contract needs; a one-line description."""
    try:
        import onnx  # only when a file is checked
    except ImportError:
        raise WeightsError("checking a SAM pair needs the onnx package: pip install 'dfine-studio[export]'") from None

    label = label or str(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a truncated/HTML/garbage file: onnx raises DecodeError and friends
        raise WeightsError(f"{label}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    outputs = list(graph.output)
    want_in, want_out = CONTRACTS[entry.contract][part]
    what = f"the {entry.name} {part} ({entry.contract} contract)"
    for kind, have, want in (("input", inputs, want_in), ("output", outputs, want_out)):
        by_name = {v.name: v for v in have}
        for key, rank in want.items():
            if isinstance(key, int):
                if key >= len(have):
                    raise WeightsError(f"{label}: has {len(have)} {kind}(s), {what} needs at least {key + 1}")
                v = have[key]
            else:
                v = by_name.get(key)
                if v is None:
                    raise WeightsError(f"{label}: no {kind} named {key!r} (has {sorted(by_name)}): not {what}")
            if _rank(v) != rank:
                raise WeightsError(f"{label}: {kind} {v.name!r} has rank {_rank(v)}, {what} needs rank {rank}")
    return (f"{entry.name} {part}: ONNX inputs {[v.name for v in inputs]} -> outputs "
            f"{[v.name for v in outputs]} fit the {entry.contract} contract")


def fetch_sam(entry: SamEntry, folder: Path, progress: ProgressFn | None = None,
              should_stop: Callable[[], bool] | None = None) -> tuple[dict[str, Path], str]:
    """(part -> cached file, what the checks found): each missing half downloaded (or resumed)
    into ``<file>.part``, verified, then renamed; a half already cached was verified on entry."""
    paths = sam_files(entry, folder)
    checks = []
    for part, final in paths.items():
        if final.is_file():
            checks.append(f"{part} already in the cache")
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        with download_lock(final):
            if final.is_file():
                checks.append(f"{part} already in the cache")
                continue
            part_file = final.with_name(final.name + ".part")
            url = entry.download_url(part)
            try:
                download(url, part_file, progress, should_stop)
            except DownloadError as exc:
                if exc.kind in ("network", "http"):
                    raise DownloadError(f"cannot download {entry.name} ({part}): {exc}; "
                                        f"{sam_offline_advice(entry, folder)}", exc.kind) from None
                raise
            try:
                checks.append(verify_sam_file(part_file, entry, part, label=url))
            except WeightsError as exc:
                part_file.unlink(missing_ok=True)
                raise WeightsError(f"refused {entry.name} (the download was deleted, not kept): {exc}") from None
            os.replace(part_file, final)
    return paths, "; ".join(checks)


def add_sam_file(source: Path | str, folder: Path, entry: SamEntry) -> tuple[str, Path]:
    """Copy one half of ``entry`` downloaded elsewhere into the cache (which half: by its release
    file name), after the same signature check as a download. Returns (part, cached path)."""
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"{source}: file not found")
    part = next((p for p, f in entry.files().items() if f == source.name), None)
    if part is None:
        raise WeightsError(f"{source.name}: not a file of {entry.name} (its files: {entry.encoder_file}, "
                           f"{entry.decoder_file}); keep the release file names")
    verify_sam_file(source, entry, part)
    final = sam_files(entry, folder)[part]
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and final.resolve() == source.resolve():
        return part, final
    with open(source, "rb") as src:
        atomic_write_with(final, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))
    return part, final
