"""The atomic label store of a project: labels/<rel>/<stem>.txt (+ sidecars), model proposals
beside them, every write inside the project lock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from core.annotation import ImageAnnotation
from core.atomic_io import atomic_delete, atomic_write_text
from core.bounded_input import read_regular_bytes
from core.config import load_config
from core.data.formats.yolo_txt import format_yolo_txt, load_sidecar, parse_yolo_txt, sidecar_path
from core.errors import ConflictError, LabelError, UserFacingError
from core.project.host import ProjectHost
from core.project.labels import _check_geometry, _image_size, _read_label_text
from core.project_lock import project_lock
from core.proposals import proposals_path, read_proposals, write_proposals

log = logging.getLogger(__name__)


class LabelStore(ProjectHost):
    """Project's label store (a mixin of :class:`core.project.Project`): read and write one
    image's labels atomically inside the project lock, model proposals beside them."""


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

    def lock(self, blocking: bool = True, timeout: float | None = None) -> AbstractContextManager[bool]:
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


def _as_proposal(inst):
    out = inst.copy()
    out.source = "model"
    return out
