"""Review panel's "Find label mistakes": `dfine analyze --folds K --events -` as a background job
with progress per fold, Cancel (finished folds are kept) and resume; real tiny training."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import re

import pytest
from test_train_helpers import tiny_project

from core.project import Project


@pytest.fixture
def project(tmp_path):
    root = tiny_project(tmp_path / "p", n_train=2, n_val=2)
    cfg = root / "project.yaml"
    text = cfg.read_text(encoding="utf-8")
    for key, value in (("epochs", 1), ("batch_size", 2), ("workers", 0)):
        text = re.sub(rf"^  {key}: \S+$", f"  {key}: {value}", text, count=1, flags=re.M)
    cfg.write_text(text.replace("  device: auto\n", "  device: cpu\n"), encoding="utf-8")
    return Project.open(root)


def test_find_label_mistakes_progress_per_fold_cancel_and_resume(qtbot, qapp, project):
    from app.jobs.review_panel import ReviewPanel

    panel = ReviewPanel(project)
    qtbot.addWidget(panel)
    done: list[int] = []
    panel.analysis_finished.connect(done.append)
    statuses: list[str] = []

    def watch(cancel_at: str | None):
        def on_event(ev) -> None:  # a core.messages model; runs after the panel's own handler
            statuses.append(panel.last_message)
            if cancel_at and getattr(ev, "stage", None) == cancel_at and getattr(ev, "done", None):
                panel.cancel()
        panel.job.event.connect(on_event)

    # 1) cancel while fold 1 trains: a clear message, no list, the fold's training kept
    assert panel.find_mistakes(folds=2)
    assert not panel.find_button.isEnabled() and panel.cancel_button.isEnabled()
    watch("fold 1/2 train")
    qtbot.waitUntil(lambda: bool(done), timeout=300_000)
    assert done == [0], panel.log_view.toPlainText()[-2000:]
    assert panel.last_message.startswith("Cancelled: stopped; finished folds are kept"), panel.last_message
    assert "Fold 1 of 2: training… 1 of 1 steps" in statuses
    assert panel.items == [] and panel.find_button.isEnabled()
    plan = next((project.review_dir / "folds").iterdir())
    assert (plan / "fold_0" / "train" / "last.pt").is_file() and not (plan / "fold_0" / "done.json").exists()

    # 2) resume: fold 1 continues from its last.pt (no step left), both folds predict, then rank
    done.clear()
    statuses.clear()
    assert panel.find_mistakes(folds=2)
    watch(None)
    qtbot.waitUntil(lambda: bool(done), timeout=300_000)
    assert done == [0], panel.log_view.toPlainText()[-2000:]
    assert "Fold 1 of 2: training… 1 of 1 steps" not in statuses  # nothing left to train in fold 1
    assert "Fold 2 of 2: training… 1 of 1 steps" in statuses
    assert any(re.fullmatch(r"Fold [12] of 2: predicting its held-out images… 2 of 2 images", s) for s in statuses)
    assert "Ranking the labels…" in statuses
    assert panel.last_message.startswith("Analysis done:")
    assert panel.meta["mode"] == "out-of-fold" and "out-of-fold" in panel.count_label.text()
