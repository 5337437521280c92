"""A suggested box must be 4 numbers (found by the type check of issue #34): before, an "add" fix
with 3 or 5 values made an Instance with that tuple as its box, and only saving it failed, with a
bare "not enough values to unpack" traceback instead of a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.analysis.review_fixes import apply_fix
from core.annotation import ImageAnnotation
from core.errors import UserFacingError


def _ann() -> ImageAnnotation:
    return ImageAnnotation(Path("img.png"), 100, 80)


def test_add_fix_with_a_four_number_box_adds_that_box() -> None:
    out, what = apply_fix(_ann(), {"kind": "missing_label", "fix": {"action": "add", "class_id": 1,
                                                                    "box": [10, 20, 30, 40]}})
    assert [(i.class_id, i.bbox()) for i in out.instances] == [(1, (10.0, 20.0, 30.0, 40.0))]
    assert what.startswith("add")


@pytest.mark.parametrize("box", [[10, 20, 30], [10, 20, 30, 40, 50]])
def test_add_fix_with_a_malformed_box_is_refused_with_a_message(box: list[int]) -> None:
    with pytest.raises(UserFacingError, match="4 numbers"):
        apply_fix(_ann(), {"kind": "missing_label", "fix": {"action": "add", "class_id": 1, "box": box}})
