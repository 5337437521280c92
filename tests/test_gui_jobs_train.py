"""Train panel: events drive progress/plots; a real background job starts, is cancelled with
SIGTERM and leaves a resumable run; a crashing job shows its error and the GUI survives."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import pytest

from app.jobs.train_panel import TrainPanel, format_eta, read_metrics_csv


def test_format_eta() -> None:
    assert format_eta(None) == "ETA —"
    assert format_eta(59.9) == "ETA 0:59"
    assert format_eta(3725) == "ETA 1:02:05"


def test_events_drive_progress_and_plots(qtbot, tmp_path: Path, screenshot_dir: Path) -> None:
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    panel.handle_event({"event": "start", "run": "r1", "device": "cpu", "total_steps": 40})
    for step in range(1, 21):
        panel.handle_event({"event": "step", "epoch": step // 10, "step": step, "total_steps": 40,
                            "loss": 10.0 / step, "losses": {"loss_vfl": 1.0 / step, "loss_giou": 0.5},
                            "lr": 1e-4, "img_per_s": 12.5, "eta_s": 95.0})
    panel.handle_event({"event": "metrics", "epoch": 1, "metrics": {"f1": 0.42, "map": 0.3}})
    panel.handle_event({"event": "metrics", "epoch": 2, "metrics": {"f1": 0.61, "map": 0.44}})
    assert panel.progress.value() == 500  # step 20 of 40
    assert panel.eta_label.text() == "ETA 1:35"
    assert panel.loss_plot.series("loss")[-1] == pytest.approx(0.5)
    assert panel.loss_plot.series("loss_vfl")[0] == pytest.approx(1.0)
    assert panel.metric_plot.series("f1") == [0.42, 0.61]
    assert "12.5 img/s" in panel.status_label.text()
    panel.handle_event({"event": "error", "message": "CUDA out of memory", "type": "RuntimeError"})
    assert panel.error_message == "CUDA out of memory"
    panel.grab().save(str(screenshot_dir / "train_panel_events.png"))


def test_read_metrics_csv_skips_text(tmp_path: Path) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text("epoch,f1,note\n0,0.5,x\n1,0.75,y\n")
    assert read_metrics_csv(p) == [{"epoch": 0.0, "f1": 0.5}, {"epoch": 1.0, "f1": 0.75}]
    assert read_metrics_csv(tmp_path / "missing.csv") == []


def test_crashing_job_reports_error_and_gui_survives(qtbot, tmp_path: Path) -> None:
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.project_root = tmp_path / "no_such_project"  # the trainer fails to open it
    with qtbot.waitSignal(panel.run_finished, timeout=120_000) as blocker:
        panel.start()
    name, code = blocker.args
    assert code != 0
    assert panel.status_label.text().startswith("Training failed")
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()


@pytest.mark.timeout(900)
def test_start_cancel_resume_real_training(qtbot, tmp_path: Path, screenshot_dir: Path) -> None:
    from core.demo import make_demo_project

    root = make_demo_project(tmp_path / "demo")
    panel = TrainPanel(root)
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    panel.size_box.setCurrentText("n")
    panel.epochs_box.setValue(50)
    panel.image_size_box.setValue(256)  # size n needs >= 300 anchors: 256 px is the smallest
    panel.device_box.setCurrentText("cpu")
    panel.name_edit.setText("gui")
    tiny = ["--set", "train.batch_size=2", "--set", "train.workers=0", "--set", "train.val_every=1000"]
    steps: list[dict] = []
    with qtbot.waitSignal(panel.run_finished, timeout=600_000) as blocker:
        panel.start(extra_args=tiny)
        panel.job.event.connect(lambda ev: steps.append(ev) if ev.get("event") == "step" else None)
        try:
            qtbot.waitUntil(lambda: len(steps) >= 2 or not panel.is_running(), timeout=540_000)
        finally:
            print(panel.log_view.toPlainText()[-3000:])
        assert len(steps) >= 2, panel.log_view.toPlainText()[-3000:]
        panel.cancel()
    assert blocker.args[1] == 0, panel.log_view.toPlainText()[-2000:]
    assert (root / "runs" / "gui" / "last.pt").exists()
    assert panel.progress.value() > 0
    assert "Resume" in panel.status_label.text()
    assert any(panel.runs_list.item(i).text().startswith("gui") for i in range(panel.runs_list.count()))
    panel.grab().save(str(screenshot_dir / "train_panel_cancelled.png"))
