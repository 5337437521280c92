"""SAM by name: the registry's ONNX pairs, `dfine weights get/add` against a local HTTP server
(127.0.0.1, never the internet) with tiny ONNX files of the real signatures, the signature check,
the offline instruction, and the click-to-segment session (embedding once, prompts -> mask ->
proposal polygon in image pixels)."""

from __future__ import annotations

import io
import json
import socket
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import sam_onnx_fixtures as fx  # noqa: E402
from core.cli import main as dfine_main
from core.errors import UserFacingError, WeightsError
from core.sam import EmbeddingCache, SamModel, mask_proposal
from core.weights.download import DownloadError
from core.weights.sam_registry import (CONTRACTS, fetch_sam, find_sam, sam_entries, sam_files,
                                       verify_sam_file)
from weights_server import serve_weights

MOBILE = find_sam("mobile_sam")
TI = find_sam("efficientsam_ti")


@pytest.fixture()
def server(monkeypatch):
    with serve_weights(monkeypatch) as srv:
        yield srv


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DFINE_WEIGHTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def pairs() -> dict[str, dict[str, bytes]]:
    return {"sam": {"encoder": fx.sam_encoder(), "decoder": fx.sam_decoder()},
            "efficientsam": {"encoder": fx.efficientsam_encoder(), "decoder": fx.efficientsam_decoder()}}


def serve_pair(server, entry, pairs) -> None:
    for part, file in entry.files().items():
        server.files[file] = pairs[entry.contract][part]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = dfine_main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_registry_has_two_cpu_pairs_with_address_size_licence_source():
    entries = sam_entries()
    assert {e.name for e in entries} >= {"mobile_sam", "efficientsam_ti"}
    assert {e.contract for e in entries} == set(CONTRACTS)
    for e in entries:
        assert e.encoder_url.startswith("https://") and e.encoder_url.endswith("/" + e.encoder_file)
        assert e.decoder_url.startswith("https://") and e.decoder_url.endswith("/" + e.decoder_file)
        assert 5 < e.size_mb < 200 and "Apache-2.0" in e.licence and len(e.source) > 20
    assert find_sam("MOBILE_SAM") is MOBILE and find_sam("sam_huge") is None


@pytest.mark.parametrize("name", ["mobile_sam", "efficientsam_ti"])
def test_get_downloads_both_halves_verifies_and_caches(server, cache, pairs, name):
    entry = find_sam(name)
    serve_pair(server, entry, pairs)
    code, out, err = run_cli("weights", "get", name)
    assert code == 0, err
    paths = sam_files(entry, cache)
    for part, path in paths.items():
        assert path.read_bytes() == pairs[entry.contract][part]
        assert not path.with_name(path.name + ".part").exists()
    assert "fit the" in out and "contract" in out
    before = len(server.requests)
    assert run_cli("weights", "get", name)[0] == 0 and len(server.requests) == before  # cached
    code, out, _ = run_cli("weights", "list", "--json")
    row = next(r for r in json.loads(out) if r["name"] == name)
    assert row["cached"] and row["licence"] == entry.licence


def test_wrong_signature_is_refused_and_not_kept(server, cache, pairs):
    server.files[MOBILE.encoder_file] = pairs["efficientsam"]["encoder"]  # NCHW: rank 4, not HWC
    server.files[MOBILE.decoder_file] = pairs["sam"]["decoder"]
    code, _, err = run_cli("weights", "get", "mobile_sam")
    assert code == 2 and "rank 4" in err and "needs rank 3" in err and "deleted" in err
    assert not any(p.is_file() for p in sam_files(MOBILE, cache).values())
    assert not list((cache / "mobile_sam").glob("*.part"))


def test_decoder_with_other_input_names_is_refused(tmp_path, pairs):
    path = tmp_path / TI.decoder_file
    path.write_bytes(pairs["sam"]["decoder"])  # SAM's decoder where EfficientSAM's belongs
    with pytest.raises(WeightsError, match="no input named 'batched_point_coords'"):
        verify_sam_file(path, TI, "decoder")
    path.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(WeightsError, match="not an ONNX model"):
        verify_sam_file(path, TI, "decoder")


def test_offline_gives_the_one_line_weights_add_instruction(cache, monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connection refused, as without a network
    monkeypatch.setenv("DFINE_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError) as info:
        fetch_sam(MOBILE, cache)
    msg = str(info.value)
    assert "\n" not in msg and info.value.kind == "network"
    assert (f"dfine weights add {MOBILE.encoder_file} {MOBILE.decoder_file} --name mobile_sam" in msg)
    assert f"http://127.0.0.1:{port}/{MOBILE.encoder_file}" in msg


def test_add_checks_then_copies_each_half(tmp_path, cache, pairs):
    enc, dec = tmp_path / MOBILE.encoder_file, tmp_path / MOBILE.decoder_file
    enc.write_bytes(pairs["sam"]["encoder"])
    dec.write_bytes(pairs["sam"]["decoder"])
    code, out, err = run_cli("weights", "add", str(enc), "--name", "mobile_sam")
    assert code == 0 and "still missing the decoder" in out
    assert run_cli("weights", "add", str(dec), "--name", "mobile_sam")[0] == 0
    assert SamModel.from_cache(MOBILE, cache).contract == "sam"
    wrong = tmp_path / "other.onnx"
    wrong.write_bytes(pairs["sam"]["encoder"])
    code, _, err = run_cli("weights", "add", str(wrong), "--name", "mobile_sam")
    assert code == 2 and "keep the release file names" in err


def test_from_cache_says_how_to_get_a_missing_pair(cache):
    with pytest.raises(UserFacingError, match="run `dfine weights get efficientsam_ti`"):
        SamModel.from_cache(TI, cache)


def pair_on_disk(tmp_path, pairs, contract) -> SamModel:
    enc, dec = tmp_path / f"{contract}_enc.onnx", tmp_path / f"{contract}_dec.onnx"
    enc.write_bytes(pairs[contract]["encoder"])
    dec.write_bytes(pairs[contract]["decoder"])
    return SamModel(enc, dec, contract, threads=1)


def test_sam_contract_click_maps_to_and_from_the_1024_frame(tmp_path, pairs):
    model = pair_on_disk(tmp_path, pairs, "sam")
    img = np.full((100, 200, 3), 90, np.uint8)
    cache = EmbeddingCache(2)
    emb = cache.get_or_embed("a.jpg", model, img)
    assert cache.get_or_embed("a.jpg", model, None) is emb  # once per image: a click never re-encodes
    assert emb.input_size == (512, 1024) and emb.scale == pytest.approx(5.12)
    mask, score = model.predict(emb, [(50, 30)], [1])
    assert mask.shape == (100, 200) and score == pytest.approx(0.9)
    assert mask[30, 50] and not mask[30, 75] and not mask[58, 50]  # radius 102.4 / 5.12 = 20 px
    inst = mask_proposal(mask, class_id=3, score=score)
    assert inst.source == "model" and inst.class_id == 3 and inst.score == pytest.approx(0.9)
    poly = Polygon(inst.polygons[0])
    assert poly.area == pytest.approx(2 * 20 ** 2, rel=0.1)  # the diamond's area in image pixels
    assert poly.centroid.x == pytest.approx(50, abs=1) and poly.centroid.y == pytest.approx(30, abs=1)
    boxed, _ = model.predict(emb, [], [], box=(120, 40, 160, 80))  # a box alone: its corners lead
    assert boxed[40, 120] and not boxed[30, 50]


def test_efficientsam_contract_picks_the_best_candidate_in_image_pixels(tmp_path, pairs):
    model = pair_on_disk(tmp_path, pairs, "efficientsam")
    emb = model.embed(np.zeros((300, 400, 3), np.uint8))
    assert emb.scale == 1.0 and emb.input_size == (300, 400) and emb.features.shape == (1, 256, 64, 64)
    mask, score = model.predict(emb, [(200, 150), (10, 10)], [1, 0])
    assert score == pytest.approx(0.9) and mask.shape == (300, 400)  # candidate 1 of 3, not the empty ones
    assert mask[150, 200] and mask[150, 300] and not mask[150, 310] and not mask[10, 10]
    assert mask.sum() == pytest.approx(2 * 102.4 ** 2, rel=0.03)


def test_predict_refuses_empty_prompts(tmp_path, pairs):
    model = pair_on_disk(tmp_path, pairs, "sam")
    emb = model.embed(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(UserFacingError, match="needs a click or a box"):
        model.predict(emb)
    with pytest.raises(UserFacingError, match="2 points but 1 labels"):
        model.predict(emb, [(1, 1), (2, 2)], [1])
    assert mask_proposal(np.zeros((10, 10), bool), 0) is None
