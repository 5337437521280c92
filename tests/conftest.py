"""Shared test setup: offscreen Qt, few threads (CI has 2 cores), paths to ../shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; DFINE_SHARED points elsewhere (e.g. a copy carried to a GPU machine).
SHARED = Path(os.environ.get("DFINE_SHARED") or REPO.parent / "shared").resolve()
SCREENSHOTS = REPO / "tests_out" / "screenshots"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def coco8_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "coco8-seg"


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference"


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
