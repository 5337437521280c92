"""A full disk, a read-only folder or a closed pipe: one clear line, nothing lost, no traceback."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from core import atomic_io
from core.cli import main
from core.project import Project


def _full_disk_after(n_bytes: int):
    """A writer that puts `n_bytes` in the file and then hits ENOSPC, as a full disk does."""
    def write(f):
        f.write(b"x" * n_bytes)
        raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_full_disk_keeps_the_old_file_and_names_the_target(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old checkpoint")
    with pytest.raises(OSError) as err:
        atomic_io.atomic_write_with(target, _full_disk_after(1000))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert str(err.value.strerror) == (f"No space left on device while writing {target} "
                                       "(the previous version is unchanged)")
    assert target.read_bytes() == b"old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temp file is gone
    with pytest.raises(OSError, match="nothing was written"):
        atomic_io.atomic_write_with(tmp_path / "new.txt", _full_disk_after(10))
    assert not (tmp_path / "new.txt").exists()


def test_cli_reports_a_full_disk_in_one_line(tmp_path, capsys, monkeypatch):
    assert main(["new", str(tmp_path / "p"), "--classes", "a,b"]) == 0
    before = (tmp_path / "p" / "project.yaml").read_text()
    real = atomic_io.atomic_write_with
    monkeypatch.setattr(atomic_io, "atomic_write_with",
                        lambda path, write: real(path, _full_disk_after(5)))
    capsys.readouterr()
    assert main(["classes", str(tmp_path / "p"), "add", "c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfine classes: error: No space left on device while writing ")
    assert ("unchanged)" in err or "nothing was written)" in err) and "Traceback" not in err
    assert (tmp_path / "p" / "project.yaml").read_text() == before
    assert Project.open(tmp_path / "p").class_names == ["a", "b"]


def test_unrelated_os_errors_still_raise(monkeypatch):
    from core import project_cli

    def boom(args):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(project_cli, "run_new", boom)
    with pytest.raises(OSError, match="Input/output"):
        main(["new", "x", "--classes", "a"])


def test_closed_pipe_is_not_a_traceback(tmp_path):
    """`dfine classes P list | head -1`: the reader leaves early."""
    main(["new", str(tmp_path / "p"), "--classes", ",".join(f"c{i}" for i in range(3000))])
    proc = subprocess.run(f"{sys.executable} -m core classes {tmp_path / 'p'} list | head -1",
                          shell=True, capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.startswith("  0  c0")
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
