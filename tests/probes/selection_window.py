"""The real main window on the X display of tests/probes/real_window_selection.sh; writes the
screen coordinates of the scene points the driver clicks, and every status message to a log."""
import sys
from pathlib import Path

from probe_window import open_probe_window

POINTS = {"box_in": (60, 60), "box_corner": (100, 100), "tri_tip": (200, 150), "tri_in": (200, 80),
          "prop_in": (270, 200), "empty": (300, 20)}
root, out = sys.argv[1], Path(sys.argv[2])
app, win = open_probe_window(root, out, POINTS)
app.exec()
