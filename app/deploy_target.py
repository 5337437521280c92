"""Where the trained model will run (GPU / CPU): one combo box for the New project dialog and the
Train panel. Its data is a ``core.project.DEPLOY_TARGETS`` key; ``Project.create`` and
``Project.set_deploy_target`` turn it into ``model.mask_head`` and ``export.queries``."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QWidget

from core.project import DEPLOY_TARGETS

LABELS = {"gpu": "GPU", "cpu": "CPU"}
TOOLTIP = ("Where the trained model will run. GPU: the paper's mask head, every decoder query. CPU: the "
           "lighter cpu mask head (about half the latency, masks within noise of the paper's) and 100 "
           "decoder queries in the export. Saved in project.yaml (model.mask_head, export.queries); a run "
           "already started keeps its head.")


def deploy_target_box(parent: QWidget | None = None) -> QComboBox:
    """GPU (the template's pick, first) or CPU; ``currentData()`` is "gpu" or "cpu"."""
    box = QComboBox(parent)
    for target in DEPLOY_TARGETS:
        box.addItem(LABELS[target], target)
    box.setToolTip(TOOLTIP)
    return box
