"""Model proposals, kept apart from labels until a person accepts them.

Why a store of their own: ``labels/*.txt`` is what training, splits, format export, the
label-mistake finder and every other YOLO tool read. A GrabCut/SAM/model-in-box mask, a
pre-label or a live "send frame" is the model's guess; written there it would train the next
model as if a person had checked it. So proposals live in ``proposals/<same sub-folders>/<stem>.json``
(pixel coordinates, with their score), the editor shows them beside the labels, and accepting
one (Ctrl+Return, picking a class for it, or editing it) moves it into the label file.

Projects written before this store marked model rows inside the label file's ``.parts.json``
sidecar; :func:`migrate_sidecar_proposals` moves those rows here once, on open.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from core.annotation import Instance
from core.atomic_io import atomic_delete, atomic_write_text
from core.bounded_input import load_json_file, loads_json, read_regular_bytes, read_regular_text
from core.data.formats.yolo_txt import SIDECAR_SUFFIX
from core.errors import LabelError, UserFacingError

log = logging.getLogger(__name__)

PROPOSALS_DIR = "proposals"
VERSION = 1


def proposals_path(project, image: Path | str) -> Path:
    """proposals/<rel/path/stem>.json, mirroring labels/<rel/path/stem>.txt."""
    rel = Path(project.rel_image(image)).with_suffix(".json")
    return project.root / PROPOSALS_DIR / rel


def read_proposals(project, image: Path | str) -> list[Instance]:
    """The image's proposals (none when there is no file). A damaged file is a LabelError naming it."""
    path = proposals_path(project, image)
    try:
        data = load_json_file(path, dict, 64 << 20)
    except FileNotFoundError:
        return []
    except UserFacingError as exc:
        raise LabelError(path, None, str(exc).removeprefix(f"{path}: ")) from None
    rows = data.get("instances")
    if data.get("version") != VERSION or not isinstance(rows, list):
        raise LabelError(path, None, f'expected {{"version": {VERSION}, "instances": [...]}}')
    out = []
    n = len(project.config.classes)
    for k, row in enumerate(rows):
        try:
            inst = Instance.from_dict(row) if isinstance(row, dict) else None
        except ValueError as exc:
            raise LabelError(path, None, f"instances[{k}]: {exc}") from None
        if inst is None or not 0 <= inst.class_id < n:
            raise LabelError(path, None, f"instances[{k}]: not a proposal of a class 0..{n - 1}",
                             row if not isinstance(row, dict) else row.get("class_id"))
        values = np.concatenate([p.ravel() for p in (*inst.polygons, *inst.holes)] or [np.asarray(inst.bbox())])
        if not np.isfinite(values).all():
            raise LabelError(path, None, f"instances[{k}]: a coordinate is not a finite number")
        inst.source = "model"
        out.append(inst)
    return out


def write_proposals(project, image: Path | str, instances: list[Instance]) -> None:
    """Replace the image's proposals (the file is removed when there are none). Callers hold the
    project lock, as every writer of the project's files does."""
    path = proposals_path(project, image)
    if not instances:
        atomic_delete(path)
        return
    rows = []
    for inst in instances:
        d = inst.to_dict()
        d["source"] = "model"
        rows.append(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"version": VERSION, "image": project.rel_image(image),
                                        "instances": rows}))


def migrate_sidecar_proposals(project) -> int:
    """Move rows that a ``.parts.json`` sidecar marks ``"source": "model"`` out of the label files
    into the proposals store (the caller holds the project lock). Returns how many rows moved.

    Runs on every open but costs one read per sidecar: this version never writes a model row into
    a label file, so once moved there is nothing left to find. A file that cannot be read is left
    as it is and reported, never dropped."""
    labels = project.labels_dir
    marked = [s for s in (labels.rglob(f"*{SIDECAR_SUFFIX}") if labels.is_dir() else [])
              if s.is_file() and b'"model"' in read_regular_bytes(s)]
    if not marked:
        return 0
    by_label = {project.label_path(img): img for img in project.image_paths()}
    moved = 0
    failed = []
    for side in marked:
        image = by_label.get(side.with_name(side.name[: -len(SIDECAR_SUFFIX)] + ".txt"))
        if image is None:
            continue  # a sidecar without its image: nothing trains on it
        try:
            ann = project.load_annotation(image, include_proposals=False, keep_model_rows=True)
            model = [i for i in ann.instances if i.source == "model"]
            if not model:
                continue
            existing = read_proposals(project, image)
            write_proposals(project, image, existing + model)  # 1) proposals first: a crash keeps both
            ann.instances = [i for i in ann.instances if i.source != "model"]
            project.save_annotation(ann)  # 2) then the label file without them
            moved += len(model)
        except (UserFacingError, OSError) as exc:
            failed.append(str(exc))
    if failed:  # tried again on the next open; nothing was lost
        log.warning("model proposals not moved out of %d label file(s): %s", len(failed), failed[0])
    if moved:
        log.warning("moved %d unreviewed model proposal(s) out of labels/ into %s/ (accept them in the editor)",
                    moved, PROPOSALS_DIR)
    return moved


# ----------------------------------------------------------------------------- class edits


def proposal_files(root: Path) -> list[Path]:
    """Every proposals file of the project at ``root`` (hidden and temp files skipped)."""
    folder = Path(root) / PROPOSALS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith(".") and p.is_file())


def remap_proposals_text(text: str, mapping: dict[int, int | None], path: Path) -> str:
    """A proposals file's text with class ids mapped old -> new (None: that proposal goes), so a
    class rename/merge/delete keeps proposals meaning the same objects. LabelError if damaged."""
    try:
        data = loads_json(text, path)
    except (ValueError, UserFacingError) as exc:
        raise LabelError(path, None, f"not a proposals file ({exc})") from None
    rows = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise LabelError(path, None, 'expected {"version": 1, "instances": [...]}')
    out = []
    for k, row in enumerate(rows):
        cid = row.get("class_id") if isinstance(row, dict) else None
        if type(cid) is not int or cid not in mapping:
            raise LabelError(path, None, f"instances[{k}]: class id not covered by the class edit", cid)
        if mapping[cid] is None:
            continue
        out.append({**row, "class_id": mapping[cid]})
    return json.dumps({**data, "instances": out})


def remap_proposal_files(root: Path, mapping: dict[int, int | None]) -> dict[Path, tuple[str, str]]:
    """{path: (old text, new text)} of every proposals file a class edit changes; nothing written."""
    changes: dict[Path, tuple[str, str]] = {}
    errors = []
    for p in proposal_files(root):
        try:
            old = read_regular_text(p)
            new = remap_proposals_text(old, mapping, p)
        except (UserFacingError, OSError) as exc:
            errors.append(str(exc))
            continue
        if new != old:
            changes[p] = (old, new)
    if errors:
        raise UserFacingError("class edit refused, fix these proposals files first (nothing was changed):\n  "
                              + "\n  ".join(errors))
    return changes
