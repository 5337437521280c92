"""A local HTTP server for the weights-manager tests (127.0.0.1 only; nothing leaves the machine),
and the size-N checkpoint in the official release layout that it serves."""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch


class _Handler(BaseHTTPRequestHandler):
    """Serves server.files; honours Range when server.ranges; cuts a file after
    server.stop_after[name] bytes of the body (then closes the connection); sleeps
    server.delay seconds per 256 KB when set; with server.trickle sends one byte every `trickle`
    seconds; server.stall_after[name] bytes, then holds the connection open and sends nothing
    (until the server shuts down)."""

    def do_GET(self) -> None:
        srv = self.server
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        srv.requests.append((name, rng))
        data = srv.files.get(name)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and srv.ranges:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        cut = srv.stop_after.get(name)
        if cut is not None:
            body = body[:cut]
            self.close_connection = True
        if srv.trickle or name in srv.stall_after:
            self._trickle_or_stall(body, srv.stall_after.get(name))
            return
        if srv.delay:  # a slow server, so a test can watch progress and cancel
            for i in range(0, len(body), 256 * 1024):
                self.wfile.write(body[i:i + 256 * 1024])
                self.wfile.flush()
                time.sleep(srv.delay)
        else:
            self.wfile.write(body)
        self.wfile.flush()
        srv.sent[name] = srv.sent.get(name, 0) + len(body)
        if cut is not None:
            self.connection.shutdown(socket.SHUT_RDWR)

    def _trickle_or_stall(self, body: bytes, stall_after: int | None) -> None:
        srv = self.server
        if stall_after is not None:
            self.wfile.write(body[:stall_after])
            self.wfile.flush()
            srv.release.wait(60)  # a server that stops sending but keeps the connection
            return
        try:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if srv.release.wait(srv.trickle):
                    return
        except OSError:  # the client gave up
            pass

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve_weights(monkeypatch):
    """A running server; DFINE_WEIGHTS_MIRROR points the registry at it."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.stop_after, srv.sent, srv.ranges, srv.delay = {}, [], {}, {}, True, 0.0
    srv.trickle, srv.stall_after, srv.release = 0.0, {}, threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DFINE_WEIGHTS_MIRROR", f"http://127.0.0.1:{srv.server_address[1]}/")
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def official_n_checkpoint(path: Path) -> bytes:
    """Write a size-N 80-class detector in the official release layout (model + ema +
    bookkeeping) to `path`; returns its bytes."""
    from core.model import build_model

    torch.manual_seed(0)
    sd = build_model("n", 80, task="detect", image_size=640).state_dict()
    torch.save({"model": sd, "ema": {"module": sd, "updates": 1000, "warmups": 1000},
                "date": "2024-11-07T00:00:00", "last_epoch": 159}, path)
    return path.read_bytes()
