"""Check that a weights file is what its registry entry says, before it enters the cache.

A download can be cut short, a mirror can serve the wrong file, a user can rename one: every
file is read with `weights_only=True` (never runs code) and its tensors' names and shapes are
compared with the model it claims to be (built on the meta device: no memory, no time), and
every tensor must be finite (a NaN/inf checkpoint would load and then predict nothing).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from core.errors import WeightsError
from core.model.checkpoint import extract_state_dict, guess_size, read_weights_only, require_finite
from core.weights.registry import WeightsEntry

__all__ = ["expected_shapes", "verify_file"]

_CLASS_HEADS = ("decoder.enc_score_head.", "decoder.dec_score_head.", "decoder.denoising_class_embed.")
_IMAGE_SIZE_KEYS = ("decoder.anchors", "decoder.valid_mask")  # built for one input size; recomputed


def _shapes(module: torch.nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()
            if not k.endswith("num_batches_tracked") and prefix + k not in _IMAGE_SIZE_KEYS}


@functools.cache
def expected_shapes(entry: WeightsEntry) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(key -> shape a file for `entry` must hold, key -> shape it may hold besides those)."""
    with torch.device("meta"):
        if entry.kind == "detector":
            from core.model.builder import build_model

            assert entry.size is not None  # every detector entry of the registry names its size
            model = build_model(entry.size, entry.classes or 80, task="detect", image_size=640)
            return _shapes(model), {}
        from core.model.hgnetv2 import HGNetv2

        # The official loader reads B0/B2 into use_lab=True nets and B4/B5 into use_lab=False
        # ones (strict), so the files differ in the `lab` scale/bias: both layouts are fine.
        plain = _shapes(HGNetv2(entry.backbone, use_lab=False), "backbone.")
        lab = _shapes(HGNetv2(entry.backbone, use_lab=True), "backbone.")
        return plain, {k: v for k, v in lab.items() if k not in plain}


def verify_file(path: Path | str, entry: WeightsEntry, label: str | None = None) -> str:
    """Raise WeightsError unless `path` holds `entry`'s weights; returns a one-line description.
    `label` names the file in messages (e.g. the URL it came from)."""
    label = label or str(path)
    obj = read_weights_only(path, what=f"{entry.name} weights file")
    sd, source = extract_state_dict(obj, label)
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    expected, optional = expected_shapes(entry)
    if entry.kind == "backbone" and source != "backbone":
        raise WeightsError(f"{label}: a full model checkpoint ({source}), not the HGNetV2 "
                           f"{entry.backbone} ImageNet backbone file {entry.file}")
    if entry.kind == "detector" and source == "backbone":
        raise WeightsError(f"{label}: holds only an HGNetV2 backbone, not the size-{entry.size} "
                           f"D-FINE detector {entry.file}")
    keys = [k for k in sd if k not in _IMAGE_SIZE_KEYS]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in keys if k not in expected and k not in optional]
    bad = [k for k in keys if k in expected and tuple(sd[k].shape) != expected[k]]
    bad += [k for k in keys if k in optional and tuple(sd[k].shape) != optional[k]]
    if not (missing or unexpected or bad):
        require_finite(sd, label, f"{entry.name} weights")
        return f"{entry.name}: {source}, {len(keys)} tensors fit the {_what(entry)}"

    arch_bad = [k for k in bad if not k.startswith(_CLASS_HEADS)]
    if entry.kind == "detector" and (arch_bad or unexpected):
        guess, score = guess_size(sd)
        if guess and guess != entry.size and score > 0.5:
            raise WeightsError(f"{label}: a size '{guess}' D-FINE checkpoint ({score:.0%} of its "
                               f"tensors fit), not size '{entry.size}' as {entry.name} must be")
    if not arch_bad and not unexpected and not missing:  # only the class heads differ
        width = int(sd["decoder.enc_score_head.weight"].shape[0])
        raise WeightsError(f"{label}: has {width} classes, {entry.name} ({entry.dataset}) has "
                           f"{entry.classes}")
    if missing and not (arch_bad or unexpected):
        raise WeightsError(f"{label}: {len(missing)} of {len(expected)} tensors of the "
                           f"{_what(entry)} are missing (e.g. {missing[0]}): an incomplete "
                           f"checkpoint")
    example = (arch_bad or unexpected or bad)[0]
    shape = tuple(sd[example].shape)
    want = expected.get(example, optional.get(example))
    raise WeightsError(f"{label}: does not fit the {_what(entry)}: {example} has shape {shape}"
                       + (f", expected {want}" if want else " (unexpected tensor)"))


def _what(entry: WeightsEntry) -> str:
    if entry.kind == "detector":
        return f"size-{entry.size} D-FINE detector ({entry.classes} classes)"
    return f"HGNetV2 {entry.backbone} backbone"
