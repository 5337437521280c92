"""Issue #35: every number on the command line is range-checked in one place (core.cli_types),
so a bad value is one argparse line naming the option and what is allowed (exit 2), never a
traceback or a silent no-op later."""

from __future__ import annotations

import argparse

import pytest

from core.cli import VERBS, build_parser, main
from core.cli_types import CheckedNumber, FloatRange, IntList, IntRange, config_range, float_range, frame_size
from core.config import ExportConfig, InferConfig

# the positionals each verb needs before its options are looked at
POSITIONALS = {"infer": ["m", "0"], "export": ["m"], "val": ["p", "--weights", "w"], "analyze": ["p"],
               "train": ["p"]}


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = build_parser(verb)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[verb]


def _actions(parser: argparse.ArgumentParser):
    """Every action of the parser and of its nested sub-commands (classes add, weights get...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _actions(child)
        else:
            yield action


def unchecked_numbers(parser: argparse.ArgumentParser) -> list[str]:
    """Options that take a number without a core.cli_types checker."""
    bad = []
    for a in _actions(parser):
        numeric_default = isinstance(a.default, (int, float)) and not isinstance(a.default, bool)
        takes_value = a.nargs != 0
        if a.type in (int, float) or (numeric_default and takes_value and not isinstance(a.type, CheckedNumber)):
            bad.append("/".join(a.option_strings) or a.dest)
    return bad


def ranged_options() -> list[tuple[str, str, CheckedNumber]]:
    return [(verb, a.option_strings[-1], a.type) for verb in VERBS for a in _actions(_verb_parser(verb))
            if isinstance(a.type, CheckedNumber) and a.option_strings]


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_numeric_option_is_range_checked(verb: str) -> None:
    assert unchecked_numbers(_verb_parser(verb)) == []


def test_the_walk_catches_a_plain_int_option() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--plain", type=int)
    p.add_argument("--hidden", default=3)
    p.add_argument("--ok", type=IntRange(1), default=3)
    p.add_argument("--flag", action="store_true")
    assert unchecked_numbers(p) == ["--plain", "--hidden"]


def test_the_known_numeric_options_are_all_found() -> None:
    found = {(verb, opt) for verb, opt, _ in ranged_options()}
    assert {("infer", "--max-frames"), ("bench", "--images"), ("bench", "--calibration-images"),
            ("analyze", "--top"), ("bench", "--batch-sizes"), ("bench", "--frame"), ("export", "--opset"),
            ("export", "--queries"), ("val", "--conf"), ("infer", "--batch-size"), ("analyze", "--folds")} <= found


def _out_of_range(checker: CheckedNumber) -> list[str]:
    """A negative/zero (below the range) and, when bounded above, a value past the top."""
    if isinstance(checker, IntList):
        return ["0", "1,-2"]
    if not isinstance(checker, (IntRange, FloatRange)):
        return ["0x0", "5x-1", "16385x10"]
    values = []
    if checker.lo is not None:
        values.append(str(checker.lo - 1) if isinstance(checker, IntRange) else f"{checker.lo - 0.5:g}")
    if checker.hi is not None:
        values.append(str(checker.hi + 1) if isinstance(checker, IntRange) else f"{checker.hi + 0.5:g}")
    return values or ["x"]


KNOWN_BAD = [("infer", "--max-frames", "-1"), ("bench", "--images", "0"), ("bench", "--calibration-images", "-5"),
             ("analyze", "--top", "-1"), ("bench", "--batch-sizes", "0"), ("bench", "--frame", "0x0"),
             ("export", "--calibration-images", "0"), ("infer", "--conf", "1.5"), ("bench", "--threads", "0"),
             ("analyze", "--folds", "1"), ("export", "--timing-images", "0"), ("bench", "--frame", "1920"),
             ("bench", "--batch-sizes", "1,x"), ("analyze", "--conf", "nan"), ("bench", "--image-size", "100")]
GENERATED = [(verb, opt, bad) for verb, opt, checker in ranged_options() for bad in _out_of_range(checker)]


@pytest.mark.parametrize("verb,option,value", KNOWN_BAD + GENERATED)
def test_bad_number_is_one_line_naming_the_option(verb: str, option: str, value: str, capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        main([verb, *POSITIONALS.get(verb, []), option, value])
    err = capsys.readouterr().err
    assert ei.value.code == 2
    assert f"dfine {verb}: error: argument {option}: must be " in err and f"got {value!r}" in err
    assert "Traceback" not in err


def test_good_numbers_parse_to_their_values() -> None:
    bench = _verb_parser("bench").parse_args(["--batch-sizes", "1, 4,8", "--frame", "640X480", "--images", "1"])
    assert bench.batch_sizes == [1, 4, 8] and bench.frame == (640, 480) and bench.images == 1
    assert _verb_parser("bench").parse_args([]).batch_sizes == [1, 4, 8]  # the string default goes through too
    assert _verb_parser("bench").parse_args([]).frame == (1920, 1080)
    infer = _verb_parser("infer").parse_args(["m", "0", "--conf", "0", "--max-frames", "1"])
    assert infer.conf == 0.0 and infer.max_frames == 1
    analyze = _verb_parser("analyze").parse_args(["p", "--category-offset", "0", "--seed", "0", "--conf", "1"])
    assert analyze.category_offset == 0 and analyze.seed == 0 and analyze.conf == 1.0


def test_checkers_follow_the_config_bounds() -> None:
    assert config_range(InferConfig, "conf")("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be a number in \[0, 1\], got '-0.1'"):
        config_range(InferConfig, "conf")("-0.1")
    queries = config_range(ExportConfig, "queries")
    assert (queries.lo, queries.hi) == (1, 300)
    assert config_range(ExportConfig, "calibration_images").lo == 1  # gt=0 on a whole number
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \(0, 1\)"):
        float_range(0, 1, lo_open=True, hi_open=True)("1")
    with pytest.raises(argparse.ArgumentTypeError, match="each side in 1..100"):
        frame_size(100)("101x50")
