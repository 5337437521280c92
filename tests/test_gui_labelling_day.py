"""Issue #33, "the labelling day without surprises": what a new user hit in a working day on an
80-class project — filters that jump, colours that follow the class index, undo lost after a class
edit, stale error state, empty model fields, a silent second window, a screen-tall filter list."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import socket

import pytest
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401
from PySide6.QtCore import Qt
from test_gui_done_filters import shown, use_filter
from test_gui_editor import key

from core.annotation import ImageAnnotation, Instance


@pytest.fixture
def opened(window, qtbot, tmp_path):  # noqa: F811
    project = make_project(tmp_path / "proj", n_images=5)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    window.activateWindow()
    window.canvas.setFocus()
    return window, project


def _tri(cid: int) -> Instance:
    return Instance(class_id=cid, polygons=[[(10, 10), (100, 20), (50, 90)]])


def _label(project, i: int, instances: list[Instance]):
    img = project.image_paths()[i]
    return project.save_annotation(ImageAnnotation(img, 320, 240, instances))


def on_screen(win) -> str:
    return win.doc.image_path.name


# ---------------------------------------------------------------- 1: "Not done" filter, Y then D
def test_not_done_filter_y_then_d_visits_every_image(opened, qtbot):
    win, _project = opened
    use_filter(win, "not_done")
    seen = []
    for _ in range(4):
        seen.append(on_screen(win))
        key(win, Qt.Key.Key_Y)  # done: stays on screen and listed until the person moves on
        assert on_screen(win) == seen[-1]
        assert seen[-1] in shown(win)
        key(win, Qt.Key.Key_D)
    assert seen == ["img_000.png", "img_001.png", "img_002.png", "img_003.png"]
    assert on_screen(win) == "img_004.png"
    qtbot.waitUntil(lambda: shown(win) == ["img_004.png"])  # the images left behind left the list
    assert win.image_count.text() == "1 of 5 images · 4 done"


def test_next_from_an_image_outside_the_filter_goes_to_the_next_listed_one(opened, qtbot):
    win, project = opened
    paths = project.image_paths()
    win.list_model.set_done([paths[0], paths[2], paths[3]], True)
    use_filter(win, "not_done")
    assert shown(win) == ["img_001.png", "img_004.png"]
    win.show_image(paths[2])  # on screen but not listed (e.g. opened from another panel)
    win.image_view.selectionModel().clearCurrentIndex()
    assert on_screen(win) == "img_002.png"
    key(win, Qt.Key.Key_D)  # the listed image after img_002, not the first of the list
    assert on_screen(win) == "img_004.png"
    win.show_image(paths[2])
    win.image_view.selectionModel().clearCurrentIndex()
    key(win, Qt.Key.Key_A)
    assert on_screen(win) == "img_001.png"


# ---------------------------------------------------------------- 4: stale error state, silent jump
def test_label_file_fixed_on_disk_becomes_editable_and_broken_pick_does_not_jump(opened, qtbot):
    from app.image_list import Status

    win, project = opened
    good = _label(project, 0, [_tri(0)])
    broken = project.label_path(project.image_paths()[1])
    broken.write_text("0 0.1 0.1 0.5 oops 0.3 0.9\n")
    for p in project.image_paths()[:2]:
        win.list_model.refresh(p)
    use_filter(win, int(Status.LABELLED))
    assert shown(win) == ["img_000.png", "img_001.png"]
    win.select_row(1)  # the broken one: shown read-only, and the list does not jump away
    assert on_screen(win) == "img_001.png"
    assert win.banner.isVisibleTo(win) and win.canvas.read_only
    assert "img_001.png" in shown(win)
    assert win.image_view.currentIndex().data() == "img_001.png"
    screenshot(win, "issue33_broken_label_banner")
    broken.write_text(good.read_text())  # fixed in another program
    win.autosaver._disk_changed(str(broken.parent))  # what the folder watcher calls
    assert not win.banner.isVisibleTo(win) and not win.canvas.read_only and not win.doc.read_only
    assert len(win.doc.instances) == 1
    assert win.list_model.status(1) == Status.LABELLED


# ---------------------------------------------------------------- 2: colours bound to the class name
COCO = ("person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
        "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
        "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
        "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
        "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
        "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
        "hair_drier toothbrush").split()


def test_ciede2000_matches_sharma_reference_pairs():
    import numpy as np

    from app.palette import ciede2000

    pairs = [((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425), ((50, 0, 0), (50, -1, 2), 2.3669),
             ((50, 2.49, -0.001), (50, -2.49, 0.0009), 7.1792),
             ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
             ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
             ((90.8027, -2.0831, 1.441), (91.1528, -1.6435, 0.0447), 1.4441),
             ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082)]
    for a, b, expected in pairs:
        assert float(ciede2000(np.array(a), np.array(b))) == pytest.approx(expected, abs=1e-4)


def test_80_coco_class_colours_min_delta_e2000():
    from app.palette import assign_colors, class_rgb, min_pairwise_de2000

    colors = assign_colors(COCO, {})
    new = min_pairwise_de2000([colors[n] for n in COCO])
    old = min_pairwise_de2000([class_rgb(k) for k in range(80)])  # the index palette (CIE76 picks)
    assert new >= 9.2 > old  # measured: 9.27 (was 5.58)
    for a, b in [("airplane", "kite"), ("bench", "bird"), ("bird", "sports_ball"), ("cat", "snowboard")]:
        assert min_pairwise_de2000([colors[a], colors[b]]) >= 19.0  # the pairs the issue found alike


def test_class_colours_follow_the_name_through_merge_delete_rename_and_reopen(window, qtbot, tmp_path):  # noqa: F811
    from test_gui_project import _edit

    from app.theme import class_color

    project = make_project(tmp_path / "coco", n_images=1, classes=tuple(COCO))
    bowl = COCO.index("bowl")
    _label(project, 0, [_tri(bowl)])
    assert window.open_project(project.root)
    wait_image(qtbot, window)

    def by_name():
        return {n: class_color(k).name() for k, n in enumerate(window.project.class_names)}

    before = by_name()
    assert len(set(before.values())) == 80
    assert window.canvas.items[0].color.name() == before["bowl"]
    _edit(window, qtbot, window.project.merge_classes, "cat", "dog")
    _edit(window, qtbot, window.project.delete_class, "airplane")
    _edit(window, qtbot, window.project.rename_class, "kite", "paper_kite")
    after = by_name()
    assert "cat" not in after and "airplane" not in after
    assert after["paper_kite"] == before["kite"]
    assert {n: c for n, c in after.items() if n != "paper_kite"} == {
        n: before[n] for n in after if n != "paper_kite"}
    assert window.canvas.items[0].color.name() == before["bowl"]  # bowl stays bowl-coloured
    window.class_panel.list.item(window.project.class_names.index("bowl"))
    _edit(window, qtbot, window.project.add_class, "cat")  # a new class: a colour no one else has
    assert by_name()["cat"] not in set(after.values())
    assert window.open_project(project.root)  # reopened: the same colours
    assert by_name() == {**after, "cat": by_name()["cat"]}


# ---------------------------------------------------------------- 3: undo follows the person
def test_polygon_drawn_before_a_merge_stays_undoable_and_ctrl_z_undoes_the_class_edit(opened, qtbot):
    from test_gui_editor import draw_polygon
    from test_gui_project import _edit

    win, project = opened
    paths = project.image_paths()
    _label(project, 0, [_tri(0), _tri(1)])
    _label(project, 1, [_tri(2)])
    win.open_project(project.root)
    wait_image(qtbot, win)
    win.canvas.setFocus()
    key(win, Qt.Key.Key_2)  # dog
    draw_polygon(win, [(150, 150), (200, 150), (200, 200)])
    doc0 = win.doc
    assert [i.class_id for i in doc0.instances] == [0, 1, 1]
    win.goto_image(paths[1])
    qtbot.waitUntil(lambda: on_screen(win) == "img_001.png")
    messages: list[str] = []
    win.statusBar().messageChanged.connect(messages.append)
    win.goto_image(paths[0])
    qtbot.waitUntil(lambda: on_screen(win) == "img_000.png")
    _edit(win, qtbot, win.project.merge_classes, "dog", "cat")  # changes img_000's labels on disk
    assert win.project.class_names == ["cat", "car"]
    assert win.docs[paths[0]] is doc0 and win.doc is doc0  # same history, remapped
    assert win.current_class == 0 and win.class_panel.list.currentRow() == 0  # drawing "dog": now its target
    assert not any("changed by another program" in m or "reset" in m for m in messages), messages
    assert any("Ctrl+Z undoes it" in m for m in messages), messages
    assert win.act_undo.text() == "&Undo merge class 'dog' into 'cat'"
    win.canvas.setFocus()
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the class edit: the last thing done
    qtbot.waitUntil(lambda: win.task is None and win.project.class_names == ["cat", "dog", "car"], timeout=20_000)
    assert win.doc is doc0 and [i.class_id for i in doc0.instances] == [0, 1, 1]
    assert "Undone: merge class 'dog' into 'cat'" in messages
    assert win.act_undo.text().startswith("&Undo") and "merge" not in win.act_undo.text()
    win.canvas.setFocus()
    key(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # now the polygon drawn before
    assert [i.class_id for i in doc0.instances] == [0, 1]


def test_delete_resets_only_the_images_it_made_inconsistent_and_counts_each_once(opened, qtbot):
    from test_gui_project import _edit

    from app import commands

    win, project = opened
    paths = project.image_paths()
    _label(project, 0, [_tri(1)])
    win.open_project(project.root)
    wait_image(qtbot, win)
    win.doc.undo_stack.push(commands.AddInstance(win.doc, _tri(1)))  # a dog on img_000
    for p in paths[1:3]:
        win.goto_image(p)
        qtbot.waitUntil(lambda p=p: win.doc.image_path == p)
        win.doc.undo_stack.push(commands.AddInstance(win.doc, _tri(0)))  # a cat
    kept = [win.docs[p] for p in paths[1:3]]
    messages: list[str] = []
    win.statusBar().messageChanged.connect(messages.append)
    _edit(win, qtbot, win.project.delete_class, "dog")
    assert [win.docs[p] for p in paths[1:3]] == kept and all(d.undo_stack.count() == 1 for d in kept)
    assert win.docs.get(paths[0]) is None or win.docs[paths[0]].undo_stack.count() == 0
    assert any(m.startswith("Undo history reset on 1 image the class edit made inconsistent (img_000.png); "
                            "kept on 2 others") for m in messages), messages


# ---------------------------------------------------------------- 5: Review and Live propose the run's model
def test_review_and_live_propose_a_runs_checkpoint_and_drop_the_red_text_once_chosen(qtbot, tmp_path):
    from app.jobs.live_view import LiveView
    from app.jobs.review_panel import ReviewPanel
    from app.theme import ERROR_COLOR

    project = make_project(tmp_path / "proj", n_images=2)
    review, live = ReviewPanel(), LiveView()
    for w in (review, live):
        qtbot.addWidget(w)
        w.set_project(project)
        assert w.model_edit.text() == ""  # no run yet
    assert not review.run_analysis()
    assert ERROR_COLOR in review.status_label.styleSheet()
    review.model_edit.setText("/somewhere/model.onnx")  # chosen: the error is answered
    assert review.status_label.text() == "" and ERROR_COLOR not in review.status_label.styleSheet()
    live.last_message = "Choose a model first (a checkpoint, an export folder or a model file)."
    live.model_edit.setText("/somewhere/model.onnx")
    assert live.last_message == ""
    run = project.runs_dir / "exp1"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"x")  # a run cancelled before its first validation: no best.pt
    for w in (ReviewPanel(), LiveView()):
        qtbot.addWidget(w)
        w.set_project(project)
        assert w.model_edit.text() == str(run / "last.pt")  # what Export proposes too


# ---------------------------------------------------------------- 6: a second window says so
def test_second_window_on_the_same_project_says_so(window, qtbot, tmp_path, gui_settings):  # noqa: F811
    from app.main_window import MainWindow
    from app.settings import AppSettings
    from app.open_marker import OPEN_DIR

    project = make_project(tmp_path / "proj", n_images=1)
    (project.root / OPEN_DIR).mkdir(parents=True)
    (project.root / OPEN_DIR / "stale.json").write_text(  # a crashed window of a process long gone
        json.dumps({"host": socket.gethostname(), "pid": 999999999, "since": "08:00", "token": "x"}))
    assert window.open_project(project.root)
    assert not window.shared_label.isVisibleTo(window)  # alone (the stale marker is removed)
    assert not (project.root / OPEN_DIR / "stale.json").exists()
    second = MainWindow(AppSettings(gui_settings))
    qtbot.addWidget(second)
    second.show()
    messages: list[str] = []
    second.statusBar().messageChanged.connect(messages.append)
    assert second.open_project(project.root)
    assert second.shared_label.isVisibleTo(second)
    assert any(m.startswith("This project is also open in another window: this computer (pid") for m in messages)
    screenshot(second, "issue33_second_window")
    second.close()
    window.close_project()
    third = MainWindow(AppSettings(gui_settings))
    qtbot.addWidget(third)
    assert third.open_project(project.root) and not third.shared_label.isVisibleTo(third)  # both closed
    third.close()


# ---------------------------------------------------------------- 7: a short filter list, classes by typing
def test_image_filter_is_short_and_picks_a_class_by_typing(window, qtbot, tmp_path):  # noqa: F811
    from PySide6.QtTest import QTest

    project = make_project(tmp_path / "coco", n_images=3, classes=tuple(COCO))
    _label(project, 1, [_tri(COCO.index("giraffe"))])
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    texts = [window.status_filter.itemText(i) for i in range(window.status_filter.count())]
    assert len(texts) <= 12 and texts[-1] == "Has class…"  # was 88 entries, 80 of them "Has class: …"
    window.status_filter.setCurrentIndex(window.status_filter.findData("class?"))
    picker = window.filter_picker
    qtbot.waitUntil(picker.isVisible)
    assert window.status_filter.currentData() is None  # nothing filtered until a class is picked
    QTest.keyClicks(picker.filter, "gir")
    assert picker.shown_ids() == [COCO.index("giraffe")]
    QTest.keyClick(picker.filter, Qt.Key.Key_Return)
    assert window.status_filter.currentText() == "Has class: giraffe"
    assert shown(window) == ["img_001.png"]
    screenshot(window, "issue33_filter_has_class")
    from test_gui_project import _edit

    _edit(window, qtbot, window.project.delete_class, "person")  # ids shift: the filter follows the name
    assert window.status_filter.currentText() == "Has class: giraffe"
    assert shown(window) == ["img_001.png"]


def test_current_image_highlighted_again_after_clearing_the_search(opened, qtbot):
    win, project = opened
    win.goto_image(project.image_paths()[2])
    qtbot.waitUntil(lambda: on_screen(win) == "img_002.png")
    win.search.setText("zebra")  # nothing matches: no row, the image stays on screen
    assert win.proxy.rowCount() == 0 and on_screen(win) == "img_002.png"
    win.search.clear()
    assert win.image_view.currentIndex().data() == "img_002.png"
    assert win.image_view.selectionModel().isSelected(win.image_view.currentIndex())


# ---------------------------------------------------------------- first-start hint
def test_first_start_hint_says_what_to_do_first_until_an_image_is_labelled(window, qtbot, tmp_path, gui_settings):  # noqa: F811
    from test_gui_editor import drag, vp

    from app.main_window import MainWindow
    from app.settings import AppSettings

    hint = window.hint_label
    assert hint.isVisibleTo(window) and hint.text().startswith("First: File → New project…")
    screenshot(window, "issue33_first_start_no_project")
    empty = make_project(tmp_path / "empty", n_images=0)
    assert window.open_project(empty.root)
    assert hint.text().startswith("First: copy images into")
    project = make_project(tmp_path / "proj", n_images=2)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    assert hint.isVisibleTo(window) and hint.text().startswith("First: press P")
    window.statusBar().showMessage("a message")  # the hint never overlaps a status message
    window._update_hint()
    assert not hint.isVisibleTo(window)
    window.statusBar().clearMessage()
    assert hint.isVisibleTo(window)
    screenshot(window, "issue33_first_start_hint")
    window.canvas.setFocus()
    key(window, Qt.Key.Key_R)
    drag(window, vp(window, 40, 40), vp(window, 120, 100))
    assert hint.isVisibleTo(window)  # not yet saved
    key(window, Qt.Key.Key_D)  # saved with a box: labelled
    assert not hint.isVisibleTo(window)
    again = MainWindow(AppSettings(gui_settings))  # and it stays gone
    qtbot.addWidget(again)
    again.show()
    assert not again.hint_label.isVisibleTo(again)
    again.close()


# ---------------------------------------------------------------- 8: the smaller ones
def test_export_report_table_shows_every_row_in_a_short_dock(qtbot, qapp, tmp_path):
    from PySide6.QtWidgets import QFrame, QScrollArea
    from test_gui_jobs_export import REPORT

    from app.jobs.export_panel import ExportPanel

    project = make_project(tmp_path / "proj", n_images=1)
    panel = ExportPanel(project)
    area = QScrollArea()  # as the dock holds it (app.jobs.wiring._scrollable)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(panel)
    qtbot.addWidget(area)
    area.resize(1000, 180)  # a fifth of the 880 px first-start window
    area.show()
    out = project.exports_dir / "train"
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps(REPORT))
    assert panel.show_report(out / "report.json")
    qtbot.wait(50)
    table = panel.table
    assert table.viewport().height() >= 3 * table.rowHeight(0)  # all three rows (was about one)
    area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    screenshot(area, "issue33_export_report_short_dock")


def test_grabcut_dots_go_when_the_result_is_accepted(opened, qtbot):
    from test_gui_editor import click, drag, vp

    win, _ = opened
    key(win, Qt.Key.Key_G)
    drag(win, vp(win, 66, 48), vp(win, 175, 134))
    click(win, vp(win, 120, 90))  # a refine dot
    assert win.canvas.prompt_points
    key(win, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # accept the GrabCut proposal
    assert win.doc.instances[0].source != "model"
    assert win.canvas.prompt_points == []


def test_proposal_chip_is_not_drawn_over_the_labels_chip(opened, qtbot):
    from app import commands

    win, _ = opened
    label = _tri(COCO.index("cat") % 3)
    proposal = Instance(class_id=1, polygons=[[(10, 10), (100, 20), (50, 90)]], source="model", score=0.9)
    win.doc.undo_stack.push(commands.AddInstances(win.doc, [label, proposal], "two"))
    chips = win.canvas.name_chips()
    assert [t for _i, t, _r in chips] == ["cat", "dog ?"]
    assert not chips[0][2].intersects(chips[1][2])
    screenshot(win.canvas, "issue33_chips_apart")


def test_predictions_all_under_the_score_push_no_empty_undo_step(opened, qtbot):
    from test_gui_prelabel import FakePredictor

    win, _ = opened
    win.project.config.infer.conf = 0.9  # FakePredictor scores 0.77
    messages: list[str] = []
    win.statusBar().messageChanged.connect(messages.append)
    win.predict_current(predictor=FakePredictor())
    qtbot.waitUntil(lambda: win.task is None, timeout=10_000)
    assert win.doc.undo_stack.count() == 0 and win.doc.instances == []
    assert not any(m.startswith("0 proposals") for m in messages), messages
    assert any(m.startswith("The model proposed nothing at score >= 0.90 on 1 image(s) (1 more under the score")
               for m in messages), messages


def test_status_line_says_undone_after_a_review_fix_is_undone(window, qtbot, tmp_path):  # noqa: F811
    import review_data

    from app.jobs.wiring import attach_job_panels

    project = review_data.make_project(tmp_path)
    review_data.write_issues(project)
    panels = attach_job_panels(window)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    review = panels.review
    review.reload()
    key_ = next(it.key for it in review.items if it.kind == "wrong_class")
    assert review.select_key(key_)
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    assert review.accept_selected()
    assert messages[-1].startswith("Review: Applied:")
    assert review.undo()
    assert messages[-1].startswith("Review: Undone:"), messages
    assert not any("fix applied" in m for m in messages[-2:])
    review.wait_thumbnails(10)


def test_f1_shows_every_description_whole(window, qtbot):  # noqa: F811
    from PySide6.QtCore import QRect

    from app.shortcuts import ShortcutsDialog

    dlg = ShortcutsDialog(window)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    table = dlg.table
    fm = table.fontMetrics()
    width = table.columnWidth(1) - 8
    for r in range(table.rowCount()):
        text = table.item(r, 1).text()
        need = fm.boundingRect(QRect(0, 0, width, 10_000), int(Qt.TextFlag.TextWordWrap), text).height()
        assert table.rowHeight(r) >= need, (text, table.rowHeight(r), need)
    screenshot(dlg, "issue33_shortcuts_whole")


def test_class_colours_file_bad_or_outside_is_named_and_left_alone(tmp_path):
    from app.class_colors import colors_path, project_colors

    root = tmp_path / "proj"
    (root / ".dfine").mkdir(parents=True)
    colors_path(root).write_text('{"version": 1, "colors": {"cat": "orange"}}')
    colors, problem = project_colors(root, ["cat", "dog"])
    assert len(set(colors)) == 2 and "class_colors.json: colour of class 'cat' is 'orange'" in problem
    assert "orange" in colors_path(root).read_text()  # not overwritten
    other = tmp_path / "elsewhere"
    other.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".dfine").symlink_to(other)
    colors, problem = project_colors(linked, ["cat"])
    assert problem and "symbolic link" in problem and not (other / "class_colors.json").exists()
