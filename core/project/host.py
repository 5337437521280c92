"""What the Project mixins (``store.LabelStore``, ``splits.Splits``, ``classes.ClassEdits``) use
from :class:`core.project.Project`, declared once for the type checker.

At run time ``ProjectHost`` is an empty base class; under ``TYPE_CHECKING`` it lists the
attributes, paths and methods that ``Project`` (or a sibling mixin) provides, so each mixin's
``self.root``, ``self.label_path(...)`` and the like are checked against one signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from core.config import ProjectConfig


class ProjectHost:
    if TYPE_CHECKING:
        # Project.__init__
        root: Path
        config: ProjectConfig
        lock_wait_s: float | None

        # Project's paths and images
        @property
        def config_path(self) -> Path: ...
        @property
        def class_names(self) -> list[str]: ...
        @property
        def image_dir(self) -> Path: ...
        @property
        def labels_dir(self) -> Path: ...
        @property
        def splits_dir(self) -> Path: ...
        def image_paths(self) -> list[Path]: ...
        def rel_image(self, image: Path | str) -> str: ...
        def label_path(self, image: Path | str) -> Path: ...
        def reload_config(self) -> ProjectConfig: ...

        # sibling mixins
        def lock(self, blocking: bool = True, timeout: float | None = None) -> AbstractContextManager[bool]: ...
        def group_of(self, image: Path | str) -> str | None: ...
