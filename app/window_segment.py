"""One-click masks in the main window: GrabCut box -> polygon (refined with +/- clicks) and
"segment with the project's model inside this box". Both add an editable polygon marked
model-made (source="model", drawn dashed) as one undoable step; editing it makes it the
person's, like any proposal.

Why here and not in the canvas: the canvas only reports the prompt (a box, a click); this
mixin owns the pixels, the engine calls and the undo commands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app import commands
from app.canvas import Tool
from app.prelabel import best_detection_mask, mask_instance
from core.annotation import Instance
from core.errors import UserFacingError


class SegmentActions:
    """Mixin for MainWindow (uses its project, doc, canvas, model path and task runner)."""

    _grab: dict | None = None
    _pixels: tuple[Path, np.ndarray] | None = None

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

    def drop_stale_prompts(self) -> None:
        """The +/- refine dots belong to the GrabCut result on screen: once it is accepted, undone,
        deleted or another image is shown, they go (they used to stay after accepting)."""
        g = self._grab
        if self.canvas.prompt_points and (g is None or g["doc"] is not self.doc
                                          or not any(i is g["inst"] for i in self.doc.instances)):
            self.canvas.prompt_points = []
            self.canvas.viewport().update()

    def _point_prompt(self, x: float, y: float, positive: bool) -> None:
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

