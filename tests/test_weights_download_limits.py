"""Downloads that never hang (issue #35): a connect timeout, a stall timeout, an overall deadline
and a Cancel (SIGTERM) that stops a blocked read within 2 s, each keeping a resumable `.part`.
Served by a local trickling / stalling HTTP server on 127.0.0.1 (tests/weights_server.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from weights_server import serve_weights

from core.weights import DownloadCancelled, DownloadError, resolve_weights
from core.weights.download import Limits, download

REPO = Path(__file__).resolve().parents[1]
N_FILE = "dfine_n_coco.pth"
BODY = bytes(range(256)) * 8  # 2 KB: never finished at a byte per tick


@pytest.fixture()
def server(monkeypatch):
    with serve_weights(monkeypatch) as srv:
        srv.files[N_FILE] = BODY
        yield srv


def url_of(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/{N_FILE}"


def test_a_trickling_server_hits_the_overall_deadline_and_the_part_resumes(server, tmp_path):
    server.trickle = 0.2
    part, seen = tmp_path / "w.part", []
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"not finished within the 1.5 s limit.*kept, run the same "
                                            r"command again to resume") as err:
        download(url_of(server), part, lambda done, total: seen.append((done, total)),
                 limits=Limits(connect=5, stall=10, deadline=1.5, poll=0.05))
    assert err.value.kind == "interrupted" and time.monotonic() - start < 2.5
    kept = part.stat().st_size
    assert 3 <= kept < len(BODY) and part.read_bytes() == BODY[:kept]
    assert seen[-1] == (kept, len(BODY)) and [d for d, _ in seen] == sorted({d for d, _ in seen})
    server.trickle = 0.0
    assert download(url_of(server), part) == len(BODY) and part.read_bytes() == BODY
    assert server.requests[-1] == (N_FILE, f"bytes={kept}-")


def test_a_stalled_server_hits_the_stall_timeout_and_the_part_resumes(server, tmp_path):
    server.stall_after[N_FILE] = 100
    part = tmp_path / "w.part"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"no data for 1 s \(the connection stalled after 0.0 MB"
                                            r" of 0.0 MB\).*run the same command again") as err:
        download(url_of(server), part, limits=Limits(connect=5, stall=1.0, deadline=60, poll=0.05))
    assert err.value.kind == "interrupted" and 1.0 <= time.monotonic() - start < 2.5
    assert part.read_bytes() == BODY[:100]
    del server.stall_after[N_FILE]
    assert download(url_of(server), part) == len(BODY) and part.read_bytes() == BODY


def test_a_server_that_never_answers_hits_the_connect_timeout(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"no connection to 127.0.0.1:\d+ \(timed out\)") as err:
            download(f"http://127.0.0.1:{silent.getsockname()[1]}/x.pth", tmp_path / "x.part",
                     limits=Limits(connect=0.5, stall=10, deadline=60, poll=0.05))
    assert err.value.kind == "network" and time.monotonic() - start < 2.0


def test_cancel_stops_a_read_that_is_blocked_on_a_stalled_server(server, tmp_path):
    server.stall_after[N_FILE] = 10
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    start = time.monotonic()
    with pytest.raises(DownloadCancelled, match="10 bytes kept"):
        download(url_of(server), tmp_path / "w.part", should_stop=stop.is_set,
                 limits=Limits(connect=5, stall=30, deadline=60, poll=0.05))
    assert time.monotonic() - start < 1.5
    assert (tmp_path / "w.part").read_bytes() == BODY[:10]
    # the give-up hangs up the connection: the helper thread's blocked read ends, so no thread
    # (nor the response's buffer lock) outlives the download until the 30 s read timeout
    deadline = time.monotonic() + 2.0
    while any(t.name == "weights-download" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [t for t in threading.enumerate() if t.name == "weights-download"]


def test_training_passes_its_stop_flag_to_a_weights_download(server, tmp_path):
    with pytest.raises(DownloadCancelled):
        resolve_weights("dfine_n_coco", tmp_path, should_stop=lambda: True)


@pytest.mark.parametrize("how", ["trickle", "stall"])
def test_sigterm_stops_dfine_weights_get_within_2_s_and_keeps_the_part(server, tmp_path, how):
    if how == "trickle":
        server.trickle = 0.5
    else:
        server.stall_after[N_FILE] = 10
    env = {**os.environ, "DFINE_WEIGHTS_DIR": str(tmp_path), "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "core", "weights", "get", "dfine_n_coco", "--events", "-"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = []
        for line in proc.stdout:  # wait until bytes arrived (the read is then blocked or trickling)
            events.append(json.loads(line))
            if events[-1].get("stage") == "download":
                break
        time.sleep(1.0 if how == "stall" else 0.2)
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # say where it hangs: faulthandler dumps every thread
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=10)
            pytest.fail(f"no exit 10 s after SIGTERM; its threads:\n{proc.stderr.read()[-6000:]}")
        took = time.monotonic() - start
    finally:
        proc.kill()
    events += [json.loads(line) for line in proc.stdout.read().splitlines()]
    err = proc.stderr.read()
    assert took < 2.0, f"took {took:.1f} s after SIGTERM"
    assert rc == 130, err
    assert events[-1]["event"] == "cancelled" and "kept in" in err and "Traceback" not in err
    part = tmp_path / (N_FILE + ".part")
    assert part.is_file() and part.read_bytes() == BODY[:part.stat().st_size] and part.stat().st_size >= 1
    assert not (tmp_path / N_FILE).exists()

