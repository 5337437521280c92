"""Write an issue list to review/: JSON (for the GUI), CSV (for spreadsheets) and a
contact sheet PNG of the top items drawn on image crops (red = label, green = fix)."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from core.analysis.find_mistakes import issues_per_kind
from core.analysis.issues import LabelIssue
from core.annotation import ImageAnnotation
from core.atomic_io import atomic_write_bytes, atomic_write_text
from core.errors import UserFacingError
from core.messages import LabelIssuesFile, plain, validate_model

log = logging.getLogger(__name__)

JSON_NAME = "label_issues.json"
CSV_NAME = "label_issues.csv"
SHEET_NAME = "label_issues_contact_sheet.png"
CSV_COLUMNS = ["rank", "id", "kind", "score", "image", "instance", "class_id", "class_name", "x0", "y0", "x1",
               "y1", "pred_score", "iou", "pred_class", "fix_action", "fix_class_id", "message"]


def _class_name(names: Sequence[str], cid: int | None) -> str:
    return names[cid] if cid is not None and 0 <= cid < len(names) else ""


def write_json(path: Path, issues: Sequence[LabelIssue], meta: dict) -> None:
    """review/label_issues.json, validated through ``core.messages.LabelIssuesFile`` (what the
    Review panel and `dfine review` read) before it is written."""
    doc = {"version": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta,
           "counts": issues_per_kind(issues), "issues": [i.to_dict() for i in issues]}
    validate_model(plain(doc), LabelIssuesFile, path, "an analysis result")
    atomic_write_text(path, json.dumps(doc, indent=1))


def write_csv(path: Path, issues: Sequence[LabelIssue], class_names: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for rank, i in enumerate(issues, 1):
        ev = i.evidence
        w.writerow([rank, i.id, i.kind, f"{i.score:.4f}", i.image, "" if i.instance is None else i.instance,
                    "" if i.class_id is None else i.class_id, _class_name(class_names, i.class_id), *i.box,
                    ev.get("pred_score", ""), ev.get("iou", ""), ev.get("pred_class", ""),
                    i.fix.get("action", ""), i.fix.get("class_id", ""), i.message])
    atomic_write_text(path, buf.getvalue())


def _draw_instance_outline(img: np.ndarray, ann: ImageAnnotation | None, k: int | None, color, off) -> None:
    if ann is None or k is None or not 0 <= k < len(ann.instances):
        return
    inst = ann.instances[k]
    if inst.is_box:
        x0, y0, x1, y1 = inst.bbox()
        cv2.rectangle(img, (int(x0 - off[0]), int(y0 - off[1])), (int(x1 - off[0]), int(y1 - off[1])), color, 1)
        return
    for p in [*inst.polygons, *inst.holes]:
        if len(p) >= 2 and np.isfinite(p).all():
            cv2.polylines(img, [np.round(p - off).astype(np.int32)], True, color, 1, cv2.LINE_AA)


def _draw_fix(img: np.ndarray, fix: dict, color, off) -> None:
    polys = fix.get("polygons")
    if polys:
        for p in polys:
            pts = np.asarray(p, np.float64).reshape(-1, 2)
            cv2.polylines(img, [np.round(pts - off).astype(np.int32)], True, color, 1, cv2.LINE_AA)
    elif fix.get("box"):
        x0, y0, x1, y1 = fix["box"]
        cv2.rectangle(img, (int(x0 - off[0]), int(y0 - off[1])), (int(x1 - off[0]), int(y1 - off[1])), color, 1)


def render_tile(image: np.ndarray, issue: LabelIssue, ann: ImageAnnotation | None, rank: int,
                class_names: Sequence[str], tile: int = 240) -> np.ndarray:
    """One crop around the issue, outlines drawn at crop resolution, scaled to tile x tile + caption."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = issue.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(32.0, 0.8 * max(x1 - x0, y1 - y0))
    cx0, cy0 = int(np.clip(cx - half, 0, max(0, w - 1))), int(np.clip(cy - half, 0, max(0, h - 1)))
    cx1, cy1 = int(np.clip(cx + half, cx0 + 1, w)), int(np.clip(cy + half, cy0 + 1, h))
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
    scale = tile / max(crop.shape[:2])
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                      interpolation=cv2.INTER_LINEAR)
    off = np.array([cx0, cy0], np.float64)

    a = ann
    if a is not None and issue.instance is not None and 0 <= issue.instance < len(a.instances):
        scaled_ann = ImageAnnotation(a.image_path, a.width, a.height, [_scaled_instance(a.instances[issue.instance],
                                                                                         off, scale)])
        _draw_instance_outline(crop, scaled_ann, 0, (0, 0, 255), np.zeros(2))
    _draw_fix(crop, _scaled_fix(issue.fix, off, scale), (0, 220, 0), np.zeros(2))
    out = np.full((tile + 34, tile, 3), 32, np.uint8)
    out[:crop.shape[0], :crop.shape[1]] = crop
    cname = _class_name(class_names, issue.class_id)
    cv2.putText(out, f"#{rank} {issue.kind.replace('_', ' ')}", (4, tile + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(out, f"{issue.score:.2f} {cname} {Path(issue.image).name}"[:40], (4, tile + 29),
                cv2.FONT_HERSHEY_SIMPLEX, 0.38, (200, 200, 200), 1, cv2.LINE_AA)
    return out


def _scaled_instance(inst, off, s):
    c = inst.copy()
    c.polygons = [(p - off) * s for p in c.polygons]
    c.holes = [(p - off) * s for p in c.holes]
    if c.box is not None:
        x0, y0, x1, y1 = c.box
        c.box = ((x0 - off[0]) * s, (y0 - off[1]) * s, (x1 - off[0]) * s, (y1 - off[1]) * s)
    return c


def _scaled_fix(fix: dict, off, s) -> dict:
    out = {}
    if fix.get("polygons"):
        out["polygons"] = [((np.asarray(p, float).reshape(-1, 2) - off) * s).ravel().tolist() for p in fix["polygons"]]
    if fix.get("box"):
        x0, y0, x1, y1 = fix["box"]
        out["box"] = [(x0 - off[0]) * s, (y0 - off[1]) * s, (x1 - off[0]) * s, (y1 - off[1]) * s]
    return out


def write_contact_sheet(path: Path, issues: Sequence[LabelIssue], annotations: Mapping[str, ImageAnnotation],
                        read_image: Callable[[Path], np.ndarray], class_names: Sequence[str],
                        top: int = 24, columns: int = 6, tile: int = 240) -> int:
    """PNG grid of the ``top`` issues; returns the number of tiles drawn (unreadable images are skipped)."""
    tiles = []
    cache: dict[str, np.ndarray] = {}
    for rank, issue in enumerate(issues[:top], 1):
        try:
            if issue.image not in cache:
                cache.clear()  # one decoded image at a time
                cache[issue.image] = read_image(Path(issue.image))
            img = cache[issue.image]
        except (UserFacingError, OSError) as exc:  # a missing image must not lose the rest of the report
            log.warning("contact sheet: skipped %s: %s", issue.image, exc)
            continue
        tiles.append(render_tile(img, issue, annotations.get(issue.image), rank, class_names, tile))
    if not tiles:
        return 0
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    th, tw = tiles[0].shape[:2]
    sheet = np.full((rows * th, cols * tw, 3), 16, np.uint8)
    for n, t in enumerate(tiles):
        r, c = divmod(n, cols)
        sheet[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = t
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
    return len(tiles)


def write_report(out_dir: Path | str, issues: Sequence[LabelIssue], annotations: Sequence[ImageAnnotation],
                 class_names: Sequence[str], read_image: Callable[[Path], np.ndarray], meta: dict | None = None,
                 top: int = 24) -> dict[str, Path]:
    """All three files into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / JSON_NAME, "csv": out / CSV_NAME, "sheet": out / SHEET_NAME}
    write_json(paths["json"], issues, {"class_names": list(class_names), **(meta or {})})
    write_csv(paths["csv"], issues, class_names)
    by_image = {str(a.image_path): a for a in annotations}
    if write_contact_sheet(paths["sheet"], issues, by_image, read_image, class_names, top) == 0:
        del paths["sheet"]
    return paths
