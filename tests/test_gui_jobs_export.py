"""Export panel: the argv it builds, progress parsed from the exporter's output, the
report table, open-folder, failures; the one-click chain through a real QProcess with a
stand-in exporter script (and with the real `dfine export` when core.export has its CLI)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import sys
import textwrap
from pathlib import Path

import pytest

def _row(fmt: str, prec: str, file, size, e2e, raw, f1, diff) -> dict:
    return {"format": fmt, "precision": prec, "file": file, "size_mb": size, "e2e_p50_ms": e2e,
            "e2e_p95_ms": e2e * 1.2, "raw_p50_ms": raw, "raw_p95_ms": raw * 1.2, "val_f1": f1,
            "val_precision": 0.8, "val_recall": 0.83, "val_iou": 0.7, "f1_delta_vs_torch": diff}


REPORT = {  # exactly the shape core.export.report.build_report writes (core.messages.ExportReport)
    "created": "2026-12-03 12:00:00",
    "machine": {"platform": "Linux", "processor": "x86_64", "device": "cpu"},
    "model": {"size": "n", "task": "segment", "image_size": [256, 256], "classes": ["a", "b"],
              "source": "runs/train/best.pt"},
    "conf": 0.5, "val_images": 2, "timed_images": 2, "int8": {"overflow_fix": "enable"},
    "results": [
        _row("torch", "fp32", None, None, 88.04, 71.5, 0.816, 0.0),
        _row("onnx", "fp32", "model.onnx", 14.96, 61.26, 49.91, 0.8161, 0.0001),
        _row("openvino", "int8", "openvino_int8/model.xml", 4.14, 24.55, 17.02, 0.8091, -0.0069),
    ],
}


@pytest.fixture
def panel(qtbot, qapp, tmp_path):
    from app.jobs.export_panel import ExportPanel
    from app.theme import apply_theme
    from tests.conftest_gui import make_project

    apply_theme(qapp, "dark")
    project = make_project(tmp_path / "proj", n_images=2)
    (project.runs_dir / "train").mkdir(parents=True)
    (project.runs_dir / "train" / "best.pt").write_bytes(b"not used by the fake exporter")
    p = ExportPanel(project)
    qtbot.addWidget(p)
    p.resize(1000, 620)
    p.show()
    yield p
    if p.is_running():
        p.job.kill()
        p.job.wait(5000)


def test_args_for_one_click_and_custom(panel):
    root = str(panel.project.root)
    ckpt = str(panel.project.runs_dir / "train" / "best.pt")
    assert panel.checkpoint() == ckpt and panel.export_name() == "train"
    assert panel.build_args(["onnx", "openvino"], ["int8"], False) == [
        "export",
        ckpt,
        "--project",
        root,
        "--formats",
        "onnx,openvino",
        "--precision",
        "int8",
        "--name",
        "train",
        "--events",
        "-",
    ]
    panel.max_drop.setValue(0.02)
    assert panel.build_args(["onnx", "openvino"], ["int8"], True)[-3:] == [
        "--accuracy-control",
        "--max-drop",
        "0.02",
    ]
    assert "--accuracy-control" not in panel.build_args(["onnx"], ["fp32"], True)
    for b in panel.precision_boxes.values():
        b.setChecked(False)
    assert not panel.export_selected()
    assert "at least one format and one precision" in panel.last_message


def ev(kind: str, **fields) -> dict:
    return {"event": kind, "time": 1.0, **fields}


def test_progress_from_events_moves_forward_only():
    from app.jobs.export_panel import ExportProgress, plan_stages
    from core.messages import parse_event

    stages = plan_stages(["onnx", "openvino"], ["int8"], True)
    assert stages == ["onnx", "openvino", "int8", "accuracy", "measure", "report"]
    pm = ExportProgress(stages)
    assert pm.fraction == 0.0

    def feed(**fields) -> None:
        pm.feed(parse_event(ev("progress", verb="export", **fields)))

    feed(stage="onnx", done=0, total=1)
    assert pm.stage == "onnx" and pm.fraction == 0.0
    feed(stage="openvino", done=0, total=1)
    assert pm.stage == "openvino" and pm.fraction == pytest.approx(1 / 6)
    feed(stage="int8", progress=0.5)
    assert pm.stage == "int8" and pm.fraction == pytest.approx((2 + 0.5 * 0.99) / 6)
    feed(stage="onnx", done=1, total=1)  # an earlier stage again: no step back, no fill
    assert pm.stage == "int8" and pm.fraction == pytest.approx((2 + 0.5 * 0.99) / 6)
    feed(stage="accuracy", done=0, total=1)
    assert pm.stage == "accuracy"
    feed(stage="measure", done=1, total=4)
    assert pm.stage == "measure" and pm.fraction == pytest.approx((4 + 0.25 * 0.99) / 6)
    feed(stage="tensorrt", done=0, total=2)  # not planned: ignored
    assert pm.stage == "measure"
    pm.feed(parse_event(ev("warning", message="slow")))
    assert pm.stage == "measure" and not pm.finished
    pm.feed(parse_event(ev("result", verb="export", paths={"report": "r.json"})))
    assert pm.fraction == 1.0
    assert plan_stages(["onnx"], ["fp32"], True) == ["onnx", "measure", "report"]


def test_report_table_and_open_folder(panel, monkeypatch, screenshot_dir):
    from PySide6.QtGui import QDesktopServices

    from tests.conftest_gui import screenshot

    out = panel.project.exports_dir / "train"
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps(REPORT))
    assert panel.show_report(out / "report.json")
    cells = [[panel.table.item(r, c).text() for c in range(7)] for r in range(panel.table.rowCount())]
    assert cells == [
        ["torch", "fp32", "—", "88.0", "71.5", "0.816", "+0.000"],
        ["onnx", "fp32", "15.0", "61.3", "49.9", "0.816", "+0.000"],
        ["openvino", "int8", "4.1", "24.6", "17.0", "0.809", "-0.007"],
    ]
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    assert panel.open_folder()
    assert opened == [str(out)]
    screenshot(panel, "jobs_export_report")


def test_bad_report_is_named(panel, tmp_path):
    from app.jobs.export_panel import read_report
    from core.errors import UserFacingError

    bad = tmp_path / "report.json"
    bad.write_text("{oops")
    assert not panel.show_report(bad)
    assert str(bad) in panel.last_message
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(UserFacingError, match=r"report.json: not an export report: created: Field required"):
        read_report(bad)
    # the old guessed spellings are no longer read: the one shape is the contract
    bad.write_text(json.dumps({**REPORT, "results": [{"format": "onnx", "precision": 0.25}]}))
    with pytest.raises(UserFacingError, match=r"results\.0\.precision: Input should be 'fp32', 'fp16' or 'int8'"):
        read_report(bad)
    bad.write_text(json.dumps({**REPORT, "results": []}))
    with pytest.raises(UserFacingError, match="lists no exported models"):
        read_report(bad)


def test_the_report_the_engine_writes_is_what_the_panel_reads(tmp_path, monkeypatch):
    """core.export.report.build_report's output (no val or timing images) parses and fills the table."""
    from app.jobs.export_panel import read_report, report_cells
    from core.export.pipeline import ExportResult
    from core.export.report import build_report
    from core.infer.meta import ModelMeta

    (tmp_path / "model.onnx").write_bytes(b"x" * 2**20)
    result = ExportResult(tmp_path, {("onnx", "fp32"): tmp_path / "model.onnx"})
    stages = []

    def progress(stage: str, done: int = 0, total: int = 0, message: str = "") -> None:
        stages.append((stage, done, total))

    class _Stub:  # Predictor.load / from_module are not called for measurements without images
        pass

    monkeypatch.setattr("core.infer.predictor.Predictor",
                        type("P", (), {"from_module": staticmethod(lambda *a, **k: _Stub()),
                                       "load": staticmethod(lambda *a, **k: _Stub())}))
    report = build_report(result, None, ModelMeta(["a"], "segment", (64, 64), 10, "n"), [], [], 0.5, "cpu",
                          log=lambda m: None, progress=progress)
    assert stages == [("measure", 0, 2), ("measure", 1, 2), ("report", 0, 1)]
    parsed = read_report(tmp_path / "report.json")
    assert parsed.model_dump(mode="json", exclude_unset=True) == report
    assert [report_cells(r) for r in parsed.results] == [
        ["torch", "fp32", "—", "—", "—", "—", "—"], ["onnx", "fp32", "1.0", "—", "—", "—", "—"]]


FAKE_EXPORTER = textwrap.dedent('''
    """Stands in for `python -m core export`: prints what the real chain prints, writes a report."""
    import json, sys, time
    args = sys.argv[1:]
    assert args[0] == "export", args
    project = args[args.index("--project") + 1]
    name = args[args.index("--name") + 1]
    assert "--events" in args, args

    def emit(kind, **fields):
        print(json.dumps({"event": kind, "time": time.time(), **fields}), flush=True)

    print("exporting best.pt -> exports (formats onnx, openvino; precisions int8)", file=sys.stderr, flush=True)
    for stage, done, total in [("onnx", 0, 1), ("openvino", 0, 1), ("int8", 0, 2), ("int8", 1, 2),
                               ("measure", 0, 2), ("measure", 1, 2), ("report", 0, 1)]:
        print(stage.upper() + " ...", file=sys.stderr, flush=True)
        emit("progress", verb="export", stage=stage, done=done, total=total)
        time.sleep(0.05)
    if name == "slow":
        time.sleep(60)
    if "--fail" in args or name == "broken":
        emit("error", message="calibration failed: no images", type="ExportError")
        sys.exit(2)
    import pathlib
    out = pathlib.Path(project) / "exports" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(REPORT_LITERAL))
    emit("result", verb="export", paths={"folder": str(out), "report": str(out / "report.json")})
''').replace("REPORT_LITERAL", repr(REPORT))


@pytest.fixture
def fake_exporter(tmp_path, monkeypatch):
    from app.jobs.process_job import ProcessJob

    script = tmp_path / "fake_export.py"
    script.write_text(FAKE_EXPORTER)
    monkeypatch.setattr(
        ProcessJob, "command", property(lambda self: [sys.executable, str(script), *self.args])
    )
    return script


def test_one_click_chain_with_stand_in_exporter(panel, qtbot, fake_exporter, screenshot_dir):
    from tests.conftest_gui import screenshot

    done = []
    values = []
    panel.export_finished.connect(lambda path, code: done.append((path, code)))
    panel.progress.valueChanged.connect(values.append)
    assert panel.export_int8()
    assert not panel.int8_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: bool(done), timeout=30_000)
    report = panel.project.exports_dir / "train" / "report.json"
    assert done == [(report, 0)]
    assert values == sorted(values) and values[-1] == 1000  # monotone, ends full
    assert any(0 < v < 1000 for v in values)
    assert panel.table.rowCount() == 3 and panel.table.item(2, 1).text() == "int8"
    assert panel.last_message.startswith("Done in")
    assert panel.int8_button.isEnabled()
    screenshot(panel, "jobs_export_done")


def test_failed_export_shows_the_error(panel, qtbot, fake_exporter):
    done = []
    panel.export_finished.connect(lambda path, code: done.append((path, code)))
    panel.name_edit.setText("broken")
    assert panel.export_int8()
    qtbot.waitUntil(lambda: bool(done), timeout=30_000)
    assert done == [(None, 2)]
    assert panel.last_message == "Export failed: calibration failed: no images"
    assert panel.table.rowCount() == 0


def test_cancel_and_shutdown_end_the_export(panel, qtbot, fake_exporter):
    done = []
    panel.export_finished.connect(lambda path, code: done.append((path, code)))
    panel.name_edit.setText("slow")
    assert panel.export_int8()
    qtbot.waitUntil(lambda: "INT8" in panel.log_view.toPlainText(), timeout=20_000)
    panel.shutdown(wait_ms=5000)
    assert not panel.is_running()
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    assert done[0][0] is None and panel.last_message.startswith("Export failed")
    assert panel.int8_button.isEnabled()


def test_missing_checkpoint_is_refused(panel):
    panel.checkpoint_box.setEditText("/nowhere/best.pt")
    assert not panel.export_int8()
    assert "/nowhere/best.pt: no such checkpoint" in panel.last_message


def make_tiny_project(root: Path):
    """6 labelled 128x96 images, a random-weight size-n checkpoint at 256 px, 4 calibration images."""
    import cv2
    import numpy as np
    import torch

    from core.annotation import ImageAnnotation, Instance
    from core.model import build_model
    from core.project import Project

    proj = Project.create(root, ["cat", "dog"], "segment")
    rng = np.random.default_rng(0)
    for i in range(6):
        img = np.full((96, 128, 3), 70, np.uint8)
        x0, y0 = int(rng.integers(5, 60)), int(rng.integers(5, 40))
        img[y0 : y0 + 30, x0 : x0 + 40] = 210
        cv2.imwrite(str(proj.image_dir / f"im{i}.png"), img)
        sq = np.array([[x0, y0], [x0 + 40, y0], [x0 + 40, y0 + 30], [x0, y0 + 30]], float)
        proj.save_annotation(
            ImageAnnotation(proj.image_dir / f"im{i}.png", 128, 96, [Instance(i % 2, polygons=[sq])])
        )
    proj.write_splits()
    cfg = proj.config_path
    cfg.write_text(cfg.read_text().replace("calibration_images: 300", "calibration_images: 4"))
    torch.manual_seed(0)
    model = build_model("n", 2, task="segment", image_size=256)  # size n needs >= 256 px (300 queries)
    (proj.runs_dir / "tiny").mkdir(parents=True)
    torch.save(
        {
            "model": model.state_dict(),
            "class_names": ["cat", "dog"],
            "config": {"task": "segment", "model": {"size": "n", "image_size": 256}},
        },
        proj.runs_dir / "tiny" / "best.pt",
    )
    return Project.open(root)


@pytest.mark.slow
def test_real_one_click_int8_export(qtbot, qapp, tmp_path, screenshot_dir):
    """The real `dfine export` chain from the button: ONNX -> OpenVINO -> NNCF INT8 (~100 s on
    2 busy cores), then the report table from the real report.json."""
    pytest.importorskip("nncf")
    from app.jobs.export_panel import ExportPanel
    from app.theme import apply_theme
    from tests.conftest_gui import screenshot

    apply_theme(qapp, "dark")
    project = make_tiny_project(tmp_path / "proj")
    panel = ExportPanel(project)
    qtbot.addWidget(panel)
    panel.resize(1000, 620)
    panel.show()
    assert panel.checkpoint() == str(project.runs_dir / "tiny" / "best.pt")
    stages = []
    panel.progress.valueChanged.connect(lambda v: stages.append(panel.progress_model.stage))
    done = []
    panel.export_finished.connect(lambda path, code: done.append((path, code)))
    assert panel.export_int8()
    qtbot.waitUntil(lambda: bool(done), timeout=540_000)
    report = project.exports_dir / "tiny" / "report.json"
    assert done == [(report, 0)], panel.log_view.toPlainText()[-2000:]
    assert (project.exports_dir / "tiny" / "openvino_int8" / "model.xml").is_file()
    assert {"int8", "measure"} <= set(stages), stages
    cells = {
        (panel.table.item(r, 0).text(), panel.table.item(r, 1).text()): r
        for r in range(panel.table.rowCount())
    }
    assert set(cells) == {("torch", "fp32"), ("onnx", "fp32"), ("openvino", "int8")}
    r = cells[("openvino", "int8")]
    size_int8 = float(panel.table.item(r, 2).text())
    size_onnx = float(panel.table.item(cells[("onnx", "fp32")], 2).text())
    assert 0 < size_int8 < 0.6 * size_onnx  # int8 weights: well under the fp32 file
    assert float(panel.table.item(r, 3).text()) > 0 and float(panel.table.item(r, 4).text()) > 0
    for row in panel.report.results:
        print(
            f"{row.format:<12} {row.precision:<5} {row.size_mb} MB e2e {row.e2e_p50_ms} raw {row.raw_p50_ms} "
            f"F1 {row.val_f1} dF1 {row.f1_delta_vs_torch}"
        )
    screenshot(panel, "jobs_export_real_int8")
