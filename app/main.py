"""`dfine-studio [project]`: start the GUI.

With no project argument it opens the last project, else the built-in demo
(created on first use in the user's data folder, in a worker so the window
appears at once).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core import __version__  # one version for the distribution (app re-exports it)
from core.cli import main as core_main


def demo_dir() -> Path:
    from PySide6.QtCore import QStandardPaths

    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".dfine-studio") / "demo_project"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dfine-studio", description="Label images, train D-FINE-seg, review, export.")
    p.add_argument("project", nargs="?", type=Path, help="project folder (default: last project, else the demo)")
    p.add_argument("--version", action="version", version=f"dfine-studio {__version__}")
    p.add_argument("--theme", choices=("system", "dark", "light"), default=None, help="colour theme")
    p.add_argument("--quit-after", type=int, default=None, help=argparse.SUPPRESS)  # ms after a project opens
    return p.parse_args(argv)


def make_app(argv: list[str] | None = None):
    """The QApplication with names (for the settings file and data dirs), high-DPI policy and theme."""
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv or [sys.argv[0]])
    QCoreApplication.setOrganizationName("dfine-studio")
    QCoreApplication.setApplicationName("dfine-studio")
    QCoreApplication.setApplicationVersion(__version__)
    return app


def follow_system_theme(app, win, settings, forced: str | None) -> None:
    """Re-theme when the OS switches dark/light, unless the person picked a theme."""

    def changed(*_: object) -> None:
        if forced is None and settings.theme == "system":
            win.set_theme("system")

    try:
        app.styleHints().colorSchemeChanged.connect(changed)
    except AttributeError:  # Qt < 6.5 has no colour-scheme signal
        pass


def fit_to_screen(win, share: float = 0.92) -> None:
    """First start: the default size, shrunk to the screen (a 1280x800 laptop must see the whole
    window), centred. Later starts restore what the person left."""
    screen = win.screen() or win.windowHandle() and win.windowHandle().screen()
    if screen is None:
        return
    area = screen.availableGeometry()
    width = min(win.width(), int(area.width() * share))
    height = min(win.height(), int(area.height() * share))
    win.resize(width, height)
    win.move(area.x() + (area.width() - width) // 2, area.y() + (area.height() - height) // 2)


def show_window(app, settings, forced_theme: str | None = None):
    """The main window with the job panels, shown: as the person left it (geometry and docks),
    else (first start) the default size fitted to the screen and the job docks at their
    first-start height, which Qt can set only once the window is on screen at its size."""
    from app.jobs.wiring import attach_job_panels, size_job_docks
    from app.main_window import MainWindow

    win = MainWindow(settings)
    attach_job_panels(win)
    follow_system_theme(app, win, settings, forced=forced_theme)
    restored = settings.restore_window(win)  # geometry and dock layout
    if not restored:
        fit_to_screen(win)
    win.show()
    if not restored:
        size_job_docks(win)
    return win


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--core"]:  # the frozen app runs its background jobs through itself

        return core_main(argv[1:])
    args = parse_args(argv)
    app = make_app()
    from app.settings import AppSettings
    from app.theme import apply_theme
    from app.workers import run_task

    settings = AppSettings()
    apply_theme(app, args.theme or settings.theme)
    win = show_window(app, settings, forced_theme=args.theme)
    last = settings.last_project
    if args.project is not None:
        win.open_project(args.project)
    elif last is not None and (last / "project.yaml").is_file():
        win.open_project(last)
    else:
        target = demo_dir()
        win.statusBar().showMessage(f"Creating the demo project in {target}…")

        def make(_task):
            from core.demo import make_demo_project

            return make_demo_project(target)

        run_task(make, on_done=win.open_project, on_error=lambda msg: win._error(f"Demo project: {msg}"))
    if args.quit_after is not None:  # smoke tests: close this long after a project is on screen
        from PySide6.QtCore import QTimer

        if win.project is not None:
            QTimer.singleShot(args.quit_after, win.close)
        else:
            win.project_opened.connect(lambda _p: QTimer.singleShot(args.quit_after, win.close))
            QTimer.singleShot(120_000, win.close)  # never hang a test run
    return app.exec()


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()  # frozen: a spawned worker re-runs this exe, not the GUI
    os.environ.setdefault("QT_AUTO_SCREEN_SCALE_FACTOR", "1")
    sys.exit(main())
