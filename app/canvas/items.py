"""How one instance is painted: class-coloured outline, translucent mask fill,
vertex handles when selected. Handles and outlines keep a constant on-screen size
at any zoom (cosmetic pens, handle size divided by the view scale).

Speed (a 1,000-vertex polygon must redraw in well under 16 ms while a vertex is
dragged): vertex arrays go into QPolygonF by one numpy copy into Qt's own buffer
(no per-point Python objects), handles are one ``drawPoints`` call, idle items are
cached as device pixmaps, and the item being dragged is drawn without
antialiasing until the mouse is released.
"""

from __future__ import annotations

import numpy as np
import shiboken6
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem

from app.canvas.geometry import VertexRef, parts
from core.annotation import Instance

HANDLE_PX = 7.0  # vertex handle size on screen
_fast_ok: bool | None = None  # whether writing through QPolygonF.data() works in this PySide6


def _fill_fast(pts: np.ndarray) -> QPolygonF:
    poly = QPolygonF()
    poly.resize(len(pts))
    if len(pts):
        buf = shiboken6.VoidPtr(poly.data(), len(pts) * 16, True)
        np.frombuffer(buf, dtype=np.float64).reshape(-1, 2)[:] = pts
    return poly


def to_qpolygon(pts: np.ndarray) -> QPolygonF:
    """(N, 2) float array -> QPolygonF. Fast path writes Qt's point buffer with numpy;
    it is verified once against the per-point constructor and disabled if it differs."""
    global _fast_ok
    pts = np.ascontiguousarray(pts, dtype=np.float64).reshape(-1, 2)
    if _fast_ok is None:
        probe = np.array([[1.5, -2.25], [3.0, 4.125], [-7.0, 8.5]])
        try:
            fast = _fill_fast(probe)
            _fast_ok = [(fast.at(i).x(), fast.at(i).y()) for i in range(3)] == [tuple(p) for p in probe]
        except Exception:  # noqa: BLE001 - an API change must only cost speed, never correctness
            _fast_ok = False
    if _fast_ok:
        return _fill_fast(pts)
    return QPolygonF([QPointF(float(x), float(y)) for x, y in pts])


class InstanceItem(QGraphicsItem):
    """Paints one instance; all hit testing and editing is done by the view (numpy),
    so the item never needs to be an event target."""

    def __init__(self, inst: Instance, color: QColor):
        super().__init__()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setAcceptHoverEvents(False)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.color = QColor(color)
        self.fill_opacity = 0.35
        self.view_scale = 1.0
        self.selected = False
        self.fast = False  # being dragged: skip antialiasing
        self.hover_vertex: VertexRef | None = None
        self.set_instance(inst)

    def set_instance(self, inst: Instance) -> None:
        self.prepareGeometryChange()
        self.inst = inst
        self._vertices = parts(inst)
        self._qpolys = [to_qpolygon(p) for p in self._vertices]
        self._handles = to_qpolygon(np.concatenate(self._vertices)) if self._vertices else QPolygonF()
        path = QPainterPath()
        path.setFillRule(Qt.FillRule.OddEvenFill)
        for qp in self._qpolys:
            path.addPolygon(qp)
            path.closeSubpath()
        self._path = path
        self._simple = len(self._qpolys) == 1  # one ring: drawPolygon is cheaper than a path
        self.update()

    def set_dragging(self, on: bool) -> None:
        self.fast = on
        self.setCacheMode(QGraphicsItem.CacheMode.NoCache if on else QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.update()

    def set_view_scale(self, scale: float) -> None:
        self.prepareGeometryChange()
        self.view_scale = max(scale, 1e-6)

    def boundingRect(self) -> QRectF:
        m = (HANDLE_PX + 6) / self.view_scale
        return self._path.boundingRect().adjusted(-m, -m, m, m)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        fill = QColor(self.color)
        fill.setAlphaF(min(1.0, self.fill_opacity * (1.6 if self.selected else 1.0)))
        width = 1.0 if self.fast else (2.5 if self.selected else 1.6)  # 1 px: the rasteriser's fast path
        pen = QPen(self.color.lighter(130) if self.selected else self.color, width)
        pen.setCosmetic(True)
        if self.inst.source == "model":
            pen.setStyle(Qt.PenStyle.DashLine)
        # fill without antialiasing (its edge lies under the outline), outline with it:
        # about half the cost of one antialiased filled+stroked polygon
        if self.fill_opacity > 0:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(fill))
            self._draw_shape(painter)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, not self.fast)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        self._draw_shape(painter)
        if self.selected:
            self._paint_handles(painter)

    def _draw_shape(self, painter: QPainter) -> None:
        if self._simple:
            painter.drawPolygon(self._qpolys[0])
        else:
            painter.drawPath(self._path)

    def _paint_handles(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for color, width in ((QColor(20, 20, 20), HANDLE_PX + 2), (QColor(255, 255, 255), HANDLE_PX)):
            pen = QPen(color, width)
            pen.setCosmetic(True)
            pen.setCapStyle(Qt.PenCapStyle.SquareCap)
            painter.setPen(pen)
            painter.drawPoints(self._handles)
        if self.hover_vertex is not None:
            p, k = self.hover_vertex
            if p < len(self._vertices) and k < len(self._vertices[p]):
                x, y = self._vertices[p][k]
                pen = QPen(self.color, HANDLE_PX * 1.6)
                pen.setCosmetic(True)
                pen.setCapStyle(Qt.PenCapStyle.SquareCap)
                painter.setPen(pen)
                painter.drawPoint(QPointF(float(x), float(y)))
