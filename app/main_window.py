"""The main window: project open/new, image list, canvas, class and instance panels,
menus (File, Edit, View, Tools, Model, Help), import/export and pre-labeling.

Ownership: one :class:`LabelDocument` per visited image (kept for the session so
undo survives image switches; their stacks live in a QUndoGroup), one AutoSaver
following the image on screen, one ImageCache decoding pixels off the GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence, QUndoGroup
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import commands, open_marker
from app.autosave import AutoSaver
from app.canvas import CanvasView, Tool
from app.class_colors import project_colors
from app.document import LabelDocument
from app.image_cache import ImageCache
from app.image_list import STATUS_TEXT, ImageFilter, ImageListModel, PathRole, Status, review_flagged
from app.key_guard import KeyGuard
from app.new_project import NewProjectDialog
from app.panels import ClassPanel, InstancePanel
from app.settings import AppSettings
from app.shortcuts import SHORTCUTS, ShortcutsDialog
from app.theme import apply_theme, icon, set_class_colors
from app.transfer import EXPORT_KINDS, IMPORT_KINDS
from app.window_classes import ClassActions
from app.window_segment import SegmentActions
from app.window_tasks import BackgroundActions
from app.workers import Task, run_task
from core import __version__
from core.annotation import ImageAnnotation
from core.errors import UserFacingError
from core.image_state import set_done
from core.proposals import proposals_path


GUI_LOCK_WAIT_S = 0.3  # the GUI thread never waits longer for the project lock

class MainWindow(ClassActions, BackgroundActions, SegmentActions, QMainWindow):
    image_shown = Signal(object)  # Path of the image now on the canvas
    project_opened = Signal(object)  # core.project.Project (panels of other rooms follow it)

    def __init__(self, settings: AppSettings | None = None):
        super().__init__()
        self.settings = settings if settings is not None else AppSettings()
        self.project = None
        self.docs: dict[Path, LabelDocument] = {}
        self.doc: LabelDocument | None = None
        self.current_class = 0
        self.recent_classes: list[int] = []
        self.class_picker = None
        self.job_docks: list[QDockWidget] = []  # train / review / export / live (add_panel)
        self.model_path: Path | None = None
        self.task: Task | None = None
        self.undo_group = QUndoGroup(self)
        self.images = ImageCache(parent=self)
        self.images.loaded.connect(self._image_loaded)
        self.images.failed.connect(self._image_failed)
        self.autosaver = AutoSaver(self._save_ann, self._load_ann, parent=self, lock=self._project_lock)
        self.autosaver.saved.connect(self._doc_saved)
        self.autosaver.reloaded.connect(self._doc_reloaded)
        self.autosaver.failed.connect(lambda d, msg: self._error(f"Could not save {d.label_path}: {msg}"))
        self.setWindowTitle("dfine-studio[*]")
        self.setWindowIcon(icon("app", "#3d8bfd"))
        self.setDockNestingEnabled(True)
        self._key_guard = KeyGuard(self)  # keys typed in a field or list never become shortcuts
        QApplication.instance().installEventFilter(self._key_guard)
        self._build_canvas()
        self._build_docks()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._build_statusbar()
        self._set_enabled(False)
        self._update_hint()
        self.resize(1400, 880)

    # ================================================================== construction
    def _build_canvas(self) -> None:
        self.canvas = CanvasView()
        self.canvas.selection_changed.connect(self._canvas_selection)
        self.canvas.tool_changed.connect(self._tool_changed)
        self.canvas.zoom_changed.connect(lambda s: self.zoom_label.setText(f"{s * 100:.0f}%"))
        self.canvas.cursor_moved.connect(lambda x, y: self.pos_label.setText(f"x {x:.0f}  y {y:.0f}"))
        self.canvas.status_message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.canvas.context_menu_requested.connect(self._context_menu)
        self.canvas.shape_drawn.connect(self._shape_drawn)
        self.canvas.box_prompt.connect(self._box_prompt)
        self.canvas.point_prompt.connect(self._point_prompt)
        self.canvas.stroke_done.connect(self._stroke_done)
        self._build_segment_tools()
        self.empty = QLabel("Open a project (File → Open) or create one (File → New).")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setObjectName("emptyHint")
        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.empty, 1)
        self.canvas.hide()
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        # images
        files = QWidget()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search images…")
        self.search.setClearButtonEnabled(True)
        self.status_filter = QComboBox()
        self.status_filter.addItem("All images", None)
        for st in Status:
            self.status_filter.addItem(STATUS_TEXT[st].capitalize(), int(st))
        self.image_view = QListView()
        self.image_view.setObjectName("imageList")
        self.image_view.setUniformItemSizes(True)  # no per-row size query: 10k rows stay lazy
        self.image_view.setIconSize(QSize(10, 10))
        self.image_count = QLabel()
        self.image_count.setObjectName("muted")
        lay = QVBoxLayout(files)
        lay.setContentsMargins(6, 6, 6, 6)
        row = QHBoxLayout()
        row.addWidget(self.search, 1)
        row.addWidget(self.status_filter)
        lay.addLayout(row)
        lay.addWidget(self.image_view, 1)
        lay.addWidget(self.image_count)
        self.files_dock = self._dock("Images", files, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.list_model: ImageListModel | None = None
        self.proxy = ImageFilter(self)
        self.image_view.setModel(self.proxy)
        self.search.textChanged.connect(self._filter_changed)
        self.status_filter.currentIndexChanged.connect(self._filter_changed)
        self.image_view.selectionModel().currentChanged.connect(self._row_activated)
        # classes
        self.class_panel = ClassPanel()
        self.class_panel.class_picked.connect(self.pick_class)
        self.class_panel.add_requested.connect(self.add_class)
        self.class_panel.rename_requested.connect(self.rename_class)
        self.class_panel.merge_requested.connect(self.merge_class)
        self.class_panel.delete_requested.connect(self.delete_class)
        self.class_panel.visibility_changed.connect(self.canvas.set_hidden_classes)
        self.classes_dock = self._dock("Classes", self.class_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        # instances + display settings
        inst = QWidget()
        self.instance_panel = InstancePanel()
        self.instance_panel.selection_changed.connect(lambda rows: self.canvas.set_selection(rows))
        self.instance_panel.visibility_toggled.connect(self._toggle_visibility)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(self.settings.fill_opacity)
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.crosshair = QCheckBox("Crosshair")
        self.crosshair.setChecked(True)
        self.crosshair.toggled.connect(self._crosshair_changed)
        lay = QVBoxLayout(inst)
        lay.setContentsMargins(0, 0, 0, 6)
        lay.addWidget(self.instance_panel, 1)
        row = QHBoxLayout()
        row.setContentsMargins(6, 0, 6, 0)
        row.addWidget(QLabel("Mask fill"))
        row.addWidget(self.opacity, 1)
        row.addWidget(self.crosshair)
        lay.addLayout(row)
        self.instances_dock = self._dock("Instances", inst, Qt.DockWidgetArea.RightDockWidgetArea)
        self.canvas.set_fill_opacity(self.opacity.value() / 100)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, key: str | None, text: str, slot, icon_name: str | None = None,
                checkable: bool = False, canvas_only: bool = False) -> QAction:
        """A menu/toolbar action. ``canvas_only``: its shortcut acts only while the canvas has focus
        (edits and tools), so a key typed in a list or field can never become an edit."""
        act = QAction(text, self)
        if icon_name:
            act.setIcon(icon(icon_name))
            act.setProperty("icon_name", icon_name)
        if key and key in SHORTCUTS:
            keys = SHORTCUTS[key][0]
            act.setShortcuts([QKeySequence(k) for k in keys if k != "Esc"])
            act.setToolTip(f"{text.replace('&', '').rstrip('…')} ({keys[0]})")
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        if canvas_only:
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.canvas.addAction(act)
        else:
            self.addAction(act)  # shortcuts work while the toolbar is hidden
        return act

    def _build_actions(self) -> None:
        a = self._action
        self.act_new = a("new", "&New project…", self.new_project_dialog, "new")
        self.act_open = a("open", "&Open project…", self.open_project_dialog, "open")
        self.act_save = a("save", "&Save", self.save_now, "save")
        self.act_next = a("next", "&Next image", lambda: self.step(+1), "next")
        self.act_prev = a("prev", "&Previous image", lambda: self.step(-1), "prev")
        self.act_select = a("select", "&Select / edit", lambda: self.canvas.set_tool(Tool.SELECT), "select", True, canvas_only=True)
        self.act_polygon = a("polygon", "&Polygon", lambda: self.canvas.set_tool(Tool.POLYGON), "polygon", True, canvas_only=True)
        self.act_box = a("box", "&Box", lambda: self.canvas.set_tool(Tool.BOX), "box", True, canvas_only=True)
        self.act_grabcut = a("grabcut", "&GrabCut box → polygon", lambda: self.canvas.set_tool(Tool.GRABCUT),
                             "wand", True, canvas_only=True)
        self.act_model_box = a("model_box", "Segment box with &model", lambda: self.canvas.set_tool(Tool.MODEL_BOX),
                               "model-box", True, canvas_only=True)
        self.act_scissors = a("scissors", "Intelligent &scissors (outline snaps to edges)",
                              lambda: self.canvas.set_tool(Tool.SCISSORS), "scissors", True, canvas_only=True)
        self.act_sam = a("sam", "Click-to-segment (SA&M)", lambda: self.canvas.set_tool(Tool.SAM), "sam", True,
                         canvas_only=True)
        self.act_choose_sam = a(None, "Choose SA&M model…", self.choose_sam_dialog)
        self.act_brush = a("brush", "B&rush (paint the selected mask)", lambda: self.canvas.set_tool(Tool.BRUSH),
                           "brush", True, canvas_only=True)
        self.act_eraser = a("eraser", "&Eraser (erase from the selected mask)",
                            lambda: self.canvas.set_tool(Tool.ERASER), "eraser", True, canvas_only=True)
        self.act_brush_bigger = a("brush_bigger", "Bigger brush", lambda: self.canvas.set_brush_px(
            self.canvas.brush_px * 1.25), canvas_only=True)
        self.act_brush_smaller = a("brush_smaller", "Smaller brush", lambda: self.canvas.set_brush_px(
            self.canvas.brush_px / 1.25), canvas_only=True)
        tools = QActionGroup(self)
        for act in (self.act_select, self.act_polygon, self.act_box, self.act_grabcut, self.act_model_box,
                    self.act_scissors, self.act_sam, self.act_brush, self.act_eraser):
            tools.addAction(act)
        self.act_select.setChecked(True)
        self.act_delete = a("delete", "&Delete", self.canvas.delete_selection, "delete", canvas_only=True)
        self.act_hide = a("hide", "&Hide selected / show hidden", self.toggle_hidden, "eye", canvas_only=True)
        self.act_lock = a("lock", "&Lock selected / unlock all", self.toggle_locked, None, canvas_only=True)
        self.act_accept = a("accept", "&Accept model proposals", self.accept_proposals, "accept")
        self.act_fit = a("fit", "&Fit to window", self.canvas.fit, "fit", canvas_only=True)
        self.act_zoom_in = a("zoom_in", "Zoom &in", lambda: self.canvas.zoom_by(1.25), "zoom-in")
        self.act_zoom_out = a("zoom_out", "Zoom &out", lambda: self.canvas.zoom_by(0.8), "zoom-out")
        self.act_done = a("done", "Mark image &done / not done", self.toggle_done, "done")
        self.act_search = a("search", "&Find image…", lambda: (self.search.setFocus(), self.search.selectAll()))
        self.act_shortcuts = a("shortcuts", "&Keyboard shortcuts", self.show_shortcuts, "keyboard")
        self.act_predict = a("predict", "&Predict this image", lambda: self.predict_current(), "predict")
        self.act_predict_all = a(None, "Predict all &unlabelled", lambda: self.predict_unlabelled())
        self.act_choose_model = a(None, "&Choose model…", self.choose_model_dialog)
        self.act_undo_classes = a(None, "Undo last &class edit", self.undo_class_edit)
        self.act_pick_class = a("pick_class", "Pick c&lass…", lambda: self.open_class_picker(), "tag",
                                canvas_only=True)
        self.act_ask_class = a(None, "As&k class after drawing", lambda _on: None, checkable=True)
        self.act_ask_class.setChecked(self.settings.ask_class_after_draw)
        self.act_ask_class.toggled.connect(self._ask_class_toggled)
        self.act_show_names = a("names", "Show class &names", lambda _on: None, checkable=True)
        self.act_show_names.setChecked(self.settings.show_class_names)
        self.act_show_names.toggled.connect(self._show_names_toggled)  # setChecked included
        self.canvas.set_show_names(self.act_show_names.isChecked())
        # Undo: the image's own undo, or the last class edit when that is the last thing done
        # (Ctrl+Z and Edit → Undo do the same, and the menu says which)
        self.class_edit_last: str | None = None
        self._undo_kept_message = False
        self._class_edit_at = (0, 0)  # (active stack, its index) when the class edit ended
        self.act_undo = QAction("&Undo", self)
        self.act_undo.triggered.connect(self.undo)
        self.undo_group.canUndoChanged.connect(lambda _on: self._sync_undo_action())
        self.undo_group.undoTextChanged.connect(lambda _t: self._sync_undo_action())
        self.undo_group.indexChanged.connect(lambda _i: self._image_edited())
        self._sync_undo_action()
        self.act_undo.setShortcuts([QKeySequence(k) for k in SHORTCUTS["undo"][0]])
        self.act_undo.setIcon(icon("undo"))
        self.act_undo.setProperty("icon_name", "undo")
        self.act_redo = self.undo_group.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence(k) for k in SHORTCUTS["redo"][0]])
        self.act_redo.setIcon(icon("redo"))
        self.act_redo.setProperty("icon_name", "redo")
        for act in (self.act_undo, self.act_redo):
            self.addAction(act)
        self.class_keys = []
        for i in range(9):
            act = QAction(f"Class {i + 1}", self)
            act.setShortcut(QKeySequence(str(i + 1)))
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)  # canvas focus only
            act.triggered.connect(lambda _=False, k=i: self.pick_class(k, relabel=True))
            self.canvas.addAction(act)
            self.class_keys.append(act)
        self.undo_group.cleanChanged.connect(lambda clean: self.setWindowModified(not clean))

    def undo(self) -> None:
        if self.canvas.tool == Tool.SCISSORS and self.scissors.drawing:
            self.scissors.pop()  # while drawing, each anchor is one undo step
        elif self.class_edit_last is not None:
            self.undo_class_edit()
        else:
            self.undo_group.undo()

    def _undo_position(self) -> tuple[int, int]:
        stack = self.undo_group.activeStack()
        return (id(stack), stack.index()) if stack is not None else (0, 0)

    def _image_edited(self) -> None:
        """An edit (or undo) on an image after a class edit makes that the last thing done, so
        Ctrl+Z undoes it instead; switching images does not."""
        if self.class_edit_last is None or self.task is not None:
            return
        now = self._undo_position()
        if now[0] != self._class_edit_at[0]:  # another image on screen
            self._class_edit_at = now
        elif now[1] != self._class_edit_at[1]:
            self.class_edit_last = None
            self._sync_undo_action()

    def _sync_undo_action(self) -> None:
        scissors = getattr(self, "scissors", None)
        if scissors is not None and scissors.drawing and self.canvas.tool == Tool.SCISSORS:
            self.act_undo.setText("&Undo scissors point")
            self.act_undo.setEnabled(True)
        elif self.class_edit_last is not None:
            self.act_undo.setText(f"&Undo {self.class_edit_last}")
            self.act_undo.setEnabled(True)
        else:
            text = self.undo_group.undoText()
            self.act_undo.setText(f"&Undo {text}" if text else "&Undo")
            self.act_undo.setEnabled(self.undo_group.canUndo())

    def _build_menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.act_new, self.act_open])
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        m.addAction(self.act_save)
        m.addSeparator()
        imp = m.addMenu("&Import")

        for kind, text in IMPORT_KINDS.items():
            imp.addAction(text, lambda k=kind: self.import_dialog(k))
        exp = m.addMenu("&Export labels")
        for kind, text in EXPORT_KINDS.items():
            exp.addAction(text, lambda k=kind: self.export_dialog(k))
        self.import_menu, self.export_menu = imp, exp
        m.addSeparator()
        m.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)
        m = mb.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addActions([self.act_delete, self.act_hide, self.act_lock, self.act_accept])
        m.addSeparator()
        m.addAction(self.act_done)
        m.addSeparator()
        m.addAction(self.act_undo_classes)
        m = mb.addMenu("&View")
        m.addActions([self.act_fit, self.act_zoom_in, self.act_zoom_out])
        m.addSeparator()
        m.addAction(self.act_show_names)
        m.addSeparator()
        m.addActions([self.act_prev, self.act_next, self.act_search])
        m.addSeparator()
        theme = m.addMenu("&Theme")
        for mode in ("system", "dark", "light"):
            theme.addAction(mode.capitalize(), lambda md=mode: self.set_theme(md))
        m.addSeparator()
        self.panels_menu = m.addMenu("&Panels")
        self.panels_menu.aboutToShow.connect(self._sync_panel_actions)
        for dock in (self.files_dock, self.classes_dock, self.instances_dock):
            self.panels_menu.addAction(self._panel_action(dock))
        m = mb.addMenu("&Tools")
        m.addActions([self.act_select, self.act_polygon, self.act_box, self.act_grabcut, self.act_model_box,
                      self.act_scissors, self.act_sam, self.act_choose_sam])
        m.addActions([self.act_brush, self.act_eraser, self.act_brush_bigger, self.act_brush_smaller])
        m.addSeparator()
        m.addActions([self.act_pick_class, self.act_ask_class])
        m = mb.addMenu("&Model")
        m.addActions([self.act_choose_model, self.act_predict, self.act_predict_all])
        self.model_menu = m
        m = mb.addMenu("&Help")
        m.addAction(self.act_shortcuts)
        m.addAction("&About dfine-studio", self.about)
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(20, 20))
        tb.addActions([self.act_open, self.act_save])
        tb.addSeparator()
        tb.addActions([self.act_prev, self.act_next])
        tb.addSeparator()
        tb.addActions([self.act_select, self.act_polygon, self.act_box, self.act_grabcut, self.act_model_box,
                       self.act_scissors, self.act_sam, self.act_brush, self.act_eraser])
        tb.addSeparator()
        tb.addActions([self.act_undo, self.act_redo, self.act_delete])
        tb.addSeparator()
        tb.addActions([self.act_zoom_out, self.act_fit, self.act_zoom_in])
        tb.addSeparator()
        tb.addActions([self.act_predict, self.act_accept, self.act_done])
        self.toolbar = tb

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        self.pos_label = QLabel()
        self.pos_label.setMinimumWidth(120)
        self.zoom_label = QLabel()
        self.zoom_label.setMinimumWidth(56)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.cancel_button = QToolButton()
        self.cancel_button.setIcon(icon("close"))
        self.cancel_button.setProperty("icon_name", "close")
        self.cancel_button.setToolTip("Cancel")
        self.cancel_button.setAutoRaise(True)
        self.cancel_button.clicked.connect(self.cancel_task)
        self.cancel_button.hide()
        # the first-start hint: what to do first, in one line, until the person has labelled an image
        self.hint_label = QLabel()
        self.hint_label.setObjectName("firstStartHint")
        sb.addWidget(self.hint_label, 1)
        self.shared_label = QLabel("Also open in another window")
        self.shared_label.setObjectName("muted")
        self.shared_label.hide()
        for w in (self.shared_label, self.progress, self.cancel_button, self.pos_label, self.zoom_label):
            sb.addPermanentWidget(w)

    def _set_enabled(self, on: bool) -> None:
        for act in (self.act_save, self.act_next, self.act_prev, self.act_select, self.act_polygon, self.act_box,
                    self.act_grabcut, self.act_model_box, self.act_scissors, self.act_sam, self.act_choose_sam,
                    self.act_done, self.act_brush, self.act_eraser,
                    self.act_brush_bigger, self.act_brush_smaller,
                    self.act_delete, self.act_hide, self.act_lock, self.act_accept, self.act_fit, self.act_zoom_in,
                    self.act_zoom_out, self.act_predict, self.act_predict_all, self.act_choose_model,
                    self.act_undo_classes, self.act_pick_class, *self.class_keys):
            act.setEnabled(on)
        self.import_menu.setEnabled(on)
        self.export_menu.setEnabled(on)

    # ================================================================== project
    def open_project(self, root: Path | str) -> bool:
        from core.project import Project

        try:
            # absolute root: image paths from a relative root would not round-trip through
            # Project.load_annotation (it prefixes relative paths with the image folder)
            project = Project.open(Path(root).expanduser().resolve())
        except UserFacingError as exc:
            self._error(str(exc))
            return False
        self.close_project()
        self._announce_other_windows(project.root)
        project.lock_wait_s = GUI_LOCK_WAIT_S  # every store call from this window: no long waits
        self.project = project
        self.settings.add_recent_project(project.root)
        self.model_path = self._remembered_model()
        paths = project.image_paths()
        self.list_model = ImageListModel(paths, project.label_path, self,
                                         proposals_path=lambda image: proposals_path(project, image))
        try:
            from core.image_state import read_done

            done = read_done(project.root)
            self.list_model.done = {p for p in paths if project.rel_image(p) in done}
        except UserFacingError as exc:
            self._error(f"{exc}\nDone marks are not shown; the file is left untouched.", modal=False)
        self.proxy.setSourceModel(self.list_model)
        self.image_view.setModel(self.proxy)
        self.image_view.selectionModel().currentChanged.connect(self._row_activated)
        self.current_class = 0
        self._class_filter_name = None
        self.apply_class_colors()
        self.class_panel.set_classes(project.class_names, 0)
        self.fill_list_filters()
        self.canvas.class_names = list(project.class_names)
        self.canvas.set_hidden_classes(set())
        self.recent_classes = self._remembered_recent(project)
        self._set_enabled(True)
        self._update_count()
        self.empty.setVisible(not paths)
        self.canvas.setVisible(bool(paths))
        if not paths:
            self.empty.setText(f"{project.image_dir} has no images yet.\nCopy images there or use File → Import.")
        # review flags are read in the background (files can be large)
        run_task(lambda _t: review_flagged(project), on_done=lambda names: self._flags_loaded(names, project),
                 owner=self)
        if paths:
            self.select_row(0)
        self._update_title()
        self._update_hint()
        self.project_opened.emit(project)
        return True

    HINT_NO_PROJECT = ("First: File → New project… (a folder and your class names), then copy images into "
                       "its images/ folder — or File → Open project…")
    HINT_NO_IMAGES = "First: copy images into the project's images/ folder, or File → Import"
    HINT_LABEL = ("First: press P and click around an object (or R and drag a box); 1–9 pick the class, "
                  "D saves and goes to the next image, F1 lists every key")

    def _update_hint(self) -> None:
        """One line saying what to do first; gone once the person has labelled an image."""
        labelled = self.settings.hint_done
        if labelled:
            text = ""
        elif self.project is None:
            text = self.HINT_NO_PROJECT
        elif self.list_model is None or not self.list_model.paths:
            text = self.HINT_NO_IMAGES
        else:
            text = self.HINT_LABEL
        self.hint_label.setText(text)
        if text and self.statusBar().currentMessage():
            # a message is on the status line: stay hidden the way QStatusBar hides its normal
            # widgets (not explicitly), so it shows the hint again when the message ends
            self.hint_label.hide()
            self.hint_label.setAttribute(Qt.WidgetAttribute.WA_WState_ExplicitShowHide, False)
        else:
            self.hint_label.setVisible(bool(text))

    def _announce_other_windows(self, root: Path) -> None:
        """Say so when another window (this or another program instance) has the project open."""
        self._open_marker = open_marker.register(root)
        text = open_marker.describe(open_marker.others(root, self._open_marker))
        self.shared_label.setVisible(bool(text))
        self.shared_label.setToolTip(text)
        if text:
            self.statusBar().showMessage(text, 15000)

    def apply_class_colors(self, renamed: dict[str, str] | None = None) -> None:
        """Class colours by class name, from the project (app.class_colors)."""
        colors, problem = project_colors(self.project.root, list(self.project.class_names), renamed,
                                         lock_wait_s=GUI_LOCK_WAIT_S)
        set_class_colors(colors)
        if problem:
            self._error(problem, modal=False)

    def refresh_review_flags(self) -> None:
        """Re-read review flags (the review panel calls this after a decision)."""
        if self.project is not None:
            project = self.project
            run_task(lambda _t: review_flagged(project), on_done=lambda names: self._flags_loaded(names, project),
                     owner=self)

    def add_image(self, path: Path) -> None:
        """A new image in the project folder (e.g. from the live view): listed at once, nothing
        reopened (the current image, its selection and every undo history stay)."""
        if self.project is None:
            return
        if self.list_model is None or not self.list_model.paths:
            self.open_project(self.project.root)
            return
        self.list_model.add_path(Path(path))
        self._update_count()

    def goto_image(self, path: Path) -> bool:
        """Show ``path`` (e.g. from the review list), clearing filters that hide it."""
        if self.list_model is None:
            return False
        row = self.list_model.row_of(Path(path))
        if row < 0:
            return False
        idx = self.proxy.mapFromSource(self.list_model.index(row))
        if not idx.isValid():
            self.search.clear()
            self.status_filter.setCurrentIndex(0)
            idx = self.proxy.mapFromSource(self.list_model.index(row))
        self.select_row(idx.row())
        return True

    def add_panel(self, title: str, widget: QWidget, area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea
                  ) -> QDockWidget:
        """Dock a panel from another room (train / review / export / live); View → Panels toggles it."""
        dock = self._dock(title, widget, area)
        if not self.job_docks:
            self.panels_menu.addSeparator()
        self.job_docks.append(dock)
        self.panels_menu.addAction(self._panel_action(dock))
        return dock

    def _panel_action(self, dock: QDockWidget) -> QAction:
        """Show/hide a dock from View → Panels. Not Qt's toggleViewAction: Qt disables that for a
        dock without a close button, which is why the menu entries did nothing."""
        act = QAction(dock.windowTitle(), self)
        act.setCheckable(True)
        act.setChecked(not dock.isHidden())
        act.setData(dock)

        def toggled(on: bool) -> None:
            dock.setVisible(on)
            if on:
                dock.raise_()  # a tabbed dock comes to the front

        act.toggled.connect(toggled)
        return act

    def _sync_panel_actions(self) -> None:
        from PySide6.QtCore import QSignalBlocker

        for act in self.panels_menu.actions():
            dock = act.data()
            if isinstance(dock, QDockWidget):
                with QSignalBlocker(act):
                    act.setChecked(not dock.isHidden())

    def close_project(self) -> None:
        self.autosaver.save_current()
        self.autosaver.track(None)
        for doc in self.docs.values():
            self.undo_group.removeStack(doc.undo_stack)
        self.docs.clear()
        self.doc = None
        self.canvas.set_document(None)
        self.instance_panel.set_instances([], [], [], [])  # an empty next project showed the last image's
        self.images.clear()
        self.project = None
        open_marker.unregister(getattr(self, "_open_marker", None))
        self._open_marker = None
        self.shared_label.hide()

    def _flags_loaded(self, names: set[str], project) -> None:
        if project is self.project and self.list_model is not None and (names or self.list_model.flagged):
            self.list_model.set_flagged(names)
            self._update_count()

    def new_project_dialog(self) -> None:
        """A folder, then its class names, task and where the model will run (GPU / CPU)."""
        from core.project import Project

        folder = QFileDialog.getExistingDirectory(self, "Folder for the new project")
        if not folder:
            return
        dialog = NewProjectDialog(Path(folder), self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        names, task, target = dialog.values()
        try:
            Project.create(folder, names, task, deploy_target=target)
        except UserFacingError as exc:
            self._error(str(exc))
            return
        self.open_project(folder)

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project folder (with project.yaml)")
        if folder:
            self.open_project(folder)

    def _recent(self) -> list[str]:
        return [str(p) for p in self.settings.recent_projects()]

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self._recent():
            self.recent_menu.addAction(p, lambda path=p: self.open_project(path))

    # ================================================================== images
    def _filter_changed(self) -> None:
        st = self.status_filter.currentData()
        if st == "class?":  # "Has class…": the type-to-filter class picker, not a 90-entry list
            self._pick_filter_class()
            return
        self._filter_before = self.status_filter.currentIndex()
        self.proxy.set_text(self.search.text())
        if isinstance(st, str):
            self.proxy.set_kind(("class", int(st[6:])) if st.startswith("class:") else st)
        else:
            self.proxy.set_status(None if st is None else Status(st))
        self._update_count()
        self._reselect_current()

    def _reselect_current(self) -> None:
        """After a filter or search change the image on screen stays the highlighted row when it
        is listed (clearing the search used to leave no row highlighted)."""
        if self.doc is None or self.list_model is None:
            return
        idx = self.proxy.mapFromSource(self.list_model.index(self.list_model.row_of(self.doc.image_path)))
        if idx.isValid() and self.image_view.currentIndex() != idx:
            self.image_view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.image_view.scrollTo(idx)

    def _pick_filter_class(self) -> None:
        from PySide6.QtCore import QSignalBlocker

        from app.class_picker import ClassPicker

        with QSignalBlocker(self.status_filter):  # until a class is picked the filter is unchanged
            self.status_filter.setCurrentIndex(getattr(self, "_filter_before", 0))
        if self.project is None:
            return
        picker = ClassPicker(self.project.class_names, self.recent_classes, "Show images with class", self)
        picker.picked.connect(self.filter_by_class)
        self.filter_picker = picker
        picker.popup_at(self.status_filter.mapToGlobal(self.status_filter.rect().bottomLeft()))

    def filter_by_class(self, k: int) -> None:
        """List only the images labelled with class ``k`` (one "Has class: name" entry)."""
        if self.project is None or not 0 <= k < len(self.project.class_names):
            return
        self._class_filter_name = self.project.class_names[k]
        self.fill_list_filters(select=f"class:{k}")

    def fill_list_filters(self, select: object = ...) -> None:
        """The filter choices: statuses, done / not done, model proposals, the class chosen with
        "Has class…" (kept by name across class edits), and "Has class…" itself."""
        from PySide6.QtCore import QSignalBlocker

        current = self.status_filter.currentData() if select is ... else select
        names = list(self.project.class_names) if self.project else []
        chosen = getattr(self, "_class_filter_name", None)
        chosen_id = names.index(chosen) if chosen in names else None
        if isinstance(current, str) and current.startswith("class:"):
            current = f"class:{chosen_id}" if chosen_id is not None else None
        with QSignalBlocker(self.status_filter):
            self.status_filter.clear()
            self.status_filter.addItem("All images", None)
            for st in Status:
                self.status_filter.addItem(STATUS_TEXT[st].capitalize(), int(st))
            self.status_filter.addItem("Not done", "not_done")
            self.status_filter.addItem("Done", "done")
            self.status_filter.addItem("Has model proposals", "proposals")
            if chosen_id is not None:
                self.status_filter.addItem(f"Has class: {chosen}", f"class:{chosen_id}")
            if names:
                self.status_filter.addItem("Has class…", "class?")
            self.status_filter.setCurrentIndex(max(0, self.status_filter.findData(current)))
        self._filter_changed()

    def toggle_done(self) -> None:
        """Mark the image on screen done / not done (stored in .dfine/image_state.json)."""

        if self.doc is None or self.list_model is None:
            return
        path = self.doc.image_path
        done = path not in self.list_model.done
        try:
            set_done(self.project.root, [self.project.rel_image(path)], done, lock_wait_s=GUI_LOCK_WAIT_S)
        except (UserFacingError, OSError) as exc:
            self._error(f"Could not store the done mark: {exc}")
            return
        self.proxy.keep = str(path)  # stays listed (and current) until the person moves on
        self.list_model.set_done([path], done)
        self.statusBar().showMessage(f"{path.name}: {'done' if done else 'not done'}", 3000)
        self._update_count()

    def _update_count(self) -> None:
        if self.list_model is None:
            self.image_count.setText("")
            return
        total = self.list_model.rowCount()
        shown = self.proxy.rowCount()
        text = f"{shown} of {total} images" if shown != total else f"{total} images"
        done = len(self.list_model.done)
        self.image_count.setText(text + (f" · {done} done" if done else ""))

    def select_row(self, proxy_row: int) -> None:
        idx = self.proxy.index(proxy_row, 0)
        if idx.isValid():
            self.image_view.selectionModel().setCurrentIndex(
                idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.image_view.scrollTo(idx)

    def step(self, delta: int) -> None:
        """Next / previous image in the (filtered) list. From an image the filter does not list,
        it goes to the listed image after / before it in the folder order, not to the first."""
        n = self.proxy.rowCount()
        if n == 0:
            return
        here = self.image_view.currentIndex()
        path = self.doc.image_path if self.doc is not None else None
        if path is not None and (not here.isValid() or Path(self.proxy.data(here, PathRole)) != path):
            src = self.list_model.row_of(path)
            rows = [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(n)]
            after = [r for r, s in enumerate(rows) if (s > src if delta > 0 else s < src)]
            if after:
                self.select_row(after[0] if delta > 0 else after[-1])
            return
        self.select_row(min(max(here.row() + delta, 0), n - 1))

    def _row_activated(self, current, _previous=None) -> None:
        if current.isValid():
            self.show_image(Path(self.proxy.data(current, PathRole)))

    def _doc_for(self, path: Path) -> LabelDocument:
        doc = self.docs.get(path)
        if doc is not None and getattr(doc, "read_only", False):  # maybe fixed meanwhile: read again
            self.undo_group.removeStack(doc.undo_stack)
            del self.docs[path]
            doc = None
        if doc is None:
            label_path = self.project.label_path(path)
            try:
                ann = self._load_ann(path)  # labels and the model's proposals
                read_only = False
                self.list_model.refresh(path, error=False)
            except UserFacingError as exc:
                from core.data.images import image_size

                try:
                    w, h = image_size(path)
                except UserFacingError:
                    w, h = 1, 1
                ann = ImageAnnotation(path, w, h, [])
                read_only = True
                self.proxy.keep = str(path)  # picked from a filter: stays listed, no jump
                self.list_model.refresh(path, error=True)
                self._error(f"{exc}\nThe file is left untouched; fix it and reopen the image.", modal=False)
            doc = LabelDocument(ann, label_path, self)
            doc.read_only = read_only
            doc.structure_changed.connect(lambda d=doc: self._doc_structure(d))
            doc.instance_changed.connect(lambda i, d=doc: self._doc_instance(d, i))
            doc.visibility_changed.connect(lambda d=doc: self._doc_structure(d))
            self.undo_group.addStack(doc.undo_stack)
            self.docs[path] = doc
        return doc

    def show_image(self, path: Path) -> None:
        """Switch the canvas to ``path``: labels now, pixels when decoded (cache/worker)."""
        if self.project is None:
            return
        if self.doc is not None and self.doc.image_path == path:
            return
        self.canvas.cancel_draft()
        if self.proxy.keep not in (None, str(path)):
            # the image the person left may now leave the filtered list (re-filtered after this
            # switch, not inside the list's own current-row change)
            self.proxy.keep = None
            QTimer.singleShot(0, lambda: (self.proxy.refilter(), self._update_count()))
        doc = self._doc_for(path)
        self.autosaver.track(doc)  # saves the previous image first
        self.doc = doc
        self.undo_group.setActiveStack(doc.undo_stack)
        self.canvas.read_only = getattr(doc, "read_only", False)
        self.images.fit_box = self.canvas.fit_box()
        self.canvas.set_document(doc, self.images.request(path))
        self.banner.setVisible(self.canvas.read_only)
        if self.canvas.read_only:
            self.banner.setText(f"Label file {doc.label_path.name} has errors: shown without labels, "
                                "and it will not be overwritten.")
        self._doc_structure(doc)
        self._update_title()
        if self._focus_may_move_to_canvas():
            self.canvas.setFocus()
        row = self.image_view.currentIndex().row()
        self.images.prefetch([Path(self.proxy.data(self.proxy.index(r, 0), PathRole))
                              for r in (row + 1, row - 1, row + 2) if 0 <= r < self.proxy.rowCount()])
        self.image_shown.emit(path)
        self._segment_image_shown()

    def _focus_may_move_to_canvas(self) -> bool:
        """After an image switch the canvas takes focus only from where navigation happens (the
        canvas, the image list, the window itself); a search field, the class list or a panel keeps
        it, so the next keys stay text there (a filter that hides the current image switches images)."""
        focus = QApplication.focusWidget()
        return focus is None or focus is self or focus is self.canvas or focus is self.image_view

    def _image_loaded(self, path: Path, image) -> None:
        if self.doc is not None and self.doc.image_path == path:
            self.canvas.set_image(image)

    def _image_failed(self, path: Path, msg: str) -> None:
        if self.doc is not None and self.doc.image_path == path:
            self.statusBar().showMessage(f"Cannot read {path.name}: {msg}", 8000)

    def _update_title(self) -> None:
        if self.project is None:
            self.setWindowTitle("dfine-studio[*]")
            return
        img = f" — {self.doc.image_path.name}" if self.doc else ""
        self.setWindowTitle(f"{self.project.root.name}{img}[*] — dfine-studio")
        self.setWindowModified(self.doc is not None and self.doc.is_dirty())

    # ================================================================== documents / saving
    def _project_lock(self):
        """The project's one writer lock (a no-op context before a project is open). The GUI
        thread waits for it at most GUI_LOCK_WAIT_S: a busy lock (a class edit or import in
        another process) is a LockBusyError naming the holder, and autosave tries again later."""
        import contextlib

        return self.project.lock() if self.project is not None else contextlib.nullcontext()  # lock_wait_s set on open

    def _save_ann(self, ann: ImageAnnotation) -> None:
        self.project.save_annotation(ann)

    def _load_ann(self, path: Path) -> ImageAnnotation:
        # the editor shows the model's proposals beside the labels (dashed) until accepted
        return self.project.load_annotation(path, include_proposals=True)

    def _doc_saved(self, doc: LabelDocument) -> None:
        self.list_model.refresh(doc.image_path, error=False)
        if doc.instances and self.hint_label.isVisibleTo(self):  # labelled an image: the hint is done
            self.settings.hint_done = True
            self._update_hint()
        if doc is self.doc:
            self.setWindowModified(False)
        self.statusBar().showMessage(f"Saved {doc.label_path.name}", 2000)

    def _doc_reloaded(self, doc: LabelDocument, lost: bool) -> None:
        if getattr(doc, "read_only", False):  # the broken file was fixed on disk and read fine
            doc.read_only = False
            self.list_model.refresh(doc.image_path, error=False)
            if doc is self.doc:
                self.canvas.read_only = False
                self.banner.hide()
            self.statusBar().showMessage(f"{doc.label_path.name} was fixed and has been loaded; "
                                         "it can be edited again", 10000)
            return
        self.list_model.refresh(doc.image_path)
        msg = f"{doc.label_path.name} was changed by another program and has been reloaded"
        if lost:
            msg += " (your unsaved edits on this image were replaced)"
        self.statusBar().showMessage(msg, 10000)
        if doc is self.doc:
            self._update_title()

    def save_now(self) -> None:
        if self.doc is not None and not getattr(self.doc, "read_only", False):
            self.autosaver.save(self.doc)

    def _doc_structure(self, doc: LabelDocument) -> None:
        if doc is not self.doc:
            return
        self.drop_stale_prompts()
        names = self.project.class_names
        hidden = [doc.is_hidden(i) for i in range(len(doc.instances))]
        self.instance_panel.set_instances(doc.instances, names, hidden, self.canvas.selected)
        self.setWindowModified(doc.is_dirty())

    def _doc_instance(self, doc: LabelDocument, index: int) -> None:
        if doc is self.doc:
            self.drop_stale_prompts()
            self.instance_panel.update_row(index, doc.instances[index], self.project.class_names)
            self.setWindowModified(doc.is_dirty())

    def _canvas_selection(self, rows: list[int]) -> None:
        self.instance_panel.set_selection(rows)

    def _toggle_visibility(self, index: int, hidden: bool) -> None:
        if self.doc is not None and index < len(self.doc.instances):
            self.doc.set_hidden(index, hidden)
            self.canvas._update_visibility()  # a hidden instance leaves the selection

    def toggle_hidden(self) -> None:
        """H hides the selected instances and drops them from the selection (a hidden shape is
        never edited). With nothing selected it hides nothing: it shows every hidden instance
        of this image again (hidden shapes cannot be clicked, so this is the way back)."""
        if self.doc is None:
            return
        rows = list(self.canvas.selected)
        hidden = [i for i in range(len(self.doc.instances)) if self.doc.is_hidden(i)]
        if rows:
            for i in rows:
                self.doc.hidden.add(id(self.doc.instances[i]))
            message = f"Hid {len(rows)} instance(s); H with nothing selected shows them again"
        elif hidden:
            for i in hidden:
                self.doc.hidden.discard(id(self.doc.instances[i]))
            message = f"Showing {len(hidden)} hidden instance(s) again"
        else:
            message = "Select instances to hide them (H); nothing is hidden"
        self.doc.visibility_changed.emit()
        self.canvas._update_visibility()
        self.statusBar().showMessage(message, 4000)

    def toggle_locked(self) -> None:
        """Ctrl+L locks the selected instances (finished shapes: shown, never selected or edited,
        for this session); with nothing selected it unlocks every locked instance of this image."""
        if self.doc is None:
            return
        rows = list(self.canvas.selected)
        locked = [i for i in range(len(self.doc.instances)) if self.doc.is_locked(i)]
        if rows:
            self.doc.set_locked(rows, True)
            message = f"Locked {len(rows)} instance(s); Ctrl+L with nothing selected unlocks them"
        elif locked:
            self.doc.set_locked(locked, False)
            message = f"Unlocked {len(locked)} instance(s)"
        else:
            message = "Select instances to lock them (Ctrl+L); nothing is locked"
        self.canvas._update_visibility()
        self.statusBar().showMessage(message, 4000)

    def accept_proposals(self) -> None:
        if self.doc is None:
            return
        rows = self.canvas.selected or list(range(len(self.doc.instances)))
        cmd = commands.accept(self.doc, rows)
        if cmd is not None:
            self.doc.undo_stack.push(cmd)

    # ================================================================== view
    def _tool_changed(self, tool: Tool) -> None:
        {Tool.SELECT: self.act_select, Tool.POLYGON: self.act_polygon, Tool.BOX: self.act_box,
         Tool.GRABCUT: self.act_grabcut, Tool.MODEL_BOX: self.act_model_box, Tool.SCISSORS: self.act_scissors,
         Tool.SAM: self.act_sam, Tool.BRUSH: self.act_brush,
         Tool.ERASER: self.act_eraser}[tool].setChecked(True)

    def _show_names_toggled(self, on: bool) -> None:
        self.canvas.set_show_names(on)
        self.settings.show_class_names = on

    def _ask_class_toggled(self, on: bool) -> None:
        self.settings.ask_class_after_draw = on

    def _shape_drawn(self, index: int) -> None:
        """labelme habit: with "Ask class after drawing" on, the picker opens on the new shape."""
        if self.act_ask_class.isChecked():
            self.open_class_picker(title="Class of the new shape")

    def open_class_picker(self, title: str = "Pick class"):
        """Type-to-filter picker; the chosen class becomes current and relabels the selection."""
        from app.class_picker import ClassPicker

        if self.project is None:
            return None
        if getattr(self, "class_picker", None) is not None:
            self.class_picker.close()
        picker = ClassPicker(self.project.class_names, self.recent_classes, title, self)
        picker.picked.connect(lambda k: self.pick_class(k, relabel=True))
        picker.finished.connect(lambda _r: (self.activateWindow(), self.canvas.setFocus()))
        self.class_picker = picker
        cursor = self.canvas.mapFromGlobal(self.cursor().pos())
        inside = self.canvas.rect().contains(cursor)
        picker.popup_at(self.cursor().pos() if inside else self.canvas.mapToGlobal(self.canvas.rect().center()))
        return picker

    def _remembered_recent(self, project) -> list[int]:
        return self.settings.recent_classes_for(project.root, len(project.class_names))

    def _opacity_changed(self, v: int) -> None:
        self.canvas.set_fill_opacity(v / 100)
        self.settings.fill_opacity = v

    def _crosshair_changed(self, on: bool) -> None:
        self.canvas.show_crosshair = on
        self.canvas.viewport().update()

    def set_theme(self, mode: str) -> None:
        apply_theme(QApplication.instance(), mode)
        self.settings.theme = mode
        self.refresh_icons()
        self.canvas.resetCachedContent()

    def refresh_icons(self) -> None:
        """Re-tint every named icon for the current theme."""
        for obj in self.findChildren(QAction) + self.findChildren(QToolButton):
            name = obj.property("icon_name")
            if name:
                obj.setIcon(icon(name))

    def _context_menu(self, pos, rows: list[int]) -> None:
        from PySide6.QtWidgets import QMenu

        if self.project is None or self.doc is None:
            return
        menu = QMenu(self)
        cls = menu.addMenu("Change class")
        for k, n in enumerate(self.project.class_names):
            cls.addAction(n, lambda kk=k: self.pick_class(kk, relabel=True))
        menu.addActions([self.act_hide, self.act_lock, self.act_accept, self.act_delete])
        menu.popup(pos)

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self).exec()

    def about(self) -> None:

        QMessageBox.about(self, "About dfine-studio",
                          f"dfine-studio {__version__}\nLabel, train D-FINE-seg, review, export, run live.\n"
                          "Apache-2.0")

    # ================================================================== misc
    def _error(self, msg: str, modal: bool = True) -> None:
        self.statusBar().showMessage(msg.splitlines()[0], 10000)
        if modal and not QApplication.instance().property("no_modal_errors"):
            QMessageBox.warning(self, "dfine-studio", msg)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.task is not None:
            self.task.cancel()
        self.autosaver.save_current()
        open_marker.unregister(getattr(self, "_open_marker", None))
        self._open_marker = None
        self.settings.save_window(self)
        event.accept()
