"""`dfine import` and `dfine convert`.

    dfine import ultralytics path/data.yaml <project>
    dfine import yolo <folder> <project> [--classes a,b]
    dfine import coco <instances.json> <project> [--images DIR]
    dfine import labelme <file-or-folder> <project>
    dfine convert <project> yolo|coco|labelme <out_dir>

Every skipped item is printed with its reason and counted; the exit code is 1
when anything was skipped (the rest is still imported), 0 when all went in. The work is
``core.convert`` (the GUI's import/export runs the same functions); this module only prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.convert import CONVERT_KINDS, IMPORT_KINDS, NothingToImport, convert_project, import_source
from core.messages import run_with_events


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=IMPORT_KINDS, help="source format")
    p.add_argument("source", type=Path, help="data.yaml / YOLO folder / COCO json / labelme json or folder")
    p.add_argument("project", type=Path, help="project folder (created when it has no project.yaml)")
    p.add_argument("--images", type=Path, default=None, help="COCO: folder the file_names are relative to "
                   "(default: <root>/images for a json in <root>/annotations, else the json's folder)")
    p.add_argument("--classes", default=None, help="YOLO folder without classes.txt/data.yaml: a,b,c")
    p.add_argument("--task", choices=("segment", "detect"), default=None,
                   help="task of a new project (default: segment if any polygon, else detect)")
    p.add_argument("--overwrite", action="store_true", help="replace labels of images already in the project")
    p.add_argument("--split", choices=("train", "val"), default=None,
                   help="put every imported image in this split (default: the source's own split, if any)")
    p.add_argument("--events", metavar="DEST", choices=["-"],
                   help="'-': JSON lines on stdout (core.messages): a 'warning' event with dropped=true, path "
                   "and reason for every file or item not imported, then a 'result' event (verb 'import') "
                   "whose 'skipped' lists them again; the human output goes to stderr")


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("to", choices=CONVERT_KINDS, help="target format")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--no-copy", action="store_true",
                   help="reference the project's images instead of copying them (coco, labelme)")


def _print_problems(problems: list, notes: list[str], warnings: list[str] | None = None, out=None) -> None:
    out = out or sys.stderr
    for note in notes:
        print(f"note: {note}", file=out)
    for warning in warnings or []:
        print(f"warning: {warning}", file=out)
    for exc in problems:
        print(f"skipped: {exc}", file=out)


def _reason(exc) -> str:
    """A problem's message without the file name in front (the path is its own field)."""
    text = str(exc)
    path = getattr(exc, "path", None)
    if path is not None:
        for head in (f"{path}:{exc.line}: " if getattr(exc, "line", None) is not None else None, f"{path}: "):
            if head and text.startswith(head):
                return text[len(head):]
    return text


def dropped_summary(problems: list) -> str:
    """The summary's "skipped" part: how many, and which files (every one named above with why)."""
    if not problems:
        return "skipped 0 items"
    names = [getattr(e, "path", None) for e in problems]
    shown = ", ".join(str(n.name) if n is not None else "?" for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"skipped {len(problems)} item(s): {shown}{more} (each with its reason above)"


def run_import(args: argparse.Namespace) -> int:
    return run_with_events(getattr(args, "events", None) == "-", lambda emit, out: _run_import(args, emit, out))


def _run_import(args: argparse.Namespace, emit, out) -> int:
    def dropped(problems: list) -> list[dict]:
        items = [{"path": str(getattr(e, "path", "")), "reason": _reason(e)} for e in problems]
        for item in items:
            emit("warning", message=f"skipped: {item['path']}: {item['reason']}", dropped=True, **item)
        return items

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        result, project, stats = import_source(args.kind, args.source, args.project, args.images, classes,
                                               task=args.task, overwrite=args.overwrite, split=args.split)
    except NothingToImport as exc:
        _print_problems(exc.result.problems, exc.result.notes, exc.result.warnings)
        dropped(exc.result.problems)
        raise
    _print_problems(result.problems, result.notes, result.warnings + stats.warnings)
    skipped = dropped(result.problems)
    if stats.added_classes:
        print(f"added classes: {', '.join(stats.added_classes)}", file=out)
    if stats.renamed:
        print(f"{stats.renamed} image(s) renamed to avoid overwriting a different image of the same name", file=out)
    summary = (f"imported into {project.root}: {stats.images} images, {stats.instances} instances; "
               f"{dropped_summary(result.problems)}")
    print(summary, file=out)
    emit("result", verb="import", paths={"project": str(project.root)}, message=summary, images=stats.images,
         instances=stats.instances, skipped=skipped)
    return 1 if result.problems else 0


def run_convert(args: argparse.Namespace) -> int:
    from core.project import Project

    project = Project.open(args.project.resolve())
    done = convert_project(project, args.to, args.out, copy_images=not args.no_copy)
    assert done is not None  # nothing stops it here
    for text in done.skipped:
        print(f"skipped: {text}", file=sys.stderr)
    for text in done.warnings:
        print(f"warning: {text}", file=sys.stderr)
    for text in done.notes:
        print(text)
    print(f"wrote {args.to} to {done.where}: {done.images} images, {done.instances} instances, {done.classes} "
          f"classes; skipped {len(done.skipped)} file(s)")
    return 1 if done.skipped else 0
