"""Train panel: events drive progress/plots; a real background job starts, is cancelled with
SIGTERM and leaves a resumable run; a crashing job shows its error and the GUI survives."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import pytest

from app.jobs.train_panel import TrainPanel, format_eta, read_metrics_csv
from core.messages import TRAIN_METRIC_NAMES, TrainMetricsEvent, TrainStepEvent
from conftest_gui import gui_settings, window  # noqa: F401


def test_format_eta() -> None:
    assert format_eta(None) == "ETA —"
    assert format_eta(59.9) == "ETA 0:59"
    assert format_eta(3725) == "ETA 1:02:05"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list]:
    """A real tiny training run (2 epochs, CPU): its project and its events as ProcessJob emits
    them (each stdout line through the job's own parser)."""
    from test_train_helpers import recorded_training, tiny_project

    from app.jobs.process_job import ProcessJob

    root = tiny_project(tmp_path_factory.mktemp("recorded") / "p", n_train=2, n_val=2)
    lines = recorded_training(root, epochs=2)
    job = ProcessJob([])
    events: list = []
    job.event.connect(events.append)
    logged: list[str] = []
    job.log.connect(logged.append)
    for line in lines:
        job._handle_stdout_line(line)
    assert not logged and len(events) == len(lines)  # every line the engine wrote is a typed event
    return root, events


def test_recorded_events_drive_progress_and_plots(qtbot, recorded, screenshot_dir: Path) -> None:
    root, events = recorded
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    steps = [e for e in events if isinstance(e, TrainStepEvent)]
    metrics = [e for e in events if isinstance(e, TrainMetricsEvent)]
    assert len(steps) == 2 and len(metrics) == 2
    for ev in events:
        panel.handle_event(ev)
    assert panel.progress.value() == 1000
    assert panel.status_label.text().startswith("Finished — best f1")
    assert panel.loss_plot.series("loss") == pytest.approx([s.loss for s in steps])
    assert panel.loss_plot.series("loss_mask_dice") == pytest.approx([s.losses.loss_mask_dice for s in steps])
    # every metric the engine sent is drawn, mAP included (it was never shown before issue #34)
    for name in ("f1", "precision", "recall", "box_map50", "box_map", "mask_map50", "mask_map"):
        assert panel.metric_plot.series(name) == pytest.approx([getattr(m.metrics, name) for m in metrics]), name
    # metrics.csv has the same names, and a past run shows the same curves
    header = (root / "runs" / "r" / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",") == ["epoch", "step", *TRAIN_METRIC_NAMES]
    panel.metric_plot.clear_series()
    panel.set_project(root)
    panel.runs_list.setCurrentRow(0)
    assert panel.metric_plot.series("mask_map50") == pytest.approx([m.metrics.mask_map50 for m in metrics])
    assert "2 epochs, best F1" in panel.runs_list.item(0).text()
    panel.grab().save(str(screenshot_dir / "train_panel_events.png"))


def test_an_error_event_is_shown(qtbot) -> None:
    from core.messages import make_event, parse_event

    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.handle_event(parse_event(make_event("error", message="CUDA out of memory", type="RuntimeError")))
    assert panel.error_message == "CUDA out of memory" and panel.status_label.text() == "Training failed"


def test_a_line_that_breaks_the_contract_reaches_the_log_not_a_panel(qtbot) -> None:
    from app.jobs.process_job import ProcessJob

    job = ProcessJob([])
    events: list = []
    logged: list[str] = []
    job.event.connect(events.append)
    job.log.connect(logged.append)
    job._handle_stdout_line('{"event": "metrics", "time": 1, "epoch": 0, "step": 1, "metrics": {"map": 0.3}}')
    job._handle_stdout_line('{"event": "error", "time": 1, "message": "boom"}')
    assert [type(e).__name__ for e in events] == ["ErrorEvent"] and job.last_error == "boom"
    assert len(logged) == 1 and "bad metrics event" in logged[0]


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
    steps: list[TrainStepEvent] = []
    with qtbot.waitSignal(panel.run_finished, timeout=600_000) as blocker:
        panel.start(extra_args=tiny)
        panel.job.event.connect(lambda ev: steps.append(ev) if isinstance(ev, TrainStepEvent) else None)
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


def _fake_run(project_root: Path, name: str, with_last: bool = True) -> Path:
    run = project_root / "runs" / name
    run.mkdir(parents=True)
    if with_last:
        (run / "last.pt").write_bytes(b"x")
        (run / "best.pt").write_bytes(b"x")
    return run


def test_resume_only_with_something_to_resume_and_a_new_start_never_collides(qtbot, tmp_path: Path) -> None:
    """Defect 5: Resume was enabled with nothing to resume, and Start with the default name of an
    existing run failed half a minute later with the CLI's 'run exists' wording."""
    from conftest_gui import make_project

    project = make_project(tmp_path / "proj", n_images=2)
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_project(project)
    assert panel.run_name() == "train" and not panel.resume_button.isEnabled()
    panel.start(resume=True)  # a stray call (shortcut, script) does nothing and says why
    assert panel.job is None and "Nothing to resume" in panel.status_label.text()
    _fake_run(project.root, "train")
    _fake_run(project.root, "train_2")
    panel.refresh_runs()
    assert panel.resume_button.isEnabled()
    panel.name_edit.setText("other")
    assert not panel.resume_button.isEnabled()
    panel.name_edit.setText("train")
    assert panel.free_run_name("train") == "train_3"
    args = []
    panel.build_args = lambda resume: args.append(resume) or ["--version"]  # no real training here
    with qtbot.waitSignal(panel.run_finished, timeout=60_000):
        panel.start(resume=False)
    assert args == [False] and panel.run_name() == "train_3"
    assert "starting a new run 'train_3'" in panel.log_view.toPlainText()


def test_a_one_point_metric_plot_has_a_readable_range(qtbot, recorded) -> None:
    """Defect 5: one validation point drew an empty −400…400 axis."""
    _, events = recorded
    panel = TrainPanel()
    qtbot.addWidget(panel)
    first = next(e for e in events if isinstance(e, TrainMetricsEvent))
    panel.handle_event(first)
    (x0, x1), (y0, y1) = panel.metric_plot.viewRange()
    assert x0 < first.epoch < x1 and x1 - x0 < 5
    assert y0 < first.metrics.f1 < y1 and y1 - y0 < 1


def test_review_export_live_see_a_finished_run_without_reopening(window, qtbot, tmp_path):  # noqa: F811
    """Defect 5: after training, Review/Export/Live said 'train a model first' until the project
    was reopened."""
    from conftest_gui import make_project, wait_image

    from app.jobs.wiring import attach_job_panels

    panels = attach_job_panels(window)
    project = make_project(tmp_path / "proj", n_images=1)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    assert panels.export.checkpoint() == "" and panels.review.model_edit.text() == ""
    run = _fake_run(project.root, "train")
    panels.train.run_finished.emit("train", 0)
    best = str(run / "best.pt")
    assert panels.export.checkpoint() == best
    assert panels.review.model_edit.text() == best and panels.live.model_edit.text() == best


def test_image_cache_box_shows_the_project_setting_and_reaches_the_command(qtbot, tmp_path: Path) -> None:
    from conftest_gui import make_project

    project = make_project(tmp_path / "proj", n_images=2)
    config = project.root / "project.yaml"
    config.write_text(config.read_text().replace("  cache_images: false\n", "  cache_images: true\n"))
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_project(project)
    assert panel.cache_box.isChecked()
    args = panel.build_args(resume=False)
    assert args[args.index("train.cache_images=true") - 1] == "--set"
    panel.cache_box.setChecked(False)
    assert "train.cache_images=false" in panel.build_args(resume=False)
    assert not any("cache_images" in a for a in panel.build_args(resume=True))  # a resumed run keeps its own
    # Tab walks the form in screen order: Device, then the box, then Run name
    w = panel.device_box.nextInFocusChain()
    while w not in (panel.cache_box, panel.name_edit):
        w = w.nextInFocusChain()
    assert w is panel.cache_box


def test_train_for_minutes_reaches_the_command_and_follows_the_project(qtbot, tmp_path: Path) -> None:
    """"Train for N min" passes --time Nm and greys out the epochs; off, an explicit null keeps a
    project.yaml budget from overriding the epochs shown; a resume keeps the run's own setting."""
    from conftest_gui import make_project

    project = make_project(tmp_path / "proj", n_images=2)
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_project(project)
    assert not panel.time_box.isChecked() and panel.epochs_box.isEnabled() and not panel.minutes_box.isEnabled()
    args = panel.build_args(resume=False)
    assert "--time" not in args and args[args.index("train.time_budget_min=null") - 1] == "--set"
    panel.time_box.setChecked(True)
    panel.minutes_box.setValue(15)
    assert not panel.epochs_box.isEnabled() and panel.minutes_box.isEnabled()
    args = panel.build_args(resume=False)
    assert args[args.index("--time") + 1] == "15m" and "train.time_budget_min=null" not in args
    assert "--time" not in panel.build_args(resume=True)
    config = project.root / "project.yaml"
    config.write_text(config.read_text().replace("  time_budget_min: null\n", "  time_budget_min: 7.5\n"))
    panel.time_box.setChecked(False)
    panel.set_project(project)
    assert panel.time_box.isChecked() and panel.minutes_box.value() == 8


def test_where_the_model_runs_reaches_project_yaml_and_follows_it(qtbot, tmp_path: Path) -> None:
    """Issue #34: the CPU pick was reachable only by editing YAML."""
    from conftest_gui import make_project

    from core.project import Project

    project = make_project(tmp_path / "proj", n_images=2)
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.set_project(project)
    assert panel.target_box.currentData() == "gpu"
    panel.target_box.setCurrentIndex(panel.target_box.findData("cpu"))
    panel.target_box.activated.emit(panel.target_box.currentIndex())  # what a click sends
    cfg = Project.open(project.root).config
    assert (cfg.model.mask_head, cfg.export.queries) == ("cpu", 100)
    assert "mask head cpu, 100 decoder queries" in panel.status_label.text()
    other = TrainPanel()
    qtbot.addWidget(other)
    other.set_project(project.root)
    assert other.target_box.currentData() == "cpu"


@pytest.mark.parametrize("size", [(1280, 800), (1024, 700)])
def test_first_start_shows_start_and_both_plots(qtbot, qapp, gui_settings, monkeypatch, size,  # noqa: F811
                                                screenshot_dir: Path) -> None:
    """Issue #33 item 8: at the first start the Train dock showed the top of the run settings only:
    Start was below them and the plots under each other, out of sight until the dock was enlarged.
    The window is built as ``dfine-studio`` builds it (no saved layout: the default size fitted to
    the screen, here ``size``)."""
    import app.main as app_main
    from PySide6.QtCore import QPoint, QRect

    from app.settings import AppSettings
    from app.theme import apply_theme

    app_main.make_app()
    qapp.setProperty("no_modal_errors", True)
    apply_theme(qapp, "dark")
    monkeypatch.setattr(app_main, "fit_to_screen", lambda win: win.resize(*size))
    win = app_main.show_window(qapp, AppSettings(gui_settings))
    qtbot.addWidget(win)
    qtbot.waitExposed(win)
    qtbot.wait(50)
    assert win.size().toTuple() == size
    dock, panel = win.job_docks[0], win._job_panels.train
    assert dock.isVisible() and panel.isVisible()
    viewport = dock.widget().viewport()  # what the dock's scroll area shows of the panel
    shown = viewport.rect()

    def on_screen(widget) -> QRect:
        return shown.intersected(QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size()))

    start = QRect(panel.start_button.mapTo(viewport, QPoint(0, 0)), panel.start_button.size())
    assert shown.contains(start), (start, shown)
    for plot in (panel.loss_plot, panel.metric_plot):
        visible = on_screen(plot)
        assert visible.height() >= 100 and visible.width() >= 200, (plot, visible)
        # the curves' own area (inside title and axes) is on screen, and tall enough to read
        curves = plot.mapFromScene(plot.plotItem.vb.sceneBoundingRect()).boundingRect()
        curves = QRect(plot.mapTo(viewport, curves.topLeft()), curves.size())
        assert shown.contains(curves) and curves.height() >= 60, (curves, shown)
    # the canvas stays the main thing on screen
    assert win.centralWidget().height() >= 2 * dock.height()
    win.grab().save(str(screenshot_dir / f"train_dock_first_start_{size[0]}x{size[1]}.png"))
    win.close()


@pytest.mark.timeout(900)
def test_resume_draws_the_whole_run_not_only_the_resumed_steps(qtbot, tmp_path: Path) -> None:
    """Issue #33 item 8: after Resume the loss plot started over (the steps before the cancel were
    gone) and so did the validation plot. A real tiny run is cancelled (SIGTERM, as the GUI's
    Cancel) after its first validation, then resumed from the panel: the curves hold every step
    and every validation of the run, each once, in order."""
    import signal
    import subprocess

    from test_train_helpers import PY, REPO, env, events_of, tiny_project

    from core.train.events import read_run_history

    settings = ["--set", "train.epochs=2", "--set", "train.batch_size=1", "--set", "train.workers=0",
                "--set", "train.no_aug_epochs=0", "--set", "train.warmup_iters=2"]
    root = tiny_project(tmp_path / "p", n_train=3, n_val=1)
    proc = subprocess.Popen([PY, "-m", "core", "train", str(root), "--events", "-", "--name", "cut",
                             "--device", "cpu", "--no-progress", *settings],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            first += events_of(line)
            if first[-1]["event"] == "step" and first[-1]["step"] == 4:  # epoch 0 validated at step 3
                proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    cut_at = next(e for e in first if e["event"] == "done")["step"]
    assert 4 <= cut_at < 6 and [e["epoch"] for e in first if e["event"] == "metrics"] == [0]

    panel = TrainPanel(root)
    qtbot.addWidget(panel)
    panel.name_edit.setText("cut")
    panel.device_box.setCurrentText("cpu")
    assert panel.resume_button.isEnabled()
    live: list = []
    ended: list = []
    panel.run_finished.connect(lambda name, code: ended.append((name, code)))
    with qtbot.waitSignals([panel.run_finished, panel.history_loaded], timeout=600_000):
        panel.start(resume=True, extra_args=settings)
        panel.job.event.connect(live.append)
    assert ended == [("cut", 0)], panel.log_view.toPlainText()[-2000:]
    resumed_steps = [e.step for e in live if isinstance(e, TrainStepEvent)]
    assert resumed_steps == list(range(cut_at + 1, 7))  # the resumed process sent only these
    history = read_run_history(root / "runs" / "cut")
    assert [s.step for s in history.steps] == [1, 2, 3, 4, 5, 6]
    assert panel.loss_plot.xs("loss") == [1, 2, 3, 4, 5, 6]
    assert panel.loss_plot.series("loss") == pytest.approx([s.loss for s in history.steps])
    assert panel.loss_plot.series("loss_mask_dice") == pytest.approx([s.losses.loss_mask_dice
                                                                       for s in history.steps])
    assert panel.metric_plot.xs("f1") == [0, 1]
    assert panel.metric_plot.series("f1") == pytest.approx([m.metrics.f1 for m in history.metrics])
    # the first attempt's points are the ones it sent before the cancel
    first_losses = {e["step"]: e["loss"] for e in first if e["event"] == "step"}
    assert panel.loss_plot.series("loss")[:cut_at] == pytest.approx([first_losses[k] for k in range(1, cut_at + 1)])


def test_history_landing_after_live_points_goes_before_them(qtbot) -> None:
    """The resumed run's history is read in a worker: when the run's first steps are drawn before
    it lands, it goes before them; a step the run does again (resumed from an earlier checkpoint)
    replaces the points from there on."""
    from app.jobs.train_panel import CurvePlot

    plot = CurvePlot("Losses", "step")
    qtbot.addWidget(plot)
    plot.add_point("loss", 5, 0.5)
    plot.add_point("loss", 6, 0.4)
    plot.put_history("loss", [1, 2, 3, 4, 5], [0.9, 0.8, 0.7, 0.6, 0.55])
    assert plot.xs("loss") == [1, 2, 3, 4, 5, 6] and plot.series("loss") == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    plot.add_point("loss", 4, 0.65)
    assert plot.xs("loss") == [1, 2, 3, 4] and plot.series("loss") == [0.9, 0.8, 0.7, 0.65]


def test_every_loss_a_real_run_sends_is_declared_and_drawn(qtbot, recorded) -> None:
    """Issue #34: the loss names were a list in the panel that left out loss_fgl and loss_ddf. Every
    loss a real tiny run sends is declared in core.messages.TrainLosses, and both the Train panel
    and losses.png draw each one with the values sent."""
    from core.messages import TRAIN_LOSS_NAMES
    from core.train.events import loss_series, read_events, run_history

    root, events = recorded
    raw = [r for r in read_events(root / "runs" / "r" / "events.jsonl") if r["event"] == "step"]
    sent = {key for r in raw for key in r["losses"]}
    assert sent <= set(TRAIN_LOSS_NAMES), sent - set(TRAIN_LOSS_NAMES)
    assert {"loss_bbox", "loss_giou", "loss_fgl", "loss_ddf", "loss_mask_bce", "loss_mask_dice"} <= sent
    panel = TrainPanel()
    qtbot.addWidget(panel)
    for ev in events:
        panel.handle_event(ev)
    drawn = {name for name in ("loss", *TRAIN_LOSS_NAMES) if panel.loss_plot.series(name)}
    assert drawn == sent | {"loss"}
    for key in sent:
        assert panel.loss_plot.series(key) == pytest.approx([r["losses"][key] for r in raw]), key
    curves = loss_series(run_history(read_events(root / "runs" / "r" / "events.jsonl")).steps)  # losses.png
    assert list(curves) == [name for name in ("loss", *TRAIN_LOSS_NAMES) if name in sent | {"loss"}]
    assert curves["loss_ddf"] == ([r["step"] for r in raw], pytest.approx([r["losses"]["loss_ddf"] for r in raw]))
    assert (root / "runs" / "r" / "losses.png").stat().st_size > 1000
