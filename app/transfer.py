"""Import/export bodies run in a worker (see app.workers): ``core.convert``, the engine of
`dfine import` / `dfine convert`, with progress per image, cancel between images and a one-line
summary. The GUI only picks files."""

from __future__ import annotations

from pathlib import Path

from core.convert import convert_project, import_source

IMPORT_KINDS = {"ultralytics": "Ultralytics data.yaml…", "yolo": "YOLO folder…",
                "coco": "COCO json…", "labelme": "labelme json folder…"}
EXPORT_KINDS = {"yolo": "YOLO / Ultralytics dataset…", "coco": "COCO json…", "labelme": "labelme json…"}


def _hooks(task):
    if task is None:
        return {}
    return {"progress": task.progress, "should_stop": lambda: task.cancelled}


def export_project(task, project, kind: str, out: Path) -> str:
    """Write the project's labels as ``kind`` under ``out`` (as `dfine convert`: images copied for
    COCO and labelme, never into the project); returns a one-line summary."""
    done = convert_project(project, kind, Path(out), **_hooks(task))
    if done is None:
        return "cancelled"
    text = f"exported {done.images} images, {done.instances} instances as {kind} to {done.where}"
    if done.skipped:
        text += f"; skipped {len(done.skipped)} bad label file(s): " + "; ".join(done.skipped[:3])
    if done.warnings:
        text += f"; warning: {'; '.join(done.warnings[:3])}"
    return text


def import_into(task, project_root: Path, kind: str, source: Path) -> str:
    """Read ``source`` with the engine's reader and add it to the project (as `dfine import`)."""
    done = import_source(kind, Path(source), Path(project_root), **_hooks(task))
    if done is None:
        return "cancelled"
    result, _, stats = done
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
