"""One-click masks in the main window: GrabCut box -> polygon (refined with +/- clicks),
"segment with the project's model inside this box" and SAM click-to-segment (+/- clicks, a box).
All add an editable polygon marked model-made (source="model", drawn dashed) as one undoable
step; editing or accepting it (Ctrl+Enter) makes it the person's, like any proposal.
Intelligent scissors (tool I) is drawing by hand with snapping: its polygon is the person's.

Why here and not in the canvas: the canvas only reports the prompt (a box, a click); this
mixin owns the pixels, the engine calls and the undo commands.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QInputDialog

from app import commands
from app.canvas import Tool
from app.prelabel import best_detection_mask, mask_instance
from app.scissors_tool import ScissorsDraft
from app.workers import run_task
from core.annotation import Instance
from core.errors import UserFacingError
from core.weights.cache import weights_dir
from core.weights.sam_registry import find_sam, sam_entries, sam_files


class SegmentActions:
    """Mixin for MainWindow (uses its project, doc, canvas, model path and task runner)."""

    _grab: dict | None = None
    _sam_obj: dict | None = None
    _pixels: tuple[Path, np.ndarray] | None = None

    # ------------------------------------------------------------------ set-up
    def _build_segment_tools(self) -> None:
        """The scissors draft and the SAM state (called while the canvas is built)."""
        self.scissors = ScissorsDraft(lambda: self.doc.image_path if self.doc is not None else None, self)
        self.canvas.scissors = self.scissors
        self.scissors.changed.connect(self.canvas.viewport().update)
        self.scissors.changed.connect(lambda: self._sync_undo_action())
        self.scissors.closed.connect(self._scissors_closed)
        self.scissors.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.canvas.prompt_done.connect(self.finish_sam_object)
        self.canvas.tool_changed.connect(self._segment_tool_changed)
        from core.sam import EmbeddingCache

        self.sam_embeddings = EmbeddingCache(4)
        self._sam_model: tuple[str, object] | None = None  # (entry name, SamModel)
        self._sam_job: tuple | None = None  # (image path, entry name) being embedded
        self.sam_embed_threads: list[str] = []  # where each embedding ran (a test checks: never the GUI's)

    def _segment_tool_changed(self, tool: Tool) -> None:
        self._sync_undo_action()
        if tool != Tool.SAM:
            self._sam_obj = None
        if self.doc is None or getattr(self.doc, "read_only", False):
            return
        if tool == Tool.SCISSORS:
            self.scissors.warm()
        elif tool == Tool.SAM:
            self.sam_embed()

    def _segment_image_shown(self) -> None:
        """A new image: build what the tool in use needs for it, in the background."""
        self._sam_obj = None
        self._segment_tool_changed(self.canvas.tool)

    # ------------------------------------------------------------------ intelligent scissors
    def _scissors_closed(self, polys: list) -> None:
        if self.doc is None or getattr(self.doc, "read_only", False):
            return
        inst = Instance(class_id=self.current_class, polygons=[np.asarray(p, np.float64) for p in polys])
        index = len(self.doc.instances)
        self.doc.undo_stack.push(commands.AddInstance(self.doc, inst, index, "Intelligent scissors"))
        self.canvas.set_selection([index])
        self.canvas.shape_drawn.emit(index)

    def _image_pixels(self) -> np.ndarray:
        """BGR pixels of the image on screen (read once per image: GrabCut refines often)."""
        from core.data.images import read_image

        path = self.doc.image_path
        if self._pixels is None or self._pixels[0] != path:
            self._pixels = (path, read_image(path))
        return self._pixels[1]

    def _box_prompt(self, tool: Tool, box: tuple[float, float, float, float]) -> None:
        if self.doc is None or getattr(self.doc, "read_only", False):
            return
        if tool == Tool.GRABCUT:
            self.grabcut_box(box)
        elif tool == Tool.MODEL_BOX:
            self.model_box(box)
        elif tool == Tool.SAM:
            self.sam_box(box)

    # ------------------------------------------------------------------ GrabCut
    def grabcut_box(self, box, positive=(), negative=()) -> Instance | None:
        """Box -> GrabCut polygon added as a model-made instance (selected, refinable)."""
        from core.grabcut import grabcut_mask

        try:
            mask = grabcut_mask(self._image_pixels(), box, positive, negative)
        except UserFacingError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return None
        inst = mask_instance(mask, self.current_class)
        if inst is None:
            self.statusBar().showMessage("GrabCut found no object in this box: drag a tighter box", 6000)
            return None
        index = len(self.doc.instances)
        self.doc.undo_stack.push(commands.AddInstance(self.doc, inst, index, "GrabCut box"))
        self.canvas.set_selection([index])
        self._grab = {"doc": self.doc, "inst": inst, "box": tuple(box), "pos": list(positive),
                      "neg": list(negative)}
        self.canvas.prompt_points = []
        self.canvas.viewport().update()
        self.statusBar().showMessage("GrabCut: click missed object parts, right-click (or Shift+click) "
                                     "background to refine", 8000)
        return inst

    def _live(self, g: dict | None) -> bool:
        return g is not None and g["doc"] is self.doc and any(i is g["inst"] for i in self.doc.instances)

    def drop_stale_prompts(self) -> None:
        """The +/- refine dots belong to the GrabCut (or SAM) result on screen: once it is accepted,
        undone, deleted or another image is shown, they go (they used to stay after accepting)."""
        if self._sam_obj is not None and self._sam_obj.get("inst") is not None and not self._live(self._sam_obj):
            self._sam_obj = None
        live = self._live(self._grab) or (self._sam_obj is not None and self._sam_obj["doc"] is self.doc)
        if self.canvas.prompt_points and not live:
            self.canvas.prompt_points = []
            self.canvas.viewport().update()

    def _point_prompt(self, x: float, y: float, positive: bool) -> None:
        if self.canvas.tool == Tool.SAM:
            self.sam_click(x, y, positive)
        else:
            self.refine_grabcut(x, y, positive)

    def refine_grabcut(self, x: float, y: float, positive: bool) -> Instance | None:
        """One refinement click on the last GrabCut result (an undoable replace)."""
        from core.grabcut import grabcut_mask

        g = self._grab
        if g is None or g["doc"] is not self.doc or not any(i is g["inst"] for i in self.doc.instances):
            self.statusBar().showMessage("GrabCut: drag a box around an object first", 5000)
            return None
        (g["pos"] if positive else g["neg"]).append((float(x), float(y)))
        mask = grabcut_mask(self._image_pixels(), g["box"], g["pos"], g["neg"])
        old = g["inst"]
        new = mask_instance(mask, old.class_id)
        if new is None:
            (g["pos"] if positive else g["neg"]).pop()
            self.statusBar().showMessage("That click would leave nothing: undone", 5000)
            return None
        index = next(k for k, i in enumerate(self.doc.instances) if i is old)
        self.doc.undo_stack.push(commands.ReplaceInstances(self.doc, {index: (old, new)}, "Refine GrabCut"))
        g["inst"] = new
        self.canvas.set_selection([index])
        self.canvas.prompt_points = [(px, py, True) for px, py in g["pos"]] + [
            (px, py, False) for px, py in g["neg"]]
        self.canvas.viewport().update()
        return new

    # ------------------------------------------------------------------ SAM click-to-segment
    def sam_folder(self) -> Path:

        return weights_dir(self.project.root if self.project is not None else None)

    def sam_choice(self):
        """(entry, None) for the chosen SAM pair (Tools → Choose SAM model; else the first one in
        the weights cache), or (None, one-line advice) when none is there."""

        folder = self.sam_folder()
        cached = [e for e in sam_entries() if all(p.is_file() for p in sam_files(e, folder).values())]
        name = self.settings.sam_model
        entry = find_sam(name) if name else (cached[0] if cached else None)
        if entry is None:
            names = ", ".join(e.name for e in sam_entries())
            return None, (f"Click-to-segment needs a SAM model in the weights cache {folder}: run "
                          f"`dfine weights get <name>` ({names}), or `dfine weights add ENCODER DECODER --name "
                          f"<name>` offline")
        if entry not in cached:
            return None, (f"SAM model {entry.name} is not in the weights cache {folder}: run `dfine weights get "
                          f"{entry.name}`, or offline `dfine weights add {entry.encoder_file} {entry.decoder_file} "
                          f"--name {entry.name}`")
        return entry, None

    def choose_sam_dialog(self) -> None:

        folder = self.sam_folder()
        rows, names = [], []
        for e in sam_entries():
            here = all(p.is_file() for p in sam_files(e, folder).values())
            rows.append(f"{e.name}  ({e.size_mb:.0f} MB, {e.licence}{'' if here else ', not downloaded'})")
            names.append(e.name)
        current = self.settings.sam_model
        row, ok = QInputDialog.getItem(self, "SAM model", "Click-to-segment uses:", rows,
                                       names.index(current) if current in names else 0, False)
        if ok:
            self.set_sam_model(names[rows.index(row)])

    def set_sam_model(self, name: str) -> None:
        self.settings.sam_model = name
        entry, advice = self.sam_choice()
        self.statusBar().showMessage(advice or f"Click-to-segment uses {entry.name}", 10000)
        if entry is not None and self.canvas.tool == Tool.SAM:
            self.sam_embed()

    def sam_embed(self) -> bool:
        """Compute the embedding of the image on screen in the background (once per image and
        model; the model is loaded there too). False, with the advice shown, when no model."""
        if self.doc is None:
            return False
        entry, advice = self.sam_choice()
        if entry is None:
            self.statusBar().showMessage(advice, 15000)
            return False
        path = self.doc.image_path
        key = (path, entry.name)
        if self.sam_embeddings.get(key) is not None or self._sam_job == key:
            return True
        if self._sam_job is not None:  # one embedding at a time: the next starts when it ends
            return True
        self._sam_job = key
        folder, cache, model = self.sam_folder(), self.sam_embeddings, self._sam_model
        where = self.sam_embed_threads

        def body(task):
            from core.data.images import read_image
            from core.sam import SamModel

            m = model[1] if model is not None and model[0] == entry.name else None
            if m is None:
                task.progress(0, 2, f"SAM: loading {entry.name}…")
                m = SamModel.from_cache(entry, folder)
            task.progress(1, 2, f"SAM: computing the embedding of {path.name}…")
            where.append(threading.current_thread().name)
            cache.get_or_embed(key, m, read_image(path))
            return m

        def done(m) -> None:
            self._sam_model = (entry.name, m)
            self._sam_job = None
            self.statusBar().showMessage(f"SAM ({entry.name}): ready — click the object, right-click "
                                         "(Shift+click) background, or drag a box", 8000)
            self._sam_run()
            if self.canvas.tool == Tool.SAM:
                self.sam_embed()  # the image on screen may have changed meanwhile

        def failed(msg: str) -> None:
            self._sam_job = None
            self.statusBar().showMessage(f"SAM: {msg.splitlines()[0]}", 15000)

        def progress(_done: int, _total: int, text: str) -> None:
            self.statusBar().showMessage(text)

        self.statusBar().showMessage(f"SAM: computing the embedding of {path.name}…")
        run_task(body, on_done=done, on_error=failed, on_progress=progress, owner=self)
        return True

    def sam_click(self, x: float, y: float, positive: bool) -> None:
        """A positive / negative point on the object being segmented (a positive one starts an
        object when there is none)."""
        if self.doc is None or getattr(self.doc, "read_only", False):
            return
        o = self._sam_obj
        if o is None or o["doc"] is not self.doc:
            if not positive:
                self.statusBar().showMessage("SAM: click the object first (right-click marks background)", 5000)
                return
            o = self._sam_obj = {"doc": self.doc, "inst": None, "points": [], "labels": [], "box": None}
        o["points"].append((float(x), float(y)))
        o["labels"].append(1 if positive else 0)
        self._sam_show_prompts()
        self._sam_run()

    def sam_box(self, box) -> None:
        """A dragged box starts a new object (clicks then refine it)."""
        if self.doc is None or getattr(self.doc, "read_only", False):
            return
        self._sam_obj = {"doc": self.doc, "inst": None, "points": [], "labels": [], "box": tuple(box)}
        self._sam_show_prompts()
        self._sam_run()

    def finish_sam_object(self) -> None:
        """Enter: this object is done; the next click starts another."""
        if self._sam_obj is not None:
            self._sam_obj = None
            self.canvas.prompt_points = []
            self.canvas.viewport().update()

    def _sam_show_prompts(self) -> None:
        o = self._sam_obj
        self.canvas.prompt_points = [(px, py, lab == 1) for (px, py), lab in zip(o["points"], o["labels"])]
        self.canvas.viewport().update()

    def _sam_run(self):
        """Decode the prompts of the object being segmented (fast; the embedding is computed in
        the background first when missing, and this runs again when it is ready)."""
        from core.sam import mask_proposal

        o = self._sam_obj
        if o is None or o["doc"] is not self.doc or not (o["points"] or o["box"]):
            return None
        entry, advice = self.sam_choice()
        if entry is None:
            self.statusBar().showMessage(advice, 15000)
            return None
        emb = self.sam_embeddings.get((self.doc.image_path, entry.name))
        model = self._sam_model[1] if self._sam_model and self._sam_model[0] == entry.name else None
        if emb is None or model is None:
            self.sam_embed()
            self.statusBar().showMessage("SAM: waiting for the image embedding (computed in the background)…")
            return None
        mask, score = model.predict(emb, o["points"], o["labels"], o["box"])
        old = o["inst"] if self._live(o) else None
        new = mask_proposal(mask, old.class_id if old is not None else self.current_class, score)
        if new is None:
            self.statusBar().showMessage("SAM found nothing there: click inside the object", 5000)
            return None
        o["inst"] = new  # before the push: its signals check the prompts still belong to a live result
        if old is None:
            index = len(self.doc.instances)
            self.doc.undo_stack.push(commands.AddInstance(self.doc, new, index, "SAM"))
        else:
            index = next(k for k, i in enumerate(self.doc.instances) if i is old)
            self.doc.undo_stack.push(commands.ReplaceInstances(self.doc, {index: (old, new)}, "Refine SAM"))
        self.canvas.set_selection([index])
        self._sam_show_prompts()
        return new

    # ------------------------------------------------------------------ the project's model
    def project_model(self) -> Path | None:
        """The chosen model, else the newest run's best.pt, else the newest export's model.onnx."""
        if self.model_path is not None:
            return self.model_path
        for pattern in ("runs/*/best.pt", "runs/*/last.pt", "exports/*/model.onnx"):
            found = sorted(self.project.root.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
            if found:
                return found[0]
        return None

    def model_box(self, box, predictor=None):
        """Run the project's model on the image and keep its best mask inside ``box`` as an
        editable model-made polygon (class from the model when it maps, else the current class)."""
        from app.prelabel import class_mapping, load_predictor
        from core.data.images import read_image

        model = self.project_model() if predictor is None else None
        cached = getattr(self, "_predictor", None)
        if predictor is None and cached is not None and cached[0] == (model, self._conf()):
            predictor = cached[1]
        if predictor is None and model is None:
            self.statusBar().showMessage("No model yet: train one (Train) or choose one (Model → Choose model)",
                                         8000)
            return None
        doc, path, names, conf = self.doc, self.doc.image_path, self.project.class_names, self._conf()

        def body(_task, p=predictor):
            p = p or load_predictor(model, conf)
            return p, p.predict([read_image(path)])[0]

        def done(out) -> None:
            p, det = out
            if predictor is None:
                self._predictor = ((model, conf), p)
            if doc is not self.doc:
                return
            hit = best_detection_mask(det, box)
            if hit is None:
                self.statusBar().showMessage("The model found no object in this box", 6000)
                return
            k, mask = hit
            mapping = class_mapping(list(getattr(p, "class_names", []) or []), names)
            cid = mapping.get(int(det.labels[k]), self.current_class)
            inst = mask_instance(mask, cid, float(det.scores[k]))
            if inst is None:
                self.statusBar().showMessage("The model's mask in this box is empty", 6000)
                return
            index = len(doc.instances)
            doc.undo_stack.push(commands.AddInstance(doc, inst, index, "Segment box with model"))
            self.canvas.set_selection([index])

        return self.start_task(body, title="Segment with model", on_done=done)

    # ------------------------------------------------------------------ brush / eraser
    def _stroke_done(self, tool: Tool, points: list, radius: float) -> None:
        if self.doc is None or getattr(self.doc, "read_only", False):
            return
        self.apply_stroke(points, radius, erase=tool == Tool.ERASER)

    def apply_stroke(self, points, radius: float, erase: bool) -> Instance | None:
        """Paint (or erase) a stroke on the one selected instance's mask; the result becomes its
        polygons (holes kept) in one undoable step. Painting with nothing selected makes a new
        instance of the current class."""
        from app.prelabel import DEFAULT_MIN_AREA_PX, DEFAULT_TOLERANCE_PX
        from core.geometry import mask_to_polygons
        from core.mask_edit import instance_mask, paint_stroke

        sel = self.canvas.selected
        if len(sel) > 1:
            self.statusBar().showMessage("Brush/eraser: select one instance", 5000)
            return None
        if not sel and erase:
            self.statusBar().showMessage("Eraser: select the instance to erase from first", 5000)
            return None
        w, h = self.doc.ann.width, self.doc.ann.height
        old = self.doc.instances[sel[0]] if sel else None
        mask = paint_stroke(instance_mask(old, w, h), points, radius, not erase)
        polys, holes = mask_to_polygons(mask, DEFAULT_TOLERANCE_PX, DEFAULT_MIN_AREA_PX)
        if not polys:
            self.statusBar().showMessage("That would erase the whole instance: press Del to delete it", 6000)
            return None
        new = Instance(class_id=old.class_id if old else self.current_class, polygons=polys, holes=holes,
                       group_id=old.group_id if old else None)
        if old is None:
            index = len(self.doc.instances)
            self.doc.undo_stack.push(commands.AddInstance(self.doc, new, index, "Brush"))
        else:
            index = sel[0]
            self.doc.undo_stack.push(commands.replace_one(self.doc, index, new, "Erase" if erase else "Brush"))
        self.canvas.set_selection([index])
        return self.doc.instances[index]

