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
