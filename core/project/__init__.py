"""The project folder: config, images, the atomic label store, class edits, splits.

Layout (see DESIGN.md)::

    project.yaml  images/ (or image_root)  labels/<rel/path/stem>.txt (+ .parts.json sidecars)
    splits/train.txt, val.txt   groups.csv (optional)   runs/  exports/  review/
    .dfine/class_edit.json      journal of the last class edit (undo + crash recovery)

Why this shape: the label files are the user's work, so every write is atomic
(core.atomic_io), a malformed file is reported and never rewritten, and a class
edit that touches many files is journaled first so a crash half-way is rolled back
on the next open and the last edit can be undone in one step.

One job per module: ``project`` (open/create, paths, images), ``store`` (one image's labels and
proposals), ``splits`` (train/val and groups), ``classes`` (class edits), ``remap`` (class ids
in label rows), ``journal`` (the class-edit journal), ``labels`` (one label file),
``template`` (project.yaml text). The public names are importable from ``core.project``.
"""

from core.project.journal import HISTORY_DIR, HISTORY_LIMIT, JOURNAL_DIR, ClassEditJournal, check_journal
from core.project.labels import label_files, shared_label_message
from core.project.project import DEPLOY_TARGETS, DeployTarget, Project, as_project, newest_run
from core.project.remap import changed_rows, remap_label_files, remap_text, undo_text
from core.project.splits import GROUPS_FILE, Split
from core.project.template import TEMPLATE, set_section_value, set_top_level_value

__all__ = [
    "DEPLOY_TARGETS", "GROUPS_FILE", "HISTORY_DIR", "HISTORY_LIMIT", "JOURNAL_DIR", "TEMPLATE", "ClassEditJournal",
    "DeployTarget", "Project", "Split", "as_project", "changed_rows", "check_journal", "label_files", "newest_run",
    "remap_label_files", "remap_text", "set_section_value", "set_top_level_value", "shared_label_message", "undo_text",
]
