"""dfine-studio desktop application (PySide6 / Qt 6).

The GUI edits labels and drives the engine; it holds no ML math. Everything it
changes on disk goes through ``core.project`` (atomic writes), so the same project
stays usable from the headless ``dfine`` commands.
"""

from core import __version__

__all__ = ["__version__"]
