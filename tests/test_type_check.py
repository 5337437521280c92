"""Issue #34: core/ type-checks clean with mypy (config: pyproject.toml [tool.mypy]).

`make test` runs `mypy core` before the suite; this test makes a plain `pytest` run (an IDE, a
single-file run, CI without make) see the same failure. It shares mypy's cache (.mypy_cache/) with
the make step, so after it the check takes a few seconds. Skipped when mypy is not installed (it
comes with the `dev` extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_core_type_checks_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, "-m", "mypy", "core"], cwd=REPO, capture_output=True, text=True,
                          timeout=500)
    assert proc.returncode == 0, f"mypy core found problems:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"
    assert "Success: no issues found" in proc.stdout
