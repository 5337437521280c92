"""YOLO detect/segment dataset folders and Ultralytics ``data.yaml`` <-> ImageAnnotation.

Reads what Ultralytics reads: ``data.yaml`` with ``path`` (dataset root; empty means
the yaml's folder), ``train``/``val`` (a folder, a txt list of images, or a list of
those) and ``names`` (list, or dict ``{id: name}``). A label file is found the
Ultralytics way: the last ``images`` folder in the image path becomes ``labels``
and the extension ``.txt``. One label file is parsed by :mod:`yolo_txt` (the same
parser the project store uses). Writes the layout Ultralytics trains on directly:
``images/<split>/``, ``labels/<split>/``, ``data.yaml``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from core.annotation import ImageAnnotation
from core.atomic_io import atomic_write_text
from core.bounded_input import load_yaml
from core.config import class_name_problem
from core.data.formats.report import ImportResult
from core.data.formats.yolo_txt import (
    decode_label_bytes,
    format_yolo_txt,
    load_sidecar,
    parse_yolo_txt,
    sidecar_path,
)
from core.data.images import IMAGE_EXTENSIONS, image_size
from core.errors import ImageReadError, LabelError, UserFacingError

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def label_path_for(image_path: Path) -> Path:
    """Ultralytics ``img2label_paths``: last ``images`` folder -> ``labels``, suffix -> ``.txt``."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image_path.with_suffix(".txt")  # images and labels side by side


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted for a deterministic import order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# ----------------------------------------------------------------------------- names / yaml

def parse_names(names: Any, path: Path, line: int | None = None) -> list[str]:
    """``names`` as a list or a dict ``{0: a, 1: b}`` (ids must be 0..N-1) -> list of names."""
    if isinstance(names, list):
        out = [str(n) for n in names]
    elif isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise LabelError(path, line, "'names' keys must be class ids 0..N-1", value=list(names)) from None
        if ids != list(range(len(ids))):
            raise LabelError(path, line, f"'names' ids must be 0..{len(ids) - 1} without gaps", value=ids)
        by_int = {int(k): v for k, v in names.items()}
        out = [str(by_int[i]) for i in ids]
    else:
        raise LabelError(path, line, "'names' must be a list or a mapping {id: name}", value=names)
    if not out:
        raise LabelError(path, line, "'names' is empty")
    for i, n in enumerate(out):
        if not n.strip():
            raise LabelError(path, line, f"class {i} has an empty name", value=n)
        problem = class_name_problem(n)
        if problem:
            raise LabelError(path, line, f"class {i}: name {problem}", value=n)
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise LabelError(path, line, "duplicate class name in 'names'", value=dup[0])
    return out


def _key_line(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), start=1):
        if line.split(":", 1)[0].strip() == key:
            return i
    return None


def read_data_yaml(yaml_path: Path | str) -> tuple[dict, list[str], Path]:
    """Parse and check a data.yaml; returns (raw dict, class names, dataset root)."""
    path = Path(yaml_path)
    if not path.is_file():
        raise LabelError(path, None, "data.yaml not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = load_yaml(text, str(path))  # bounded: aliases, depth, repeated keys
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise LabelError(path, mark.line + 1 if mark else None,
                         f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise LabelError(path, None, "expected a mapping with 'train', 'val' and 'names'",
                         value=type(data).__name__)
    if "names" not in data or data["names"] is None:
        raise LabelError(path, None, "missing key 'names' (the class list, e.g. names: [cat, dog])")
    names = parse_names(data["names"], path, _key_line(text, "names"))
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise LabelError(path, _key_line(text, "nc"), f"'nc' disagrees with 'names' ({len(names)} names)",
                         value=nc)
    if not data.get("train") and not data.get("val"):
        raise LabelError(path, None, "missing key 'train' (and 'val'): no images to import")
    root_value = data.get("path")
    if root_value in (None, ""):
        root = path.parent
    else:
        cand = Path(str(root_value)).expanduser()
        root = cand if cand.is_absolute() else path.parent / cand
        if not root.is_dir() and not cand.is_absolute() and cand.is_dir():
            root = cand  # Ultralytics also accepts a path relative to the working folder
        if not root.is_dir():
            raise LabelError(path, _key_line(text, "path"), "dataset root folder not found", value=root_value)
    return data, names, root


def _split_sources(value: Any, root: Path, key: str, yaml_path: Path) -> list[Path]:
    """Images of one split entry: a folder, a txt list of image paths, or a list of those."""
    entries = value if isinstance(value, list) else [value]
    images: list[Path] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise LabelError(yaml_path, None, f"'{key}' must be a folder, a .txt list or a list of those",
                             value=entry)
        src = Path(entry).expanduser()
        src = src if src.is_absolute() else root / src
        if src.is_dir():
            images += list_images(src)
        elif src.is_file() and src.suffix.lower() == ".txt":
            for line in src.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line:
                    p = Path(line)
                    images.append(p if p.is_absolute() else (src.parent / p))
        else:
            raise LabelError(yaml_path, None, f"'{key}' points to a folder or list that does not exist ({src})",
                             value=entry)
    return images


# ----------------------------------------------------------------------------- reading

def read_labelled_images(images: list[Path], class_names: list[str], result: ImportResult,
                         split: str | None = None) -> None:
    """Parse each image's label file into ``result``; bad files go to ``result.problems``."""
    missing = 0
    seen = {a.image_path for a in result.annotations}
    by_label: dict[Path, list[Path]] = {}
    for img in images:
        if img in seen:
            result.notes.append(f"{img}: listed twice (kept in split '{result.splits.get(img)}')")
            continue
        seen.add(img)
        try:
            w, h = image_size(img)
        except ImageReadError as exc:
            result.problems.append(LabelError(img, None, str(exc).split(": ", 1)[-1]))
            continue
        label = label_path_for(img)
        by_label.setdefault(label, []).append(img)
        ann = ImageAnnotation(img, w, h)
        if label.is_file():
            side = sidecar_path(label)
            try:
                text = decode_label_bytes(label.read_bytes(), label)
                parsed = parse_yolo_txt(text, w, h, path=label, num_classes=len(class_names),
                                        sidecar=load_sidecar(side.read_bytes() if side.is_file() else None))
            except LabelError as exc:
                result.problems.append(exc)  # the whole image is skipped, never half-imported
                continue
            ann.instances = parsed.instances
            result.notes.extend(parsed.warnings)
        else:
            missing += 1
        result.annotations.append(ann)
        if split is not None:
            result.splits[img] = split
    if missing:
        result.notes.append(f"{missing} image(s) have no label file; imported as background (no objects)")
    for label, imgs in by_label.items():
        if len(imgs) > 1 and label.is_file():  # x.jpg and x.png: YOLO pairs labels by stem
            result.warnings.append(f"{label}: shared by images {', '.join(p.name for p in imgs)} (same name, "
                                   "another extension): each was imported with its labels; check which it "
                                   "belongs to")


def load_ultralytics_yaml(yaml_path: Path | str) -> ImportResult:
    """Everything a data.yaml points to; ``train`` -> train split, ``val`` -> val split.

    ``test`` images are not imported (our projects have train/val only); that is
    reported in ``notes`` with the count.
    """
    path = Path(yaml_path)
    data, names, root = read_data_yaml(path)
    result = ImportResult(class_names=names)
    read: list[Path] = []
    for key in ("train", "val"):
        if data.get(key):
            images = _split_sources(data[key], root, key, path)
            read += images
            read_labelled_images(images, names, result, split=key)
    test: list[Path] = []
    if data.get("test"):
        try:
            test = _split_sources(data["test"], root, "test", path)
            n: int | str = len(test)
        except LabelError:
            n = "missing"  # an optional split that is not there must not block the import
        result.notes.append(f"'test' split ({n} images) not imported: projects have train/val only")
    report_orphan_labels(result, read, test)
    return result


def _read_classes_txt(folder: Path) -> list[str] | None:
    for cand in (folder / "classes.txt", folder / "labels" / "classes.txt"):
        if cand.is_file():
            lines = [ln.strip() for ln in cand.read_text(encoding="utf-8-sig").splitlines()]
            return parse_names([ln for ln in lines if ln], cand)
    return None


def load_yolo_folder(folder: Path | str, class_names: list[str] | None = None) -> ImportResult:
    """A YOLO folder without (or with) a data.yaml.

    Class names come from, in order: a ``*.yaml`` with ``names`` in the folder,
    ``classes.txt``, the ``class_names`` argument. Splits come from folder names
    (``images/train``, ``images/val``, ``valid``); other images get no split.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelError(folder, None, "YOLO dataset folder not found")
    for y in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        try:
            head = load_yaml(y.read_text(encoding="utf-8-sig"), str(y))
        except (yaml.YAMLError, UnicodeDecodeError, UserFacingError):
            continue  # not this folder's data.yaml
        if isinstance(head, dict) and "names" in head and (head.get("train") or head.get("val")):
            return load_ultralytics_yaml(y)
    names = _read_classes_txt(folder) or class_names
    if not names:
        raise LabelError(folder, None, "no class names: add classes.txt or data.yaml with 'names', "
                         "or pass --classes a,b,c")
    image_root = folder / "images" if (folder / "images").is_dir() else folder
    images = list_images(image_root)
    if not images:
        raise LabelError(folder, None, f"no images found under {image_root}")
    result = ImportResult(class_names=list(names))
    by_split: dict[str | None, list[Path]] = {}
    for img in images:
        rel = img.relative_to(image_root).parts[:-1]
        split = next((SPLIT_ALIASES[p.lower()] for p in rel if p.lower() in SPLIT_ALIASES), None)
        by_split.setdefault(split, []).append(img)
    for split, imgs in by_split.items():
        if split == "test":
            result.notes.append(f"'test' folder ({len(imgs)} images) not imported: projects have train/val only")
            continue
        read_labelled_images(imgs, result.class_names, result, split=split)
    report_orphan_labels(result, [i for s, imgs in by_split.items() if s != "test" for i in imgs],
                         by_split.get("test", []))
    return result


def report_orphan_labels(result: ImportResult, read: list[Path], other: Sequence[Path] = ()) -> None:
    """A label file in a label folder of the imported images whose image does not exist is
    dropped: name each one (and its instance count) in ``result.problems``, never silently.
    ``other``: images of the source not imported (the test split), whose labels are not orphans."""
    known = {label_path_for(img) for img in [*read, *other]}
    image_dirs = {label_path_for(img).parent: img.parent for img in read}
    for folder in sorted(image_dirs):
        try:
            files = sorted(p for p in folder.glob("*.txt") if p.is_file())
        except OSError:
            continue
        for label in files:
            if label in known or label.name == "classes.txt" or label.name.startswith("."):
                continue
            try:
                rows = sum(1 for line in label.read_text(encoding="utf-8", errors="replace").splitlines()
                           if line.strip())
            except OSError:
                rows = 0
            image_dir = image_dirs[folder]
            result.problems.append(LabelError(
                label, None, f"label file without an image (no {label.stem}.* among the imported images of "
                f"{image_dir}); its {rows} instance(s) were not imported"))


# ----------------------------------------------------------------------------- writing

def save_yolo_dataset(out_dir: Path | str, annotations: list[ImageAnnotation], class_names: list[str],
                      splits: dict[Path, str] | None = None, copy_images: bool = True) -> Path:
    """Write ``images/<split>/``, ``labels/<split>/`` (+ sidecars for multi-part objects),
    ``classes.txt`` and ``data.yaml`` (no ``path`` key, so it resolves to its own folder
    and the dataset can be moved). Images without a split go to ``train``. Returns the yaml path.
    """
    out = Path(out_dir)
    splits = splits or {}
    used: dict[tuple[str, str], int] = {}
    for ann in annotations:
        split = splits.get(ann.image_path, "train")
        stem, suffix = ann.image_path.stem, ann.image_path.suffix
        n = used.get((split, stem), 0)
        used[(split, stem)] = n + 1
        name = stem if n == 0 else f"{stem}_{n}"  # two sources with the same file name
        img_dst = out / "images" / split / f"{name}{suffix}"
        lbl_dst = out / "labels" / split / f"{name}.txt"
        img_dst.parent.mkdir(parents=True, exist_ok=True)
        lbl_dst.parent.mkdir(parents=True, exist_ok=True)
        if copy_images and img_dst.resolve() != ann.image_path.resolve():
            shutil.copy2(ann.image_path, img_dst)
        formatted = format_yolo_txt(ann.instances, ann.width, ann.height)
        atomic_write_text(lbl_dst, formatted.text)
        side = sidecar_path(lbl_dst)
        if formatted.sidecar is not None:
            atomic_write_text(side, json.dumps(formatted.sidecar))
        elif side.exists():
            side.unlink()
    atomic_write_text(out / "classes.txt", "".join(n + "\n" for n in class_names))
    present = {s for s in (splits.get(a.image_path, "train") for a in annotations)}
    data: dict[str, Any] = {"train": "images/train"}
    data["val"] = "images/val" if "val" in present else "images/train"
    data["nc"] = len(class_names)
    data["names"] = {i: n for i, n in enumerate(class_names)}
    yaml_path = out / "data.yaml"
    header = "# written by dfine-studio; `path` is omitted so it resolves to this folder\n"
    atomic_write_text(yaml_path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return yaml_path
