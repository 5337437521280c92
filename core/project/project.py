"""The project folder: config, paths and images; the label store, splits and class edits are
mixins (store.py, splits.py, classes.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from glob import escape as glob_escape
from pathlib import Path
from typing import Literal

from core.atomic_io import atomic_write_text, remove_stale_temps
from core.bounded_input import read_regular_text
from core.config import CONFIG_FILE, ProjectConfig, check_class_name, load_config, parse_config_text
from core.data.images import IMAGE_EXTENSIONS  # the one reader decides what an image is
from core.errors import UserFacingError
from core.project.classes import ClassEdits
from core.project.journal import JOURNAL_DIR, ClassEditJournal
from core.project.splits import Splits
from core.project.store import LabelStore
from core.project.template import TEMPLATE, _flow_list, _flow_scalar, set_section_value, set_top_level_value
from core.project_lock import held_here, project_lock
from core.proposals import PROPOSALS_DIR, migrate_sidecar_proposals


def as_project(project: Project | str | os.PathLike) -> Project:
    """A project as given, or the project at a root folder (callers accept either)."""
    return Project.open(project) if isinstance(project, (str, os.PathLike)) else project


DeployTarget = Literal["gpu", "cpu"]
#: target -> (model.mask_head, export.queries): the paper's head and every query on a GPU; on a CPU
#: the cpu head (within noise of the paper head's masks, about half its latency) and 100 queries
#: (the numbers: README, "Export")
DEPLOY_TARGETS: dict[str, tuple[str, int | None]] = {"gpu": ("paper", None), "cpu": ("cpu", 100)}


def _with_deploy_target(text: str, target: str) -> str:
    """project.yaml text with model.mask_head and export.queries of ``target`` (DEPLOY_TARGETS)."""
    if target not in DEPLOY_TARGETS:
        raise UserFacingError(f"deploy target must be one of {', '.join(DEPLOY_TARGETS)}, got {target!r}")
    mask_head, queries = DEPLOY_TARGETS[target]
    text = set_section_value(text, "model", "mask_head", mask_head)
    return set_section_value(text, "export", "queries", "null" if queries is None else str(queries))


class Project(LabelStore, Splits, ClassEdits):
    """A project folder on disk: no image or label is read until asked."""

    def __init__(self, root: Path, config: ProjectConfig):
        self.root = Path(root).resolve()  # absolute: image paths are resolved against images/
        self.config = config
        self.lock_wait_s: float | None = None  # None: core.project_lock.LOCK_WAIT_S; the GUI sets less


    # ------------------------------------------------------------------ open / create

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Project:
        """Read project.yaml. When no writer holds the project lock, first finish what a crash
        left: roll back an interrupted class edit, remove stale temp files, move old sidecar
        proposals out of labels/ (so opening may write)."""
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
    def create(cls, root: Path | str, classes: Iterable[str], task: str = "segment",
               deploy_target: DeployTarget = "gpu") -> Project:
        """New project from the commented template (comments kept), with the given classes and task;
        ``deploy_target``: where the model will run (see :meth:`set_deploy_target`; "gpu" is the
        template's pick)."""
        root = Path(root)
        if (root / CONFIG_FILE).exists():
            raise UserFacingError(f"{root / CONFIG_FILE}: already exists; open the project instead")
        classes = [check_class_name(c) for c in classes]
        text = TEMPLATE.read_text(encoding="utf-8")
        text = set_top_level_value(text, "classes", _flow_list(classes))
        text = set_top_level_value(text, "task", _flow_scalar(task))
        text = _with_deploy_target(text, deploy_target)
        cfg = parse_config_text(text, str(root / CONFIG_FILE))  # validate before touching disk
        root.mkdir(parents=True, exist_ok=True)
        for d in ("images", "labels", "splits"):
            (root / d).mkdir(exist_ok=True)
        atomic_write_text(root / CONFIG_FILE, text)
        return cls(root, cfg)

    def reload_config(self) -> ProjectConfig:
        self.config = load_config(self.config_path)
        return self.config

    # ------------------------------------------------------------------ where the model will run

    @property
    def deploy_target(self) -> DeployTarget:
        """"cpu" when the project trains the CPU mask head (model.mask_head: cpu), else "gpu"."""
        return "cpu" if self.config.model.mask_head == "cpu" else "gpu"

    def set_deploy_target(self, target: DeployTarget) -> None:
        """Where the trained model will run: sets model.mask_head and export.queries in
        project.yaml (comments kept) to that target's pick (DEPLOY_TARGETS)."""
        with self.lock():
            text = read_regular_text(self.config_path)
            new = _with_deploy_target(text, target)
            parse_config_text(new, str(self.config_path))
            if new != text:
                atomic_write_text(self.config_path, new)
            self.reload_config()

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
