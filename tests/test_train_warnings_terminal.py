"""Issue #35: a warning of `dfine train` (a skipped unreadable image...) reaches the terminal as
one human line on stderr, not only events.jsonl; with ``--events -`` stdout stays pure JSON."""

from __future__ import annotations

import io
import json

from core.cli import main
from core.train.events import EventLog


def test_warning_events_are_also_one_line_on_the_notice_stream(tmp_path):
    out, notices = io.StringIO(), io.StringIO()
    log = EventLog(tmp_path / "run", out, notices=notices)
    log.emit("warning", message="skipped unreadable sample a.jpg: cannot decode\n  (corrupt)")
    log.emit("epoch", epoch=0, step=1, loss=1.0, time_s=2.0)
    log.close()
    assert notices.getvalue() == "dfine train: warning: skipped unreadable sample a.jpg: cannot decode (corrupt)\n"
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["warning", "epoch"]


def test_disabled_rank_prints_no_warning(tmp_path):
    notices = io.StringIO()
    log = EventLog(tmp_path / "rank1", None, enabled=False, notices=notices)
    log.emit("warning", message="x")
    assert notices.getvalue() == ""


def test_train_names_a_skipped_image_on_stderr_with_and_without_events(tmp_path, capsys):
    from test_train_helpers import tiny_project

    root = tiny_project(tmp_path / "p", n_train=2, n_val=1)
    bad = root / "images" / "img000.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    sets = ["train.epochs=1", "train.batch_size=2", "train.workers=0", "train.mosaic_prob=0", "train.device=cpu"]
    for name, extra in (("to_stdout", ["--events", "-"]), ("to_file", [])):
        assert main(["train", str(root), "--name", name, "--no-progress", *extra, "--set", *sets]) == 0
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if "warning:" in line]
        if extra:  # the event on stdout is the one copy (the GUI shows it); nothing human on stdout
            events_out = [json.loads(line) for line in captured.out.splitlines()]
            warned = [e["message"] for e in events_out if e["event"] == "warning"]
            assert len(warned) == 1 and str(bad) in warned[0] and lines == []
        else:
            assert len(lines) == 1 and "dfine train: warning: skipped unreadable sample" in lines[0]
            assert str(bad) in lines[0]
        events = (root / "runs" / name / "events.jsonl").read_text()
        assert "skipped unreadable sample" in events
