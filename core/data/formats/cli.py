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


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", type=Path, help="project folder")
    p.add_argument("to", choices=CONVERT_KINDS, help="target format")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--no-copy", action="store_true",
                   help="reference the project's images instead of copying them (coco, labelme)")


def _print_problems(problems: list, notes: list[str], warnings: list[str] | None = None) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in warnings or []:
        print(f"warning: {warning}", file=sys.stderr)
    for exc in problems:
        print(f"skipped: {exc}", file=sys.stderr)


def run_import(args: argparse.Namespace) -> int:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        result, project, stats = import_source(args.kind, args.source, args.project, args.images, classes,
                                               task=args.task, overwrite=args.overwrite, split=args.split)
    except NothingToImport as exc:
        _print_problems(exc.result.problems, exc.result.notes, exc.result.warnings)
        raise
    _print_problems(result.problems, result.notes, result.warnings + stats.warnings)
    if stats.added_classes:
        print(f"added classes: {', '.join(stats.added_classes)}")
    if stats.renamed:
        print(f"{stats.renamed} image(s) renamed to avoid overwriting a different image of the same name")
    print(f"imported into {project.root}: {stats.images} images, {stats.instances} instances; "
          f"skipped {len(result.problems)} item(s)")
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
