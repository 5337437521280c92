"""The GUI thread never waits for the project lock (#35): with another process holding it,
autosave returns at once, says who holds the lock, keeps the edit and saves once it is free."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, wait_image, window  # noqa: F401

from app.commands import AddInstance
from core.annotation import Instance

REPO = Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from core.project_lock import project_lock
with project_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.timeout(120)
def test_autosave_with_the_lock_held_elsewhere_does_not_freeze_the_window(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "p", n_images=2)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    doc = window.doc
    doc.undo_stack.push(AddInstance(doc, Instance(0, box=(10.0, 10.0, 60.0, 50.0))))
    assert doc.is_dirty()
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(project.root)], cwd=REPO, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "held"
        messages = []
        window.autosaver.failed.connect(lambda _d, m: messages.append(m))
        t0 = time.monotonic()
        assert window.autosaver.save(doc) is False
        assert time.monotonic() - t0 < 2.0  # GUI_LOCK_WAIT_S, not the CLI's minute
        assert messages and f"pid {child.pid}" in messages[-1] and "edits are kept" in messages[-1]
        assert doc.is_dirty() and not project.label_path(doc.image_path).exists()
    finally:
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(10)
    assert window.autosaver.save(doc) is True
    rows = project.label_path(doc.image_path).read_text().split()
    assert rows[0] == "0" and len(rows) == 5
    np.testing.assert_allclose([float(v) for v in rows[1:]], [35 / 320, 30 / 240, 50 / 320, 40 / 240], atol=1e-4)
