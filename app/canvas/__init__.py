"""The labelling canvas: a QGraphicsView showing one image with its instances."""

from app.canvas.view import CanvasView, Tool

__all__ = ["CanvasView", "Tool"]
