"""The real main window on the X display of tests/probes/real_window_selection.sh; writes the
screen coordinates of the scene points the driver clicks, and every status message to a log."""
import json
import sys
from pathlib import Path

from PySide6.QtCore import QTimer

from app.main import make_app
from app.main_window import MainWindow
from app.settings import AppSettings

POINTS = {"box_in": (60, 60), "box_corner": (100, 100), "tri_tip": (200, 150), "tri_in": (200, 80),
          "prop_in": (270, 200), "empty": (300, 20)}
root, out = sys.argv[1], Path(sys.argv[2])
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
    for name, (x, y) in POINTS.items():
        g = win.canvas.viewport().mapToGlobal(win.canvas.mapFromScene(float(x), float(y)))
        pts[name] = [g.x(), g.y()]
    out.write_text(json.dumps(pts))


def log(message: str) -> None:
    with (out.parent / "status.log").open("a") as f:
        f.write(message + "\n")


QTimer.singleShot(500, dump)
win.statusBar().messageChanged.connect(log)
app.exec()
