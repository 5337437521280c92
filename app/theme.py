"""Look and feel: dark/light palette following the system, the style sheet, SVG icons
tinted for the theme, and the class colours used everywhere in the GUI.

Why tinted SVGs: one monochrome icon set (resources/icons, ``currentColor``) serves
both themes and stays sharp at any device pixel ratio.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from app.palette import class_rgb

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICONS = RESOURCES / "icons"

ERROR_COLOR = "#f85149"  # errors in status lines, the image list and the eraser cursor


def show_status(label, text: str, error: bool = False) -> None:
    """A panel's one status line: the text, in the error colour when it is one."""
    label.setText(text)
    label.setStyleSheet(f"color: {ERROR_COLOR};" if error else "")


DARK = {"bg": "#1e1f22", "panel": "#2b2d30", "alt": "#313338", "fg": "#dfe1e5", "muted": "#9da0a8",
        "border": "#43454a", "accent": "#3d8bfd", "accent_fg": "#ffffff", "canvas": "#141517",
        "sel": "#2e436e"}
LIGHT = {"bg": "#f5f6f8", "panel": "#ffffff", "alt": "#eef0f3", "fg": "#1f2328", "muted": "#5f6670",
         "border": "#d0d4da", "accent": "#2f6feb", "accent_fg": "#ffffff", "canvas": "#d9dce1",
         "sel": "#cfe0ff"}


_class_table: list[tuple[int, int, int]] = []  # colour of each class id of the open project, by name


def set_class_colors(rgbs: list[tuple[int, int, int]]) -> None:
    """The open project's class colours (app.class_colors: bound to the class name, so a merge,
    delete or rename never recolours the other classes)."""
    _class_table[:] = list(rgbs)


def class_color(class_id: int) -> QColor:
    """The class's colour: the open project's colour for that class's name, else (no project
    yet) the index palette, distinct for 100+ classes (app.palette)."""
    if 0 <= class_id < len(_class_table):
        return QColor(*_class_table[class_id])
    return QColor(*class_rgb(class_id))


def system_is_dark(app: QGuiApplication | None = None) -> bool:
    """The OS colour scheme when Qt knows it (6.5+), else the palette's window lightness."""
    app = app or QGuiApplication.instance()
    try:
        scheme = app.styleHints().colorScheme()
        if scheme == Qt.ColorScheme.Dark:
            return True
        if scheme == Qt.ColorScheme.Light:
            return False
    except AttributeError:
        pass
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


_current: dict[str, str] = dict(DARK)


def colors() -> dict[str, str]:
    return _current


def _palette(c: dict[str, str]) -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    p.setColor(role.Window, QColor(c["bg"]))
    p.setColor(role.WindowText, QColor(c["fg"]))
    p.setColor(role.Base, QColor(c["panel"]))
    p.setColor(role.AlternateBase, QColor(c["alt"]))
    p.setColor(role.Text, QColor(c["fg"]))
    p.setColor(role.Button, QColor(c["panel"]))
    p.setColor(role.ButtonText, QColor(c["fg"]))
    p.setColor(role.Highlight, QColor(c["accent"]))
    p.setColor(role.HighlightedText, QColor(c["accent_fg"]))
    p.setColor(role.ToolTipBase, QColor(c["panel"]))
    p.setColor(role.ToolTipText, QColor(c["fg"]))
    p.setColor(role.PlaceholderText, QColor(c["muted"]))
    for grp_role in (role.Text, role.ButtonText, role.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, grp_role, QColor(c["muted"]))
    return p


def apply_theme(app: QApplication, mode: str = "system") -> str:
    """Apply 'dark' | 'light' | 'system'; returns the mode used."""
    dark = system_is_dark(app) if mode == "system" else mode == "dark"
    _current.clear()
    _current.update(DARK if dark else LIGHT)
    app.setStyle("Fusion")
    app.setPalette(_palette(_current))
    qss = (RESOURCES / "style.qss").read_text(encoding="utf-8")
    qss = qss.replace("@icons", ICONS.as_posix())
    for key, value in sorted(_current.items(), key=lambda kv: -len(kv[0])):  # @accent_fg before @accent
        qss = qss.replace(f"@{key}", value)
    app.setStyleSheet(qss)
    icon.cache_clear()
    return "dark" if dark else "light"


@lru_cache(maxsize=256)
def icon(name: str, color: str | None = None) -> QIcon:
    """SVG icon ``resources/icons/<name>.svg`` tinted with the theme's text colour,
    rendered at 1x and 2x so high-DPI screens get crisp pixels."""
    path = ICONS / f"{name}.svg"
    if not path.exists():
        return QIcon()
    text = path.read_text(encoding="utf-8")
    out = QIcon()
    # the disabled look is drawn, not left to the style: Qt's generated one (a greyed copy of a light
    # icon) looked enabled on the dark theme
    for mode, tint, opacity in ((QIcon.Mode.Normal, color or _current["fg"], 1.0),
                                (QIcon.Mode.Disabled, _current["muted"], 0.45)):
        renderer = QSvgRenderer(QByteArray(text.replace("currentColor", tint).encode("utf-8")))
        for size in (16, 24, 32, 48, 64):
            pm = QPixmap(size, size)
            pm.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pm)
            renderer.render(painter, QRectF(0, 0, size, size))
            painter.end()
            if opacity < 1.0:  # fade after rendering (the SVG renderer resets the painter's opacity)
                faded = QPixmap(size, size)
                faded.fill(Qt.GlobalColor.transparent)
                painter = QPainter(faded)
                painter.setOpacity(opacity)
                painter.drawPixmap(0, 0, pm)
                painter.end()
                pm = faded
            out.addPixmap(pm, mode)
    return out


def swatch(color: QColor, size: int = 14) -> QIcon:
    """A rounded colour chip for class lists."""
    pm = QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2.0)
    pm.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pm)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(color)
    painter.setPen(color.darker(140))
    painter.drawRoundedRect(QRectF(1, 1, size - 2, size - 2), 3, 3)
    painter.end()
    return QIcon(pm)
