"""Background work of the main window: one job at a time (import, export, prediction)
in a worker thread, with a progress bar and a cancel button in the status bar, and
the pre-labeling flow (choose a model, predict this image / all unlabelled, add the
proposals as undoable, model-made instances)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from app import commands
from app.image_list import Status
from app.transfer import export_project, import_into
from app.workers import Task, run_task


class BackgroundActions:
    """Mixin for MainWindow (uses its project, docs, list model, autosaver, status bar)."""

    # ================================================================== background tasks
    def start_task(self, fn, *args, title: str, on_done, on_end=None, cancellable: bool = True,
                   keep_partial: bool = False) -> Task | None:
        """Run ``fn(task, *args)`` in a worker; ``on_done(result)`` on success (and on
        cancel with what was done so far when ``keep_partial``), ``on_end()`` always."""
        if self.task is not None:
            self._error("Another job is still running; wait or cancel it first.", modal=False)
            return None
        self.progress.setRange(0, 0)
        self.progress.setFormat(title)
        self.progress.show()
        self.cancel_button.setVisible(cancellable)

        def finished(result) -> None:
            self._task_ended()
            if on_end:
                on_end()
            on_done(result)

        def failed(msg: str) -> None:
            self._task_ended()
            if on_end:
                on_end()
            self._error(f"{title} failed: {msg}")

        self.task = run_task(fn, *args, on_done=finished, on_error=failed, on_progress=self._task_progress)

        def cancelled(partial) -> None:
            self._task_ended()
            if on_end:
                on_end()
            if keep_partial and partial is not None:
                on_done(partial)
            self.statusBar().showMessage(f"{title}: cancelled" + (" (kept what was done)" if keep_partial else ""),
                                         5000)

        self.task.signals.cancelled.connect(cancelled)
        return self.task

    def _task_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(done)
        if text:
            self.statusBar().showMessage(text)

    def _task_ended(self) -> None:
        self.task = None
        self.progress.hide()
        self.cancel_button.hide()
        self.statusBar().clearMessage()

    def cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def export_dialog(self, kind: str) -> None:
        out = QFileDialog.getExistingDirectory(self, f"Export {kind} to folder")
        if out:
            self.export_to(kind, Path(out))

    def export_to(self, kind: str, out: Path) -> Task | None:

        self.autosaver.save_current()
        return self.start_task(export_project, self.project, kind, out, title=f"Export {kind}",
                               on_done=lambda msg: self.statusBar().showMessage(msg, 10000))

    def import_dialog(self, kind: str) -> None:
        if kind in ("yolo", "labelme"):
            src = QFileDialog.getExistingDirectory(self, f"Import {kind} folder")
        else:
            flt = "data.yaml (*.yaml *.yml)" if kind == "ultralytics" else "COCO json (*.json)"
            src, _ = QFileDialog.getOpenFileName(self, f"Import {kind}", "", flt)
        if src:
            self.import_from(kind, Path(src))

    def import_from(self, kind: str, source: Path) -> Task | None:

        self.autosaver.save_current()
        root = self.project.root

        def done(msg: str) -> None:
            current = self.doc.image_path if self.doc else None
            self.open_project(root)
            if current is not None and self.list_model.row_of(current) >= 0:
                self.select_row(self.proxy.mapFromSource(self.list_model.index(self.list_model.row_of(current))).row())
            self.statusBar().showMessage(msg, 15000)

        return self.start_task(import_into, root, kind, source, title=f"Import {kind}", on_done=done)

    # ================================================================== pre-labeling
    def _remembered_model(self) -> Path | None:
        value = self.settings.model_for(self.project.root)
        return value if value is not None and value.exists() else None

    def choose_model_dialog(self) -> None:
        start = str(self.project.runs_dir if self.project.runs_dir.exists() else self.project.root)
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a trained model", start,
            "Models (*.pt *.pth *.onnx *.xml *.engine);;All files (*)")
        if path:
            self.set_model(Path(path))

    def set_model(self, path: Path) -> None:
        self.model_path = Path(path)
        self._predictor = None
        self.settings.set_model_for(self.project.root, path)
        self.statusBar().showMessage(f"Model: {path}", 5000)

    def _conf(self) -> float:
        from app.prelabel import proposal_floor

        return proposal_floor(self.project)

    def predict_current(self, predictor=None) -> Task | None:
        if self.doc is None:
            return None
        if self.model_path is None and predictor is None:
            self.choose_model_dialog()
            if self.model_path is None:
                return None
        return self.predict([self.doc.image_path], "Predict", predictor)

    def predict_unlabelled(self, predictor=None) -> Task | None:
        if self.list_model is None:
            return None
        if self.model_path is None and predictor is None:
            self.choose_model_dialog()
            if self.model_path is None:
                return None
        rows = [r for r in range(self.list_model.rowCount()) if self.list_model.status(r) == Status.UNLABELLED]
        paths = [self.list_model.paths[r] for r in rows
                 if not (self.list_model.paths[r] in self.docs and self.docs[self.list_model.paths[r]].instances)]
        if not paths:
            self.statusBar().showMessage("No unlabelled images.", 4000)
            return None
        return self.predict(paths, "Predict unlabelled", predictor)

    def predict(self, paths: list[Path], title: str, predictor=None) -> Task | None:
        from app.prelabel import predict_images
        from core.data.images import read_image

        task_kind = getattr(self.project.config, "task", "segment")
        key = (self.model_path, self._conf())
        cached = getattr(self, "_predictor", None)
        if predictor is None and cached is not None and cached[0] == key:
            predictor = cached[1]  # loading a model takes seconds: reuse it between clicks
        names, as_boxes, model_path, conf = self.project.class_names, task_kind == "detect", key[0], key[1]

        def body(task: Task, paths: list[Path]) -> tuple:
            from app.prelabel import load_predictor

            p = predictor or load_predictor(model_path, conf)
            return p, predict_images(task, model_path, paths, names, conf, read_image, as_boxes, p)

        def done(out: tuple) -> None:
            if predictor is None or out[0] is predictor:
                self._predictor = (key, out[0])
            self._proposals_ready(out[1])

        return self.start_task(body, paths, title=title, on_done=done, keep_partial=True)

    def _proposals_ready(self, results: dict) -> None:
        """Add proposals as one undoable step per image; images not on screen are saved
        right away (they were unlabelled, so nothing of the person's is touched)."""
        from app.prelabel import keep_confident

        n = dropped = 0
        for path, instances in results.items():
            if not instances or self.project is None:
                continue
            instances, left = keep_confident(instances, self._conf())
            dropped += left
            if not instances:  # all under the score floor: no empty "Predict (0)" undo step
                continue
            doc = self._doc_for(path)
            if getattr(doc, "read_only", False):
                continue
            doc.undo_stack.push(commands.AddInstances(doc, instances, f"Predict ({len(instances)})"))
            n += len(instances)
            if doc is not self.doc:
                self.autosaver.save(doc)
                self.list_model.refresh(path)
        over = f" ({dropped} more under the score or over the per-image cap left out)" if dropped else ""
        if n == 0:
            self.statusBar().showMessage(f"The model proposed nothing at score >= {self._conf():.2f} on "
                                         f"{len(results)} image(s){over}", 8000)
            return
        self.statusBar().showMessage(f"{n} proposals (score >= {self._conf():.2f}) on {len(results)} image(s){over}; "
                                     "they train nothing until you accept them (Ctrl+Enter) or edit them", 8000)
