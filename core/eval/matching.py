"""One-to-one matching of predictions to ground truth at a fixed IoU threshold.

Follows ArgoHA/D-FINE-seg's validator (Apache-2.0): pairs are taken greedily by
descending IoU regardless of class; a pair counts only when IoU > threshold
(the paper's strict "> 0.5"); each prediction and each GT is used at most once.
Class agreement is judged afterwards by the metric (a mismatch = 1 FP + 1 FN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MatchResult:
    matches: list[tuple[int, int, float]]  # (pred index, gt index, IoU)
    unmatched_preds: list[int]
    unmatched_gts: list[int]


def greedy_match(ious: np.ndarray, iou_thresh: float = 0.5) -> MatchResult:
    """ious [P,G]. Ties are broken by lower prediction index, then lower GT index,
    so the result is deterministic (callers pass predictions sorted by score)."""
    ious = np.asarray(ious, dtype=np.float64)
    n_pred, n_gt = ious.shape
    pi, gi = np.nonzero(ious > iou_thresh)
    matches: list[tuple[int, int, float]] = []
    if len(pi):
        vals = ious[pi, gi]
        order = np.lexsort((gi, pi, -vals))
        used_p: set[int] = set()
        used_g: set[int] = set()
        for k in order:
            p, g = int(pi[k]), int(gi[k])
            if p in used_p or g in used_g:
                continue
            used_p.add(p)
            used_g.add(g)
            matches.append((p, g, float(vals[k])))
    mp = {m[0] for m in matches}
    mg = {m[1] for m in matches}
    return MatchResult(matches, [p for p in range(n_pred) if p not in mp], [g for g in range(n_gt) if g not in mg])
