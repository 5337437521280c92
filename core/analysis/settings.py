"""What the label-mistake finder counts as evidence: its thresholds in one place (see
core.analysis.find_mistakes for how each is used)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AnalysisConfig:
    conf: float = 0.5  # uncalibrated threshold: a prediction this confident is evidence of an object
    support_score: float = 0.05  # weaker predictions are ignored
    assoc_iou: float = 0.1  # a prediction and a label overlapping more than this are about one object
    class_iou: float = 0.5  # wrong class needs a matched prediction overlapping at least this much
    good_iou: float = 0.7  # below this (or 0.85 x the class's typical IoU) the outline is off
    duplicate_iou: float = 0.8  # two labels overlapping more than this are one object labelled twice
    min_area: float = 4.0  # px^2; smaller labels are degenerate
    spurious_weight: float = 0.75  # a model may just miss an object: spurious ranks below firm evidence
    # an unsupported label whose outline follows an image edge like the project's labels do
    # (core.analysis.outline_edges, calibrated on the project itself) is likely an object the model misses
    edge_check: bool = True
