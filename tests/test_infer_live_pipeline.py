"""The live pipeline shows the newest frame: a model slower than the source drops stale frames
instead of falling behind (core.infer.live_pipeline; the GUI's capture thread uses it)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from core.infer.live_pipeline import FrameGrabber


def run_live(read, predict, show, pace_fps):
    """The consumer loop of a live view (as app.jobs.capture runs it): take the newest frame,
    predict, show; returns (shown, read, stale)."""
    grabber = FrameGrabber(read, pace_fps).start()
    shown = 0
    try:
        while (frame := grabber.take()) is not None:
            show(frame.image, predict(frame.image))
            shown += 1
    finally:
        grabber.stop()
    return SimpleNamespace(shown=shown, read=grabber.frames_read, stale=grabber.frames_stale)


def frames(n: int):
    return [np.full((4, 4, 3), i, np.uint8) for i in range(n)]


def reader(items, gate: threading.Event | None = None, done: threading.Event | None = None):
    it = iter(items)

    def read():
        if gate is not None:
            gate.wait(5)
        frame = next(it, None)
        if frame is None and done is not None:
            done.set()
        return frame

    return read


def test_consumer_gets_only_the_newest_frame_and_stale_ones_are_counted():
    done = threading.Event()
    grabber = FrameGrabber(reader(frames(10), done=done)).start()
    assert done.wait(5)
    first = grabber.take(timeout=5)
    assert first is not None and first.index == 9 and int(first.image[0, 0, 0]) == 9
    assert grabber.frames_read == 10 and grabber.frames_stale == 9
    assert grabber.take(timeout=5) is None and grabber.ended  # end of source
    grabber.stop()


def test_a_consumer_faster_than_the_source_sees_every_frame_in_order():
    items = iter(frames(5))
    ready = threading.Semaphore(1)

    def read():  # the source delivers the next frame only after the last one was taken
        ready.acquire(timeout=5)
        return next(items, None)

    grabber = FrameGrabber(read).start()
    seen = []
    while (f := grabber.take(timeout=5)) is not None:
        seen.append(f.index)
        ready.release()
    grabber.stop()
    assert seen == [0, 1, 2, 3, 4] and grabber.frames_stale == 0


def test_reader_errors_reach_the_consumer():
    def broken():
        raise OSError("camera unplugged")

    grabber = FrameGrabber(broken).start()
    with pytest.raises(OSError, match="unplugged"):
        grabber.take(timeout=5)
    grabber.stop()


def test_paced_file_with_a_slow_model_drops_and_stays_fresh():
    """A 200-fps 'camera' and a model that takes 20 ms: most frames are stale; every shown frame
    was the newest one when taken, so shown + stale = read (nothing queued behind)."""
    import time

    items = frames(60)
    shown = []

    def slow_predict(image):
        time.sleep(0.02)
        return int(image[0, 0, 0])

    stats = run_live(reader(items), slow_predict, lambda image, r: shown.append(r), pace_fps=200)
    assert stats.read == 60 and stats.shown == len(shown)
    assert stats.stale > 0 and stats.shown + stats.stale == stats.read
    assert shown == sorted(shown) and len(set(shown)) == len(shown)
