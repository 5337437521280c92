"""SIGKILL a label writer at random instants, >= 200 times: every file is the old or the new version.

The writer is a forked child process (cheap, so 200+ kills fit in seconds) that keeps
saving annotations through Project.save_annotation - the same code the GUI autosave
uses - cycling each image through known versions, including multi-part objects with
holes (which also write the .parts.json sidecar). After each kill, every label file
must be byte-identical to one of that image's versions, and must load back to exactly
that version's instances (parts and holes included).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time

import numpy as np
import pytest
from PIL import Image

from core.annotation import ImageAnnotation, Instance
from core.atomic_io import is_temp_file
from core.data.formats.yolo_txt import format_yolo_txt
from core.project import Project

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="needs fork")

KILLS = 220          # at least this many kills ...
MID_WRITE = 20       # ... and until this many landed inside a write (a loaded CI box shifts the odds)
MAX_KILLS = 2000
W, H = 160, 120


def _versions(rng: np.random.Generator) -> list[list[Instance]]:
    out = []
    for v in range(4):
        insts = []
        for _k in range(int(rng.integers(1, 40))):  # up to ~40 rows: a write takes a while
            pts = rng.uniform(5, 100, size=(int(rng.integers(3, 24)), 2))
            insts.append(Instance(int(rng.integers(0, 3)), polygons=[pts]))
        if v % 2 == 0:  # a multi-part instance with a hole -> sidecar
            outer = np.array([[10, 10], [60, 10], [60, 60], [10, 60]], float) + v
            hole = np.array([[25, 25], [45, 25], [45, 45], [25, 45]], float) + v
            insts.append(Instance(1, polygons=[outer, [[100, 10], [150, 10], [120, 50 + v]]], holes=[hole]))
        if v == 3:
            insts.append(Instance(2, box=(5, 5, 30 + v, 40)))
        out.append(insts)
    return out


def _writer(proj: Project, anns: list[list[ImageAnnotation]], start: int) -> None:
    # each child starts elsewhere in the (image, version) cycle, so every version of every
    # image gets written across the kills even when a child is killed after one save
    i = start
    while True:
        n = i % len(anns)
        proj.save_annotation(anns[n][(i // len(anns) + n) % len(anns[n])])
        i += 1


def _same(a: list[Instance], b: list[Instance]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.class_id != y.class_id or x.is_box != y.is_box or len(x.polygons) != len(y.polygons):
            return False
        if len(x.holes) != len(y.holes):
            return False
        for p, q in zip(x.polygons + x.holes, y.polygons + y.holes):
            if p.shape != q.shape or not np.allclose(p, q, atol=1e-3):
                return False
        if x.is_box and not np.allclose(x.bbox(), y.bbox(), atol=1e-3):
            return False
    return True


def test_sigkill_writer_never_leaves_a_torn_label(tmp_path):
    proj = Project.create(tmp_path / "p", ["a", "b", "c"], "segment")
    rng = np.random.default_rng(1)
    anns: list[list[ImageAnnotation]] = []
    texts: list[dict[str, int]] = []
    for n in range(3):
        img = proj.image_dir / f"im{n}.png"
        Image.new("RGB", (W, H), (n * 40, 0, 0)).save(img)
        vs = _versions(rng)
        anns.append([ImageAnnotation(img, W, H, v) for v in vs])
        texts.append({format_yolo_txt(v, W, H).text: k for k, v in enumerate(vs)})
        proj.save_annotation(anns[-1][0])
    # the versions must be distinguishable for the check to mean anything
    assert all(len(t) == 4 for t in texts)

    # stats: how many kills left a temp file behind (= killed inside a write)
    rnd = random.Random(12345)
    mid_write = 0
    seen_versions: set[tuple[int, int]] = set()
    t0 = time.monotonic()
    kill = -1
    while kill + 1 < KILLS or (mid_write < MID_WRITE and kill + 1 < MAX_KILLS):
        kill += 1
        pid = os.fork()
        if pid == 0:  # child: write forever until killed
            try:
                _writer(proj, anns, kill)
            finally:
                os._exit(0)
        time.sleep(rnd.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

        leftovers = [p for p in proj.labels_dir.iterdir() if is_temp_file(p)]
        mid_write += bool(leftovers)
        reopened = Project.open(proj.root)  # also clears the leftovers
        assert not [p for p in proj.labels_dir.iterdir() if is_temp_file(p)]
        for n, img_versions in enumerate(anns):
            text = proj.label_path(img_versions[0].image_path).read_bytes().decode("utf-8")
            assert text in texts[n], f"kill {kill}: {proj.label_path(img_versions[0].image_path)} is torn"
            k = texts[n][text]
            seen_versions.add((n, k))
            loaded = reopened.load_annotation(img_versions[0].image_path)
            assert _same(loaded.instances, img_versions[k].instances), f"kill {kill}: image {n} v{k} differs"
    elapsed = time.monotonic() - t0
    print(f"\nkill test: {kill + 1} SIGKILLs in {elapsed:.1f}s, {mid_write} landed mid-write "
          f"(temp file left), versions observed {len(seen_versions)}/12")
    # the kills must actually have hit writes, else the test proves nothing
    assert mid_write >= MID_WRITE, f"only {mid_write} of {kill + 1} kills landed inside a write"
    assert len(seen_versions) >= 10
