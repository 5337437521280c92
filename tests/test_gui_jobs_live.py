"""Live view: video file and image folder sources, threshold, snapshot, record,
send-to-project, missing camera; a fake predictor with the Predictor contract, and
the real torch Predictor on a small random-weight checkpoint."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.infer.detections import Detections

W, H = 160, 120
SQUARE = (40, 30, 100, 90)  # x0, y0, x1, y1 (exclusive) of the bright square in every frame


def make_frame(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (20 + 10 * i, 60, 90)
    x0, y0, x1, y1 = SQUARE
    img[y0:y1, x0:x1] = (230, 230, 230)
    return img


def write_video(path: Path, n: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(make_frame(i))
    writer.release()
    return path


def write_folder(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"frame_{i:02d}.png"), make_frame(i))
    (folder / "notes.txt").write_text("not an image")
    return folder


class FakePredictor:
    """Same contract as core.infer.Predictor: finds the bright square (class 1, score 0.9)
    and a faint corner blob (class 0, score 0.3)."""

    class_names = ["cat", "dog", "car"]

    def __init__(self):
        self.calls = 0
        self.conf = 0.5

    def predict(self, images):
        out = []
        for img in images:
            self.calls += 1
            h, w = img.shape[:2]
            bright = img.min(axis=2) > 200
            ys, xs = np.nonzero(bright)
            masks = np.zeros((2, h, w), bool)
            masks[0] = bright
            masks[1, 0:10, 0:10] = True
            boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [0, 0, 10, 10]]
            out.append(
                Detections(
                    np.array(boxes, np.float32),
                    np.array([0.9, 0.3], np.float32),
                    np.array([1, 0]),
                    (h, w),
                    masks,
                    None,
                    list(self.class_names),
                )
            )
        return out


@pytest.fixture
def live(qtbot, qapp, tmp_path):
    from app.jobs.live_view import LiveView
    from app.theme import apply_theme
    from tests.conftest_gui import make_project

    apply_theme(qapp, "dark")
    project = make_project(tmp_path / "proj", n_images=1, size=(W, H))
    view = LiveView(project)
    qtbot.addWidget(view)
    view.resize(900, 620)
    view.show()
    yield view
    view.stop()


def run_to_end(qtbot, view, timeout: int = 20_000) -> None:
    qtbot.waitUntil(lambda: view.thread is not None and view.thread.isFinished(), timeout=timeout)
    qtbot.wait(50)  # queued result_ready / ended signals
    view._on_result()


def test_draw_overlay_exact_pixels():
    from app.jobs.live_view import draw_overlay
    from core.infer.overlay import PALETTE

    frame = make_frame(0)
    det = FakePredictor().predict([frame])[0]
    out = draw_overlay(frame, det)
    assert out.shape == frame.shape and out is not frame
    assert np.array_equal(frame, make_frame(0)), "the input frame must not be modified"
    color = PALETTE[1].astype(np.float32)
    expected = (frame[60, 70].astype(np.float32) * 0.55 + color * 0.45).astype(np.uint8)
    assert np.array_equal(out[60, 70], expected)  # inside the square's mask, away from edges and tag
    assert np.array_equal(out[110, 150], frame[110, 150])  # background untouched
    empty = Detections.empty((H, W), True)
    assert np.array_equal(draw_overlay(frame, empty), frame)
    assert np.array_equal(draw_overlay(frame, None), frame)


def test_missing_camera_and_bad_paths_give_clear_messages(live, tmp_path):
    assert live.start(source=57, predictor=FakePredictor()) is False
    assert "camera 57 could not be opened" in live.last_message
    assert "camera 57" in live.view.message
    assert not live.is_running()
    assert live.start(source=str(tmp_path / "nope.mp4"), predictor=FakePredictor()) is False
    assert "no such file or folder" in live.last_message
    empty = tmp_path / "empty"
    empty.mkdir()
    assert live.start(source=str(empty), predictor=FakePredictor()) is False
    assert "holds no images" in live.last_message
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all")
    assert live.start(source=str(bad), predictor=FakePredictor()) is False
    assert "OpenCV cannot open this video" in live.last_message


def test_video_file_threshold_record_and_snapshot(live, qtbot, tmp_path, screenshot_dir):
    video = write_video(tmp_path / "clip.avi", 6)
    fake = FakePredictor()
    live.threshold_slider.setValue(50)
    assert live.start(source=str(video), predictor=fake, max_fps=20)
    qtbot.waitUntil(lambda: live.current is not None, timeout=10_000)
    rec = live.start_recording(tmp_path / "rec.avi", fps=10)
    assert rec == tmp_path / "rec.avi"
    assert live.record_button.isChecked() and live.record_button.text() == "● Stop recording"
    run_to_end(qtbot, live)
    # played live at the file's 10 fps: every frame is read; one the model had no time for is
    # stale (replaced by a newer one), never queued
    assert live.thread.frames_read == 6 and fake.calls + live.thread.frames_stale == 6
    assert "end of clip.avi (6 frames)" in live.last_message or "Recorded" in live.last_message
    assert 1 <= live.frames_shown <= fake.calls
    assert live.frames_shown + live.thread.frames_dropped == fake.calls
    assert live.display_latency_ms is not None and live.display_latency_ms >= live.current.latency_ms
    assert "capture→screen" in live.stats_label.text()
    det = live.current.detections
    assert len(det) == 1 and det.labels.tolist() == [1]  # the 0.3 blob is under the 0.5 threshold
    assert live.current.latency_ms > 0
    # recording stopped at the end of the video; every shown frame after the start is in it
    assert live.writer is None
    cap = cv2.VideoCapture(str(rec))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == live.frames_recorded >= 1
    snap = live.snapshot(tmp_path / "snap.png")
    assert np.array_equal(cv2.imread(str(snap)), live.current_overlay)
    live.view.repaint()
    from tests.conftest_gui import screenshot

    screenshot(live, "jobs_live_video")


def test_threshold_slider_reaches_the_thread(live, qtbot, tmp_path):
    folder = write_folder(tmp_path / "frames", 3)
    fake = FakePredictor()
    live.threshold_slider.setValue(20)
    assert live.start(source=str(folder), predictor=fake, max_fps=None)
    run_to_end(qtbot, live)
    assert live.thread.threshold == pytest.approx(0.2)
    assert sorted(live.current.detections.labels.tolist()) == [0, 1]  # both above 0.2
    assert fake.conf == pytest.approx(0.2)


def test_image_folder_pause_and_send_to_project(live, qtbot, tmp_path, screenshot_dir):
    folder = write_folder(tmp_path / "frames", 4)
    added = []
    live.frame_added.connect(added.append)
    assert live.start(source=str(folder), predictor=FakePredictor(), max_fps=10)
    qtbot.waitUntil(lambda: live.current is not None, timeout=10_000)
    live.pause_button.setChecked(True)
    assert live.thread.paused
    qtbot.wait(400)
    read = live.thread.frames_read
    qtbot.wait(400)
    assert live.thread.frames_read == read, "paused capture must not read frames"
    assert read < 4
    live.pause_button.setChecked(False)
    run_to_end(qtbot, live)
    assert live.thread.frames_read == 4
    assert not live.pause_button.isEnabled() and live.start_button.text() == "Start"
    assert live.current.image_path == folder / "frame_03.png"
    path = live.send_to_project()
    assert path is not None and added == [path]
    assert path.parent == live.project.image_dir
    assert live.project.load_annotation(path).instances == []  # proposals, not labels (#32)
    assert not live.project.label_path(path).exists()
    ann = live.project.load_annotation(path, include_proposals=True)
    assert (ann.width, ann.height) == (W, H)
    assert len(ann.instances) == 1
    inst = ann.instances[0]
    assert inst.class_id == 1 and inst.source == "model" and inst.score == pytest.approx(0.9, abs=1e-3)
    assert "1 model proposals (score >= 0.50)" in live.status_label.text()
    x0, y0, x1, y1 = inst.bbox()
    assert abs(x0 - SQUARE[0]) <= 1 and abs(y0 - SQUARE[1]) <= 1
    assert abs(x1 - SQUARE[2]) <= 1 and abs(y1 - SQUARE[3]) <= 1
    saved = cv2.imread(str(path))
    assert np.array_equal(saved, make_frame(3)), "the raw frame is stored, not the overlay"
    from tests.conftest_gui import screenshot

    screenshot(live, "jobs_live_folder")


def test_real_predictor_on_video(live, qtbot, tmp_path):
    """The torch Predictor on a random-weight size-n checkpoint: frames flow, stats show."""
    torch = pytest.importorskip("torch")
    from core.model import build_model

    torch.manual_seed(0)
    model = build_model("n", 3, task="segment", image_size=256)  # n needs >= 300 positions at strides 16/32
    ckpt = tmp_path / "tiny.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "class_names": ["cat", "dog", "car"],
            "config": {"task": "segment", "model": {"size": "n", "image_size": 256}},
        },
        ckpt,
    )
    video = write_video(tmp_path / "clip.avi", 3)
    from PySide6.QtCore import QSettings

    from app.jobs.live_view import LiveView
    from app.settings import AppSettings

    live.settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    live.model_edit.setText(str(ckpt))
    live.backend_box.setCurrentText("torch")
    live.threshold_slider.setValue(1)
    t0 = time.perf_counter()
    assert live.start(source=str(video), max_fps=None)
    run_to_end(qtbot, live, timeout=90_000)
    assert "error" not in live.last_message.lower(), live.last_message
    assert live.thread.frames_read == 3
    assert live.current is not None and live.current.latency_ms > 0
    det = live.current.detections
    assert det.masks is not None and det.masks.shape[1:] == (H, W)
    assert (det.scores >= 0.01 - 1e-6).all()
    assert live.class_names == ["cat", "dog", "car"]
    assert live.stats_label.text().startswith("torch fp32  ·  FPS")
    # the choices are remembered: a new live view (next app start) comes up with them
    again = LiveView(live.project, live.settings)
    qtbot.addWidget(again)
    assert again.source_box.currentText() == str(video)
    assert again.model_edit.text() == str(ckpt) and again.backend_box.currentText() == "torch"
    from tests.conftest_gui import screenshot

    assert not live.pause_button.isEnabled() and not live.record_button.isEnabled()
    screenshot(live, "jobs_live_real_predictor")
    print(
        f"real predictor: 3 frames in {time.perf_counter() - t0:.1f}s incl. load, "
        f"last e2e {live.current.latency_ms:.0f} ms, fps {live.current.fps:.2f}"
    )


def test_shutdown_stops_a_running_capture(live, qtbot, tmp_path):
    folder = write_folder(tmp_path / "frames", 5)
    assert live.start(source=str(folder), predictor=FakePredictor(), max_fps=2)
    qtbot.waitUntil(lambda: live.current is not None, timeout=10_000)
    assert live.start_recording(tmp_path / "r.avi", fps=2) is not None
    live.shutdown()
    assert live.thread.isFinished() and live.thread.frames_read < 5
    assert live.writer is None and "Recorded" in live.last_message


def test_send_frame_at_a_low_slider_keeps_only_what_the_model_stands_behind(live, qtbot, tmp_path):
    """#32: with the slider at 0.01 "Send frame" wrote every detection into the label file. Now
    proposals at or above the project's threshold go to proposals/ and the status counts the rest."""
    folder = write_folder(tmp_path / "frames", 2)
    live.threshold_slider.setValue(1)
    assert live.start(source=str(folder), predictor=FakePredictor(), max_fps=None)
    run_to_end(qtbot, live)
    assert sorted(live.current.detections.labels.tolist()) == [0, 1]  # the 0.3 blob is on screen
    path = live.send_to_project()
    assert path is not None and not live.project.label_path(path).exists()
    shown = live.project.load_annotation(path, include_proposals=True).instances
    assert [(i.class_id, i.source) for i in shown] == [(1, "model")] and shown[0].score >= 0.5
    status = live.status_label.text()
    assert "1 model proposals (score >= 0.50)" in status and "1 below 0.50 or over the cap left out" in status
