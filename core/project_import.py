"""Put an :class:`ImportResult` into a project: copy images, map classes by name,
write labels through the project's atomic store, record train/val splits.

Why here and not in each format: every format ends the same way, and the rules
that protect the user's project live in one place: an image that is already
labelled in the project is never overwritten unless asked; two source images with
the same name never overwrite each other; new class names are added to the
project's list (journaled, undoable) instead of being dropped.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from core.annotation import ImageAnnotation
from core.bounded_input import read_regular_text
from core.atomic_io import atomic_write_text
from core.data.formats.report import ImportResult
from core.errors import LabelError, UserFacingError
from core.project import Project


@dataclass
class ImportStats:
    images: int = 0
    instances: int = 0
    added_classes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # printed as "warning:" (e.g. a stem rename)
    skipped_existing: list[Path] = field(default_factory=list)
    renamed: int = 0


def _relative_paths(result: ImportResult) -> dict[Path, Path]:
    """Where each image goes under the project's image folder: its path relative to the
    source root (or to the images' common folder); an image outside it keeps its name."""
    resolved = {a.image_path: a.image_path.resolve() for a in result.annotations}
    if result.source_root is not None:
        root = result.source_root.resolve()
    elif resolved:
        root = Path(os.path.commonpath([str(p.parent) for p in resolved.values()]))
    else:
        return {}
    return {src: (r.relative_to(root) if r.is_relative_to(root) else Path(r.name)) for src, r in resolved.items()}


def open_or_create(root: Path, class_names: list[str], task: str | None) -> Project:
    if (root / "project.yaml").is_file():
        return Project.open(root)
    return Project.create(root, class_names, task or "segment")


def guess_task(result: ImportResult) -> str:
    """segment when any instance has a polygon, else detect."""
    return "segment" if any(not i.is_box for a in result.annotations for i in a.instances) else "detect"


def import_into_project(result: ImportResult, project_root: Path | str, task: str | None = None,
                        overwrite: bool = False, split: str | None = None) -> tuple[Project, ImportStats]:
    """Copy the images of ``result`` under the project's image folder (keeping their
    sub-folders relative to the source folder) and save their labels. ``split`` puts
    every imported image in that split (e.g. a COCO ``instances_val.json``)."""
    root = Path(project_root).resolve()  # Project treats relative image paths as relative to images/
    project = open_or_create(root, result.class_names, task or guess_task(result))
    stats = ImportStats()
    for name in result.class_names:
        if name not in project.class_names:
            project.add_class(name)
            stats.added_classes.append(name)
    remap = {i: project.class_names.index(n) for i, n in enumerate(result.class_names)}
    rel_paths = _relative_paths(result)
    image_dir = project.image_dir
    image_dir.mkdir(parents=True, exist_ok=True)
    split_lines: dict[str, list[str]] = {"train": [], "val": []}
    for ann in result.annotations:
        src = ann.image_path
        rel = rel_paths[src]
        dst, sharer = _destination(project, src, image_dir / rel)
        if dst != image_dir / rel:
            stats.renamed += 1
        if sharer is not None:
            stats.warnings.append(f"{src} imported as {project.rel_image(dst)}: {project.rel_image(sharer)} "
                                  f"already uses {project.label_path(sharer)} (labels pair with images by "
                                  "name, so x.jpg and x.png would share one label file)")
        if dst.exists() and project.label_path(dst).exists() and not overwrite and src.resolve() != dst.resolve():
            stats.skipped_existing.append(dst)
            result.problems.append(LabelError(project.label_path(dst), None,
                                              "already labelled in the project; kept (use --overwrite to replace)",
                                              value=str(src)))
            continue
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        instances = [i.copy() for i in ann.instances]
        for inst in instances:
            inst.class_id = remap[inst.class_id]
        project.save_annotation(ImageAnnotation(dst, ann.width, ann.height, instances))
        stats.images += 1
        stats.instances += len(instances)
        side = split or result.splits.get(src)
        if side in split_lines:
            split_lines[side].append(project.rel_image(dst))
    _record_splits(project, split_lines)
    return project, stats


def _destination(project: Project, src: Path, wanted: Path) -> tuple[Path, Path | None]:
    """Where ``src`` goes in the project: ``wanted``, else ``stem_1``, ``stem_2``... when that name
    holds a different image or another image of that stem owns its label file (x.jpg there,
    x.png coming); returns the image whose label file it would have shared, if any."""
    dst, n, sharer = wanted, 1, None
    while True:
        if dst.exists():
            if _same_file(src, dst):
                return dst, sharer
        else:
            others = project.label_sharers(dst)
            if not others:
                return dst, sharer
            sharer = sharer or others[0]
        dst = wanted.with_name(f"{wanted.stem}_{n}{wanted.suffix}")
        n += 1


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _record_splits(project: Project, new: dict[str, list[str]]) -> None:
    """Add imported images to splits/<split>.txt (moving them out of the other file), then let
    the project place every other image (existing placements never move)."""
    with project.lock():  # read-modify-write of the split files
        _record_splits_locked(project, new)


def _record_splits_locked(project: Project, new: dict[str, list[str]]) -> None:
    if not any(new.values()):
        project.write_splits()
        return
    project.splits_dir.mkdir(parents=True, exist_ok=True)
    current: dict[str, list[str]] = {}
    for name in ("train", "val"):
        p = project.splits_dir / f"{name}.txt"
        current[name] = [ln.strip() for ln in read_regular_text(p).splitlines()
                         if ln.strip()] if p.exists() else []
    for name, other in (("train", "val"), ("val", "train")):
        moved = set(new[other])
        keep = [r for r in current[name] if r not in moved]
        merged = keep + [r for r in new[name] if r not in keep]
        atomic_write_text(project.splits_dir / f"{name}.txt", "".join(r + "\n" for r in sorted(set(merged))))
    project.write_splits()


def project_annotations(project: Project) -> tuple[list[ImageAnnotation], list[UserFacingError]]:
    """All labels of a project, with the files that failed to load (never dropped silently)."""
    return project.load_all()
