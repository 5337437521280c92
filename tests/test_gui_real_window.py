"""The real app on a real X server: `dfine-studio <demo project>` under Xvfb opens a window that
shows something (not a blank screen), seen from outside the app by a second X client.

This is the check offscreen tests cannot make: the xcb platform plugin loads, its system libraries
are there, the window maps and paints. The screenshot stays in the test's tmp folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None,
                                reason="Xvfb is not installed (make test installs it: apt-get install xvfb)")

GRAB = """
import sys
from PySide6.QtGui import QGuiApplication
app = QGuiApplication(sys.argv[:1])
shot = app.primaryScreen().grabWindow(0)
sys.exit(0 if shot.save(sys.argv[1]) else 1)
"""


def start_xvfb() -> tuple[subprocess.Popen, str]:
    """Xvfb on a free display number, which it reports through -displayfd."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not start")
    return proc, f":{number}"


def grab(display: str, path: Path) -> np.ndarray | None:
    """The whole X screen as an RGB array, taken by a separate X client (None if it failed)."""
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    r = subprocess.run([sys.executable, "-c", GRAB, str(path)], env=env, capture_output=True, timeout=60)
    if r.returncode != 0 or not path.is_file():
        return None
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def painted(shot: np.ndarray) -> bool:
    """A window with widgets, text and an image: many colours and real contrast, not one flat fill."""
    colours = len(np.unique(shot.reshape(-1, 3), axis=0))
    return colours > 64 and float(shot.std()) > 20.0


def test_app_window_opens_and_paints_under_xvfb(tmp_path):
    from core.demo import make_demo_project

    project = make_demo_project(tmp_path / "demo")
    xvfb, display = start_xvfb()
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    log = tmp_path / "app.log"
    with log.open("w") as out:
        app = subprocess.Popen([sys.executable, "-m", "app", str(project)], env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    try:
        shot, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline:
            if app.poll() is not None:
                pytest.fail(f"the app exited with {app.returncode}: {log.read_text()[-2000:]}")
            time.sleep(2)
            shot = grab(display, tmp_path / "window.png")
            if shot is not None and painted(shot):
                break
        assert shot is not None, f"no screenshot could be taken of {display}"
        colours = len(np.unique(shot.reshape(-1, 3), axis=0))
        print(f"screenshot {tmp_path / 'window.png'}: {colours} colours, std {shot.std():.1f}")
        assert painted(shot), f"the screen stayed blank ({colours} colours, std {shot.std():.1f}); app log: " \
                              f"{log.read_text()[-2000:]}"
        assert "Could not load the Qt platform plugin" not in log.read_text()
    finally:
        app.terminate()
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
        xvfb.terminate()
        xvfb.wait(15)
