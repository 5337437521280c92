"""The project folder: config, images, the atomic label store, class edits, splits.

Layout (see DESIGN.md)::

    project.yaml  images/ (or image_root)  labels/<rel/path/stem>.txt (+ .parts.json sidecars)
    splits/train.txt, val.txt   groups.csv (optional)   runs/  exports/  review/
    .dfine/class_edit.json      journal of the last class edit (undo + crash recovery)

Why this shape: the label files are the user's work, so every write is atomic
(core.atomic_io), a malformed file is reported and never rewritten, and a class
edit that touches many files is journaled first so a crash half-way is rolled back
on the next open and the last edit can be undone in one step.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from glob import escape as glob_escape
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from core.annotation import ImageAnnotation
from core.atomic_io import atomic_delete, atomic_write_text, remove_stale_temps
from core.bounded_input import (
    compile_user_regex,
    load_json_file,
    load_yaml,
    read_regular_bytes,
    read_regular_text,
    search_user_regex,
)
from core.config import CONFIG_FILE, ProjectConfig, check_class_name, load_config, parse_config_text
from core.data.formats.yolo_txt import (
    decode_label_bytes,
    format_yolo_txt,
    load_sidecar,
    parse_class_id,
    parse_yolo_txt,
    sidecar_path,
)
from core.data.images import IMAGE_EXTENSIONS  # the one reader decides what an image is
from core.errors import ConfigError, ConflictError, LabelError, LimitError, UserFacingError
from core.project_lock import held_here, project_lock
from core.proposals import (
    PROPOSALS_DIR,
    migrate_sidecar_proposals,
    proposal_files,
    proposals_path,
    read_proposals,
    remap_proposal_files,
    remap_proposals_text,
    write_proposals,
)
from core.project_paths import PathOutsideError, inside, is_within

log = logging.getLogger(__name__)

def _find_template() -> Path:
    """projects_template/ sits beside core/ in a checkout (and in the PyInstaller folder);
    a wheel installs it under <prefix>/share/dfine-studio/ (pyproject data-files)."""
    candidates = [Path(__file__).resolve().parents[1] / "projects_template" / CONFIG_FILE,
                  Path(sys.prefix) / "share" / "dfine-studio" / "projects_template" / CONFIG_FILE]
    if getattr(sys, "_MEIPASS", None):
        candidates.insert(0, Path(sys._MEIPASS) / "projects_template" / CONFIG_FILE)
    return next((c for c in candidates if c.exists()), candidates[0])


TEMPLATE = _find_template()
GROUPS_FILE = "groups.csv"
JOURNAL_DIR = ".dfine"
Split = Literal["train", "val"]


def _image_size(path: Path) -> tuple[int, int]:
    from core.data.images import image_size  # EXIF-aware, shared with the reader

    return image_size(path)


def as_project(project: Project | str | os.PathLike) -> Project:
    """A project as given, or the project at a root folder (callers accept either)."""
    return Project.open(project) if isinstance(project, (str, os.PathLike)) else project


class Project:
    """A project folder on disk. Cheap to open; nothing is loaded until asked."""

    def __init__(self, root: Path, config: ProjectConfig):
        self.root = Path(root).resolve()  # absolute: image paths are resolved against images/
        self.config = config
        self.lock_wait_s: float | None = None  # None: core.project_lock.LOCK_WAIT_S; the GUI sets less

    # ------------------------------------------------------------------ open / create

    @classmethod
    def open(cls, root: Path | str) -> Project:
        root = Path(root)
        cfg_path = root / CONFIG_FILE
        if not cfg_path.is_file():
            raise UserFacingError(f"{root}: not a dfine-studio project (no {CONFIG_FILE}); create one with `dfine new`")
        journal = ClassEditJournal(root)
        project = None
        if not held_here(root):
            # only while no writer holds the lock: a temp file of a live writer is not stale
            with contextlib.suppress(OSError), project_lock(root, blocking=False) as mine:
                if mine:
                    journal._recover_locked()
                    for d in (root / "labels", root / JOURNAL_DIR, root / PROPOSALS_DIR):
                        remove_stale_temps(d)
                    project = cls(root, load_config(cfg_path))
                    migrate_sidecar_proposals(project)  # old projects: model rows out of labels/
        return project or cls(root, load_config(cfg_path))

    @classmethod
    def create(cls, root: Path | str, classes: Iterable[str], task: str = "segment") -> Project:
        """New project from the commented template (comments kept), with the given classes and task."""
        root = Path(root)
        if (root / CONFIG_FILE).exists():
            raise UserFacingError(f"{root / CONFIG_FILE}: already exists; open the project instead")
        classes = [check_class_name(c) for c in classes]
        text = TEMPLATE.read_text(encoding="utf-8")
        text = set_top_level_value(text, "classes", _flow_list(classes))
        text = set_top_level_value(text, "task", _flow_scalar(task))
        cfg = parse_config_text(text, str(root / CONFIG_FILE))  # validate before touching disk
        root.mkdir(parents=True, exist_ok=True)
        for d in ("images", "labels", "splits"):
            (root / d).mkdir(exist_ok=True)
        atomic_write_text(root / CONFIG_FILE, text)
        return cls(root, cfg)

    def reload_config(self) -> ProjectConfig:
        self.config = load_config(self.config_path)
        return self.config

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def class_names(self) -> list[str]:
        return list(self.config.classes)

    @property
    def image_dir(self) -> Path:
        ir = self.config.image_root
        if not ir:
            return self.root / "images"
        p = Path(ir).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else self.root / p))

    @property
    def labels_dir(self) -> Path:
        return self.root / "labels"

    @property
    def splits_dir(self) -> Path:
        return self.root / "splits"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def review_dir(self) -> Path:
        return self.root / "review"

    def image_paths(self) -> list[Path]:
        """Every image under the image folder (recursive, any case of extension), sorted."""
        d = self.image_dir
        if not d.is_dir():
            return []
        return sorted(
            p for p in d.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
        )

    def rel_image(self, image: Path | str) -> str:
        """Image path relative to the image folder, posix (the key used by splits and groups)."""
        image = Path(image)
        if not image.is_absolute():
            image = self.image_dir / image
        try:
            return Path(os.path.normpath(image)).relative_to(self.image_dir).as_posix()
        except ValueError:
            return image.name

    def label_path(self, image: Path | str) -> Path:
        """labels/<same sub-folders>/<stem>.txt, as Ultralytics pairs images/ and labels/."""
        rel = Path(self.rel_image(image))
        return self.labels_dir / rel.with_suffix(".txt")

    def shared_label_files(self) -> dict[Path, list[str]]:
        """Label files that more than one image maps to (x.jpg and x.png in one folder), with
        those images (relative): both show, train on and export the same labels."""
        by_label: dict[Path, list[str]] = {}
        for img in self.image_paths():
            by_label.setdefault(self.label_path(img), []).append(self.rel_image(img))
        return {lp: imgs for lp, imgs in by_label.items() if len(imgs) > 1}

    def label_sharers(self, image: Path | str) -> list[Path]:
        """Other image files whose label file would be ``image``'s (same folder, same stem)."""
        image = Path(image)
        if not image.parent.is_dir():
            return []
        return sorted(p for p in image.parent.glob(f"{glob_escape(image.stem)}.*")
                      if p != image and p.stem == image.stem and p.suffix.lower() in IMAGE_EXTENSIONS)

    # ------------------------------------------------------------------ annotations

    def load_annotation(self, image: Path | str, warnings: list[str] | None = None,
                        include_proposals: bool = False, keep_model_rows: bool = False) -> ImageAnnotation:
        """Labels of one image (no label file = no instances). Raises LabelError / ImageReadError.

        Only what a person accepted: model proposals (core.proposals) come too only with
        ``include_proposals`` (the editor), marked source="model". A row an old sidecar marks as
        the model's, not yet migrated, is never returned as a label (``keep_model_rows``: the
        migration itself)."""
        image = Path(image)
        if not image.is_absolute():
            image = self.image_dir / image
        w, h = _image_size(image)
        lp = self.label_path(image)
        inst = []
        if lp.exists():
            text = _read_label_text(lp)
            side = sidecar_path(lp)
            sidecar = load_sidecar(read_regular_bytes(side)) if side.exists() else None
            parsed = parse_yolo_txt(text, w, h, lp, len(self.config.classes), sidecar)
            inst = parsed.instances
            for msg in parsed.warnings:
                log.warning(msg)
                if warnings is not None:
                    warnings.append(msg)
        if not keep_model_rows:
            unmigrated = [i for i in inst if i.source == "model"]
            inst = [i for i in inst if i.source != "model"]
            if include_proposals:
                inst += unmigrated
        if include_proposals:
            inst += read_proposals(self, image)
        return ImageAnnotation(image, w, h, inst, group_id=self.group_of(image),
                               proposals_included=include_proposals)

    def lock(self, blocking: bool = True, timeout: float | None = None):
        """The one project lock (core.project_lock): hold it around any read-modify-write of
        label files or project.yaml. Re-entrant; every store method below takes it itself.
        A blocking wait ends after ``timeout`` s (default LOCK_WAIT_S) with LockBusyError."""
        return project_lock(self.root, blocking, self.lock_wait_s if timeout is None else timeout)

    def classes_on_disk(self) -> list[str]:
        """The class list project.yaml holds now (another process may have edited it)."""
        # keyed by content, not mtime: two writes within one file-system clock tick look alike
        key = read_regular_bytes(self.config_path)
        cached = getattr(self, "_disk_classes", None)
        if cached is None or cached[0] != key:
            cached = (key, list(load_config(self.config_path).classes))
            self._disk_classes = cached
        return list(cached[1])

    def save_annotation(self, ann: ImageAnnotation, expect: Callable[[], bool] | None = None) -> Path:
        """Write labels atomically, inside the project lock; the sidecar is kept valid for old or
        new txt at any crash point.

        Refused (ConflictError, nothing written) when project.yaml's class list changed other than
        by appending since this Project read it (the ids in ``ann`` would mean other classes), or when ``expect``
        (run inside the lock, e.g. "the file is still what I loaded") returns False."""
        self._check_writable(ann.instances, ann.width, ann.height, self.label_path(ann.image_path))
        lp = self.label_path(ann.image_path)
        accepted = [i for i in ann.instances if i.source != "model"]
        proposed = [i for i in ann.instances if i.source == "model"]
        out = format_yolo_txt(accepted, ann.width, ann.height)
        with self.lock():
            on_disk = self.classes_on_disk()
            mine = list(self.config.classes)
            if on_disk[: len(mine)] != mine:  # classes only appended since: every id means the same
                raise ConflictError(f"{self.config_path}: the class list changed since this project was "
                                    f"opened ({', '.join(self.config.classes)} -> {', '.join(on_disk)}); "
                                    f"{lp} was not saved: reload the project")
            if expect is not None and not expect():
                raise ConflictError(f"{lp}: changed by another writer since it was read; not saved")
            if not accepted and not lp.exists():
                # only proposals: no label file, so the image stays "unlabelled" (an empty file
                # means "checked: no objects here" and would train it as pure background)
                return self._save_proposals(ann, proposed, lp)
            lp.parent.mkdir(parents=True, exist_ok=True)
            side = sidecar_path(lp)
            old_side = load_sidecar(read_regular_bytes(side)) if side.exists() else None
            new_rows = (out.sidecar or {}).get("rows", {})
            old_rows = (old_side or {}).get("rows", {})
            if new_rows and any(k not in old_rows for k in new_rows):
                # 1) union first: valid for whichever txt is on disk if we die before step 3
                atomic_write_text(side, json.dumps({"version": 1, "rows": {**old_rows, **new_rows}}, indent=None))
            atomic_write_text(lp, out.text)  # 2)
            if new_rows and new_rows != old_rows:  # 3) prune
                atomic_write_text(side, json.dumps(out.sidecar, indent=None))
            elif not new_rows and side.exists():
                atomic_delete(side)
            return self._save_proposals(ann, proposed, lp)

    def _check_writable(self, instances: list, width: int, height: int, path: Path) -> None:
        """Every instance has a class of this project and geometry a reader takes back (before any write)."""
        n = len(self.config.classes)
        for k, inst in enumerate(instances):
            if not 0 <= inst.class_id < n:
                raise LabelError(path, None, f"class id out of range 0..{n - 1}", inst.class_id)
            _check_geometry(inst, width, height, path, k)

    def add_proposals(self, image: Path | str, instances: list) -> int:
        """Add model proposals to an image (pre-label, live "send frame"), labels untouched;
        returns how many the image now has. Each is stored as the model's until accepted."""
        image = Path(image)
        if not image.is_absolute():
            image = self.image_dir / image
        w, h = _image_size(image)
        self._check_writable(instances, w, h, proposals_path(self, image))
        with self.lock():
            stored = read_proposals(self, image) + [_as_proposal(i) for i in instances]
            write_proposals(self, image, stored)
        return len(stored)

    def _save_proposals(self, ann: ImageAnnotation, proposed: list, lp: Path) -> Path:
        if ann.proposals_included:  # the editor's view of them: replace
            write_proposals(self, ann.image_path, proposed)
        elif proposed:  # new proposals from a tool (live send frame, pre-label): add
            write_proposals(self, ann.image_path, read_proposals(self, ann.image_path) + proposed)
        return lp

    def load_all(self, warnings: list[str] | None = None) -> tuple[list[ImageAnnotation], list[UserFacingError]]:
        """Every image's labels; a bad file is reported in the error list and the rest still loads."""
        anns, errors = [], []
        for img in self.image_paths():
            try:
                anns.append(self.load_annotation(img, warnings))
            except UserFacingError as exc:
                errors.append(exc)
        return anns, errors

    # ------------------------------------------------------------------ groups and splits

    def group_of(self, image: Path | str) -> str | None:
        """Group id of an image (split.group_by: csv | pattern), None when ungrouped."""
        mode = self.config.split.group_by
        rel = self.rel_image(image)
        if mode == "csv":
            table = self._groups_table()
            return table.get(rel) or table.get(Path(rel).name)
        if mode == "pattern":
            pattern = self.config.split.group_pattern
            cached = getattr(self, "_group_regex", None)
            if cached is None or cached[0] != pattern:
                cached = (pattern, compile_user_regex(pattern, f"{self.config_path}: split.group_pattern"))
                self._group_regex = cached
            m = search_user_regex(cached[1], str(Path(rel).with_suffix("")),
                                  f"{self.config_path}: split.group_pattern")
            if not m:
                return None
            return m.group(1) if m.groups() else m.group(0)
        return None

    def _groups_table(self) -> dict[str, str]:
        path = self.root / GROUPS_FILE
        key = (path, path.stat().st_mtime_ns) if path.exists() else (path, None)
        cached = getattr(self, "_groups_cache", None)
        if cached and cached[0] == key:
            return cached[1]
        table: dict[str, str] = {}
        if not path.exists():
            raise ConfigError(f"{self.config_path}: split.group_by is 'csv' but {path} does not exist "
                              f"(header `image,group`)")
        try:
            text = read_regular_bytes(path).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); save it as UTF-8") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a folder, not a csv file") from None
        reader = csv.reader(io.StringIO(text, newline=""))
        for lineno, row in enumerate(reader, start=1):
            if not row or not any(c.strip() for c in row):
                continue
            if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["image", "group"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ConfigError(f"{path}:{lineno}: expected `image,group`, got {','.join(row)!r}")
            table[row[0].strip().replace("\\", "/")] = row[1].strip()
        self._groups_cache = (key, table)
        return table

    def _hash_split(self, key: str) -> Split:
        s = self.config.split
        h = hashlib.sha256(f"{s.seed}:{key}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2**64
        return "val" if u < s.val_fraction else "train"

    def _read_split_files(self) -> dict[str, Split]:
        out: dict[str, Split] = {}
        for name in ("train", "val"):
            p = self.splits_dir / f"{name}.txt"
            if p.exists():
                try:
                    text = read_regular_bytes(p).decode("utf-8-sig")
                except UnicodeDecodeError as exc:
                    raise ConfigError(f"{p}: not a UTF-8 text file (byte {exc.start}); fix or delete it "
                                      f"(`dfine split --reset` rewrites it)") from None
                except IsADirectoryError:
                    raise ConfigError(f"{p}: is a folder, not a split file") from None
                for line in text.splitlines():
                    line = line.strip()
                    if line:
                        out[self.rel_image(Path(line)) if Path(line).is_absolute() else line] = name
        return out

    def compute_splits(self, reset: bool = False) -> dict[str, Split]:
        """rel image path -> split. Existing split files are kept (an image never changes side);
        new images follow their group's side if the group is already placed, else a seeded hash
        of the group id (or of the path) - so the result does not depend on which images exist."""
        images = [self.rel_image(p) for p in self.image_paths()]
        existing = {} if reset else self._read_split_files()
        assign: dict[str, Split] = {}
        group_side: dict[str, Split] = {}
        groups = {rel: self.group_of(rel) for rel in images}
        for rel in images:
            if rel in existing:
                assign[rel] = existing[rel]
                g = groups[rel]
                if g is not None:
                    group_side.setdefault(g, existing[rel])
        for rel in images:
            if rel in assign:
                continue
            g = groups[rel]
            if g is not None and g in group_side:
                assign[rel] = group_side[g]
            else:
                assign[rel] = self._hash_split(f"group:{g}" if g is not None else f"image:{rel}")
                if g is not None:
                    group_side[g] = assign[rel]
        return assign

    def write_splits(self, reset: bool = False) -> dict[str, Split]:
        """Write splits/train.txt and val.txt (paths relative to the image folder, one a line)."""
        with self.lock():
            assign = self.compute_splits(reset=reset)
            broken = next((r for r in assign if "\n" in r or "\r" in r), None)
            if broken is not None:  # one line per image: a line break would split the name in two
                raise ConfigError(f"{self.image_dir / broken!r}: the file name contains a line break; "
                                  f"rename the image (splits were not written)")
            self.splits_dir.mkdir(parents=True, exist_ok=True)
            for name in ("train", "val"):
                rows = sorted(r for r, s in assign.items() if s == name)
                atomic_write_text(self.splits_dir / f"{name}.txt", "".join(r + "\n" for r in rows))
        return assign

    def split_images(self, which: Split) -> list[Path]:
        if which not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {which!r}")
        assign = self.compute_splits()
        return sorted(self.image_dir / r for r, s in assign.items() if s == which)

    # ------------------------------------------------------------------ classes

    def add_class(self, name: str) -> None:
        check_class_name(name)
        self._edit_classes(lambda names: ("add", [*names, name], {i: i for i in range(len(names))}, None))

    def rename_class(self, old: str, new: str) -> None:
        check_class_name(new)

        def plan(names: list[str]):
            i = _class_index(names, old)
            out = list(names)
            out[i] = new
            return "rename", out, {k: k for k in range(len(names))}, None
        self._edit_classes(plan)

    def merge_classes(self, source: str, target: str) -> None:
        """Relabel every `source` instance as `target` and remove `source` from the list."""
        def plan(names: list[str]):
            if _class_index(names, source) == _class_index(names, target):
                raise UserFacingError(f"cannot merge class {source!r} into itself")
            return _delete_plan(names, source, target)
        self._edit_classes(plan)

    def delete_class(self, name: str, relabel_to: str | None = None) -> None:
        """Remove a class; its instances are relabelled to `relabel_to` or deleted. Ids above shift down."""
        self._edit_classes(lambda names: _delete_plan(names, name, relabel_to))

    def undo_class_edit(self) -> str:
        """Undo the last class edit (one step; repeat for earlier ones); returns its description.
        Rows the edit changed or removed come back exactly; rows labelled since are kept."""
        with self.lock():
            desc = ClassEditJournal(self.root).undo(self)
            self.reload_config()
        return desc

    def _class_index(self, name: str) -> int:
        return _class_index(self.class_names, name)

    def _edit_classes(self, plan: Callable[[list[str]], tuple[str, list[str], dict[int, int | None], int | None]],
                      ) -> None:
        """Plan and apply a class edit inside the project lock, from the class list and label
        files as they are *now* (not as they were when this Project was opened), so two edits
        serialise and a label saved meanwhile is never overwritten with a stale copy."""
        with self.lock():
            self.reload_config()
            old_names = self.class_names
            op, new_names, mapping, removed = plan(old_names)
            text = read_regular_text(self.config_path)
            new_text = set_top_level_value(text, "classes", _flow_list(new_names))
            parse_config_text(new_text, str(self.config_path))  # duplicate/empty names -> ConfigError now
            identity = all(k == v for k, v in mapping.items())  # add/rename: no label changes
            n_old = len(old_names)
            # inverse for files labelled after the edit: the removed id has no pre-image,
            # a merged-into id maps back to the target (the class that kept its identity)
            new_to_old = {new: old for old, new in mapping.items() if new is not None and old != removed}
            changes = {} if identity else remap_label_files(self.labels_dir, mapping, n_old, new_to_old)
            if not identity:  # proposals carry class ids too: they must keep meaning the same class
                changes.update(remap_proposal_files(self.root, mapping))
            changes[self.config_path] = (text, new_text)

            def redo(path: Path, current: str) -> str:  # a file changed by a writer outside the lock
                if path == self.config_path:
                    return set_top_level_value(current, "classes", _flow_list(new_names))
                if _is_proposals(self.root, path):
                    return remap_proposals_text(current, mapping, path)
                return remap_text(current, mapping, path, n_old)

            desc = f"{op}: {', '.join(old_names)} -> {', '.join(new_names)}"
            ClassEditJournal(self.root).apply(desc, changes, new_to_old, redo=redo,
                                              rows={p: changed_rows(old, mapping, p, n_old, new_to_old)
                                                    for p, (old, _) in changes.items()
                                                    if p != self.config_path and not _is_proposals(self.root, p)})
            self.reload_config()


def shared_label_message(label: Path | str, images: Iterable[str]) -> str:
    """The one wording of "these images share a label file", for check, convert and import."""
    return (f"{label}: shared by images {', '.join(images)} (same name, another extension): they get the "
            "same labels, and an export writes one over the other; rename one of them")


def _class_index(names: list[str], name: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise UserFacingError(f"no class named {name!r} (classes: {', '.join(names)})") from None


def _delete_plan(names: list[str], name: str, relabel_to: str | None):
    d = _class_index(names, name)
    t = _class_index(names, relabel_to) if relabel_to is not None else None
    new_names = [c for i, c in enumerate(names) if i != d]
    mapping: dict[int, int | None] = {}
    for i in range(len(names)):
        j = t if (i == d and t is not None) else i
        mapping[i] = None if (i == d and t is None) else (j - (1 if j > d else 0))
    return ("merge" if t is not None else "delete"), new_names, mapping, d


def _check_geometry(inst, width: int, height: int, path: Path, k: int) -> None:
    """Refuse to write a row no reader would accept back: every reader rejects a file with one
    NaN, so writing it would lose the file's good rows to training (issue #35). A point may sit
    a little outside the image (it is clipped on write); one an image size away is a bug."""
    parts = [np.asarray(p, dtype=np.float64).reshape(-1) for p in (*inst.polygons, *inst.holes)]
    if inst.box is not None:
        parts.append(np.asarray(inst.box, dtype=np.float64).reshape(-1))
    if not parts:
        raise LabelError(path, None, f"instance {k + 1}: has neither a polygon nor a box; not saved")
    values = np.concatenate(parts)
    if not np.isfinite(values).all():
        raise LabelError(path, None, f"instance {k + 1}: a coordinate is not a finite number; not saved",
                         values[~np.isfinite(values)][0].item())
    limit = 2.0 * max(width, height)
    far = values[(values < -limit) | (values > limit + max(width, height))]
    if far.size:
        raise LabelError(path, None, f"instance {k + 1}: a coordinate lies far outside the {width}x{height} "
                         f"image; not saved", far[0].item())


def _read_label_text(lp: Path) -> str:
    try:
        return decode_label_bytes(read_regular_bytes(lp), lp)
    except LimitError as exc:  # a FIFO, device or huge file among the labels: one bad file, not a hang
        raise LabelError(lp, None, str(exc).removeprefix(f"{lp}: ")) from None
    except IsADirectoryError:
        raise LabelError(lp, None, "is a folder, not a label file") from None
    except PermissionError:
        raise LabelError(lp, None, "cannot be read (permission denied)") from None


def label_files(labels_dir: Path) -> list[Path]:
    """Every label txt under labels/ (hidden files skipped); a folder named *.txt is listed so
    the caller reports it instead of failing on it."""
    if not labels_dir.is_dir():
        return []
    return sorted(lp for lp in labels_dir.rglob("*.txt") if not lp.name.startswith("."))


def remap_label_files(labels_dir: Path, mapping: dict[int, int | None], num_classes: int | None,
                      inverse: dict[int, int] | None = None) -> dict[Path, tuple[str, str]]:
    """New text for every label file whose class ids change ({path: (old, new)}); nothing written.

    With ``inverse`` (the edit's new->old id map, as undo will use it), also every file whose
    text stays but whose rows change class: merging u (id 3) into the later t (id 4) leaves a
    file of u rows byte for byte the same while "3" now means t. Undo needs that file's record;
    without it the inverse map gave those rows to t (found by the lock stress test).

    Works on the text (only the first token of a row changes, other bytes stay) so files
    written by other tools keep their formatting. Refuses (UserFacingError) if any file is bad:
    relabelling around a broken file would leave it with ids from the old list.
    """
    changes: dict[Path, tuple[str, str]] = {}
    errors: list[str] = []
    for lp in label_files(labels_dir):
        try:
            old = _read_label_text(lp)
            new = remap_text(old, mapping, lp, num_classes)
        except LabelError as exc:
            errors.append(str(exc))
            continue
        # unchanged bytes with a changed_rows record = rows that changed class, not text
        if new != old or (inverse is not None and changed_rows(old, mapping, lp, num_classes, inverse)):
            changes[lp] = (old, new)
    if errors:
        raise UserFacingError("class edit refused, fix these label files first (nothing was changed):\n  "
                              + "\n  ".join(errors))
    return changes


def _remap_line(line: str, mapping: dict[int, int | None], path: Path, lineno: int,
                num_classes: int | None) -> str | None:
    """One row with its class id mapped (None: the row is removed); blank lines unchanged."""
    toks = line.split()
    if not toks:
        return line
    cid = parse_class_id(toks[0], path, lineno, num_classes)
    if cid not in mapping:
        raise LabelError(path, lineno, "class id not covered by the class edit", toks[0])
    new = mapping[cid]
    if new is None:
        return None
    lead = line[: len(line) - len(line.lstrip())]
    rest = line.lstrip()[len(toks[0]):]
    return f"{lead}{new}{rest}"


def remap_text(text: str, mapping: dict[int, int | None], path: Path, num_classes: int | None) -> str:
    """Apply old->new class ids to one file's text; rows mapped to None are removed."""
    text = text.lstrip("\ufeff")
    out = []
    for i, line in enumerate(text.splitlines(keepends=True), start=1):
        new = _remap_line(line, mapping, path, i, num_classes)
        if new is not None:
            out.append(new)
    return "".join(out)


def changed_rows(text: str, mapping: dict[int, int | None], path: Path, num_classes: int | None,
                 inverse: dict[int, int] | None = None) -> list[list[str | None]]:
    """[old row, new row or None] for every row a class edit changes (line ends stripped):
    what undo needs to put each row back exactly even after the file was edited since.

    "Changes" means its class, not only its text: merging u (id 3) into t (id 4) leaves u's rows
    as "3 ..." (t is id 3 afterwards), and without a record undo would map them back through
    ``inverse`` to t (found by the lock stress test)."""
    rows: list[list[str | None]] = []
    for i, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        new = _remap_line(line, mapping, path, i, num_classes)
        if new != line:
            rows.append([line, new])
        elif new is not None and inverse is not None and line.split():
            old_id = parse_class_id(line.split()[0], path, i, num_classes)
            if inverse.get(mapping[old_id]) != old_id:  # same text, other class: undo must know
                rows.append([line, new])
    return rows


def undo_text(current: str, entry: dict, inverse: dict[int, int], path: Path, num_classes: int) -> str:
    """The text of one label file with a class edit undone.

    Unchanged since the edit: the old bytes. Edited since: every row the edit changed and that
    is still there gets its old text back, every row it removed is appended, and rows added
    since get the inverse id map (so later labelling is kept)."""
    if current == entry["new"]:
        return entry["old"]
    back: dict[str, list[str]] = {}
    removed: list[str] = []
    for old_row, new_row in entry.get("rows", []):
        if new_row is None:
            removed.append(old_row)
        else:
            back.setdefault(new_row, []).append(old_row)
    out = []
    for i, line in enumerate(current.lstrip("\ufeff").splitlines(keepends=True), start=1):
        body = line.rstrip("\r\n")
        if back.get(body):
            out.append(back[body].pop(0) + line[len(body):])
            continue
        new = _remap_line(line, inverse, path, i, num_classes)
        if new is not None:
            out.append(new)
    if removed:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.extend(r + "\n" for r in removed)
    return "".join(out)


HISTORY_DIR = "class_history"
HISTORY_LIMIT = 20  # class edits that can be undone, newest first
_HISTORY_NAME = re.compile(r"^[0-9]{1,12}\.json$")


def _as_proposal(inst):
    out = inst.copy()
    out.source = "model"
    return out


def _is_proposals(root: Path, path: Path) -> bool:
    folder = Path(root) / PROPOSALS_DIR
    return path.suffix == ".json" and path.is_relative_to(folder) and path != folder


def _edit_error(exc: OSError, desc: str, outcome: str) -> OSError:
    """An OSError (errno kept: the CLI reports a full disk as one line) that says what became of
    the class edit as a whole; the inner error speaks of one file only."""
    where = f" ({exc.filename})" if exc.filename else ""
    return OSError(exc.errno, f"{exc.strerror or exc}{where} during the class edit '{desc}': {outcome}")


def check_journal(j: dict, root: Path, source: Path, record: bool = False) -> dict:
    """A class-edit journal (or history record) with the types the code relies on and every
    path inside the project: files[].path is project.yaml or a file under labels/, ``undoes``
    a record under .dfine/, ``history`` a record name. Else ConfigError / PathOutsideError
    naming the file and the field, and nothing of it is replayed."""

    def bad(field: str, value: object, want: str) -> ConfigError:
        return ConfigError(f"{source}: {field} must be {want}, got {value!r:.80}; the class-edit journal "
                           f"was not applied (delete {source} if it did not come from dfine-studio)")

    if not isinstance(j.get("id"), str) or not j["id"]:
        raise bad("id", j.get("id"), "a text")
    if not isinstance(j.get("description", ""), str):
        raise bad("description", j.get("description"), "a text")
    n2o = j.get("new_to_old")
    if not isinstance(n2o, dict) or not all(
            isinstance(k, str) and k.lstrip("-").isdigit() and isinstance(v, int) and not isinstance(v, bool)
            for k, v in n2o.items()):
        raise bad("new_to_old", n2o, "an object of class id -> class id")
    files = j.get("files")
    if not isinstance(files, list):
        raise bad("files", files, "a list")
    labels = root / "labels"
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            raise bad(f"files[{i}]", f, "an object")
        for key in ("old", "new"):
            if not isinstance(f.get(key), str):
                raise bad(f"files[{i}].{key}", f.get(key), "a text")
        rows = f.get("rows", [])
        if not isinstance(rows, list) or not all(
                isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], (str, type(None)))
                for r in rows):
            raise bad(f"files[{i}].rows", rows, "a list of [old row, new row or null]")
        path = inside(root, f.get("path"), f"{source}: files[{i}].path")
        if path != root / CONFIG_FILE and not (path.is_relative_to(labels) and path != labels) \
                and not _is_proposals(root, path):
            raise PathOutsideError(f"{source}: files[{i}].path {f['path']!r} is neither {CONFIG_FILE} nor a "
                                   f"label or proposals file; a class edit touches nothing else")
    if "undoes" in j:
        target = inside(root, j["undoes"], f"{source}: undoes")
        dot = root / JOURNAL_DIR
        if not (target == dot / "class_edit.json"
                or (target.parent == dot / HISTORY_DIR and _HISTORY_NAME.match(target.name))):
            raise PathOutsideError(f"{source}: undoes {j['undoes']!r} is not a class-edit record under "
                                   f"{JOURNAL_DIR}/{HISTORY_DIR}/")
    if "history" in j and not (isinstance(j["history"], str) and _HISTORY_NAME.match(j["history"])):
        raise bad("history", j["history"], "a record name like 000001.json")
    if record and ("undoes" in j):
        raise bad("undoes", j["undoes"], "absent in a history record")
    return j


class ClassEditJournal:
    """`.dfine/class_edit.json` holds the old and new text of every file a class edit touched
    (and, per file, the rows it changed); `.dfine/class_history/` keeps the completed edits
    for undo, newest = highest number.

    apply: journal (fsynced) -> files (atomic each) -> `.done` marker with the edit id ->
    history entry (or, for an undo, removal of the entry it undid).
    recover (on open): a journal without its marker = crash mid-edit -> restore every old text;
    with its marker but the history step missing -> finish that step.
    Callers hold the project lock (core.project_lock) around plan + apply.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.dir = self.root / JOURNAL_DIR
        self.path = self.dir / "class_edit.json"
        self.done = self.dir / "class_edit.done"
        self.history = self.dir / HISTORY_DIR

    def _contained(self, path: Path) -> Path:
        """``path`` (under .dfine/), refused when .dfine or class_history is a symlink out of the project."""
        return inside(self.root, path.relative_to(self.root).as_posix(), f"{path}")

    def _read(self) -> dict | None:
        """The journal, checked: a journal is replayed on open (files written, records deleted),
        so one from elsewhere must not reach outside the project or crash every verb."""
        try:
            j = load_json_file(self._contained(self.path))
        except FileNotFoundError:
            return None
        return check_journal(j, self.root, self.path)

    def _is_done(self, j: dict) -> bool:
        try:
            return read_regular_text(self.done, 1024).strip() == j["id"]
        except FileNotFoundError:
            return False

    def _lock(self, blocking: bool = True):
        """The project lock (kept under this name for callers that guard recovery with it)."""
        return project_lock(self.root, blocking)

    # -------------------------------------------------------------- history

    def _entries(self) -> list[Path]:
        if not self.history.is_dir() or not is_within(self.history, self.root):
            return []  # a class_history linked out of the project is not ours to read
        return sorted(p for p in self.history.glob("*.json") if p.stem.isdigit())

    def _last(self) -> tuple[Path, dict] | None:
        for p in reversed(self._entries()):
            try:
                return p, check_journal(load_json_file(p), self.root, p, record=True)
            except (OSError, UserFacingError) as exc:
                log.warning("damaged class-edit record skipped: %s", exc)
                continue
        j = self._read()  # a journal from before the history existed: still undoable once;
        # likewise an edit whose history record could not be written (disk full at the last step)
        if j is not None and not j.get("undoes") and self._is_done(j) and (
                "history" not in j or not (self.history / j["history"]).exists()):
            return self.path, j
        return None

    def _finish(self, j: dict) -> None:
        """The step after the `.done` marker: record the edit, or drop the record it undid."""
        if j.get("undoes"):
            target = inside(self.root, j["undoes"], f"{self.path}: undoes")  # checked by check_journal too
            if target != self.path:  # a pre-history journal was replaced by this undo's own
                atomic_delete(target)
            return
        name = j.get("history")
        if name and not (self.history / name).exists():
            self.history.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self._contained(self.history / name), json.dumps(j))
            for old in self._entries()[:-HISTORY_LIMIT]:
                atomic_delete(old)

    # -------------------------------------------------------------- apply / recover / undo

    def apply(self, desc: str, changes: dict[Path, tuple[str, str]], new_to_old: dict[int, int],
              redo: Callable[[Path, str], str] | None = None, rows: dict[Path, list] | None = None,
              undoes: str | None = None) -> None:
        with self._lock():
            self._apply_locked(desc, changes, new_to_old, redo, rows or {}, undoes)

    def _apply_locked(self, desc: str, changes: dict[Path, tuple[str, str]], new_to_old: dict[int, int],
                      redo: Callable[[Path, str], str] | None = None, rows: dict[Path, list] | None = None,
                      undoes: str | None = None) -> None:
        rows = rows or {}
        entries = self._entries()
        seq = int(entries[-1].stem) + 1 if entries else 1
        j = {
            "id": uuid.uuid4().hex,
            "description": desc,
            "new_to_old": {str(k): v for k, v in new_to_old.items()},
            "files": [
                {"path": p.relative_to(self.root).as_posix(), "old": old, "new": new, "rows": rows.get(p, [])}
                for p, (old, new) in changes.items()
            ],
        }
        if undoes:
            j["undoes"] = undoes
        else:
            j["history"] = f"{seq:06d}.json"
        if "history" in j:  # every place the edit will write is checked before the first write
            self._contained(self.history / j["history"])
        try:
            atomic_write_text(self._contained(self.path), json.dumps(j))
        except OSError as exc:
            raise _edit_error(exc, desc, "nothing was changed") from exc
        try:
            self._write_files(j, changes, redo)
        except Exception as exc:  # a crash (or Ctrl+C) is rolled back by the next open instead
            restored = self._roll_back(j)
            if isinstance(exc, OSError) and exc.errno is not None:
                raise _edit_error(exc, desc, "every file was put back as it was" if restored else
                                  f"it is rolled back when the project is next opened with space free "
                                  f"(journal {self.path})") from exc
            raise
        try:
            self._finish(j)
        except OSError as exc:  # the edit is complete; undo still finds it in the journal (see _last)
            raise _edit_error(exc, desc, "the edit was applied; its undo record is kept in the journal") \
                from exc

    def _write_files(self, j: dict, changes: dict[Path, tuple[str, str]],
                     redo: Callable[[Path, str], str] | None) -> None:
        """Every file of the edit, then the `.done` marker (the edit's commit point)."""
        drifted = False
        for f, (p, (old, new)) in zip(j["files"], changes.items()):
            if redo is not None:
                # a writer that ignores the lock (another tool) changed the file after we read it:
                # apply the edit to what is there now rather than write back the stale copy
                try:
                    cur = read_regular_bytes(p).decode("utf-8-sig" if p.suffix == ".txt" else "utf-8")
                except (OSError, UnicodeDecodeError):
                    cur = old
                if cur != old:
                    f["old"], f["new"], drifted = cur, redo(p, cur), True
                    new = f["new"]
            atomic_write_text(p, new)
        if drifted:
            atomic_write_text(self.path, json.dumps(j))
        atomic_write_text(self.done, j["id"])

    def _roll_back(self, j: dict) -> bool:
        """After a failed write mid-edit: put back every file the edit changed (files it never
        reached are left alone, so a full disk needs no space for them) and drop the journal.
        False when that failed too; the journal then stays for the rollback on the next open."""
        try:
            if self._is_done(j):
                return False
            for f in j["files"]:
                target = inside(self.root, f["path"], f"{self.path}: files[].path")
                try:
                    current = read_regular_bytes(target).decode("utf-8-sig" if target.suffix == ".txt" else "utf-8")
                except (OSError, UnicodeDecodeError):
                    current = None
                if current != f["old"]:
                    atomic_write_text(target, f["old"])
            atomic_delete(self.path)
            return True
        except (OSError, UserFacingError):
            return False

    def recover(self) -> bool:
        """Roll back a half-applied edit; True if something was rolled back. Skipped while
        another process (or this thread, mid-edit) holds the project lock."""
        if not self.path.exists() or held_here(self.root):
            return False
        with self._lock(blocking=False) as mine:
            return mine and self._recover_locked()

    def _recover_locked(self) -> bool:
        j = self._read()
        if j is None:
            return False
        if self._is_done(j):
            self._finish(j)
            return False
        for f in j["files"]:
            atomic_write_text(inside(self.root, f["path"], f"{self.path}: files[].path"), f["old"])
        atomic_delete(self.path)
        log.warning("rolled back an interrupted class edit (%s)", j["description"])
        return True

    def undo(self, project: Project) -> str:
        with self._lock():
            return self._undo_locked(project)

    def _undo_locked(self, project: Project) -> str:
        last = self._last()
        if last is None:
            raise UserFacingError("nothing to undo: no class edit recorded")
        record_path, j = last
        inv = {int(k): v for k, v in j["new_to_old"].items()}
        journaled = {f["path"]: f for f in j["files"]}
        cfg_rel = project.config_path.relative_to(self.root).as_posix()
        writes: dict[Path, tuple[str, str]] = {}
        n_new = len(project.class_names)
        errors = []

        def undo_file(lp: Path, cur: str) -> str:
            f = journaled.get(lp.relative_to(self.root).as_posix())
            if _is_proposals(self.root, lp):  # JSON: the old text if untouched since, else remapped back
                return f["old"] if f is not None and cur == f["new"] else remap_proposals_text(cur, inv, lp)
            if f is not None:
                return undo_text(cur, f, inv, lp, n_new)
            return remap_text(cur, inv, lp, n_new)

        for pp in proposal_files(self.root):
            try:
                cur = read_regular_text(pp)
                new = undo_file(pp, cur)
            except (UserFacingError, OSError) as exc:
                errors.append(str(exc))
                continue
            if new != cur:
                writes[pp] = (cur, new)

        for lp in label_files(project.labels_dir):
            try:
                cur = _read_label_text(lp)
                new = undo_file(lp, cur)
            except LabelError as exc:
                errors.append(str(exc))
                continue
            if new != cur:
                writes[lp] = (cur, new)
        if errors:
            raise UserFacingError("cannot undo the class edit (nothing was changed):\n  " + "\n  ".join(errors))
        cfg = journaled[cfg_rel]
        cur_cfg = read_regular_text(project.config_path)
        old_classes = (load_yaml(cfg["old"], str(project.config_path)) or {}).get("classes", [])

        def undo_cfg(text: str) -> str:
            return cfg["old"] if text == cfg["new"] else set_top_level_value(text, "classes", _flow_list(old_classes))

        writes[project.config_path] = (cur_cfg, undo_cfg(cur_cfg))

        def redo(path: Path, current: str) -> str:
            return undo_cfg(current) if path == project.config_path else undo_file(path, current)

        # the undo is itself journaled, so a crash during undo rolls back to the edited state
        self._apply_locked(f"undo {j['description']}", writes, {}, redo,
                           undoes=record_path.relative_to(self.root).as_posix())
        return j["description"]


# ---------------------------------------------------------------------- YAML text edits


def set_top_level_value(text: str, key: str, value_text: str) -> str:
    """Replace the value of a top-level key in YAML text, keeping every comment and other line."""
    node = yaml.compose(text)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                start, end = v.start_mark.index, v.end_mark.index
                if isinstance(v, (yaml.SequenceNode, yaml.MappingNode)) and not v.flow_style:
                    # block collection: replace through its last item; comments after it stay
                    last = v.value[-1][1] if isinstance(v, yaml.MappingNode) else v.value[-1]
                    end = last.end_mark.index
                    return text[: k.end_mark.index] + ": " + value_text + text[end:]
                return text[:start] + value_text + text[end:]
    sep = "" if text.endswith("\n") or not text else "\n"
    return f"{text}{sep}{key}: {value_text}\n"


def _flow_scalar(v: str) -> str:
    return yaml.safe_dump(v, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


def _flow_list(items: list[str]) -> str:
    return "[" + ", ".join(_flow_scalar(str(x)) for x in items) + "]"


def newest_run(path: Path) -> Path:
    """A project folder means its most recently written run that has a checkpoint (any other
    path is returned as it is)."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        return path
    runs = [r for r in (path / "runs").glob("*") if (r / "best.pt").is_file() or (r / "last.pt").is_file()]
    if not runs:
        raise UserFacingError(f"{path}: project has no trained run yet (runs/<name>/best.pt); train first")
    return max(runs, key=lambda r: max(f.stat().st_mtime for f in r.glob("*.pt")))
