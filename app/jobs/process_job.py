"""Run one `python -m core <verb> ...` command as a QProcess and turn its output into signals.

Why a separate process: a crash or an out-of-memory in training/export can never take the
GUI down, and Cancel is a plain SIGTERM that the engine already handles (save, exit 0).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from core.messages import ErrorEvent, parse_event


class ProcessJob(QObject):
    """A `python -m core` child. stdout JSON lines -> ``event`` as the typed model of
    ``core.messages`` (parsed here, once; a line that breaks the contract goes to ``log`` with the
    reason, never to a panel); other lines -> ``log``."""

    event = Signal(object)  # a core.messages event model (ProgressEvent, TrainStepEvent, ...)
    log = Signal(str)
    finished = Signal(int, bool)  # exit code, crashed (killed by a signal / failed to start)

    def __init__(self, args: list[str], cwd: Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.args = list(args)
        self.last_error: str | None = None
        self._stdout_tail = b""
        self._stderr_tail = b""
        self._proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
        self._proc.setProcessEnvironment(env)
        if cwd is not None:
            self._proc.setWorkingDirectory(str(cwd))
        self._proc.readyReadStandardOutput.connect(self._read_stdout)
        self._proc.readyReadStandardError.connect(self._read_stderr)
        self._proc.finished.connect(self._on_finished)
        self._proc.errorOccurred.connect(self._on_error)

    @property
    def command(self) -> list[str]:
        """The child's argv. A frozen (PyInstaller) app has no `python -m`: it re-runs itself
        with `--core`, which app.main dispatches to core.cli."""
        if getattr(sys, "frozen", False):
            return [sys.executable, "--core", *self.args]
        return [sys.executable, "-m", "core", *self.args]

    def start(self) -> None:
        program, *argv = self.command
        self.log.emit("$ " + " ".join(self.command))
        self._proc.start(program, argv)

    def is_running(self) -> bool:
        return self._proc.state() != QProcess.ProcessState.NotRunning

    def cancel(self) -> None:
        """SIGTERM: the engine finishes the current step, saves, and exits 0."""
        if self.is_running():
            self._proc.terminate()

    def kill(self) -> None:
        if self.is_running():
            self._proc.kill()

    def wait(self, msecs: int = 30000) -> bool:
        return self._proc.waitForFinished(msecs)

    def _read_stdout(self) -> None:
        self._stdout_tail = self._split_lines(self._stdout_tail + bytes(self._proc.readAllStandardOutput()),
                                              self._handle_stdout_line)

    def _read_stderr(self) -> None:
        self._stderr_tail = self._split_lines(self._stderr_tail + bytes(self._proc.readAllStandardError()),
                                              self.log.emit)

    @staticmethod
    def _split_lines(buffer: bytes, handle) -> bytes:
        *lines, rest = buffer.split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            if text.strip():
                handle(text)
        return rest

    def _handle_stdout_line(self, text: str) -> None:
        if text.startswith("{"):
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                self.log.emit(text)
                return
            if isinstance(payload, dict):
                try:
                    msg = parse_event(payload)
                except ValueError as exc:
                    self.log.emit(f"{text}\n({exc})")
                    return
                if isinstance(msg, ErrorEvent):
                    self.last_error = msg.message
                self.event.emit(msg)
                return
        self.log.emit(text)

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        for tail, handle in ((self._stdout_tail, self._handle_stdout_line), (self._stderr_tail, self.log.emit)):
            if tail.strip():
                handle(tail.decode("utf-8", errors="replace"))
        self._stdout_tail = self._stderr_tail = b""
        self.finished.emit(int(code), status == QProcess.ExitStatus.CrashExit)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.last_error = f"could not start {sys.executable}"
            self.log.emit(self.last_error)
            self.finished.emit(-1, True)
