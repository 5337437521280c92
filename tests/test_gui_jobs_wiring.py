"""The job panels dock into the main window, follow the open project, route review fixes
through the editor's documents, and stop their work when the window closes."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from conftest_gui import gui_settings, make_project, screenshot, wait_image, window  # noqa: F401

from app.jobs.wiring import EditorAwareStore, attach_job_panels
from core.annotation import Instance


def test_panels_follow_project_and_store_goes_through_editor(window, qtbot, tmp_path):  # noqa: F811
    window.resize(1400, 900)
    panels = attach_job_panels(window)
    root = tmp_path / "proj"
    project = make_project(root, n_images=2)
    assert window.open_project(root)
    wait_image(qtbot, window)
    assert panels.train.project_root == project.root
    assert panels.review.project is not None and panels.review.project.root == project.root
    assert panels.export.project is not None and panels.live.project is not None

    # an unsaved edit in the editor is saved before a review fix reads the file ...
    from app.commands import AddInstance

    doc = window.doc
    store = EditorAwareStore(window)
    doc.undo_stack.push(AddInstance(doc, Instance(class_id=1, box=(10, 10, 40, 30))))
    assert doc.is_dirty()
    loaded = store.load_annotation(doc.image_path)
    assert not doc.is_dirty()
    assert len(loaded.instances) == 1  # the unsaved box reached the file (6-decimal YOLO rounding)
    assert np.allclose(loaded.instances[0].bbox(), (10, 10, 40, 30), atol=1e-3)
    # ... and a fix written through the store shows up in the open document
    loaded.instances.append(Instance(class_id=2, box=(50, 50, 90, 80)))
    store.save_annotation(loaded)
    on_disk = window.project.load_annotation(doc.image_path)
    assert [i.class_id for i in on_disk.instances][-1] == 2
    assert len(window.canvas.items) == len(on_disk.instances)

    screenshot(window, "main_window_with_job_panels")


def test_close_asks_only_while_training(window, qtbot, tmp_path):  # noqa: F811
    panels = attach_job_panels(window)
    make_project(tmp_path / "p", n_images=1)
    window.open_project(tmp_path / "p")
    assert not panels.train.is_running()
    assert window.close()  # nothing running: closes without asking


def test_send_frame_lists_image_without_reopening_empty_stays_unlabelled(window, qtbot, tmp_path):  # noqa: F811
    """Defect 4: "Send frame to project" reopened the project (editor back to the first image, undo
    lost) and saved a frame without detections as an empty label file ("labelled: no objects")."""
    import time as _time

    from app.commands import AddInstance
    from app.jobs.capture import FrameResult
    from core.infer.detections import Detections

    panels = attach_job_panels(window)
    project = make_project(tmp_path / "proj", n_images=3)
    assert window.open_project(project.root)
    wait_image(qtbot, window)
    second = project.image_paths()[1]
    window.goto_image(second)
    qtbot.waitUntil(lambda: window.doc.image_path == second)
    doc = window.doc
    doc.undo_stack.push(AddInstance(doc, Instance(class_id=1, box=(10, 10, 40, 30))))
    window.canvas.set_selection([0])
    frame = np.full((60, 80, 3), 90, np.uint8)
    empty = Detections(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                       labels=np.zeros(0, np.int64), masks=np.zeros((0, 60, 80), bool), image_size=(60, 80))
    panels.live.current = FrameResult(7, frame, empty, 5.0, 10.0, "camera 0", None, _time.monotonic())
    path = panels.live.send_to_project()
    assert path is not None and path.is_file()
    # the editor stayed where it was, with its edit, selection and undo history
    assert window.doc is doc and window.doc.image_path == second
    assert doc.undo_stack.count() == 1 and window.canvas.selected == [0]
    # the frame is listed at once, unlabelled (no label file at all)
    assert window.list_model.rowCount() == 4 and window.list_model.row_of(path) == 3
    assert not project.label_path(path).exists()
    from app.image_list import Status

    assert window.list_model.status(3) == Status.UNLABELLED
    assert "unlabelled" in panels.live.last_message
    assert "4 images" in window.image_count.text()
