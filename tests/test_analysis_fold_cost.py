"""Issue #30: the Review panel says how long out-of-fold analysis will take before it starts,
from the speed of this project's own newest training (core.analysis.folds.estimate_folds)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from core.analysis.folds import estimate_folds
from core.project import Project


def _project_with_a_run(tmp_path, img_per_s: float | None) -> Project:
    proj = Project.create(tmp_path / "p", ["a", "b"], "segment")
    if img_per_s is not None:
        run = proj.runs_dir / "train"
        run.mkdir(parents=True)
        rows = [{"event": "start"}] + [{"event": "step", "step": i, "img_per_s": img_per_s} for i in range(1, 6)]
        (run / "events.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return proj


def test_fold_cost_from_the_project_s_own_training_speed(tmp_path):
    proj = _project_with_a_run(tmp_path, 2.0)
    cfg = proj.config.train
    k3 = estimate_folds(proj, 60, 3)
    k5 = estimate_folds(proj, 60, 5)
    assert k3.steps_per_fold == -(-40 // cfg.batch_size) * cfg.epochs  # 40 of 60 images per fold
    assert k3.img_per_s == 2.0 and "runs/train" in k3.basis
    expect3 = 3 * (k3.steps_per_fold * cfg.batch_size / 2.0 + 2 * 20 / (3 * 2.0))
    assert abs(k3.seconds - expect3) < 1e-6
    assert k5.seconds > 1.6 * k3.seconds  # 5 models on 4/5 of the images vs 3 on 2/3
    fewer = estimate_folds(proj, 60, 3, ["train.epochs=5"])
    assert fewer.steps_per_fold == -(-40 // cfg.batch_size) * 5
    assert k3.describe().startswith("about ") and "3 fold models" in k3.describe()


def test_without_a_measured_speed_the_estimate_says_so(tmp_path):
    est = estimate_folds(_project_with_a_run(tmp_path, None), 60, 3)
    assert est.seconds is None and "known after the first steps" in est.describe()


def test_the_review_panel_says_how_long_before_it_starts(qtbot, qapp, tmp_path, monkeypatch):
    from app.jobs.review_panel import ReviewPanel

    proj = _project_with_a_run(tmp_path, 2.0)
    panel = ReviewPanel(proj)
    qtbot.addWidget(panel)
    panel.folds_spin.setValue(3)
    assert panel.folds_spin.toolTip().startswith("about ")
    started: list[str] = []
    monkeypatch.setattr(panel, "_start_job", lambda args, status: started.append(status))
    assert panel.find_mistakes(3)
    assert started and "3 folds (about " in started[0]
