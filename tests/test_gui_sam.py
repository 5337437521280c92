"""SAM click-to-segment in the editor (tool S, issue #31): the chosen pair from the weights cache,
the image embedding computed once per image on a worker (never the GUI thread), each click or box
decoded into an editable polygon marked as a model proposal (saved to the proposal store until a
person accepts it), and a one-line `dfine weights get` instruction when no pair is in the cache.

The pairs are tiny ONNX files of the real signatures (tests/sam_onnx_fixtures.py): their decoder
draws a diamond of L1 radius 102.4 (in the 1024 frame of the `sam` contract: 32 px on this 320 px
wide image) around the first prompt point."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading

import numpy as np
import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_gui_editor import click, drag, key, vp

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import sam_onnx_fixtures as fx  # noqa: E402

from app.canvas import Tool  # noqa: E402
from core.proposals import proposals_path  # noqa: E402
from core.sam import SamModel  # noqa: E402
from core.weights.sam_registry import find_sam, sam_files  # noqa: E402

RADIUS = 32.0  # the fixture decoder's diamond, in pixels of a 320 px wide image


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setenv("DFINE_WEIGHTS_DIR", str(folder))
    return folder


def put_pair(folder, name="mobile_sam") -> None:
    entry = find_sam(name)
    make = {("sam", "encoder"): fx.sam_encoder, ("sam", "decoder"): fx.sam_decoder,
            ("efficientsam", "encoder"): fx.efficientsam_encoder,
            ("efficientsam", "decoder"): fx.efficientsam_decoder}
    for part, path in sam_files(entry, folder).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make[(entry.contract, part)]())


@pytest.fixture
def opened(window, qtbot, tmp_path, cache):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=2)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    return window, project


def diamond_l1(inst, cx: float, cy: float) -> np.ndarray:
    verts = np.vstack(inst.polygons)
    return np.abs(verts[:, 0] - cx) + np.abs(verts[:, 1] - cy)


def test_sam_click_embeds_off_the_gui_thread_once_and_gives_a_proposal(opened, qtbot, cache, monkeypatch):
    put_pair(cache)
    calls: list[str] = []
    real_embed = SamModel.embed

    def embed(self, image):
        calls.append(threading.current_thread().name)
        return real_embed(self, image)

    monkeypatch.setattr(SamModel, "embed", embed)
    win, project = opened
    key(win, Qt.Key.Key_2)
    key(win, Qt.Key.Key_S)
    assert win.canvas.tool == Tool.SAM and win.act_sam.isChecked()
    # choosing the tool starts the embedding in the background; a click meanwhile waits for it
    click(win, vp(win, 120, 90))
    qtbot.waitUntil(lambda: len(win.doc.instances) == 1, timeout=15_000)
    assert calls and all(t != threading.main_thread().name for t in calls)
    assert win.sam_embed_threads and threading.main_thread().name not in win.sam_embed_threads
    inst = win.doc.instances[0]
    assert inst.source == "model" and inst.class_id == 1 and inst.score == pytest.approx(0.9)
    assert np.all(np.abs(diamond_l1(inst, 120.5, 90.5) - RADIUS) <= 2.5)  # the diamond around the click
    assert win.canvas.selected == [0] and win.canvas.prompt_points == [(pytest.approx(120.5, abs=1),
                                                                         pytest.approx(90.5, abs=1), True)]
    screenshot(win, "sam_click")
    # a negative click refines the same object (one undoable replace); no second embedding
    n = win.doc.undo_stack.count()
    QTest.mouseClick(win.canvas.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier,
                     vp(win, 200, 150))
    assert len(win.doc.instances) == 1 and win.doc.undo_stack.count() == n + 1
    assert win.doc.undo_stack.text(n) == "Refine SAM"
    assert [p[2] for p in win.canvas.prompt_points] == [True, False] and len(calls) == 1
    # Enter: the object is done; a box drag starts another (its corner is the fixture's prompt)
    key(win, Qt.Key.Key_Return)
    drag(win, vp(win, 220, 40), vp(win, 300, 110))
    assert len(win.doc.instances) == 2 and len(calls) == 1
    second = win.doc.instances[1]
    x0, y0 = win.canvas.mapToScene(vp(win, 220, 40)).toTuple()
    assert second.source == "model" and np.all(np.abs(diamond_l1(second, x0, y0) - RADIUS) <= 2.5)
    # proposals stay out of the labels until accepted
    win.save_now()
    qtbot.waitUntil(lambda: proposals_path(project, win.doc.image_path).is_file(), timeout=10_000)
    label = project.label_path(win.doc.image_path)
    assert not label.is_file() or label.read_text().strip() == ""
    win.canvas.set_selection([0])
    key(win, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.instances[0].source != "model" and win.doc.instances[1].source == "model"
    # another image: its own embedding, computed in the background again
    key(win, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=15_000)
    assert all(t != threading.main_thread().name for t in calls)
    # back to the first image: its embedding is cached, a click decodes at once
    key(win, Qt.Key.Key_A)
    wait_image(qtbot, win)
    win.canvas.setFocus()
    click(win, vp(win, 60, 200))
    assert len(win.doc.instances) == 3 and len(calls) == 2


def test_sam_without_a_cached_pair_says_how_to_get_one(opened, qtbot):
    win, _ = opened
    key(win, Qt.Key.Key_S)
    click(win, vp(win, 120, 90))
    text = win.statusBar().currentMessage()
    assert "dfine weights get" in text and "weights add" in text and "\n" not in text
    assert win.doc.instances == []


def test_sam_uses_the_chosen_pair(opened, qtbot, cache):
    put_pair(cache, "mobile_sam")
    put_pair(cache, "efficientsam_ti")
    win, _ = opened
    win.set_sam_model("efficientsam_ti")
    key(win, Qt.Key.Key_S)
    click(win, vp(win, 120, 90))
    qtbot.waitUntil(lambda: len(win.doc.instances) == 1, timeout=15_000)
    assert win._sam_model[0] == "efficientsam_ti" and win._sam_model[1].contract == "efficientsam"
    # efficientsam frame = the image's own: the diamond's radius is 102.4 image px (clipped by the image)
    inst = win.doc.instances[0]
    assert inst.source == "model" and np.max(diamond_l1(inst, 120.5, 90.5)) > 60
    win.set_sam_model("mobile_sam_missing")  # not a registry name: the advice, no crash
    assert "dfine weights" in win.statusBar().currentMessage()
