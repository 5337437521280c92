"""`dfine import` and `dfine convert`.

    dfine import ultralytics path/data.yaml <project>
    dfine import yolo <folder> <project> [--classes a,b]
    dfine import coco <instances.json> <project> [--images DIR]
    dfine import labelme <file-or-folder> <project>
    dfine convert <project> yolo|coco|labelme <out_dir>

Every skipped item is printed with its reason and counted; the exit code is 1
when anything was skipped (the rest is still imported), 0 when all went in.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from core.annotation import ImageAnnotation
from core.errors import UserFacingError
from core.messages import run_with_events

IMPORT_KINDS = ("ultralytics", "yolo", "coco", "labelme")
CONVERT_KINDS = ("yolo", "coco", "labelme")


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=IMPORT_KINDS, help="source format")
    p.add_argument("source", type=Path, help="data.yaml / YOLO folder / COCO json / labelme json or folder")
    p.add_argument("project", type=Path, help="project folder (created when it has no project.yaml)")
    p.add_argument("--images", type=Path, default=None, help="COCO: folder the file_names are relative to "
                   "(default: the json's folder)")
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

def read_source(kind: str, source: Path, images: Path | None = None, classes: list[str] | None = None,
                extract_dir: Path | None = None):
    """The ImportResult of one source (no project involved)."""
    if kind == "ultralytics":
        from core.data.formats.yolo_dataset import load_ultralytics_yaml

        return load_ultralytics_yaml(source)
    if kind == "yolo":
        from core.data.formats.yolo_dataset import load_ultralytics_yaml, load_yolo_folder

        return load_ultralytics_yaml(source) if source.is_file() else load_yolo_folder(source, classes)
    if kind == "coco":
        from core.data.formats.coco import load_coco

        return load_coco(source, images)
    if kind == "labelme":
        from core.data.formats.labelme import load_labelme

        return load_labelme(source, classes, extract_dir)
    raise UserFacingError(f"unknown import kind {kind!r} (choose from {', '.join(IMPORT_KINDS)})")


def run_import(args: argparse.Namespace) -> int:
    return run_with_events(getattr(args, "events", None) == "-", lambda emit, out: _run_import(args, emit, out))


def _run_import(args: argparse.Namespace, emit, out) -> int:
    from core.project_import import import_into_project

    def dropped(problems: list) -> list[dict]:
        items = [{"path": str(getattr(e, "path", "")), "reason": _reason(e)} for e in problems]
        for item in items:
            emit("warning", message=f"skipped: {item['path']}: {item['reason']}", dropped=True, **item)
        return items

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    with tempfile.TemporaryDirectory(prefix="dfine-import-") as tmp:
        result = read_source(args.kind, args.source, args.images, classes, extract_dir=Path(tmp))
        if not result.annotations:
            _print_problems(result.problems, result.notes, result.warnings)
            dropped(result.problems)
            raise UserFacingError(f"{args.source}: nothing to import ({len(result.problems)} item(s) skipped)"
                                  + (" — each named above with its reason" if result.problems else ""))
        project, stats = import_into_project(result, args.project, task=args.task, overwrite=args.overwrite,
                                              split=args.split)
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


def _copy_images(anns: list[ImageAnnotation], image_dir: Path, dest: Path) -> list[ImageAnnotation]:
    """Copies of the images under ``dest`` (sub-folders kept); annotations re-pointed at them."""
    out = []
    for a in anns:
        try:
            rel = a.image_path.resolve().relative_to(image_dir.resolve())
        except ValueError:
            rel = Path(a.image_path.name)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.stat().st_size != a.image_path.stat().st_size:
            shutil.copy2(a.image_path, target)
        b = a.copy()
        b.image_path = target
        out.append(b)
    return out


def run_convert(args: argparse.Namespace) -> int:
    from core.project import Project, shared_label_message

    project = Project.open(args.project.resolve())
    anns, errors = project.load_all()
    for exc in errors:
        print(f"skipped: {exc}", file=sys.stderr)
    for label, images in project.shared_label_files().items():
        print(f"warning: {shared_label_message(label, images)}", file=sys.stderr)
    names = project.class_names
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UserFacingError(f"{out}: is a file, not a folder; pick a folder for the {args.to} output")
    res = out.resolve()
    inside = (project.root, project.image_dir, project.labels_dir)
    if res in inside or any(p.is_relative_to(res) for p in inside):
        raise UserFacingError(f"{out}: is the project itself (or holds it); converting into it would "
                              f"mix the copy with the originals. Pick another folder")
    out.mkdir(parents=True, exist_ok=True)
    if args.to == "yolo":
        from core.data.formats.yolo_dataset import save_yolo_dataset

        splits = {project.image_dir / r: s for r, s in project.compute_splits().items()}
        where = save_yolo_dataset(out, anns, names, splits)
    elif args.to == "coco":
        from core.data.formats.coco import save_coco

        image_root = project.image_dir
        if not args.no_copy:
            anns = _copy_images(anns, project.image_dir, out / "images")
            image_root = out / "images"
        assign = project.compute_splits()
        where = out / "annotations"
        for split in ("train", "val"):
            part = [a for a in anns if assign.get(_rel(a.image_path, image_root)) == split]
            save_coco(where / f"instances_{split}.json", part, names, image_root)
        print(f"COCO file_names are relative to {image_root}")
    else:
        from core.data.formats.labelme import save_labelme

        if not args.no_copy:
            anns = _copy_images(anns, project.image_dir, out)
        save_labelme(out, anns, names, beside_images=not args.no_copy)
        where = out
    n_inst = sum(len(a.instances) for a in anns)
    print(f"wrote {args.to} to {where}: {len(anns)} images, {n_inst} instances, {len(names)} classes; "
          f"skipped {len(errors)} file(s)")
    return 1 if errors else 0


def _rel(image: Path, root: Path) -> str:
    try:
        return image.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return image.name
