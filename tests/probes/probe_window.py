"""The real main window for the Xvfb probes (real_window_*.sh): opened on a project, writes the
screen coordinates of the scene points the driver clicks to `out` once the image is shown, and
every status message to status.log beside it."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QTimer

from app.main import make_app
from app.main_window import MainWindow
from app.settings import AppSettings


def open_probe_window(root: Path | str, out: Path, points: dict[str, tuple[float, float]]):
    """(app, window): the window shown at 1200x760 in the top-left corner, `root` opened."""
    app = make_app()
    win = MainWindow(AppSettings.in_file(out.parent / "s.ini"))
    win.resize(1200, 760)
    win.move(0, 0)
    win.show()
    win.open_project(root)

    def dump() -> None:
        if win.canvas.image is None:
            QTimer.singleShot(200, dump)
            return
        pts = {}
        for name, (x, y) in points.items():
            g = win.canvas.viewport().mapToGlobal(win.canvas.mapFromScene(float(x), float(y)))
            pts[name] = [g.x(), g.y()]
        out.write_text(json.dumps(pts))

    def log(message: str) -> None:
        with (out.parent / "status.log").open("a") as f:
            f.write(message + "\n")

    QTimer.singleShot(500, dump)
    win.statusBar().messageChanged.connect(log)
    return app, win
