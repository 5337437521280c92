"""Train panel's starting-weights picker: the list for the chosen size shows what is downloaded,
the COCO checkpoint of that size is the default when present, a download runs in the
background (`dfine weights get --events -`) with progress and Cancel, and a failed download
keeps training from starting."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import pytest
from conftest_gui import make_project
from weights_server import official_n_checkpoint, serve_weights

from app.jobs.train_panel import TrainPanel

N_FILE = "dfine_n_coco.pth"


@pytest.fixture(scope="module")
def n_bytes(tmp_path_factory) -> bytes:
    return official_n_checkpoint(tmp_path_factory.mktemp("official") / N_FILE)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DFINE_WEIGHTS_DIR", str(folder))
    return folder


def _project(root: Path, size: str) -> Path:
    proj = make_project(root, n_images=1)
    text = proj.config_path.read_text(encoding="utf-8").replace("  size: s\n", f"  size: {size}\n", 1)
    proj.config_path.write_text(text, encoding="utf-8")
    return proj.root


def _items(panel: TrainPanel) -> dict[str | None, str]:
    combo = panel.weights_picker.combo
    return {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}


def test_list_follows_size_and_defaults_to_present_coco(qtbot, tmp_path, cache, n_bytes, screenshot_dir):
    cache.mkdir()
    (cache / N_FILE).write_bytes(n_bytes)
    panel = TrainPanel(_project(tmp_path / "p", "n"))
    qtbot.addWidget(panel)
    picker = panel.weights_picker
    items = _items(panel)
    assert picker.current_value() == "dfine_n_coco"  # present: the default
    assert items["dfine_n_coco"].endswith("(downloaded)") and "COCO, AP 42.8" in items["dfine_n_coco"]
    assert set(items) == {None, "dfine_n_coco", "hgnetv2_b0"}  # N has no Objects365 release
    assert not picker.download_button.isEnabled()
    args = panel.build_args(resume=False)
    assert args[args.index("--weights") + 1] == "dfine_n_coco"
    panel.resize(1100, 700)
    panel.grab().save(str(screenshot_dir / "train_panel_weights.png"))

    panel.size_box.setCurrentText("s")  # S COCO not downloaded: random init, S files listed
    items = _items(panel)
    assert picker.current_value() is None and "--weights" not in panel.build_args(resume=False)
    assert "model.weights=null" in panel.build_args(resume=False)  # wins over project.yaml
    assert {"dfine_s_coco", "dfine_s_obj2coco", "dfine_s_obj365", "hgnetv2_b0"} <= set(items)
    assert "dfine_n_coco" not in items and items["dfine_s_coco"].endswith("(not downloaded)")
    picker.combo.setCurrentIndex(picker.combo.findData("hgnetv2_b0"))
    assert picker.download_button.isEnabled() and picker.needs_download()
    args = panel.build_args(resume=False)
    assert args[args.index("--backbone-weights") + 1] == "hgnetv2_b0" and "model.weights=null" in args


def test_configured_weights_are_preselected_and_random_overrides_them(qtbot, tmp_path, cache):
    root = _project(tmp_path / "p", "s")
    cfg = root / "project.yaml"
    cfg.write_text(cfg.read_text().replace("  weights: null", "  weights: dfine_s_obj2coco"))
    panel = TrainPanel(root)
    qtbot.addWidget(panel)
    assert panel.weights_picker.current_value() == "dfine_s_obj2coco"  # project.yaml's choice
    panel.weights_picker.combo.setCurrentIndex(0)  # the user picks random initialisation
    args = panel.build_args(resume=False)
    from core.config import apply_overrides, load_config

    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    resolved = apply_overrides(load_config(cfg), sets)
    assert resolved.model.weights is None and resolved.model.backbone_weights is None


def test_background_download_progress_cancel_and_resume(qtbot, tmp_path, cache, n_bytes, monkeypatch):
    with serve_weights(monkeypatch) as server:
        server.files[N_FILE] = n_bytes
        server.delay = 0.05  # ~5 MB/s: long enough to watch and cancel
        panel = TrainPanel(_project(tmp_path / "p", "n"))
        qtbot.addWidget(panel)
        picker = panel.weights_picker
        picker.combo.setCurrentIndex(picker.combo.findData("dfine_n_coco"))
        assert picker.needs_download()
        assert picker.download()
        qtbot.waitUntil(lambda: 0 < picker.progress.value() < 1000, timeout=60_000)  # GUI thread free
        assert not picker.cancel_button.isHidden() and picker.download_button.isHidden() and picker.status.text().startswith("Downloading dfine_n_coco")
        with qtbot.waitSignal(picker.download_finished, timeout=60_000) as blocker:
            panel.cancel()  # the panel's Cancel stops the download
        assert blocker.args == ["dfine_n_coco", False]
        assert picker.status.text().startswith("Cancelled") and "kept" in picker.status.text()
        part = cache / (N_FILE + ".part")
        kept = part.stat().st_size
        assert 0 < kept < len(n_bytes) and not (cache / N_FILE).exists()
        assert _items(panel)["dfine_n_coco"].endswith(f"({kept / 1e6:.0f} MB downloaded, resumable)")

        server.delay = 0.0
        with qtbot.waitSignal(picker.download_finished, timeout=120_000) as blocker:
            picker.download_button.click()
        assert blocker.args == ["dfine_n_coco", True], picker.status.text()
        assert server.requests[-1] == (N_FILE, f"bytes={kept}-")  # resumed, not restarted
        assert (cache / N_FILE).read_bytes() == n_bytes
        assert _items(panel)["dfine_n_coco"].endswith("(downloaded)")
        assert picker.current_value() == "dfine_n_coco" and not picker.download_button.isEnabled()


def test_failed_download_does_not_start_training(qtbot, tmp_path, cache, monkeypatch):
    with serve_weights(monkeypatch):  # serves nothing: 404
        panel = TrainPanel(_project(tmp_path / "p", "s"))
        qtbot.addWidget(panel)
        picker = panel.weights_picker
        picker.combo.setCurrentIndex(picker.combo.findData("dfine_s_coco"))
        with qtbot.waitSignal(picker.download_finished, timeout=60_000):
            panel.start()  # needs the checkpoint first: downloads, then would train
        assert panel.job is None  # training never started
        assert "HTTP 404" in picker.status.text() and "weights add" in picker.status.text()
        assert panel.status_label.text().startswith("Not started: dfine_s_coco could not be downloaded")


def test_panel_with_picker_does_not_import_torch():
    """Listing the cache is file-system work: opening the Train panel must not pay for torch
    (the GUI starts without it; only checking a downloaded file needs it)."""
    import subprocess
    import sys

    code = ("import sys; from PySide6.QtWidgets import QApplication; app = QApplication([]); "
            "from app.jobs.train_panel import TrainPanel; p = TrainPanel(); p.weights_picker.set_size('n'); "
            "print(p.weights_picker.combo.count(), 'torch' in sys.modules)")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.stdout.split() == ["3", "False"], out.stderr[-2000:]
