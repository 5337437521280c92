"""What the app remembers between sessions (QSettings, organisation "dfine-studio"):
recent projects, window geometry/dock layout, theme, display toggles, the classes last used
per project, last device/backend, the model last used per project, last live source.

:class:`AppSettings` is the only way the app touches QSettings (tests/test_gui_settings_one_layer.py
checks that no other module names QSettings). Why a wrapper: QSettings returns a str for a
one-element list and str/"true" for bools on some platforms (INI files keep no types); the
typed accessors here fix that once, and every key is spelled in this file only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QCoreApplication, QSettings
from PySide6.QtWidgets import QMainWindow

from core.infer.runner_base import BACKENDS as RUNNER_BACKENDS
from core.infer.runner_base import backend_name

ORGANISATION = "dfine-studio"
APPLICATION = "dfine-studio"
MAX_RECENT = 8
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", *RUNNER_BACKENDS)


def default_settings() -> QSettings:
    """The user's settings (names set here too, in case no QApplication named them yet)."""
    if not QCoreApplication.organizationName():
        QCoreApplication.setOrganizationName(ORGANISATION)
    if not QCoreApplication.applicationName():
        QCoreApplication.setApplicationName(APPLICATION)
    return QSettings(ORGANISATION, APPLICATION)


def _as_list(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[union-attr]


class AppSettings:
    """Typed access to the persisted state. ``settings`` defaults to the user's file;
    tests pass a QSettings on a temporary INI file."""

    def __init__(self, settings: QSettings | None = None):
        self.qsettings = settings if settings is not None else default_settings()

    @classmethod
    def in_file(cls, path: Path | str) -> AppSettings:
        """Settings kept in the INI file ``path`` (tests, probes: never the user's own)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    # ---- projects ----------------------------------------------------------------------------
    def recent_projects(self, existing_only: bool = False) -> list[Path]:
        """Most recent first; ``existing_only`` drops folders that no longer hold a project."""
        out = [Path(p) for p in _as_list(self.qsettings.value("recent_projects", []))]
        if existing_only:
            out = [p for p in out if (p / "project.yaml").is_file()]
        return out

    def add_recent_project(self, root: Path | str) -> list[Path]:
        """Move ``root`` to the front (no duplicates, at most MAX_RECENT) and make it the last project."""
        root = str(Path(root))
        items = [root] + [p for p in _as_list(self.qsettings.value("recent_projects", [])) if p != root]
        self.qsettings.setValue("recent_projects", items[:MAX_RECENT])
        self.qsettings.setValue("last_project", root)
        self.qsettings.sync()
        return [Path(p) for p in items[:MAX_RECENT]]

    def remove_recent_project(self, root: Path | str) -> None:
        root = str(Path(root))
        items = [p for p in _as_list(self.qsettings.value("recent_projects", [])) if p != root]
        self.qsettings.setValue("recent_projects", items)
        if self.qsettings.value("last_project", "") == root:
            self.qsettings.remove("last_project")

    @property
    def last_project(self) -> Path | None:
        value = self.qsettings.value("last_project", "")
        return Path(str(value)) if value else None

    def recent_classes_for(self, project_root: Path | str, num_classes: int) -> list[int]:
        """The class ids last picked in this project, most recent first (ids out of range dropped)."""
        value = _as_list(self.qsettings.value(f"recent_classes/{project_root}", []))
        return [int(v) for v in value if v.isdigit() and int(v) < num_classes]

    def set_recent_classes(self, project_root: Path | str, class_ids: list[int]) -> None:
        self.qsettings.setValue(f"recent_classes/{project_root}", [str(k) for k in class_ids])

    # ---- display -----------------------------------------------------------------------------
    def _flag(self, key: str, default: bool) -> bool:
        value = self.qsettings.value(key, default)
        return value is True or str(value).lower() == "true"

    @property
    def show_class_names(self) -> bool:
        return self._flag("show_class_names", True)

    @show_class_names.setter
    def show_class_names(self, on: bool) -> None:
        self.qsettings.setValue("show_class_names", bool(on))

    @property
    def ask_class_after_draw(self) -> bool:
        return self._flag("ask_class_after_draw", False)

    @ask_class_after_draw.setter
    def ask_class_after_draw(self, on: bool) -> None:
        self.qsettings.setValue("ask_class_after_draw", bool(on))

    @property
    def fill_opacity(self) -> int:
        """Label fill opacity in percent (0..100)."""
        try:
            return max(0, min(100, int(float(self.qsettings.value("fill_opacity", 35)))))
        except (TypeError, ValueError):
            return 35

    @fill_opacity.setter
    def fill_opacity(self, percent: int) -> None:
        self.qsettings.setValue("fill_opacity", int(percent))

    @property
    def theme(self) -> str:
        """"system", "light" or "dark"."""
        return str(self.qsettings.value("theme", "system") or "system")

    @theme.setter
    def theme(self, mode: str) -> None:
        self.qsettings.setValue("theme", mode)

    @property
    def hint_done(self) -> bool:
        """The first-start hint is gone for good once the person saved an image with labels."""
        return self._flag("hint/labelled", False)

    @hint_done.setter
    def hint_done(self, on: bool) -> None:
        self.qsettings.setValue("hint/labelled", bool(on))

    @property
    def sam_model(self) -> str:
        """The SAM pair click-to-segment uses ('' = the first one in the weights cache)."""
        return str(self.qsettings.value("sam_model", "") or "")

    @sam_model.setter
    def sam_model(self, name: str) -> None:
        self.qsettings.setValue("sam_model", str(name))

    # ---- window layout -----------------------------------------------------------------------
    def save_window(self, window: QMainWindow) -> None:
        self.qsettings.setValue("geometry", window.saveGeometry())
        self.qsettings.setValue("window_state", window.saveState())
        self.qsettings.sync()

    def restore_window(self, window: QMainWindow) -> bool:
        """Restore geometry and dock/toolbar state; False when no (valid) geometry was saved."""
        geometry = self.qsettings.value("geometry")
        state = self.qsettings.value("window_state")
        ok = False
        if isinstance(geometry, (QByteArray, bytes)) and len(geometry):
            ok = window.restoreGeometry(QByteArray(geometry))
        if isinstance(state, (QByteArray, bytes)) and len(state):
            window.restoreState(QByteArray(state))  # the dock layout
        return ok

    # ---- inference defaults ------------------------------------------------------------------
    def _choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = str(self.qsettings.value(key, allowed[0]) or allowed[0])
        return value if value in allowed or value.startswith("cuda:") else allowed[0]

    @property
    def device(self) -> str:
        return self._choice("infer/device", DEVICES)

    @device.setter
    def device(self, value: str) -> None:
        if value not in DEVICES and not value.startswith("cuda:"):
            raise ValueError(f"device must be one of {DEVICES} or cuda:N, got {value!r}")
        self.qsettings.setValue("infer/device", value)

    @property
    def backend(self) -> str:

        stored = self.qsettings.value("infer/backend")
        if isinstance(stored, str) and backend_name(stored) != stored:  # a name from an older version
            self.qsettings.setValue("infer/backend", backend_name(stored))
        return self._choice("infer/backend", BACKENDS)

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {value!r}")
        self.qsettings.setValue("infer/backend", value)

    def model_for(self, project_root: Path | str) -> Path | None:
        """The model last used with this project (same key as the main window's pre-labeling)."""
        value = self.qsettings.value(f"model/{Path(project_root)}", "")
        return Path(str(value)) if value else None

    def set_model_for(self, project_root: Path | str, model: Path | str) -> None:
        self.qsettings.setValue(f"model/{Path(project_root)}", str(model))

    @property
    def live_source(self) -> str:
        return str(self.qsettings.value("live/source", "0") or "0")

    @live_source.setter
    def live_source(self, value: str) -> None:
        self.qsettings.setValue("live/source", str(value))

    def sync(self) -> None:
        self.qsettings.sync()


def default_model(project: Any, settings: AppSettings | None) -> str:
    """The model a panel proposes for a project: the one last used with it, else the newest
    run's best.pt, else the newest checkpoint of any run (a run cancelled before its first
    validation has only last.pt) — the same first choice as the Export panel's list — else nothing."""
    remembered = settings.model_for(project.root) if settings is not None else None
    if remembered is not None and remembered.exists():
        return str(remembered)
    runs = []
    for p in project.runs_dir.glob("*/*.pt"):
        try:
            runs.append(((p.name != "best.pt", -p.stat().st_mtime), p))
        except OSError:  # removed meanwhile
            continue
    return str(min(runs)[1]) if runs else ""


def refresh_model_field(field, project: Any, settings: AppSettings | None) -> None:
    """After a run finished: a model field that is empty or names a missing file takes the newest
    model (a path the person chose and that still exists is left alone)."""
    text = field.text().strip()
    if project is not None and (not text or not Path(text).expanduser().exists()):
        field.setText(default_model(project, settings))
