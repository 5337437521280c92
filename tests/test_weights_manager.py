"""Weights manager against a local HTTP server on 127.0.0.1 (never the internet): download,
resume after a broken connection, refusal of truncated / wrong-size files, 404 and offline
messages, `weights add`, cache-folder order, name resolution for training."""

from __future__ import annotations

import io
import json
import socket
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from weights_server import official_n_checkpoint, serve_weights

from core.cli import main as dfine_main
from core.errors import WeightsError
from core.messages import parse_event
from core.weights import (
    DownloadCancelled,
    DownloadError,
    entries,
    fetch,
    find_entry,
    resolve_weights,
    verify_file,
    weights_dir,
)
from core.weights.cache import default_weights_dir
from core.weights.download import download

N_FILE = "dfine_n_coco.pth"


@pytest.fixture()
def server(monkeypatch):
    with serve_weights(monkeypatch) as srv:
        yield srv


@pytest.fixture(scope="module")
def n_bytes(tmp_path_factory) -> bytes:
    return official_n_checkpoint(tmp_path_factory.mktemp("official") / N_FILE)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DFINE_WEIGHTS_DIR", str(folder))
    return folder


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = dfine_main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- registry / cache dir


def test_registry_has_every_official_release_file():
    names = [e.name for e in entries()]
    assert len(names) == len(set(names)) == 21
    coco = {e.size for e in entries() if e.dataset == "COCO"}
    assert coco == {"n", "s", "m", "l", "x"}
    assert {e.size for e in entries() if e.dataset == "Objects365+COCO"} == {"s", "m", "l", "x"}
    assert {e.backbone for e in entries() if e.kind == "backbone"} == {f"B{i}" for i in range(7)}
    for e in entries():
        assert e.url == "https://github.com/Peterande/storage/releases/download/dfinev1.0/" + e.file
    assert find_entry("dfine_l_obj2coco").file == "dfine_l_obj2coco_e25.pth"
    assert find_entry("DFINE_S_COCO.pth").name == "dfine_s_coco"
    assert find_entry("PPHGNetV2_B0_stage1").name == "hgnetv2_b0"
    assert find_entry("hgnetv2_b0").sizes == ("n", "s") and find_entry("hgnetv2_b3").sizes == ()
    assert find_entry("dfine_q_coco") is None


def test_cache_folder_order(tmp_path, monkeypatch):
    monkeypatch.delenv("DFINE_WEIGHTS_DIR", raising=False)
    home = tmp_path / "home"
    assert default_weights_dir("linux", {}, home) == home / ".cache/dfine-studio/weights"
    assert default_weights_dir("linux", {"XDG_CACHE_HOME": "/x"}, home) == Path("/x/dfine-studio/weights")
    assert default_weights_dir("win32", {"LOCALAPPDATA": "C:/L"}, home) == Path("C:/L/dfine-studio/weights")
    assert default_weights_dir("darwin", {}, home) == home / "Library/Caches/dfine-studio/weights"
    from core.project import Project

    proj = Project.create(tmp_path / "p", ["a"], "segment")
    assert weights_dir(proj.root) == default_weights_dir()
    text = proj.config_path.read_text().replace("  weights_dir: null", "  weights_dir: my_weights")
    proj.config_path.write_text(text)
    assert weights_dir(proj.root) == proj.root / "my_weights"
    assert weights_dir(proj.root, env={"DFINE_WEIGHTS_DIR": str(tmp_path / "env")}) == tmp_path / "env"


# ----------------------------------------------------------------------------- download


def test_get_downloads_verifies_and_lists(server, cache, n_bytes):
    server.files[N_FILE] = n_bytes
    code, out, err = run_cli("weights", "get", "dfine_n_coco", "--events", "-")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "progress" and events[0]["stage"] == "start" and kinds[-1] == "result"
    assert [e["stage"] for e in events[1:-1]] == ["download"] * (len(events) - 2)
    assert events[-2]["done"] == events[-2]["total"] == len(n_bytes)
    assert events[-1]["bytes"] == len(n_bytes) and "fit the size-n D-FINE detector" in events[-1]["check"]
    assert events[-1]["paths"] == {"weights": str(cache / N_FILE)}
    for e in events:
        parse_event(e)
    assert (cache / N_FILE).read_bytes() == n_bytes
    assert not (cache / (N_FILE + ".part")).exists()
    code, out, _ = run_cli("weights", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["dfine_n_coco"]["cached"] is True and rows["dfine_n_coco"]["bytes"] == len(n_bytes)
    assert rows["dfine_n_coco"]["path"] == str(cache / N_FILE)
    assert rows["dfine_s_coco"]["cached"] is False and rows["hgnetv2_b6"]["dataset"] == "ImageNet"
    code, out, _ = run_cli("weights", "list")
    line = next(row for row in out.splitlines() if row.startswith("dfine_n_coco "))
    assert f"{len(n_bytes) / 1e6:.0f} MB" in line and str(cache / N_FILE) in line
    # a second get finds it in the cache: no request
    before = len(server.requests)
    assert run_cli("weights", "get", "dfine_n_coco")[0] == 0 and len(server.requests) == before


def test_broken_connection_keeps_part_and_resumes_with_range(server, cache, n_bytes):
    cut = 5_000_000
    server.files[N_FILE], server.stop_after[N_FILE] = n_bytes, cut
    code, _, err = run_cli("weights", "get", "dfine_n_coco")
    assert code == 2 and "run the same command again to resume" in err and "Traceback" not in err
    part = cache / (N_FILE + ".part")
    assert part.stat().st_size == cut and not (cache / N_FILE).exists()
    rows = {r["name"]: r for r in json.loads(run_cli("weights", "list", "--json")[1])}
    assert rows["dfine_n_coco"]["cached"] is False and rows["dfine_n_coco"]["partial_bytes"] == cut
    del server.stop_after[N_FILE]
    server.sent.clear()
    code, _, err = run_cli("weights", "get", "dfine_n_coco")
    assert code == 0, err
    assert server.requests[-1] == (N_FILE, f"bytes={cut}-")
    assert server.sent[N_FILE] == len(n_bytes) - cut  # only the rest travelled
    assert (cache / N_FILE).read_bytes() == n_bytes and not part.exists()


def test_server_without_range_support_restarts_from_zero(server, tmp_path, n_bytes):
    server.files[N_FILE], server.ranges = n_bytes, False
    part = tmp_path / "x.part"
    part.write_bytes(b"stale bytes from another try")
    url = f"http://127.0.0.1:{server.server_address[1]}/{N_FILE}"
    assert download(url, part) == len(n_bytes)
    assert part.read_bytes() == n_bytes


def test_part_that_is_already_whole_or_too_long(server, tmp_path, n_bytes):
    server.files[N_FILE] = n_bytes
    url = f"http://127.0.0.1:{server.server_address[1]}/{N_FILE}"
    part = tmp_path / "whole.part"
    part.write_bytes(n_bytes)  # complete, but the process stopped before verifying / renaming
    assert download(url, part) == len(n_bytes) and server.sent == {}  # 416 */N: nothing to fetch
    part.write_bytes(n_bytes + b"junk")  # not a prefix of the file: fetched again from zero
    assert download(url, part) == len(n_bytes) and part.read_bytes() == n_bytes
    assert server.requests[-1] == (N_FILE, None)


def test_cancel_keeps_part_for_resume(server, cache, n_bytes):
    server.files[N_FILE] = n_bytes
    entry = find_entry("dfine_n_coco")
    seen = []
    with pytest.raises(DownloadCancelled, match="kept"):
        fetch(entry, cache, progress=lambda d, t: seen.append(d), should_stop=lambda: len(seen) >= 2)
    part = cache / (N_FILE + ".part")
    assert part.stat().st_size == seen[-1] > 0
    path, check = fetch(entry, cache)
    assert path.read_bytes() == n_bytes and server.requests[-1][1] == f"bytes={seen[-1]}-"
    assert "fit the size-n D-FINE detector (80 classes)" in check
    assert fetch(entry, cache) == (path, "already in the cache")


def test_one_download_per_file_at_a_time(server, cache, n_bytes):
    from core.weights.lock import download_lock

    server.files[N_FILE] = n_bytes
    cache.mkdir()
    with download_lock(cache / N_FILE):  # as another process downloading it now
        code, _, err = run_cli("weights", "get", "dfine_n_coco")
        assert code == 2 and "another process is downloading it" in err
        assert server.requests == [] and not (cache / (N_FILE + ".part")).exists()
    assert run_cli("weights", "get", "dfine_n_coco")[0] == 0  # released: it goes ahead
    assert sorted(p.name for p in cache.iterdir()) == [N_FILE]  # no lock file left behind


def test_truncated_file_is_refused_and_not_kept(server, cache, n_bytes):
    server.files[N_FILE] = n_bytes[: len(n_bytes) // 2]  # served as if complete
    code, _, err = run_cli("weights", "get", "dfine_n_coco")
    assert code == 2 and "Traceback" not in err
    assert "refused dfine_n_coco" in err and "not kept" in err and "truncated" in err
    assert list(cache.iterdir()) == []


def test_wrong_size_file_is_refused_and_not_kept(server, cache, n_bytes):
    server.files["dfine_s_coco.pth"] = n_bytes  # an N checkpoint under the S name
    code, _, err = run_cli("weights", "get", "dfine_s_coco")
    assert code == 2
    assert "a size 'n' D-FINE checkpoint" in err and "not size 's'" in err
    assert list(cache.iterdir()) == []


def test_404_names_the_address_and_the_way_round(server, cache):
    code, _, err = run_cli("weights", "get", "dfine_m_coco")
    assert code == 2 and "HTTP 404" in err and "dfine_m_coco.pth" in err
    assert "dfine weights add dfine_m_coco.pth" in err
    assert not cache.exists() or list(cache.iterdir()) == []


def test_offline_says_which_file_to_fetch_and_how_to_add_it(cache, monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused, as without a network
    monkeypatch.setenv("DFINE_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError) as info:
        resolve_weights("dfine_n_coco", cache, size="n")
    msg = str(info.value)
    assert info.value.kind == "network" and "no connection" in msg
    assert f"http://127.0.0.1:{port}/{N_FILE}" in msg and f"dfine weights add {N_FILE}" in msg
    assert str(cache) in msg


def test_offline_training_is_one_line_and_an_error_event(cache, tmp_path, monkeypatch):
    from test_train_helpers import dfine, events_of, tiny_project

    monkeypatch.setenv("DFINE_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # discard port: refused
    root = tiny_project(tmp_path / "p", n_train=1, n_val=1)
    proc = dfine("train", str(root), "--events", "-", "--weights", "dfine_n_coco", "--no-progress",
                 check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0  # one line
    assert f"dfine weights add {N_FILE}" in proc.stderr
    assert events_of(proc.stdout)[-1]["event"] == "error"


# ----------------------------------------------------------------------------- add / resolve


def test_add_puts_a_verified_file_under_its_name(cache, tmp_path, n_bytes):
    src = tmp_path / "downloads" / N_FILE
    src.parent.mkdir()
    src.write_bytes(n_bytes)
    code, out, err = run_cli("weights", "add", str(src))
    assert code == 0, err
    assert (cache / N_FILE).read_bytes() == n_bytes and "dfine_n_coco" in out
    (cache / N_FILE).unlink()
    renamed = tmp_path / "model (1).pth"
    renamed.write_bytes(n_bytes)
    code, _, err = run_cli("weights", "add", str(renamed))
    assert code == 2 and "not a known weights name" in err and "--name" in err
    assert run_cli("weights", "add", str(renamed), "--name", "dfine_n_coco")[0] == 0
    assert (cache / N_FILE).read_bytes() == n_bytes
    code, _, err = run_cli("weights", "add", str(renamed), "--name", "dfine_x_coco")
    assert code == 2 and "a size 'n' D-FINE checkpoint" in err
    assert not (cache / "dfine_x_coco.pth").exists()
    assert sorted(p.name for p in cache.iterdir()) == [N_FILE]  # no temp file left


def test_backbone_files_verify_with_or_without_lab_layers(tmp_path):
    from core.model.hgnetv2 import HGNetv2

    b0 = tmp_path / "b0.pth"
    torch.save(HGNetv2("B0", use_lab=True).state_dict(), b0)  # as the official B0 file (N/S)
    assert "HGNetV2 B0 backbone" in verify_file(b0, find_entry("hgnetv2_b0"))
    b1 = tmp_path / "b1.pth"
    torch.save(HGNetv2("B1", use_lab=False).state_dict(), b1)
    verify_file(b1, find_entry("hgnetv2_b1"))
    with pytest.raises(WeightsError, match="does not fit the HGNetV2 B2 backbone"):
        verify_file(b1, find_entry("hgnetv2_b2"))


def test_full_checkpoint_is_not_a_backbone_and_class_count_is_checked(tmp_path, n_bytes):
    path = tmp_path / "x.pth"
    path.write_bytes(n_bytes)
    with pytest.raises(WeightsError, match="not the HGNetV2 B0 ImageNet backbone"):
        verify_file(path, find_entry("hgnetv2_b0"))
    from core.model import build_model

    obj365 = tmp_path / "o.pth"
    torch.save({"model": build_model("s", 80, task="detect").state_dict()}, obj365)
    with pytest.raises(WeightsError, match="has 80 classes, dfine_s_obj365 .Objects365. has 366"):
        verify_file(obj365, find_entry("dfine_s_obj365"))


def test_resolve_prefers_files_then_names(server, cache, tmp_path, monkeypatch, n_bytes):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / N_FILE
    local.write_bytes(b"x")
    assert resolve_weights(N_FILE, cache) == Path(N_FILE)  # an existing file wins over the name
    project = tmp_path / "proj"
    (project / "w").mkdir(parents=True)
    (project / "w" / "mine.pt").write_bytes(b"x")
    assert resolve_weights("w/mine.pt", cache, project_root=project) == project / "w" / "mine.pt"
    with pytest.raises(WeightsError, match="did you mean dfine_s_coco"):
        resolve_weights("dfine_s_cocoo", cache)
    with pytest.raises(WeightsError, match="no such file"):
        resolve_weights("some/dir/dfine_s_coco.pth", cache)
    with pytest.raises(WeightsError, match="for size n, the project trains size s; use dfine_s_coco"):
        resolve_weights("dfine_n_coco", cache, size="s")
    assert server.requests == []  # refused before any download
    with pytest.raises(WeightsError, match="downloads are off .*`dfine weights get dfine_n_coco`"):
        resolve_weights("dfine_n_coco", cache, size="n", allow_download=False)
    server.files[N_FILE] = n_bytes
    assert resolve_weights("dfine_n_coco", cache, size="n") == cache / N_FILE


def test_named_checkpoint_into_segmentation_model_reports_fresh_mask_head(cache, tmp_path, n_bytes):
    from core.model import build_model, load_weights

    cache.mkdir()
    (cache / N_FILE).write_bytes(n_bytes)
    model = build_model("n", 3, task="segment", image_size=256)
    report = load_weights(model, resolve_weights("dfine_n_coco", cache, size="n"))
    text = report.summary()
    assert report.source == "official-ema" and "mask head initialised fresh" in text
    assert "re-initialised class heads" in text and "other model tensors" not in text
    n_mask = sum(1 for k in model.state_dict() if k.startswith("mask_head.")
                 and not k.endswith("num_batches_tracked"))
    assert f"mask head initialised fresh ({n_mask} tensors" in text


def test_training_downloads_a_named_checkpoint_and_reports_what_it_loaded(server, cache, tmp_path, n_bytes):
    """`--weights dfine_n_coco` in a segment project: fetched from the (local) server into the
    cache, the detector loaded, class heads re-initialised, the mask head started fresh."""
    from test_train_helpers import dfine, events_of, tiny_project

    server.files[N_FILE] = n_bytes
    root = tiny_project(tmp_path / "p", n_train=1, n_val=1)
    proc = dfine("train", str(root), "--events", "-", "--weights", "dfine_n_coco", "--no-progress",
                 "--device", "cpu", "--set", "train.epochs=1", "train.batch_size=1", "train.workers=0")
    start = next(e for e in events_of(proc.stdout) if e["event"] == "start")
    init = start["init"]["weights"]
    assert init.startswith(f"{cache / N_FILE}: official-ema, loaded ")
    assert "mask head initialised fresh" in init and "re-initialised class heads" in init
    assert start["backbone_lr"] == pytest.approx(start["lr"] * 0.05)  # pretrained: official ratio
    assert (cache / N_FILE).read_bytes() == n_bytes
    assert "downloading dfine_n_coco" in proc.stderr and "(100%)" in proc.stderr


@pytest.mark.parametrize("size", ["n", "s", "m", "l", "x"])
def test_verification_accepts_exactly_the_official_key_manifest(size, reference_dir):
    """What a file must hold for dfine_<size>_coco is the official model's state_dict (keys and
    shapes recorded from the official code): a real release file passes, nothing else does."""
    from core.weights.verify import expected_shapes

    manifest = json.loads((reference_dir / f"dfine_{size}_nc80_keys.json").read_text())["state_dict"]
    official = {k: tuple(v) for k, v in manifest.items()
                if not k.endswith("num_batches_tracked") and k not in ("decoder.anchors", "decoder.valid_mask")}
    required, optional = expected_shapes(find_entry(f"dfine_{size}_coco"))
    assert required == official and optional == {}


def test_a_file_built_from_the_official_n_manifest_verifies(reference_dir, tmp_path):
    manifest = json.loads((reference_dir / "dfine_n_nc80_keys.json").read_text())["state_dict"]
    sd = {k: torch.zeros(v, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
          for k, v in manifest.items()}
    path = tmp_path / N_FILE
    torch.save({"model": sd, "ema": {"module": sd, "updates": 1}, "date": "x", "last_epoch": 1}, path)
    assert verify_file(path, find_entry("dfine_n_coco")).startswith("dfine_n_coco: official-ema")
    del sd["decoder.dec_bbox_head.2.layers.2.bias"]
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsError, match="1 of .* tensors .* missing .*dec_bbox_head.2.layers.2.bias"):
        verify_file(path, find_entry("dfine_n_coco"))
