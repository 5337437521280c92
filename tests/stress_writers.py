"""One writer process of the project-lock stress test (tests/test_project_concurrency.py).

    python tests/stress_writers.py PROJECT ROLE WRITER_ID SECONDS SEED

ROLE ``save``: append one box row to a random image, half the time as a locked
read-modify-write, half the time like the GUI (load outside the lock, then save inside it
only if the file is unchanged). ROLE ``edit``: class edits (add / rename / merge / delete /
undo) on temporary classes. Every successful change is logged to PROJECT/stress_log.jsonl
*inside* the project lock, so the log order is the order the changes hit the disk and the
test can replay it against a model.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from core.annotation import Instance
from core.errors import ConflictError, UserFacingError
from core.project import Project

SIZE = 250  # image side; integer pixel boxes give normalised values with <= 3 decimals
LOG = "stress_log.jsonl"


def marker_box(writer: int, seq: int) -> tuple[int, int, int, int]:
    """A unique (cx, cy, w, h) in pixels per (writer, seq): w encodes the writer."""
    h = 2 * (seq % 10 + 1)
    cx = 20 + (seq // 10) % 211
    cy = 20 + (seq // 2110) % 211
    return cx, cy, 2 * (writer + 1), h


def marker_text(box: tuple[int, int, int, int]) -> str:
    return " ".join(str(v) for v in box)


def log(proj: Project, event: dict) -> None:
    with open(proj.root / LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def instance(cid: int, box: tuple[int, int, int, int]) -> Instance:
    cx, cy, w, h = box
    return Instance(cid, box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def saver(proj: Project, writer: int, deadline: float, rng: random.Random) -> None:
    images = proj.image_paths()
    seq = 0
    while time.monotonic() < deadline:
        img = rng.choice(images)
        box = marker_box(writer, seq)
        if rng.random() < 0.5:
            with proj.lock():
                proj.reload_config()
                ann = proj.load_annotation(img)
                cid = rng.randrange(len(proj.class_names))
                ann.instances.append(instance(cid, box))
                proj.save_annotation(ann)
                log(proj, {"t": "save", "file": img.stem, "marker": marker_text(box), "cls": proj.class_names[cid]})
            seq += 1
            continue
        # like the GUI: read outside the lock, edit "for a while", save only if nothing moved
        proj.reload_config()
        lp = proj.label_path(img)
        sig = lp.read_bytes() if lp.exists() else None
        ann = proj.load_annotation(img)
        cid = rng.randrange(len(proj.class_names))
        ann.instances.append(instance(cid, box))
        time.sleep(rng.random() * 0.01)
        with proj.lock():
            try:
                proj.save_annotation(ann, expect=lambda lp=lp, sig=sig: (lp.read_bytes() if lp.exists()
                                                                         else None) == sig)
            except ConflictError:
                continue
            log(proj, {"t": "save", "file": img.stem, "marker": marker_text(box), "cls": proj.class_names[cid]})
        seq += 1


def editor(proj: Project, writer: int, deadline: float, rng: random.Random) -> None:
    k = 0
    while time.monotonic() < deadline:
        with proj.lock():
            proj.reload_config()
            names = proj.class_names
            temps = [n for n in names if n.startswith(("t", "u"))]
            r = rng.random()
            event: dict
            try:
                if r < 0.25:
                    try:
                        proj.undo_class_edit()
                        event = {"t": "undo", "ok": True}
                    except UserFacingError as exc:
                        event = {"t": "undo", "ok": False, "why": str(exc).splitlines()[0]}
                elif not temps or (r < 0.45 and len(temps) < 3):
                    name = f"t{writer}_{k}"
                    k += 1
                    proj.add_class(name)
                    event = {"t": "add", "name": name}
                elif r < 0.6:
                    a = rng.choice(temps)
                    b = f"u{writer}_{k}"
                    k += 1
                    proj.rename_class(a, b)
                    event = {"t": "rename", "a": a, "b": b}
                elif r < 0.8:
                    a = rng.choice(temps)
                    b = rng.choice([n for n in names if n != a])
                    proj.merge_classes(a, b)
                    event = {"t": "merge", "a": a, "b": b}
                else:
                    a = rng.choice(temps)
                    proj.delete_class(a)
                    event = {"t": "delete", "a": a}
            except UserFacingError as exc:  # logged so a refusal is visible to the test
                event = {"t": "error", "why": str(exc)}
            log(proj, event)
        time.sleep(rng.random() * 0.02)  # let the savers in


def main() -> int:
    root, role, writer, seconds, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    proj = Project.open(Path(root))
    deadline = time.monotonic() + seconds
    rng = random.Random(seed)
    (saver if role == "save" else editor)(proj, writer, deadline, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
