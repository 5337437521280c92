"""GUI speed under offscreen Qt (issue 7 targets):

* open a 10,000-image project            < 2 s    (lazy: no image sizes / labels read upfront)
* switch images, 12 MP JPEGs             < 100 ms (GUI thread: labels + first paint; pixels come
                                                    from the prefetch cache, decode runs in a worker)
* drag a vertex of a 1,000-vertex polygon < 16 ms per redraw (mouse move + synchronous repaint)

Run:  QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_canvas.py [--images 10000]
Data is generated once under benchmarks/out/ (gitignored). Prints one line per number
and writes benchmarks/out/gui_canvas.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without reinstalling

import cv2
import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def big_project(n: int) -> Path:
    """n small JPEGs (the same bytes), half of them labelled."""
    from core.annotation import ImageAnnotation, Instance
    from core.project import Project

    root = OUT / f"project_{n}"
    if (root / ".complete").exists():
        return root
    if root.exists():
        import shutil

        shutil.rmtree(root)
    project = Project.create(root, ["a", "b", "c"], "segment")
    img = np.full((48, 64, 3), 128, np.uint8)
    data = cv2.imencode(".jpg", img)[1].tobytes()
    for i in range(n):
        (project.image_dir / f"im_{i:05d}.jpg").write_bytes(data)
    tri = Instance(class_id=1, polygons=[[(5, 5), (40, 8), (20, 40)]])
    for i in range(0, n, 2):
        project.save_annotation(ImageAnnotation(project.image_dir / f"im_{i:05d}.jpg", 64, 48, [tri]))
    (root / ".complete").write_text("ok")
    return root


def polygon(n: int, cx: float, cy: float, r: float, rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rr = r * (1 + 0.15 * np.sin(7 * t) + 0.02 * rng.standard_normal(n))
    return np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], 1)


def twelve_mp_project(n: int = 6) -> Path:
    """n 4000x3000 JPEGs, each with a 1,000-vertex polygon and a few smaller ones."""
    from core.annotation import ImageAnnotation, Instance
    from core.project import Project

    root = OUT / "project_12mp"
    if (root / ".complete").exists():
        return root
    if root.exists():
        import shutil

        shutil.rmtree(root)
    project = Project.create(root, ["a", "b", "c"], "segment")
    rng = np.random.default_rng(0)
    w, h = 4000, 3000
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
        img[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
        img[..., 2] = (i * 40) % 255
        noise = rng.integers(0, 40, (h // 4, w // 4, 3), dtype=np.uint8)
        img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)
        path = project.image_dir / f"big_{i:02d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        inst = [Instance(class_id=0, polygons=[polygon(1000, 2000, 1500, 1000, rng)])]
        inst += [Instance(class_id=k % 3, polygons=[polygon(40, 400 + 300 * k, 400, 120, rng)]) for k in range(8)]
        project.save_annotation(ImageAnnotation(path, w, h, inst))
    (root / ".complete").write_text("ok")
    return root


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--moves", type=int, default=60)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    big = big_project(args.images)
    mp12 = twelve_mp_project()

    from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from app.main import make_app
    from app.main_window import MainWindow
    from app.theme import apply_theme

    app = make_app()
    app.setProperty("no_modal_errors", True)
    apply_theme(app, "dark")
    win = MainWindow(QSettings(str(OUT / "settings.ini"), QSettings.Format.IniFormat))
    win.resize(1600, 1000)
    win.show()
    app.processEvents()
    results: dict[str, float] = {}

    # 1) open a 10k-image project: call + first paint of the window
    t0 = time.perf_counter()
    win.open_project(big)
    win.repaint()
    results["open_10k_project_s"] = time.perf_counter() - t0
    assert win.list_model.rowCount() == args.images
    print(f"open {args.images}-image project: {results['open_10k_project_s'] * 1000:.0f} ms (target < 2000)")

    # 2) switch between 12 MP images
    win.open_project(mp12)
    deadline = time.perf_counter() + 60
    while win.canvas.image is None and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.005)

    def wait_pixels(path: Path) -> None:
        while not (win.canvas.image is not None and win.canvas.image.path == path):
            app.processEvents()
            time.sleep(0.001)

    warm, warm_cpu, cold, blocking_cold, blocking_cold_cpu = [], [], [], [], []
    n = win.proxy.rowCount()
    for _k in range(1, n):
        # let the prefetch of the neighbours finish (the person looks at an image > 0.3 s)
        t_wait = time.perf_counter() + 10
        while any(win.images.is_pending(p) for p in list(win.images._pending)) and time.perf_counter() < t_wait:
            app.processEvents()
            time.sleep(0.002)
        t0, c0 = time.perf_counter(), time.thread_time()
        win.step(+1)
        win.canvas.viewport().repaint()
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        if win.canvas.image is not None and win.canvas.image.path == win.doc.image_path:
            warm.append(dt)
            warm_cpu.append(dc)
    # cold: clear the cache; GUI-thread time of the switch, then time until pixels arrive
    for _k in range(3):
        win.images.clear()
        win.step(-1)
        for _ in range(50):
            app.processEvents()
        win.images.clear()
        t0, c0 = time.perf_counter(), time.thread_time()
        win.step(+1)
        win.canvas.viewport().repaint()
        blocking_cold.append(time.perf_counter() - t0)
        blocking_cold_cpu.append(time.thread_time() - c0)
        wait_pixels(win.doc.image_path)
        win.canvas.viewport().repaint()
        cold.append(time.perf_counter() - t0)
    results["switch_12mp_prefetched_ms_median"] = statistics.median(warm) * 1000
    results["switch_12mp_prefetched_ms_max"] = max(warm) * 1000
    results["switch_12mp_prefetched_gui_cpu_ms_median"] = statistics.median(warm_cpu) * 1000
    results["switch_12mp_cold_gui_thread_ms_median"] = statistics.median(blocking_cold) * 1000
    results["switch_12mp_cold_until_pixels_ms_median"] = statistics.median(cold) * 1000
    results["switch_12mp_cold_gui_cpu_ms_median"] = statistics.median(blocking_cold_cpu) * 1000
    print(f"switch 12 MP image (prefetched): median {results['switch_12mp_prefetched_ms_median']:.1f} ms, "
          f"max {results['switch_12mp_prefetched_ms_max']:.1f} ms over {len(warm)} switches (target < 100); "
          f"GUI-thread CPU {results['switch_12mp_prefetched_gui_cpu_ms_median']:.1f} ms")
    print(f"switch 12 MP image (not cached): GUI thread {results['switch_12mp_cold_gui_thread_ms_median']:.1f} ms "
          f"(CPU {results['switch_12mp_cold_gui_cpu_ms_median']:.1f} ms), "
          f"pixels on screen after {results['switch_12mp_cold_until_pixels_ms_median']:.0f} ms (decode in worker)")

    # 3) drag one vertex of the 1,000-vertex polygon (instance 0), at fit zoom, 12 MP background
    canvas = win.canvas
    wait_pixels(win.doc.image_path)
    inst = win.doc.instances[0]
    assert len(inst.polygons[0]) == 1000
    canvas.set_selection([0])
    vx, vy = inst.polygons[0][250]
    start = canvas.mapFromScene(float(vx), float(vy))
    vpw = canvas.viewport()

    def send(kind, pos, buttons) -> None:
        ev = QMouseEvent(kind, QPointF(pos), QPointF(canvas.viewport().mapToGlobal(pos)),
                         Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton,
                         buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vpw, ev)

    send(QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
    assert canvas._drag is not None and canvas._drag["kind"] == "vertex"
    times, cpu = [], []
    for k in range(args.moves):
        pos = start + type(start)(k % 30, (k * 2) % 25)
        t0, c0 = time.perf_counter(), time.thread_time()
        send(QEvent.Type.MouseMove, pos, Qt.MouseButton.LeftButton)
        vpw.repaint()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    send(QEvent.Type.MouseButtonRelease, start, Qt.MouseButton.NoButton)
    times.sort()
    results["drag_vertex_1000_ms_median"] = statistics.median(times) * 1000
    results["drag_vertex_1000_ms_p95"] = times[int(0.95 * (len(times) - 1))] * 1000
    results["drag_vertex_1000_gui_cpu_ms_median"] = statistics.median(cpu) * 1000
    print(f"drag a vertex of a 1,000-vertex polygon: median {results['drag_vertex_1000_ms_median']:.2f} ms, "
          f"p95 {results['drag_vertex_1000_ms_p95']:.2f} ms per move+redraw (target < 16); "
          f"GUI-thread CPU {results['drag_vertex_1000_gui_cpu_ms_median']:.2f} ms")
    results["load_average_1min"] = os.getloadavg()[0]
    results["cpu_count"] = os.cpu_count()
    print(f"machine: {os.cpu_count()} CPUs, 1-min load average {os.getloadavg()[0]:.1f}")
    (OUT / "gui_canvas.json").write_text(json.dumps(results, indent=2))
    win.close()
    ok = (results["open_10k_project_s"] < 2 and results["switch_12mp_prefetched_ms_max"] < 100
          and results["drag_vertex_1000_ms_p95"] < 16)
    print("all targets met" if ok else "some target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
