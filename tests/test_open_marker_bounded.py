"""Open-window markers are read through the bounded reader: a FIFO or an oversized file in
.dfine/open is skipped at once (a plain read_text of a FIFO blocks until a writer appears)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading

import pytest

from app.open_marker import OPEN_DIR, others


@pytest.mark.skipif(sys.platform == "win32", reason="needs mkfifo")
def test_a_fifo_or_a_huge_marker_is_skipped_and_a_live_one_is_listed(tmp_path):
    folder = tmp_path / OPEN_DIR
    folder.mkdir(parents=True)
    os.mkfifo(folder / "a_fifo.json")
    (folder / "b_huge.json").write_text(json.dumps({"pid": os.getpid(), "pad": "x" * 5000}))
    live = {"pid": os.getpid(), "host": socket.gethostname()}
    (folder / "c_live.json").write_text(json.dumps(live))
    found: list[list[dict]] = []
    reader = threading.Thread(target=lambda: found.append(others(tmp_path)), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading the markers blocked on the FIFO"
    assert found == [[live]]
