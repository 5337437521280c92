"""#32 checked as a person would: the real window under Xvfb, driven by real X key and mouse
events (xdotool), label files read after every step. Widget-level tests cannot see focus and
keyboard-routing bugs; this one does. Screenshots stay in the test's tmp folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
                                reason="needs Xvfb and xdotool (make test installs both: apt-get install xvfb xdotool)")

SCRIPT = Path(__file__).resolve().parent / "probes" / "real_window_selection.sh"
BOX = "0 0.062500 0.083333 0.312500 0.083333 0.312500 0.416667 0.062500 0.416667"
TRIANGLE = "1 0.468750 0.166667 0.781250 0.166667 0.625000 0.625000"
PROPOSAL = "2 0.750000 0.708333 0.937500 0.708333 0.937500 0.958333 0.750000 0.958333"


def _steps(out: str) -> dict[str, list[str]]:
    steps: dict[str, list[str]] = {}
    name = None
    for line in out.splitlines():
        if line.startswith("--- "):
            name = line[4:].strip()
            steps[name] = []
        elif name is not None:
            steps[name].append(line)
    return steps


@pytest.mark.timeout(300)
def test_real_x_events_edit_only_what_is_selected(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), str(tmp_path), sys.executable], capture_output=True, text=True,
                       timeout=280)
    steps = _steps(r.stdout)
    assert r.returncode == 0 and "accepted" in steps, r.stdout[-3000:] + r.stderr[-2000:]
    assert steps["open"] == [BOX, TRIANGLE, "proposals: img_0.json"]  # the proposal is not in labels/
    assert steps["del_selection_not_hovered_vertex"] == [TRIANGLE, "proposals: img_0.json"]
    assert steps["del_nothing_selected"] == [BOX, TRIANGLE, "proposals: img_0.json"]
    assert steps["hide_then_del"] == [BOX, TRIANGLE, "proposals: img_0.json"]
    assert steps["del_on_box_corner"] == [TRIANGLE, "proposals: img_0.json"]
    assert steps["locked"] == [BOX, TRIANGLE, "proposals: img_0.json"]
    assert steps["accepted"] == [BOX, TRIANGLE, PROPOSAL, "proposals: "]
    assert (tmp_path / "5_locked.png").is_file() and (tmp_path / "0_open.png").is_file()
