"""Keys typed into a text field or a list stay there.

Single-key shortcuts (D/A to switch images, 1-9, P, R, ...) are window-wide QActions, and Qt
offers every key press to shortcuts first unless the focused widget claims it. Line edits claim
printable keys, but lists, spin boxes and combo boxes do not, so "dog" typed into the class list
used to switch images. This filter claims, for any such widget, every key without Ctrl/Alt/Meta
that the widget can use (text, Del, Backspace, arrows, Home/End, Space, Return): the widget gets it
as a normal key press (type-ahead search, editing) and the shortcut never fires. Keys with Ctrl/Alt
(Ctrl+Z, Ctrl+S) and function keys (F1) still reach the window's actions.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

TYPING_WIDGETS = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit, QAbstractItemView, QComboBox)
COMMAND_MODIFIERS = (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                     | Qt.KeyboardModifier.MetaModifier)
EDIT_KEYS = {Qt.Key.Key_Delete, Qt.Key.Key_Backspace, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up,
             Qt.Key.Key_Down, Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown,
             Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter}


def typing_widget(widget: QObject | None) -> bool:
    """A widget (or the viewport of one) that uses plain keys itself."""
    while isinstance(widget, QWidget):
        if isinstance(widget, TYPING_WIDGETS):
            return True
        if widget.objectName() == "qt_scrollarea_viewport" or isinstance(widget.parent(), QComboBox):
            widget = widget.parent()
            continue
        return False
    return False


def keeps_key(event: QKeyEvent) -> bool:
    """A plain key (no Ctrl/Alt/Meta) that a text field or list can use."""
    if event.modifiers() & COMMAND_MODIFIERS:
        return False
    text = event.text()
    return (bool(text) and text.isprintable()) or Qt.Key(event.key()) in EDIT_KEYS


class KeyGuard(QObject):
    """Application-wide event filter; install once with ``QApplication.instance().installEventFilter``."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.ShortcutOverride and typing_widget(watched) and keeps_key(event):
            event.accept()  # the key goes to the widget as a KeyPress, not to a shortcut
            return True
        return False
