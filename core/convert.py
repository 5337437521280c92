"""Labels in and out of a project: the one engine behind `dfine import` / `dfine convert` and the
GUI's File > Import / Export (``app.transfer`` only adds progress, cancel and a summary line).

- :func:`read_source` reads one source format (no project involved);
- :func:`import_source` reads it and adds it to a project (``core.project_import``'s rules);
- :func:`convert_project` writes a project's labels as YOLO / COCO / labelme under a folder
  outside the project, copying the images for COCO and labelme (their files reference them)
  unless ``copy_images`` is off.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.annotation import ImageAnnotation
from core.data.formats.report import ImportResult
from core.errors import UserFacingError

IMPORT_KINDS = ("ultralytics", "yolo", "coco", "labelme")
CONVERT_KINDS = ("yolo", "coco", "labelme")

#: ``progress(done, total, message)``; ``total`` 0: no count known
Progress = Callable[[int, int, str], None]
#: polled between images: True stops the work (nothing more is written)
ShouldStop = Callable[[], bool]


def _no_progress(done: int, total: int, message: str) -> None:
    pass


def _never() -> bool:
    return False


def read_source(kind: str, source: Path, images: Path | None = None, classes: list[str] | None = None,
                extract_dir: Path | None = None) -> ImportResult:
    """The ImportResult of one source (no project involved). COCO ``file_name``s are relative to
    ``images``, else to ``<root>/images`` for a json in ``<root>/annotations/``, else to the json's
    folder."""
    if kind == "ultralytics":
        from core.data.formats.yolo_dataset import load_ultralytics_yaml

        return load_ultralytics_yaml(source)
    if kind == "yolo":
        from core.data.formats.yolo_dataset import load_ultralytics_yaml, load_yolo_folder

        return load_ultralytics_yaml(source) if source.is_file() else load_yolo_folder(source, classes)
    if kind == "coco":
        from core.data.formats.coco import load_coco

        if images is None and source.parent.name == "annotations" and (source.parent.parent / "images").is_dir():
            images = source.parent.parent / "images"  # the layout `dfine convert ... coco` writes
        return load_coco(source, images)
    if kind == "labelme":
        from core.data.formats.labelme import load_labelme

        return load_labelme(source, classes, extract_dir)
    raise UserFacingError(f"unknown import kind {kind!r} (choose from {', '.join(IMPORT_KINDS)})")


class NothingToImport(UserFacingError):
    """The source held no usable image; ``result`` says what was skipped and why."""

    def __init__(self, source: Path, result: ImportResult) -> None:
        super().__init__(f"{source}: nothing to import ({len(result.problems)} item(s) skipped)"
                         + (" — each named above with its reason" if result.problems else ""))
        self.result = result


def import_source(kind: str, source: Path, project_root: Path, images: Path | None = None,
                  classes: list[str] | None = None, task: str | None = None, overwrite: bool = False,
                  split: str | None = None, progress: Progress = _no_progress, should_stop: ShouldStop = _never):
    """Read ``source`` and add it to the project at ``project_root`` (created when it has no
    project.yaml): ``(result, project, stats)``, or None when stopped before anything was written."""
    from core.project_import import import_into_project

    progress(0, 0, f"reading {Path(source).name}")
    with tempfile.TemporaryDirectory(prefix="dfine-import-") as tmp:
        result = read_source(kind, Path(source), images, classes, extract_dir=Path(tmp))
        if not result.annotations:
            raise NothingToImport(source, result)
        if should_stop():
            return None
        progress(0, 0, f"copying {len(result.annotations)} images into the project")
        project, stats = import_into_project(result, Path(project_root), task=task, overwrite=overwrite, split=split)
    return result, project, stats


@dataclass
class ConvertResult:
    where: Path  # the data.yaml / annotations folder / labelme folder written
    images: int
    instances: int
    classes: int
    skipped: list[str] = field(default_factory=list)  # unreadable label files, named
    warnings: list[str] = field(default_factory=list)  # e.g. two images sharing one label file
    notes: list[str] = field(default_factory=list)


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


def _rel(image: Path, root: Path) -> str:
    try:
        return image.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return image.name


def check_convert_target(project, out: Path, to: str) -> None:
    """Refuse a file, the project itself or a folder that holds it (the copy would mix with the
    originals)."""
    if out.exists() and not out.is_dir():
        raise UserFacingError(f"{out}: is a file, not a folder; pick a folder for the {to} output")
    res = out.resolve()
    inside = (project.root, project.image_dir, project.labels_dir)
    if res in inside or any(p.is_relative_to(res) for p in inside):
        raise UserFacingError(f"{out}: is the project itself (or holds it); converting into it would "
                              f"mix the copy with the originals. Pick another folder")


def convert_project(project, to: str, out: Path, copy_images: bool = True, progress: Progress = _no_progress,
                    should_stop: ShouldStop = _never) -> ConvertResult | None:
    """Write ``project``'s labels as ``to`` under ``out``; None when stopped before writing."""
    from core.project import shared_label_message

    if to not in CONVERT_KINDS:
        raise UserFacingError(f"unknown export format {to!r} (choose from {', '.join(CONVERT_KINDS)})")
    out = Path(out)
    check_convert_target(project, out, to)
    anns: list[ImageAnnotation] = []
    skipped: list[str] = []
    paths = project.image_paths()
    for n, image in enumerate(paths):
        if should_stop():
            return None
        if n % 16 == 0:
            progress(n, len(paths), f"reading labels: {image.name}")
        try:
            anns.append(project.load_annotation(image))
        except UserFacingError as exc:
            skipped.append(str(exc))
    progress(len(paths), len(paths), f"writing {to}")
    warnings = [shared_label_message(label, images) for label, images in project.shared_label_files().items()]
    names = project.class_names
    notes: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    if to == "yolo":
        from core.data.formats.yolo_dataset import save_yolo_dataset

        splits = {project.image_dir / r: s for r, s in project.compute_splits().items()}
        where = save_yolo_dataset(out, anns, names, splits)
    elif to == "coco":
        from core.data.formats.coco import save_coco

        image_root = project.image_dir
        if copy_images:
            anns = _copy_images(anns, project.image_dir, out / "images")
            image_root = out / "images"
        assign = project.compute_splits()
        where = out / "annotations"
        for split in ("train", "val"):
            part = [a for a in anns if assign.get(_rel(a.image_path, image_root)) == split]
            save_coco(where / f"instances_{split}.json", part, names, image_root)
        notes.append(f"COCO file_names are relative to {image_root}")
    else:
        from core.data.formats.labelme import save_labelme

        if copy_images:
            anns = _copy_images(anns, project.image_dir, out)
        save_labelme(out, anns, names, beside_images=copy_images)
        where = out
    return ConvertResult(where, len(anns), sum(len(a.instances) for a in anns), len(names), skipped, warnings,
                         notes)
