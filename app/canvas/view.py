"""CanvasView: zoom to cursor, pan (Space+drag, middle button), fit (F), draw
polygons (click vertices; close on the first vertex or Enter) and boxes (drag),
select/move instances, drag/insert (double-click an edge)/delete (Shift+click or
Del on a hovered vertex) vertices, crosshair, mask fill opacity.

Why the view does hit testing in numpy instead of per-vertex QGraphicsItems: a
1,000-vertex polygon would be 1,000 items to create on every image switch; one
painted item plus a vectorised nearest-vertex search keeps both switching and
dragging cheap. The image is drawn as the cached background (CacheBackground), so
redrawing during a drag only blits it.
"""

from __future__ import annotations

import enum

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

from app import commands
from app.canvas import geometry as geo
from app.canvas.items import InstanceItem
from app.document import LabelDocument
from app.image_cache import DisplayImage
from app.theme import ERROR_COLOR, class_color, colors
from core.annotation import Instance

PICK_PX = 8.0  # how close (screen pixels) a click must be to a vertex / the first point


class Tool(enum.Enum):
    SELECT = "select"
    POLYGON = "polygon"
    BOX = "box"
    GRABCUT = "grabcut"  # drag a box -> GrabCut polygon; click +, right/Shift-click - to refine
    MODEL_BOX = "model_box"  # drag a box -> the project's model segments inside it
    BRUSH = "brush"  # paint onto the selected instance's mask (or a new one)
    ERASER = "eraser"  # erase from the selected instance's mask
    SCISSORS = "scissors"  # intelligent scissors: click anchors, the outline snaps to edges
    SAM = "sam"  # click-to-segment (SAM pair): click +, right/Shift-click -, drag a box


PROMPT_TOOLS = (Tool.GRABCUT, Tool.MODEL_BOX, Tool.SAM)  # a dragged box is a prompt, not an instance


class CanvasView(QGraphicsView):
    selection_changed = Signal(list)  # indices into doc.instances
    tool_changed = Signal(object)
    zoom_changed = Signal(float)
    context_menu_requested = Signal(object, list)  # global QPoint, indices
    cursor_moved = Signal(float, float)  # image pixel coordinates
    status_message = Signal(str)  # a hint for the status bar (why a key did nothing)
    shape_drawn = Signal(int)  # index of an instance the person just drew (polygon/box close)
    box_prompt = Signal(object, tuple)  # Tool, (x0, y0, x1, y1) image pixels: segment inside
    point_prompt = Signal(float, float, bool)  # x, y, positive: refine the last GrabCut result
    prompt_done = Signal()  # Enter in the SAM tool: the object being segmented is done
    stroke_done = Signal(object, list, float)  # Tool (BRUSH/ERASER), [(x, y), ...], radius in image px

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self._scene.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)  # few items, often moved
        self.setScene(self._scene)
        self.setCacheMode(QGraphicsView.CacheModeFlag.CacheBackground)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)  # zoom_by anchors itself
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.setObjectName("canvas")
        self.doc: LabelDocument | None = None
        self.image: DisplayImage | None = None
        self.img_w, self.img_h = 1, 1
        self.items: list[InstanceItem] = []
        self.selected: list[int] = []
        self.tool = Tool.SELECT
        self.current_class = 0
        self.fill_opacity = 0.35
        self.show_crosshair = True
        self._cursor: QPointF | None = None
        self._draft: list[tuple[float, float]] = []  # polygon being drawn
        self._box_start: QPointF | None = None
        self._space = False
        self._pan_last = None
        self._drag: dict | None = None  # active vertex/instance drag
        self._hover: tuple[int, geo.VertexRef] | None = None
        self._fitted = True
        self.read_only = False  # a label file with errors is shown, never edited/overwritten
        self.class_names: list[str] = []
        self.show_names = False  # class name next to each instance
        self.hidden_classes: set[int] = set()  # per-class hide (view state, not an edit)
        self.prompt_points: list[tuple[float, float, bool]] = []  # GrabCut clicks shown as +/- dots
        self.brush_px = 12.0  # brush/eraser radius on screen (image radius = this / zoom)
        self._stroke: list[tuple[float, float]] = []
        self.scissors = None  # app.scissors_tool.ScissorsDraft, set by the window (tool I)

    # ------------------------------------------------------------------ document
    def set_document(self, doc: LabelDocument | None, image: DisplayImage | None = None) -> None:
        if self.doc is not None:
            for sig, slot in self._doc_slots():
                sig.disconnect(slot)
        self.doc = doc
        self.cancel_draft()
        self._drag = None
        self._hover = None
        had_selection = bool(self.selected)
        self.selected = []  # indices belong to the old image: never carry them over
        self.prompt_points = []
        if doc is not None:
            self.img_w, self.img_h = doc.ann.width, doc.ann.height
            for sig, slot in self._doc_slots():
                sig.connect(slot)
        self._scene.setSceneRect(QRectF(0, 0, self.img_w, self.img_h))
        self.set_image(image)
        self._rebuild()
        self.fit()
        if had_selection:
            self.selection_changed.emit([])

    def _doc_slots(self):
        d = self.doc
        return [(d.structure_changed, self._rebuild), (d.instance_changed, self._update_one),
                (d.visibility_changed, self._update_visibility)]

    def set_image(self, image: DisplayImage | None) -> None:
        self.image = image
        self.resetCachedContent()
        self.viewport().update()

    def _rebuild(self) -> None:
        for it in self.items:
            self._scene.removeItem(it)
        self.items = []
        if self.doc is None:
            return
        scale = self.scale_factor()
        for z, inst in enumerate(self.doc.instances):
            it = InstanceItem(inst, class_color(inst.class_id))
            it.fill_opacity = self.fill_opacity
            it.set_view_scale(scale)
            it.setZValue(z)
            self._scene.addItem(it)
            self.items.append(it)
        self.selected = [i for i in self.selected if i < len(self.items)]
        self._update_visibility()
        self._apply_selection()

    def _update_one(self, index: int) -> None:
        if 0 <= index < len(self.items):
            inst = self.doc.instances[index]
            self.items[index].color = class_color(inst.class_id)
            self.items[index].set_instance(inst)

    def is_hidden(self, index: int) -> bool:
        """Hidden on the canvas: the instance itself, or its whole class."""
        return self.doc.is_hidden(index) or self.doc.instances[index].class_id in self.hidden_classes

    def _update_visibility(self) -> None:
        for i, it in enumerate(self.items):
            it.setVisible(not self.is_hidden(i))
            it.setOpacity(0.55 if self.doc is not None and self.doc.is_locked(i) else 1.0)
        if self.doc is not None and any(not self.selectable(i) for i in self.selected):
            self.set_selection([i for i in self.selected if self.selectable(i)])  # hiding/locking drops it
        self.viewport().update()

    def set_hidden_classes(self, classes: set[int]) -> None:
        self.hidden_classes = set(classes)
        if self.doc is not None:
            self.set_selection([i for i in self.selected if not self.is_hidden(i)])
            self._update_visibility()

    def set_show_names(self, on: bool) -> None:
        self.show_names = on
        self.viewport().update()

    # ------------------------------------------------------------------ selection
    def is_locked(self, index: int) -> bool:
        return self.doc is not None and self.doc.is_locked(index)

    def selectable(self, index: int) -> bool:
        """Only what the person can see and has not locked can be selected, so every edit (they
        all act on the selection or on a selected shape's handles) reaches nothing else."""
        return 0 <= index < len(self.items) and not self.is_hidden(index) and not self.is_locked(index)

    def set_selection(self, indices: list[int], emit: bool = True) -> None:
        new = sorted(i for i in set(indices) if self.selectable(i))
        if new == self.selected:
            return
        self.selected = new
        self._apply_selection()
        if emit:
            self.selection_changed.emit(list(self.selected))

    def _apply_selection(self) -> None:
        top = len(self.items)
        for i, it in enumerate(self.items):
            sel = i in self.selected
            if sel != it.selected:
                it.selected = sel
                it.update()
            it.setZValue(top + i if sel else i)

    # ------------------------------------------------------------------ view ops
    def scale_factor(self) -> float:
        return float(self.transform().m11())

    def fit_box(self) -> tuple[float, float, float]:
        """(width, height, dpr) that fitInView fits the image into (it keeps a 2 px margin)."""
        r = self.viewport().rect()
        return (float(r.width() - 4), float(r.height() - 4), float(self.devicePixelRatioF()))

    def fit(self) -> None:
        self.fitInView(QRectF(0, 0, self.img_w, self.img_h), Qt.AspectRatioMode.KeepAspectRatio)
        self._fitted = True
        self._scale_changed()

    def zoom_by(self, factor: float, at: QPointF | None = None) -> None:
        """Zoom keeping the image point under viewport position ``at`` (default: the
        centre) where it is, as far as the scroll range allows."""
        s = self.scale_factor()
        factor = min(max(factor, 0.02 / s), 64.0 / s)
        at = QPointF(self.viewport().rect().center()) if at is None else QPointF(at)
        anchor = self.mapToScene(at.toPoint())
        self.scale(factor, factor)
        moved = self.mapFromScene(anchor) - at.toPoint()
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + moved.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + moved.y())
        self._fitted = False
        self._scale_changed()

    def _scale_changed(self) -> None:
        s = self.scale_factor()
        for it in self.items:
            it.set_view_scale(s)
        self.resetCachedContent()
        self.zoom_changed.emit(s)

    def set_fill_opacity(self, value: float) -> None:
        self.fill_opacity = value
        for it in self.items:
            it.fill_opacity = value
            it.update()

    def set_tool(self, tool: Tool) -> None:
        if tool != self.tool:
            self.cancel_draft()
            self.tool = tool
            self.setCursor(Qt.CursorShape.ArrowCursor if tool == Tool.SELECT else Qt.CursorShape.CrossCursor)
            self.tool_changed.emit(tool)

    def brush_radius(self) -> float:
        """Brush radius in image pixels: a constant size on screen at any zoom."""
        return self.brush_px / max(self.scale_factor(), 1e-6)

    def set_brush_px(self, px: float) -> None:
        self.brush_px = float(min(max(px, 2.0), 120.0))
        self.viewport().update()

    def cancel_draft(self) -> None:
        if self.scissors is not None:
            self.scissors.cancel()
        self._draft = []
        self._stroke = []
        self._box_start = None
        self.viewport().update()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    # ------------------------------------------------------------------ painting
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, QColor(colors()["canvas"]))
        target = QRectF(0, 0, self.img_w, self.img_h)
        if self.image is None:
            painter.fillRect(target, QColor(colors()["alt"]))
            return
        device_scale = self.scale_factor() * self.devicePixelRatioF()
        qimg = self.image.level_for(device_scale)
        ratio = qimg.width() / (self.img_w * device_scale)  # ~1: a blit, no resampling needed
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform,
                              self.scale_factor() < 2.0 and abs(ratio - 1.0) > 0.01)
        painter.drawImage(target, qimg)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        s = self.scale_factor()
        if self.show_names and self.doc is not None:
            self._paint_names(painter)
        if self.tool in (Tool.BRUSH, Tool.ERASER) and (self._cursor is not None or self._stroke):
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            r = self.brush_radius()
            tint = QColor("#2ea043") if self.tool == Tool.BRUSH else QColor(ERROR_COLOR)
            if self._stroke:
                fill = QColor(tint)
                fill.setAlphaF(0.45)
                pen = QPen(fill, 2 * r, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
                painter.setPen(pen)
                painter.drawPolyline([QPointF(x, y) for x, y in self._stroke] or [QPointF()])
                if len(self._stroke) == 1:
                    painter.setPen(Qt.PenStyle.NoPen)
                    painter.setBrush(fill)
                    painter.drawEllipse(QPointF(*self._stroke[0]), r, r)
            if self._cursor is not None:
                pen = QPen(tint, 1.5)
                pen.setCosmetic(True)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawEllipse(self._cursor, r, r)
        if self.prompt_points:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            r = 5.0 / s
            for x, y, positive in self.prompt_points:
                pen = QPen(QColor(255, 255, 255), 1.5)
                pen.setCosmetic(True)
                painter.setPen(pen)
                painter.setBrush(QColor("#2ea043") if positive else QColor(ERROR_COLOR))
                painter.drawEllipse(QPointF(x, y), r, r)
        color = class_color(self.current_class)
        if self.show_crosshair and self._cursor is not None and self.tool != Tool.SELECT:
            pen = QPen(QColor(255, 255, 255, 150), 1, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            painter.setPen(pen)
            c = self._cursor
            painter.drawLine(QPointF(0, c.y()), QPointF(self.img_w, c.y()))
            painter.drawLine(QPointF(c.x(), 0), QPointF(c.x(), self.img_h))
        if self._draft:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            pen = QPen(color, 2)
            pen.setCosmetic(True)
            painter.setPen(pen)
            pts = [QPointF(x, y) for x, y in self._draft]
            if self._cursor is not None:
                pts.append(self._cursor)
            painter.drawPolyline(pts)
            self._paint_vertices(painter, self._draft, color, s, len(self._draft) >= 3 and self._near_first())
        if self.tool == Tool.SCISSORS and self.scissors is not None and self.scissors.drawing:
            self._paint_scissors(painter, color, s)
        if self._box_start is not None and self._cursor is not None:
            pen = QPen(color, 2)
            pen.setCosmetic(True)
            painter.setPen(pen)
            fill = QColor(color)
            fill.setAlphaF(self.fill_opacity)
            painter.setBrush(fill)
            painter.drawRect(QRectF(self._box_start, self._cursor).normalized())

    def _paint_scissors(self, painter: QPainter, color: QColor, s: float) -> None:
        """The snapped outline so far (solid), the preview to the pointer (dashed), the anchors
        (squares; the first one filled when a click there would close)."""
        sc = self.scissors
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pen = QPen(color, 2)
        pen.setCosmetic(True)
        painter.setPen(pen)
        outline = sc.outline()
        if len(outline) >= 2:
            painter.drawPolyline([QPointF(x, y) for x, y in outline])
        if self._cursor is not None:
            c = self._clamp(self._cursor)
            path = sc.preview(c.x(), c.y())
            if len(path) >= 2:
                dash = QPen(color, 2, Qt.PenStyle.DashLine)
                dash.setCosmetic(True)
                painter.setPen(dash)
                painter.drawPolyline([QPointF(x, y) for x, y in path])
                painter.setPen(pen)
        self._paint_vertices(painter, sc.anchors, color, s, len(sc.anchors) >= 3 and self._near_scissors_first())

    @staticmethod
    def _paint_vertices(painter: QPainter, points, color: QColor, s: float, closes: bool) -> None:
        """The points of an outline being drawn as white squares; the first one a filled circle when
        `closes` (a click there would close the outline)."""
        h = 7.0 / s
        painter.setBrush(QColor(255, 255, 255))
        for k, (x, y) in enumerate(points):
            if k == 0 and closes:
                painter.setBrush(color)
                painter.drawEllipse(QPointF(x, y), h, h)
                painter.setBrush(QColor(255, 255, 255))
            else:
                painter.drawRect(QRectF(x - h / 2, y - h / 2, h, h))

    def _near_scissors_first(self) -> bool:
        sc = self.scissors
        if sc is None or not sc.anchors or self._cursor is None:
            return False
        x, y = sc.anchors[0]
        return np.hypot(self._cursor.x() - x, self._cursor.y() - y) * self.scale_factor() <= PICK_PX

    def name_anchors(self) -> list[tuple[int, str, QPointF]]:
        """(index, text, scene point) of each visible instance's name tag: the top-left of its box."""
        out = []
        for i, inst in enumerate(self.doc.instances if self.doc is not None else []):
            if self.is_hidden(i):
                continue
            k = inst.class_id
            name = self.class_names[k] if 0 <= k < len(self.class_names) else f"class {k}"
            x0, y0, _x1, _y1 = inst.bbox()
            tag = (" ?" if inst.source == "model" else "") + (" (locked)" if self.is_locked(i) else "")
            out.append((i, name + tag, QPointF(x0, y0)))
        return out

    def name_chips(self, fm=None) -> list[tuple[int, str, QRectF]]:
        """(index, text, viewport rect) of each name chip: above the instance's box top-left, moved
        down past any chip already placed that it would cover (a proposal's "giraffe ?" on the same
        object as a label used to be drawn over the label's chip)."""
        fm = fm or self.viewport().fontMetrics()
        placed: list[tuple[int, str, QRectF]] = []
        for i, text, p in self.name_anchors():
            v = self.mapFromScene(p)
            w, h = fm.horizontalAdvance(text) + 8, fm.height() + 2
            top = v.y() - h if v.y() - h >= 0 else v.y()
            box = QRectF(v.x(), top, w, h)
            for _ in range(len(placed)):
                hit = next((r for _k, _t, r in placed if r.intersects(box)), None)
                if hit is None:
                    break
                box.moveTop(hit.bottom() + 1)
            placed.append((i, text, box))
        return placed

    def _paint_names(self, painter: QPainter) -> None:
        """Name tags at a constant on-screen size: drawn in viewport pixels, class-coloured chip."""
        painter.save()
        painter.resetTransform()
        for i, text, box in self.name_chips(painter.fontMetrics()):
            color = class_color(self.doc.instances[i].class_id)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRect(box)
            painter.setPen(QColor(0, 0, 0) if color.lightnessF() > 0.55 else QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()

    # ------------------------------------------------------------------ helpers
    def _clamp(self, p: QPointF) -> QPointF:
        return QPointF(min(max(p.x(), 0.0), float(self.img_w)), min(max(p.y(), 0.0), float(self.img_h)))

    def _scene_pos(self, event) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def _near_first(self) -> bool:
        if not self._draft or self._cursor is None:
            return False
        x, y = self._draft[0]
        d = np.hypot(self._cursor.x() - x, self._cursor.y() - y) * self.scale_factor()
        return d <= PICK_PX

    def _visible_order(self) -> list[int]:
        """Indices top-most first: selected instances, then the rest by z."""
        n = len(self.items)
        rest = [i for i in range(n - 1, -1, -1) if i not in self.selected]
        return [i for i in reversed(self.selected)] + rest

    def hit_vertex(self, p: QPointF) -> tuple[int, geo.VertexRef] | None:
        r = PICK_PX / self.scale_factor()
        for i in reversed(self.selected):
            if self.is_hidden(i):
                continue
            ref = geo.nearest_vertex(self.doc.instances[i], p.x(), p.y(), r)
            if ref is not None:
                return i, ref
        return None

    def hit_instance(self, p: QPointF) -> int | None:
        for i in self._visible_order():
            if self.selectable(i) and geo.point_in_instance(self.doc.instances[i], p.x(), p.y()):
                return i
        return None

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus()
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space):
            self._pan_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self.doc is None or self.read_only:
            return
        p = self._scene_pos(event)
        if button == Qt.MouseButton.RightButton:
            if self.tool in (Tool.GRABCUT, Tool.SAM):
                c = self._clamp(p)
                self.point_prompt.emit(c.x(), c.y(), False)
                return
            if self.tool == Tool.POLYGON and self._draft:
                self._draft.pop()
                self.viewport().update()
                return
            if self.tool == Tool.SCISSORS and self.scissors is not None and self.scissors.drawing:
                self.scissors.pop()
                return
            hit = self.hit_instance(p)
            if hit is not None and hit not in self.selected:
                self.set_selection([hit])
            self.context_menu_requested.emit(event.globalPosition().toPoint(), list(self.selected))
            return
        if button != Qt.MouseButton.LeftButton:
            return
        if self.tool == Tool.POLYGON:
            self._polygon_click(p)
        elif self.tool == Tool.SCISSORS:
            self._scissors_click(p)
        elif self.tool in (Tool.BRUSH, Tool.ERASER):
            c = self._clamp(p)
            self._stroke = [(c.x(), c.y())]
            self.viewport().update()
        elif self.tool in (Tool.BOX, *PROMPT_TOOLS):
            self._box_start = self._clamp(p)
            self._box_mods = event.modifiers()
            self._cursor = self._box_start
        else:
            self._select_press(p, event.modifiers())

    def _polygon_click(self, p: QPointF) -> None:
        self._cursor = p
        if len(self._draft) >= 3 and self._near_first():
            self.finish_polygon()
            return
        c = self._clamp(p)
        self._draft.append((c.x(), c.y()))
        self.viewport().update()

    def _scissors_click(self, p: QPointF) -> None:
        if self.scissors is None:
            return
        self._cursor = p
        if len(self.scissors.anchors) >= 3 and self._near_scissors_first():
            self.scissors.close()
            return
        c = self._clamp(p)
        self.scissors.click(c.x(), c.y())

    def finish_polygon(self) -> bool:
        """Close the polygon being drawn (Enter / click on the first vertex)."""
        if len(self._draft) < 3 or self.doc is None:
            return False
        pts = np.array(self._draft, dtype=np.float64)
        self._draft = []
        self._add(Instance(class_id=self.current_class, polygons=[pts]), "Draw polygon")
        self.shape_drawn.emit(len(self.doc.instances) - 1)
        return True

    def _add(self, inst: Instance, text: str) -> None:
        index = len(self.doc.instances)
        self.doc.undo_stack.push(commands.AddInstance(self.doc, inst, index, text))
        self.set_selection([index])
        self.viewport().update()

    def _select_press(self, p: QPointF, mods) -> None:
        hv = self.hit_vertex(p)
        if hv is not None:
            i, ref = hv
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.delete_vertex(i, ref)
                return
            self._drag = {"kind": "vertex", "index": i, "ref": ref,
                          "before": self.doc.instances[i], "current": self.doc.instances[i]}
            self.items[i].set_dragging(True)
            return
        hit = self.hit_instance(p)
        if hit is None:
            if not (mods & Qt.KeyboardModifier.ControlModifier):
                self.set_selection([])
            return
        if mods & Qt.KeyboardModifier.ControlModifier:
            sel = set(self.selected) ^ {hit}
            self.set_selection(list(sel))
            return
        if hit not in self.selected:
            self.set_selection([hit])
        self._drag = {"kind": "move", "index": hit, "origin": p,
                      "before": self.doc.instances[hit], "current": self.doc.instances[hit]}
        self.items[hit].set_dragging(True)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_last is not None:
            delta = event.position() - self._pan_last
            self._pan_last = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(delta.y()))
            return
        p = self._scene_pos(event)
        self._cursor = p
        self.cursor_moved.emit(p.x(), p.y())
        if self._stroke:
            c = self._clamp(p)
            self._stroke.append((c.x(), c.y()))
        elif self._drag is not None and self.doc is not None:
            self._drag_to(p)
        elif self.tool == Tool.SELECT and self.doc is not None:
            self._update_hover(p)
        self.viewport().update()

    def _drag_to(self, p: QPointF) -> None:
        d = self._drag
        i = d["index"]
        c = self._clamp(p)
        if d["kind"] == "vertex":
            new = geo.move_vertex(d["before"], d["ref"], c.x(), c.y())
        else:
            dx, dy = p.x() - d["origin"].x(), p.y() - d["origin"].y()
            dx, dy = geo.clamp_translation(d["before"], dx, dy, self.img_w, self.img_h)
            new = geo.translate(d["before"], dx, dy)
        d["current"] = new
        self.items[i].set_instance(new)

    def _update_hover(self, p: QPointF) -> None:
        hv = self.hit_vertex(p)
        if hv != self._hover:
            if self._hover is not None and self._hover[0] < len(self.items):
                self.items[self._hover[0]].hover_vertex = None
                self.items[self._hover[0]].update()
            self._hover = hv
            if hv is not None:
                self.items[hv[0]].hover_vertex = hv[1]
                self.items[hv[0]].update()
            self.viewport().setCursor(Qt.CursorShape.SizeAllCursor if hv else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_last is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_last = None
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if self._space else Qt.CursorShape.ArrowCursor)
            return
        if event.button() != Qt.MouseButton.LeftButton or self.doc is None:
            return
        if self._stroke:
            pts, self._stroke = self._stroke, []
            self.stroke_done.emit(self.tool, pts, self.brush_radius())
            self.viewport().update()
            return
        if self._box_start is not None:
            a, b = self._box_start, self._clamp(self._scene_pos(event))
            self._box_start = None
            r = QRectF(a, b).normalized()
            big = r.width() * self.scale_factor() >= 3 and r.height() * self.scale_factor() >= 3
            if self.tool in PROMPT_TOOLS:
                if big:
                    self.box_prompt.emit(self.tool, (r.left(), r.top(), r.right(), r.bottom()))
                elif self.tool in (Tool.GRABCUT, Tool.SAM):  # a click: a point (Shift: not object)
                    shift = bool(getattr(self, "_box_mods", 0) & Qt.KeyboardModifier.ShiftModifier)
                    self.point_prompt.emit(b.x(), b.y(), not shift)
                self.viewport().update()
                return
            if big:
                self._add(Instance(class_id=self.current_class, box=(r.left(), r.top(), r.right(), r.bottom())),
                          "Draw box")
                self.shape_drawn.emit(len(self.doc.instances) - 1)
            self.viewport().update()
            return
        if self._drag is not None:
            d, self._drag = self._drag, None
            if d["index"] < len(self.items):
                self.items[d["index"]].set_dragging(False)
            if not d["current"].same_geometry(d["before"], tol=1e-9):
                text = "Move vertex" if d["kind"] == "vertex" else "Move"
                self.doc.undo_stack.push(commands.replace_one(self.doc, d["index"], d["current"], text, d["before"]))
            else:
                self.items[d["index"]].set_instance(self.doc.instances[d["index"]])

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.read_only:
            return
        if self.doc is None or self.tool != Tool.SELECT or event.button() != Qt.MouseButton.LeftButton:
            return super().mouseDoubleClickEvent(event) if self.tool == Tool.SELECT else self.mousePressEvent(event)
        p = self._scene_pos(event)
        r = PICK_PX / self.scale_factor()
        for i in reversed(self.selected):
            inst = self.doc.instances[i]
            hit = geo.nearest_edge(inst, p.x(), p.y(), r)
            if hit is not None and geo.nearest_vertex(inst, p.x(), p.y(), r) is None:
                part, k, q = hit
                new = geo.insert_vertex(inst, part, k, float(q[0]), float(q[1]))
                self.doc.undo_stack.push(commands.replace_one(self.doc, i, new, "Insert vertex"))
                return

    def delete_vertex(self, index: int, ref: geo.VertexRef) -> bool:
        new = geo.delete_vertex(self.doc.instances[index], ref)
        if new is None:
            return False
        self._hover = None
        self.items[index].hover_vertex = None
        self.doc.undo_stack.push(commands.replace_one(self.doc, index, new, "Delete vertex"))
        return True

    def delete_selection(self) -> None:
        """Del/Backspace act on the selection only: the highlighted vertex of a selected polygon
        (its handles are shown and the pointer is on one), else the selected instances. Nothing
        unselected, hidden or locked is touched. A box has no vertex to delete: Del on its corner
        deletes the selected box, as anywhere else on it."""
        if self.doc is None or self.read_only:
            return
        if self._draft:  # Backspace/Del while drawing: drop the last point
            self._draft.pop()
            self.viewport().update()
            return
        if self.tool == Tool.SCISSORS and self.scissors is not None and self.scissors.drawing:
            self.scissors.pop()
            return
        chosen = [i for i in self.selected if self.selectable(i)]
        target = self._hover
        if target is not None and target[0] in chosen and not self.doc.instances[target[0]].is_box:
            if not self.delete_vertex(*target):
                self.status_message.emit("A part keeps at least 3 vertices: move the pointer off the vertex "
                                         "and press Del to delete the instance")
            return
        if not chosen:
            self.status_message.emit("Nothing selected: click an instance, then press Del")
            return
        self.set_selection([])
        self.doc.undo_stack.push(commands.RemoveInstances(self.doc, chosen))

    def wheelEvent(self, event: QWheelEvent) -> None:
        dy = event.angleDelta().y()
        if dy:
            self.zoom_by(1.0015 ** dy, event.position())

    # ------------------------------------------------------------------ keys
    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._draft:
            self.finish_polygon()
            return
        scissors = self.scissors is not None and self.scissors.drawing and self.tool == Tool.SCISSORS
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and scissors:
            self.scissors.close()
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.tool == Tool.SAM:
            self.prompt_done.emit()
            return
        if key == Qt.Key.Key_Backspace and scissors:
            self.scissors.pop()
            return
        if key == Qt.Key.Key_Escape:
            if self._draft or self._box_start is not None or scissors:
                self.cancel_draft()
            elif self.tool != Tool.SELECT:
                self.set_tool(Tool.SELECT)
            else:
                self.set_selection([])
            return
        if key == Qt.Key.Key_Backspace and self._draft:
            self._draft.pop()
            self.viewport().update()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._pan_last = None
            self.viewport().setCursor(Qt.CursorShape.ArrowCursor)
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event) -> None:
        self._cursor = None
        self.viewport().update()
        super().leaveEvent(event)
