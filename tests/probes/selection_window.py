"""Real window on the X display; writes scene->screen coordinates of the points the driver needs."""
import json, sys
from pathlib import Path
from PySide6.QtCore import QSettings, QTimer
from app.main import make_app
from app.main_window import MainWindow
root, out = sys.argv[1], Path(sys.argv[2])
app = make_app()
win = MainWindow(QSettings(str(out.parent / "s.ini"), QSettings.Format.IniFormat))
win.resize(1200, 760); win.move(0, 0); win.show()
win.open_project(root)
def dump():
    if win.canvas.image is None:
        QTimer.singleShot(200, dump); return
    pts = {}
    for name, (x, y) in {"box_in": (60, 60), "box_corner": (100, 100), "tri_tip": (200, 150), "tri_in": (200, 80),
                         "prop_in": (270, 200), "empty": (300, 20)}.items():
        g = win.canvas.viewport().mapToGlobal(win.canvas.mapFromScene(float(x), float(y)))
        pts[name] = [g.x(), g.y()]
    out.write_text(json.dumps(pts))
QTimer.singleShot(500, dump)
win.statusBar().messageChanged.connect(lambda m: (out.parent / "status.log").open("a").write(m + "\n"))
app.exec()
