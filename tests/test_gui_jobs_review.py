"""Review panel: a generated analysis result (exact fixes, decisions, undo, persistence
across re-analysis) and a real `dfine analyze --predictions` run in the background."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
from pathlib import Path

import numpy as np
import pytest

from core.annotation import Instance
from core.project import Project
from review_data import H, OBJECTS, SQ, W, make_project, write_issues

@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


@pytest.fixture
def panel(qtbot, qapp, project):
    from app.jobs.review_panel import ReviewPanel
    from app.theme import apply_theme

    apply_theme(qapp, "dark")
    write_issues(project)
    p = ReviewPanel(project)
    qtbot.addWidget(p)
    p.resize(1100, 680)
    p.show()
    yield p
    if p.is_running():
        p.job.kill()
        p.job.wait(5000)
    p.wait_thumbnails(10)


def select(panel, kind: str) -> None:
    key = next(it.key for it in panel.items if it.kind == kind)
    assert panel.select_key(key), f"{kind} not shown"
    assert panel.selected_item().kind == kind


def labels(proj: Project, name: str) -> list[tuple[int, tuple]]:
    ann = proj.load_annotation(proj.image_dir / name)
    return [(i.class_id, tuple(round(v, 1) for v in i.bbox())) for i in ann.instances]


def test_list_accept_undo_dismiss_and_persistence(panel, project, qtbot, screenshot_dir):
    from tests.conftest_gui import screenshot

    flagged = []
    panel.flagged_changed.connect(flagged.append)
    assert [it.kind for it in panel.items] == [
        "wrong_class",
        "missing_label",
        "duplicate_label",
        "spurious_label",
    ]
    assert panel.table.rowCount() == 4
    assert [panel.table.item(r, 2).text() for r in range(4)] == [
        "wrong class",
        "missing label",
        "duplicate",
        "label not found by model",
    ]
    assert panel.table.item(0, 3).text() == "cat" and panel.table.item(0, 4).text() == "0.81"
    assert {p.name for p in panel.flagged_images()} == {"a.png", "b.png"}
    assert panel.wait_thumbnails(20)
    qtbot.waitUntil(lambda: all(not panel.table.item(r, 0).icon().isNull() for r in range(4)), timeout=5000)
    select(panel, "wrong_class")
    assert panel.accept_button.text() == "Set class to “dog”"
    assert panel.crop_label.pixmap() is not None and not panel.crop_label.pixmap().isNull()
    screenshot(panel, "jobs_review_list")

    # accept: wrong class -> dog, written through the store; the item leaves the open list
    changed = []
    panel.labels_changed.connect(changed.append)
    assert panel.accept_selected()
    assert labels(project, "b.png") == [(1, (5.0, 30.0, 25.0, 55.0))]
    assert changed == [project.image_dir / "b.png"]
    assert panel.table.rowCount() == 3
    dec = json.loads((project.review_dir / "decisions.json").read_text())["decisions"]
    assert [d["decision"] for d in dec.values()] == ["accepted"] and list(dec.values())[0][
        "kind"
    ] == "wrong_class"
    # undo restores the old label and reopens the item
    assert panel.undo()
    assert labels(project, "b.png") == [(0, (5.0, 30.0, 25.0, 55.0))]
    assert json.loads((project.review_dir / "decisions.json").read_text())["decisions"] == {}
    assert panel.table.rowCount() == 4 and panel.selected_item().kind == "wrong_class"
    assert panel.accept_selected()

    # accept the missing label: a new polygon instance equal to the suggestion
    select(panel, "missing_label")
    assert panel.accept_button.text() == "Add “cat” label"
    assert panel.accept_selected()
    ann = project.load_annotation(project.image_dir / "b.png")
    assert len(ann.instances) == 2
    new = ann.instances[1]
    assert new.class_id == 0 and len(new.polygons) == 1
    assert np.allclose(new.polygons[0], SQ(60, 5, 85, 25), atol=0.01)
    assert flagged[-1] == {"a.png"}  # b.png has no open item left

    # duplicate: delete instance 2 of a.png; the spurious item (instance 1) still finds its label
    select(panel, "duplicate_label")
    assert panel.accept_selected()
    assert labels(project, "a.png") == [(0, (10.0, 10.0, 30.0, 30.0)), (1, (50.0, 20.0, 80.0, 50.0))]
    select(panel, "spurious_label")
    opened = []
    panel.open_in_editor.connect(lambda p, k: opened.append((p, k)))
    assert panel.open_selected()
    assert opened == [(project.image_dir / "a.png", 1)]
    assert panel.dismiss_selected()
    assert panel.table.rowCount() == 0 and flagged[-1] == set()
    assert labels(project, "a.png") == [(0, (10.0, 10.0, 30.0, 30.0)), (1, (50.0, 20.0, 80.0, 50.0))]

    # re-analysis (new order, predicted box moved 0.4 px, new ids): decisions still apply
    write_issues(project, shift=0.4, reorder=True)
    panel.reload()
    assert panel.table.rowCount() == 0
    assert {it.kind: it.decision for it in panel.items} == {
        "wrong_class": "accepted",
        "missing_label": "accepted",
        "duplicate_label": "accepted",
        "spurious_label": "dismissed",
    }
    panel.show_decided.setChecked(True)
    assert panel.table.rowCount() == 4
    panel.wait_thumbnails(20)
    qtbot.waitUntil(lambda: all(not panel.table.item(r, 0).icon().isNull() for r in range(4)), timeout=5000)
    screenshot(panel, "jobs_review_decided")
    # a fresh panel (app restart) reads the same decisions
    from app.jobs.review_panel import ReviewPanel

    other = ReviewPanel(project.root)
    qtbot.addWidget(other)
    assert sum(it.is_open for it in other.items) == 0
    other.wait_thumbnails(10)
    # reopen the dismissed item
    select(panel, "spurious_label")
    assert panel.dismiss_button.text() == "Reopen"
    assert panel.dismiss_selected()
    assert next(it for it in panel.items if it.kind == "spurious_label").is_open
    assert {p.name for p in panel.flagged_images()} == {"a.png"}
    from core.analysis.review import flagged_image_names

    assert flagged_image_names(project) == {"a.png"}  # what the image list loads at project open


def test_stale_item_and_undo_after_edit_are_refused(panel, project):
    b = project.image_dir / "b.png"
    # someone moved the label since the analysis: the fix must not hit another label
    ann = project.load_annotation(b)
    ann.instances[0] = Instance(0, polygons=[SQ(7, 32, 27, 57)])
    project.save_annotation(ann)
    select(panel, "wrong_class")
    assert not panel.accept_selected()
    assert "changed since the analysis" in panel.last_message
    assert labels(project, "b.png") == [(0, (7.0, 32.0, 27.0, 57.0))]
    assert panel.selected_item().is_open
    # undo refuses once the file was edited after the fix
    select(panel, "missing_label")
    assert panel.accept_selected()
    after = project.load_annotation(b)
    after.instances.pop(0)
    project.save_annotation(after)
    assert not panel.undo()
    assert "edited after the fix" in panel.last_message
    assert len(project.load_annotation(b).instances) == 1


def test_bad_review_files_give_clear_messages(qtbot, project):
    from app.jobs.review_panel import ReviewPanel

    project.review_dir.mkdir(exist_ok=True)
    (project.review_dir / "label_issues.json").write_text("{not json")
    p = ReviewPanel(project)
    qtbot.addWidget(p)
    assert "label_issues.json" in p.last_message and "not a readable analysis result" in p.last_message
    write_issues(project)
    (project.review_dir / "decisions.json").write_text('{"decisions": [1, 2]}')
    p.reload()
    assert "decisions.json" in p.last_message and p.items == []
    assert (project.review_dir / "decisions.json").read_text() == '{"decisions": [1, 2]}', "never overwritten"


def coco_results(proj: Project) -> Path:
    from pycocotools import mask as mask_utils

    rows = []
    for name, objs in OBJECTS.items():
        for c, (x0, y0, x1, y1) in objs:
            r = mask_utils.frPyObjects([SQ(x0, y0, x1, y1).ravel().tolist()], H, W)[0]
            rows.append(
                {
                    "image_id": name,
                    "category_id": c + 1,
                    "score": 0.9,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": {"size": r["size"], "counts": r["counts"].decode()},
                }
            )
    path = proj.root / "coco_results.json"
    path.write_text(json.dumps(rows))
    return path


def test_real_analyze_run_then_fix_everything(panel, project, qtbot, screenshot_dir):
    """`dfine analyze --predictions` in a QProcess; accepting every suggestion leaves a project
    the same analysis finds nothing wrong with."""
    from tests.conftest_gui import screenshot

    (project.review_dir / "label_issues.json").unlink()
    panel.reload()
    assert panel.items == []
    results = coco_results(project)
    done = []
    seen = []
    panel.analysis_finished.connect(done.append)
    panel.busy.valueChanged.connect(lambda v: seen.append((panel.busy.maximum(), v)))
    assert panel.run_analysis(predictions=str(results))
    qtbot.waitUntil(lambda: bool(done), timeout=90_000)
    assert done == [0], panel.log_view.toPlainText()
    # progress came from `--events -`: the bar counted the images up to all of them
    n = len(project.load_all()[0])
    assert (n, n) in seen, seen
    upto = seen[:seen.index((n, n)) + 1]
    assert upto == sorted(upto) and len({v for m, v in upto if m == n}) >= 2, seen
    kinds = sorted(it.kind for it in panel.items)
    assert kinds == ["duplicate_label", "missing_label", "wrong_class"], panel.log_view.toPlainText()
    assert "Analysis done: 3 items, 3 to review" in panel.last_message
    panel.wait_thumbnails(20)
    qtbot.waitUntil(lambda: all(not panel.table.item(r, 0).icon().isNull() for r in range(3)), timeout=5000)
    screenshot(panel, "jobs_review_analyzed")
    for _ in range(3):
        it = next(i for i in panel.items if i.is_open)
        assert panel.select_key(it.key)
        assert panel.accept_selected(), panel.last_message
    got = labels(project, "b.png")
    assert got[0] == (1, (5.0, 30.0, 25.0, 55.0)) and got[1][0] == 0
    # core.analysis traces the mask's boundary pixels (indices, not edges): up to 1 px inside
    assert np.allclose(got[1][1], (60, 5, 85, 25), atol=1.01)
    assert labels(project, "a.png") == [(0, (10.0, 10.0, 30.0, 30.0)), (1, (50.0, 20.0, 80.0, 50.0))]
    done.clear()
    assert panel.run_analysis(predictions=str(results))
    qtbot.waitUntil(lambda: bool(done), timeout=90_000)
    assert done == [0]
    assert panel.items == [] and panel.flagged_images() == set()


def test_undertrained_model_warning_reaches_the_status(panel, project, qtbot, screenshot_dir):
    from PySide6.QtCore import Qt

    from app.jobs.review_panel import KIND_TEXT
    from tests.conftest_gui import screenshot

    empty = project.root / "empty_results.json"
    empty.write_text("[]")
    done = []
    panel.analysis_finished.connect(done.append)
    assert panel.run_analysis(predictions=str(empty))
    qtbot.waitUntil(lambda: bool(done), timeout=90_000)
    assert done == [0], panel.log_view.toPlainText()
    n_labels = sum(len(a.instances) for a in project.load_all()[0])
    # a model that matches no label suggests no deletes at all (#30): only the warning says so
    assert not any(it.kind == "spurious_label" for it in panel.items)
    assert panel.last_message.startswith(
        f"Analysis done: {len(panel.items)} items, {len(panel.items)} to review. Warning: "
        f"the model finds no match for {n_labels} of {n_labels} labels")
    assert panel.last_message.endswith("labels (see the log)")
    assert "f85149" in panel.status_label.styleSheet()
    # the preview shows the newly selected item, not the one the old list had in that row
    first = panel.selected_item()
    assert first is not None and first.key == panel.table.item(0, 0).data(Qt.ItemDataRole.UserRole)
    assert panel.detail.toPlainText().startswith(f"#{first.rank} {KIND_TEXT[first.kind]}")
    screenshot(panel, "jobs_review_undertrained_warning")


def test_failed_analysis_is_reported(panel, project, qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from app.settings import AppSettings

    panel.settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    done = []
    panel.analysis_finished.connect(done.append)
    assert panel.run_analysis(model=str(project.root / "missing.pt"))
    qtbot.waitUntil(lambda: bool(done), timeout=90_000)
    assert done[0] != 0
    assert panel.last_message.startswith("Analysis failed:") and "missing.pt" in panel.last_message
    assert panel.analyze_button.isEnabled()
    assert panel.settings.model_for(project.root) == project.root / "missing.pt"


def test_flags_reach_the_image_list(panel, project):
    """The wiring the main window uses: flagged_changed -> ImageListModel.set_flagged."""
    from app.image_list import ImageListModel, Status

    model = ImageListModel(project.image_paths(), project.label_path)
    panel.flagged_changed.connect(model.set_flagged)
    panel.reload()
    rows = {p.name: r for r, p in enumerate(model.paths)}
    assert model.status(rows["a.png"]) == Status.FLAGGED and model.status(rows["b.png"]) == Status.FLAGGED
    for kind in ("wrong_class", "missing_label"):
        select(panel, kind)
        assert panel.dismiss_selected()
    assert model.status(rows["b.png"]) == Status.LABELLED and model.status(rows["a.png"]) == Status.FLAGGED


def test_real_analyze_with_a_checkpoint(panel, project, qtbot):
    """The GUI's normal path: `dfine analyze --weights <ckpt>` with a random-weight size-n model.
    It finds nothing, so no label is offered for deletion (#30: a model that matches no label
    makes no delete suggestions); the duplicate is found without the model."""
    import torch

    from core.model import build_model

    torch.manual_seed(0)
    model = build_model("n", 2, task="segment", image_size=256)
    ckpt = project.runs_dir / "tiny" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(
        {
            "model": model.state_dict(),
            "class_names": ["cat", "dog"],
            "config": {"task": "segment", "model": {"size": "n", "image_size": 256}},
        },
        ckpt,
    )
    (project.review_dir / "label_issues.json").unlink()
    panel.model_edit.clear()
    panel.set_project(project)
    assert panel.model_edit.text() == str(ckpt)  # the newest run's best.pt is the default
    done = []
    panel.analysis_finished.connect(done.append)
    assert panel.run_analysis()
    qtbot.waitUntil(lambda: bool(done), timeout=120_000)
    assert done == [0], panel.log_view.toPlainText()
    got = sorted((it.image.name, it.kind, it.instance) for it in panel.items)
    assert got == [("a.png", "duplicate_label", 2)], got
    assert "finds no match for 4 of 4 labels" in panel.last_message


def test_fixes_go_through_a_custom_store(qtbot, project):
    """The hook for the editor: with ``store=`` the panel never writes label files itself."""
    from app.jobs.review_panel import ReviewPanel

    class EditorStore:  # stands in for the main window's open documents
        def __init__(self):
            self.anns = {}
            self.saved = []

        def load_annotation(self, image):
            image = Path(image)
            return (self.anns.get(image) or project.load_annotation(image)).copy()

        def save_annotation(self, ann):
            self.anns[ann.image_path] = ann.copy()
            self.saved.append([i.class_id for i in ann.instances])
            return project.label_path(ann.image_path)

    write_issues(project)
    store = EditorStore()
    panel = ReviewPanel(project, store=store)
    qtbot.addWidget(panel)
    b = project.image_dir / "b.png"
    before = project.label_path(b).read_bytes()
    select(panel, "wrong_class")
    assert panel.accept_selected()
    assert store.saved == [[1]] and project.label_path(b).read_bytes() == before
    assert panel.undo()
    assert store.saved == [[1], [0]] and project.label_path(b).read_bytes() == before
    panel.wait_thumbnails(10)


def test_errors_show_above_the_fold_in_a_short_dock(project, qtbot):
    """Defect 7: errors were written below the list and log, out of sight in a short dock; the
    status line now sits right under the Analyze button, so it is visible even when the panel is
    scrolled to the top of a 260-px high area."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QScrollArea

    from app.jobs.review_panel import ReviewPanel

    area = QScrollArea()
    qtbot.addWidget(area)
    panel = ReviewPanel(project)
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.resize(1000, 260)
    area.show()
    qtbot.waitExposed(area)
    panel.model_edit.setText("")
    panel.run_analysis()
    assert "Choose a model first" in panel.status_label.text()
    top_left = panel.status_label.mapTo(area.viewport(), QPoint(0, 0))
    bottom = top_left.y() + panel.status_label.height()
    assert 0 <= top_left.y() and bottom <= area.viewport().height(), (top_left.y(), bottom)
