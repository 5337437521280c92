"""The PyInstaller one-folder build (build_installer.spec) is a working app on its own:
`--version`, the frozen engine the GUI's jobs run (`--core new` with the bundled template,
`--core export` through ONNX -> OpenVINO -> NNCF INT8), and an offscreen GUI start.

Why slow: building takes minutes. The module builds into a temporary folder, or tests an
existing build when DFINE_INSTALLER_DIST names its folder (e.g. after `make installer`:
DFINE_INSTALLER_DIST=dist/dfine-studio pytest -m slow tests/test_installer.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[1]
EXE_NAME = "dfine-studio.exe" if sys.platform == "win32" else "dfine-studio"


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    """The built executable: DFINE_INSTALLER_DIST's, else a fresh build of the spec."""
    given = os.environ.get("DFINE_INSTALLER_DIST")
    if given:
        path = Path(given).resolve() / EXE_NAME
        if not path.is_file():
            pytest.fail(f"DFINE_INSTALLER_DIST={given}: no {EXE_NAME} in that folder")
        return path
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("pyinstaller is not installed (`make installer` installs it into .venv)")
    out = tmp_path_factory.mktemp("installer")
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(out / "dist"), "--workpath", str(out / "build"),
           str(ROOT / "build_installer.spec")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3000, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"pyinstaller build: {time.perf_counter() - t0:.0f} s")
    return out / "dist" / "dfine-studio" / EXE_NAME


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A clean environment: no PYTHONPATH (the bundle must not lean on the checkout), settings
    and data folders in tmp_path, Qt offscreen, two threads."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    e.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
             XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
             QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="2")
    return e


def run(cmd: list, env: dict[str, str], cwd: Path,
        timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` (paths allowed) and time it: (completed process, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc, time.perf_counter() - t0


def test_version(exe, env, tmp_path):
    from core import __version__

    proc, seconds = run([exe, "--version"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"dfine-studio {__version__}"
    print(f"--version: {seconds:.2f} s")


def test_frozen_core_new_matches_the_source_engine(exe, env, tmp_path):
    """`--core new` in the bundle writes the same project as `python -m core new` from the
    checkout: the frozen CLI dispatch works and the bundled template is the repo's."""
    frozen, seconds = run([exe, "--core", "new", tmp_path / "frozen", "--classes", "a,b"], env, tmp_path)
    assert frozen.returncode == 0, frozen.stderr
    assert "2 classes: a, b" in frozen.stdout
    source, _ = run([sys.executable, "-m", "core", "new", tmp_path / "source", "--classes", "a,b"],
                    {**env, "PYTHONPATH": str(ROOT)}, ROOT)
    assert source.returncode == 0, source.stderr
    files = sorted(p.relative_to(tmp_path / "frozen") for p in (tmp_path / "frozen").rglob("*"))
    assert files == sorted(p.relative_to(tmp_path / "source") for p in (tmp_path / "source").rglob("*"))
    yaml_frozen = (tmp_path / "frozen" / "project.yaml").read_bytes()
    assert yaml_frozen == (tmp_path / "source" / "project.yaml").read_bytes()
    template = (ROOT / "projects_template" / "project.yaml").read_bytes().splitlines()
    changed = [(t, f) for t, f in zip(template, yaml_frozen.splitlines()) if t != f]
    assert len(template) == len(yaml_frozen.splitlines()) and len(changed) == 1, changed
    assert changed[0][0] == b"classes: []" and changed[0][1].startswith(b"classes:")
    from core.config import load_config

    assert load_config(tmp_path / "frozen" / "project.yaml").classes == ["a", "b"]
    print(f"--core new: {seconds:.2f} s")


def test_frozen_core_error_is_a_message_not_a_traceback(exe, env, tmp_path):
    proc, _ = run([exe, "--core", "check", tmp_path / "nowhere"], env, tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "nowhere" in proc.stderr and "Traceback" not in proc.stderr


def test_offscreen_gui_opens_a_project_and_quits(exe, env, tmp_path):
    made, _ = run([exe, "--core", "new", tmp_path / "proj", "--classes", "cat,dog"], env, tmp_path)
    assert made.returncode == 0, made.stderr
    proc, seconds = run([exe, tmp_path / "proj", "--quit-after", "300"], env, tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # The window remembers the project it opened: proof the GUI got as far as opening it.
    conf = Path(env["XDG_CONFIG_HOME"]) / "dfine-studio" / "dfine-studio.conf"
    assert conf.is_file(), sorted(Path(env["XDG_CONFIG_HOME"]).rglob("*"))
    assert f"last_project={tmp_path / 'proj'}" in conf.read_text()
    print(f"GUI start -> project open -> quit (+0.3 s): {seconds:.2f} s")


def test_frozen_int8_openvino_export(exe, env, tmp_path):
    """The GUI's one-click export runs `<exe> --core export` in the bundle: torch.onnx,
    onnxslim, openvino (plugins + ONNX frontend) and nncf must all work frozen (tiny model,
    4 calibration images). Oracle: the frozen ONNX file matches the checkout's torch model."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from core.model import DeployModel, build_model
    from tests.test_gui_jobs_export import make_tiny_project

    project = make_tiny_project(tmp_path / "proj")
    ckpt = project.runs_dir / "tiny" / "best.pt"
    proc, seconds = run([exe, "--core", "export", ckpt, "--project", project.root,
                         "--formats", "onnx,openvino", "--precision", "int8", "--timing-images", "2"],
                        env, tmp_path, timeout=1200)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    out = project.exports_dir / "tiny"
    assert (out / "openvino_int8" / "model.xml").is_file(), sorted(out.rglob("*"))
    report = json.loads((out / "report.json").read_text())
    results = {(r["format"], r["precision"]): r for r in report["results"]}
    assert set(results) == {("torch", "fp32"), ("onnx", "fp32"), ("openvino", "int8")}, results
    assert 0 < results[("openvino", "int8")]["size_mb"] < 0.6 * results[("onnx", "fp32")]["size_mb"]
    assert all(r["e2e_p50_ms"] > 0 for r in results.values()), results

    model = build_model("n", 2, task="segment", image_size=256)
    model.load_state_dict(torch.load(ckpt, map_location="cpu")["model"])
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        labels, boxes, scores, _ = DeployModel(model, 100)(x)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    o_labels, o_boxes, o_scores, _ = session.run(None, {"images": x.numpy()})
    # top-k is sorted by score, but an untrained model has near-tied scores whose order may
    # differ between runtimes: compare scores in order, labels and boxes as sets.
    np.testing.assert_allclose(o_scores, scores.numpy(), atol=1e-4)
    np.testing.assert_array_equal(np.sort(o_labels, axis=None), np.sort(labels.numpy(), axis=None))
    gap = np.abs(o_boxes[0][:, None, :] - boxes.numpy()[0][None, :, :]).max(-1)  # [K, K]
    assert gap.min(1).max() < 1e-3 and gap.min(0).max() < 1e-3, (gap.min(1).max(), gap.min(0).max())
    print(f"frozen export onnx + openvino int8 (+ report): {seconds:.0f} s")
