"""The Qt xcb platform plugin PySide6 ships finds every shared library it links.

Offscreen tests never load the xcb plugin, so a missing system library (libxcb-icccm4 and
libxcb-keysyms1 were missing on a fresh Debian) only shows when a person runs `make run` on a real
display: "Could not load the Qt platform plugin xcb". The Makefile's QT_SYSTEM_PACKAGES installs them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb is the Linux platform plugin")


def qt_dir() -> Path:
    import PySide6

    return Path(PySide6.__file__).parent / "Qt"


def unresolved(library: Path) -> list[str]:
    """Names ldd reports as 'not found' for ``library``."""
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True).stdout
    return sorted({line.split()[0] for line in out.splitlines() if "not found" in line})


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is not installed on this machine")
def test_qt_xcb_plugin_resolves_all_libraries():
    plugin = qt_dir() / "plugins" / "platforms" / "libqxcb.so"
    qpa = next((qt_dir() / "lib").glob("libQt6XcbQpa.so*"), None)
    assert plugin.is_file(), f"PySide6 ships no xcb plugin at {plugin}"
    assert qpa is not None, "PySide6 ships no libQt6XcbQpa"
    missing = {str(lib.name): unresolved(lib) for lib in (plugin, qpa)}
    assert not any(missing.values()), (
        f"missing system libraries (add their packages to QT_SYSTEM_PACKAGES in the Makefile): {missing}")


def test_makefile_installs_the_xcb_libraries():
    """The package list names a package for each xcb library the plugin links (checked by name
    so a machine that happens to have them still catches a Makefile that forgot one)."""
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    for package in ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0", "libxcb-image0", "libxcb-render-util0",
                    "libxcb-randr0", "libxcb-shape0", "libxcb-xkb1", "libxkbcommon-x11-0"):
        assert package in makefile, package
