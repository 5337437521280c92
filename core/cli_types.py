"""argparse ``type=`` checkers for every number a `dfine` verb takes: the one place CLI numbers
are range-checked.

Why: a plain ``type=int`` accepts ``--top -1`` or ``--max-frames -1``, and the bad value then
surfaces later as a traceback or as a silent "do nothing". A checker here raises
``argparse.ArgumentTypeError``, so argparse prints ``dfine <verb>: error: argument --top:
must be a whole number >= 1, got '-1'`` and exits 2 before anything runs.
tests/test_cli_types.py walks every verb's parser and fails on a plain int/float option.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from annotated_types import Ge, Gt, Le, Lt


class CheckedNumber:
    """Base of every checker here (the parser walk in the tests looks for it)."""

    def allowed(self) -> str:
        raise NotImplementedError

    def _fail(self, text: str) -> argparse.ArgumentTypeError:
        return argparse.ArgumentTypeError(f"must be {self.allowed()}, got {text!r}")


class IntRange(CheckedNumber):
    """A whole number in [lo, hi] (no bound on a None end), optionally a multiple of ``multiple_of``."""

    def __init__(self, lo: int | None = None, hi: int | None = None, multiple_of: int | None = None):
        self.lo, self.hi, self.multiple_of = lo, hi, multiple_of
        self.__name__ = "int"  # argparse names the type in its own messages

    def allowed(self) -> str:
        if self.lo is not None and self.hi is not None:
            what = f"a whole number in {self.lo}..{self.hi}"
        elif self.lo is not None:
            what = f"a whole number >= {self.lo}"
        elif self.hi is not None:
            what = f"a whole number <= {self.hi}"
        else:
            what = "a whole number"
        return what + (f" and a multiple of {self.multiple_of}" if self.multiple_of else "")

    def __call__(self, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise self._fail(text) from None
        if ((self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi)
                or (self.multiple_of and value % self.multiple_of)):
            raise self._fail(text)
        return value

    def __repr__(self) -> str:
        return f"IntRange({self.allowed()})"


class FloatRange(CheckedNumber):
    """A finite number between lo and hi; each end inclusive or not (``lo_open``/``hi_open``)."""

    def __init__(self, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.__name__ = "float"

    def allowed(self) -> str:
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"a number in {left}{self.lo:g}, {self.hi:g}{right}"
        if self.lo is not None:
            return f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"a number {'<' if self.hi_open else '<='} {self.hi:g}"
        return "a finite number"

    def __call__(self, text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise self._fail(text) from None
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if not math.isfinite(value) or too_low or too_high:
            raise self._fail(text)
        return value

    def __repr__(self) -> str:
        return f"FloatRange({self.allowed()})"


class IntList(CheckedNumber):
    """Comma-separated whole numbers, each in the ``item`` range (e.g. ``--batch-sizes 1,4,8``)."""

    def __init__(self, item: IntRange):
        self.item = item
        self.__name__ = "int list"

    def allowed(self) -> str:
        return f"comma-separated whole numbers, each {self.item.allowed().removeprefix('a whole number ')}"

    def __call__(self, text: str) -> list[int]:
        parts = [t.strip() for t in text.split(",")]
        if not parts or any(not t for t in parts):
            raise self._fail(text)
        try:
            return [self.item(t) for t in parts]
        except argparse.ArgumentTypeError:
            raise self._fail(text) from None


class FrameSize(CheckedNumber):
    """``WIDTHxHEIGHT`` with both sides in 1..max_side (a timed frame is allocated that big)."""

    def __init__(self, max_side: int = 16384):
        self.max_side = max_side
        self.__name__ = "frame size"

    def allowed(self) -> str:
        return f"WIDTHxHEIGHT with each side in 1..{self.max_side}, e.g. 1920x1080"

    def __call__(self, text: str) -> tuple[int, int]:
        parts = text.lower().split("x")
        if len(parts) != 2:
            raise self._fail(text)
        side = IntRange(1, self.max_side)
        try:
            return side(parts[0]), side(parts[1])
        except argparse.ArgumentTypeError:
            raise self._fail(text) from None


def int_range(lo: int | None = None, hi: int | None = None, multiple_of: int | None = None) -> IntRange:
    return IntRange(lo, hi, multiple_of)


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                hi_open: bool = False) -> FloatRange:
    return FloatRange(lo, hi, lo_open, hi_open)


def positive_int_list() -> IntList:
    return IntList(IntRange(1))


def frame_size(max_side: int = 16384) -> FrameSize:
    return FrameSize(max_side)


def probability() -> FloatRange:
    """A confidence threshold or fraction: [0, 1]."""
    return FloatRange(0.0, 1.0)


def config_range(model, field: str) -> IntRange | FloatRange:
    """The checker for an option that overrides a project.yaml setting, with the bounds of its
    pydantic field, so the CLI and project.yaml can never disagree on what is allowed."""
    info = model.model_fields[field]
    bounds: dict[str, Any] = {"lo": None, "hi": None}  # the field's own bound values (int or float)
    lo_open = hi_open = False
    for m in info.metadata:
        if isinstance(m, Ge):
            bounds["lo"] = m.ge
        elif isinstance(m, Gt):
            bounds["lo"], lo_open = m.gt, True
        elif isinstance(m, Le):
            bounds["hi"] = m.le
        elif isinstance(m, Lt):
            bounds["hi"], hi_open = m.lt, True
    annotation = info.annotation
    is_int = annotation is int or (getattr(annotation, "__args__", None) or ())[:1] == (int,)
    if is_int:
        lo = None if bounds["lo"] is None else int(bounds["lo"]) + (1 if lo_open else 0)
        hi = None if bounds["hi"] is None else int(bounds["hi"]) - (1 if hi_open else 0)
        return IntRange(lo, hi)
    return FloatRange(bounds["lo"], bounds["hi"], lo_open, hi_open)
