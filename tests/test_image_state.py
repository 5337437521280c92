"""core.image_state: the done/verified set round-trips atomically and bad files give one clear error."""

from __future__ import annotations

import json

import pytest

from core.errors import LabelError
from core.image_state import read_done, set_done, state_path, write_done


def test_round_trip_and_set_unset(tmp_path):
    assert read_done(tmp_path) == set()
    assert set_done(tmp_path, ["a.jpg", "sub/b.png"], True) == {"a.jpg", "sub/b.png"}
    assert read_done(tmp_path) == {"a.jpg", "sub/b.png"}
    assert set_done(tmp_path, ["a.jpg", "never.jpg"], False) == {"sub/b.png"}
    data = json.loads(state_path(tmp_path).read_text())
    assert data == {"version": 1, "done": ["sub/b.png"]}
    mtime = state_path(tmp_path).stat().st_mtime_ns
    set_done(tmp_path, ["sub/b.png"], True)  # no change: no write
    assert state_path(tmp_path).stat().st_mtime_ns == mtime
    write_done(tmp_path, [])
    assert read_done(tmp_path) == set()
    assert not [p for p in state_path(tmp_path).parent.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("text, match", [
    ('{"version": 1, "done": [1, 2]}', "must be a list of image paths"),
    ('{"version": 2, "done": []}', 'expected an object with "version": 1'),
    ('[1, 2]', 'expected an object'),
    ('{"version": 1,\n "done": [}', r"image_state.json:2: not valid JSON"),
])
def test_bad_file_is_one_line_error_naming_it(tmp_path, text, match):
    state_path(tmp_path).parent.mkdir(parents=True)
    state_path(tmp_path).write_text(text)
    with pytest.raises(LabelError, match=match) as info:
        read_done(tmp_path)
    assert "image_state.json" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(LabelError):
        set_done(tmp_path, ["a.jpg"], True)  # never overwrites a file it cannot read
    assert state_path(tmp_path).read_text() == text


def test_concurrent_marks_are_all_kept(tmp_path):
    """set_done is a read-modify-write under the project lock: writers never drop each other's marks."""
    import threading

    from core.image_state import read_done, set_done

    def mark(prefix: str) -> None:
        for i in range(40):
            set_done(tmp_path, [f"{prefix}_{i}.jpg"], True)

    threads = [threading.Thread(target=mark, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert read_done(tmp_path) == {f"{p}_{i}.jpg" for p in "abc" for i in range(40)}
