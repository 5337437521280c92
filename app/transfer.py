"""Import/export bodies run in a worker (see app.workers): the engine's formats, with
progress per image and cancel between images. The GUI only picks files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from core.annotation import ImageAnnotation
from core.data.formats.cli import read_source
from core.errors import UserFacingError

IMPORT_KINDS = {"ultralytics": "Ultralytics data.yaml…", "yolo": "YOLO folder…",
                "coco": "COCO json…", "labelme": "labelme json folder…"}
EXPORT_KINDS = {"yolo": "YOLO / Ultralytics dataset…", "coco": "COCO json…", "labelme": "labelme json…"}


def load_project_annotations(task, project) -> tuple[list[ImageAnnotation], list[str]]:
    """Every image's labels with progress; bad files are listed, never fatal."""
    anns: list[ImageAnnotation] = []
    problems: list[str] = []
    paths = project.image_paths()
    for n, p in enumerate(paths):
        if task is not None and task.cancelled:
            break
        if task is not None and n % 16 == 0:
            task.progress(n, len(paths), f"reading labels: {p.name}")
        try:
            anns.append(project.load_annotation(p))
        except UserFacingError as exc:
            problems.append(str(exc))
    return anns, problems


def export_project(task, project, kind: str, out: Path) -> str:
    """Write the project's labels as ``kind`` under ``out``; returns a one-line summary."""
    anns, problems = load_project_annotations(task, project)
    if task is not None and task.cancelled:
        return "cancelled"
    if task is not None:
        task.progress(len(anns), len(anns), f"writing {kind}")
    names = project.class_names
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "yolo":
        from core.data.formats.yolo_dataset import save_yolo_dataset

        splits = {project.image_dir / r: s for r, s in project.compute_splits().items()}
        where = save_yolo_dataset(out, anns, names, splits)
    elif kind == "coco":
        from core.data.formats.coco import save_coco

        assign = project.compute_splits()
        where = out / "annotations"
        for split in ("train", "val"):
            part = [a for a in anns if assign.get(project.rel_image(a.image_path)) == split]
            save_coco(where / f"instances_{split}.json", part, names, project.image_dir)
    elif kind == "labelme":
        from core.data.formats.labelme import save_labelme

        save_labelme(out, anns, names)
        where = out
    else:
        raise UserFacingError(f"unknown export format {kind!r} (choose from {', '.join(EXPORT_KINDS)})")
    n_inst = sum(len(a.instances) for a in anns)
    text = f"exported {len(anns)} images, {n_inst} instances as {kind} to {where}"
    if problems:
        text += f"; skipped {len(problems)} bad label file(s): " + "; ".join(problems[:3])
    shared = project.shared_label_files()
    if shared:
        from core.project import shared_label_message

        text += f"; warning: {'; '.join(shared_label_message(lp, imgs) for lp, imgs in list(shared.items())[:3])}"
    return text


def import_into(task, project_root: Path, kind: str, source: Path) -> str:
    """Read ``source`` with the engine's reader and add it to the project."""
    from core.project_import import import_into_project

    if task is not None:
        task.progress(0, 0, f"reading {Path(source).name}")
    with tempfile.TemporaryDirectory(prefix="dfine-import-") as tmp:
        result = read_source(kind, Path(source), extract_dir=Path(tmp))
        if not result.annotations:
            raise UserFacingError(f"{source}: nothing to import ({len(result.problems)} item(s) skipped)")
        if task is not None:
            if task.cancelled:
                return "cancelled"
            task.progress(0, 0, f"copying {len(result.annotations)} images into the project")
        _, stats = import_into_project(result, project_root)
    text = f"imported {stats.images} images, {stats.instances} instances"
    if stats.added_classes:
        text += f"; new classes: {', '.join(stats.added_classes)}"
    if result.problems:
        more = len(result.problems) - 3
        text += (f"; skipped {len(result.problems)}: " + "; ".join(str(p) for p in result.problems[:3])
                 + (f"; and {more} more" if more > 0 else ""))
    warnings = result.warnings + stats.warnings  # e.g. x.png renamed: x.jpg owns labels/x.txt
    if warnings:
        text += f"; {len(warnings)} warning(s): " + "; ".join(warnings[:3])
    return text
