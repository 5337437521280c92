"""YOLO txt rows <-> pixel instances: exact values, multi-part/hole encoding, malformed rows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from core.annotation import Instance
from core.data.formats.yolo_txt import (
    bridge_rings,
    decode_label_bytes,
    format_yolo_txt,
    parse_yolo_txt,
)
from core.errors import LabelError

P = Path("labels/x.txt")


def test_polygon_row_to_pixels_exact():
    out = parse_yolo_txt("1 0.25 0.5 0.75 0.5 0.5 1.0\n", 200, 100, P, num_classes=2)
    (inst,) = out.instances
    assert inst.class_id == 1
    np.testing.assert_allclose(inst.polygons[0], [[50, 50], [150, 50], [100, 100]])
    assert out.warnings == []


def test_box_row_to_pixels_exact():
    (inst,) = parse_yolo_txt("0 0.5 0.5 0.2 0.4", 200, 100, P).instances
    assert inst.is_box
    assert inst.bbox() == pytest.approx((80.0, 30.0, 120.0, 70.0))


def test_format_exact_text():
    insts = [Instance(0, polygons=[[[50, 25], [150, 25], [100, 100]]]), Instance(2, box=(20, 10, 60, 30))]
    # a file with a polygon writes its box as a 4-corner polygon (Ultralytics reads such files as all-polygons)
    out = format_yolo_txt(insts, 200, 100)
    assert out.text.splitlines()[0] == "0 0.250000 0.250000 0.750000 0.250000 0.500000 1.000000"
    assert out.text.splitlines()[1] == "2 0.100000 0.100000 0.300000 0.100000 0.300000 0.300000 0.100000 0.300000"
    back = parse_yolo_txt(out.text, 200, 100, P, sidecar=out.sidecar).instances
    assert back[1].is_box and back[1].bbox() == pytest.approx((20, 10, 60, 30))
    # box-only files stay in the plain detect format
    only_box = format_yolo_txt([Instance(2, box=(20, 10, 60, 30))], 200, 100)
    assert only_box.text == "2 0.200000 0.200000 0.200000 0.200000\n" and only_box.sidecar is None


def test_round_trip_within_1e6_normalized():
    rng = np.random.default_rng(0)
    w, h = 641, 479
    insts = [Instance(int(rng.integers(0, 5)), polygons=[rng.uniform(0, 1, (int(rng.integers(3, 30)), 2)) * [w, h]])
             for _ in range(20)]
    out = format_yolo_txt(insts, w, h)
    back = parse_yolo_txt(out.text, w, h, P, num_classes=5, sidecar=out.sidecar).instances
    assert len(back) == 20
    for a, b in zip(insts, back):
        assert a.class_id == b.class_id
        np.testing.assert_allclose(a.polygons[0] / [w, h], b.polygons[0] / [w, h], atol=0.5e-6 + 1e-12)
    # saving what was loaded is byte-identical (no drift over many saves)
    assert format_yolo_txt(back, w, h).text == out.text


def _rasterize_rows(text: str, w: int, h: int) -> np.ndarray:
    """How Ultralytics draws a segment row (cv2.fillPoly of the row's points)."""
    m = np.zeros((h, w), np.uint8)
    for line in text.splitlines():
        pts = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2) * [w, h]
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m


def test_multipart_with_hole_is_one_row_that_fills_correctly_and_round_trips():
    w, h = 200, 100
    outer = np.array([[10, 10], [90, 10], [90, 90], [10, 90]], float)
    hole = np.array([[30, 30], [70, 30], [70, 70], [30, 70]], float)
    second = np.array([[120, 20], [180, 20], [150, 80]], float)
    inst = Instance(3, polygons=[outer, second], holes=[hole], group_id=7)
    out = format_yolo_txt([inst], w, h)
    assert len(out.text.splitlines()) == 1  # Ultralytics sees one object
    # oracle: the filled single row has the area of (parts - hole), independent of our code (shapely)
    expected = Polygon(outer, [hole]).area + Polygon(second).area
    filled = _rasterize_rows(out.text, w, h)
    assert abs(int(filled.sum()) - expected) / expected < 0.06  # fillPoly includes boundary pixels
    assert filled[50, 50] == 0 and filled[20, 20] == 1 and filled[40, 150] == 1
    back = parse_yolo_txt(out.text, w, h, P, sidecar=out.sidecar).instances[0]
    assert len(back.polygons) == 2 and len(back.holes) == 1 and back.group_id == 7
    np.testing.assert_allclose(back.polygons[1], second, atol=1e-3)
    np.testing.assert_allclose(back.holes[0], hole, atol=1e-3)
    # without the sidecar (e.g. txt edited elsewhere) it is still the same pixels, as one polygon
    lone = parse_yolo_txt(out.text, w, h, P).instances[0]
    assert len(lone.polygons) == 1 and abs(lone.area() - expected) < 1e-6 * w * h * 50


def test_sidecar_survives_class_id_change():
    inst = Instance(0, polygons=[[[10, 10], [40, 10], [40, 40]], [[60, 60], [90, 60], [90, 90]]])
    out = format_yolo_txt([inst], 100, 100)
    relabelled = "5" + out.text[1:]
    back = parse_yolo_txt(relabelled, 100, 100, P, sidecar=out.sidecar).instances[0]
    assert back.class_id == 5 and len(back.polygons) == 2


def test_bridge_rings_has_zero_extra_area():
    a = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    b = np.array([[10, 0], [12, 0], [12, 2]], float)
    merged = bridge_rings([a, b])
    assert len(merged) == len(a) + len(b) + 2
    x, y = merged[:, 0], merged[:, 1]
    signed = 0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert abs(signed) == pytest.approx(16 + 2)  # both counter-clockwise here -> areas add


# ------------------------------------------------------------------ lenient-but-safe inputs


def test_blank_lines_crlf_bom_tabs_trailing_spaces_are_fine():
    text = "\ufeff0 0.1 0.1 0.5 0.1 0.3 0.4  \r\n\r\n\t1\t0.5 0.5 0.2 0.2\r\n   \n"
    insts = parse_yolo_txt(text, 100, 100, P, num_classes=2).instances
    assert [i.class_id for i in insts] == [0, 1]
    assert decode_label_bytes(b"\xef\xbb\xbf0 0.5 0.5 0.1 0.1\n", P).startswith("0 ")


def test_empty_file_means_no_instances():
    assert parse_yolo_txt("", 10, 10, P).instances == []
    assert parse_yolo_txt("\n \n", 10, 10, P).instances == []


def test_slightly_outside_is_clipped_with_warning():
    out = parse_yolo_txt("0 -0.01 0.2 1.005 0.2 0.5 0.9\n", 100, 100, P)
    np.testing.assert_allclose(out.instances[0].polygons[0][:2], [[0, 20], [100, 20]])
    assert len(out.warnings) == 1 and "x.txt:1" in out.warnings[0] and "-0.01" in out.warnings[0]


def test_whole_number_float_class_id_accepted():
    assert parse_yolo_txt("2.0 0.5 0.5 0.1 0.1", 10, 10, P, num_classes=3).instances[0].class_id == 2


# ------------------------------------------------------------------ malformed rows: file, line, value

MALFORMED = [
    ("odd_coordinate_count", "0 0.1 0.1 0.2 0.2 0.3 0.3\n1 0.1 0.2 0.3 0.4 0.5\n", 2, "odd number", "0.5"),
    ("nan", "0 0.1 nan 0.2 0.2 0.3 0.3\n", 1, "not finite", "nan"),
    ("inf", "0 0.5 0.5 inf 0.1\n", 1, "not finite", "inf"),
    ("class_out_of_range", "0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n", 2, "out of range", "7"),
    ("negative_class", "-1 0.5 0.5 0.1 0.1\n", 1, ">= 0", "-1"),
    ("non_numeric_class", "cat 0.5 0.5 0.1 0.1\n", 1, "class id is not a number", "cat"),
    ("fractional_class", "1.5 0.5 0.5 0.1 0.1\n", 1, "whole number", "1.5"),
    ("non_numeric_coordinate", "0 0.1 0.1 0.2 abc 0.3 0.3\n", 1, "coordinate 4 is not a number", "abc"),
    ("far_outside_pixels", "0 12 40 200 40 100 150\n", 1, "far outside", "12"),
    ("far_outside_negative", "\n\n0 0.1 0.1 -0.5 0.1 0.3 0.3\n", 3, "far outside", "-0.5"),
    ("too_few_points", "0 0.1 0.1 0.2 0.2\n0 0.1 0.1 0.2 0.2 0.3\n", 2, "odd number", "0.3"),
    ("two_point_polygon_6_tokens", "0 0.1 0.1 0.5 0.5 0.6 0.6 0.7 0.7\n1 0.1 0.1\n", 2, "at least 3 points", "0.1"),
    ("zero_size_box", "0 0.5 0.5 0 0.1\n", 1, "width and height", "0"),
    ("class_only", "0 0.5 0.5 0.1 0.1\n2\n", 2, "no coordinates", "2"),
    ("crlf_bad_line_number", "0 0.5 0.5 0.1 0.1\r\n\r\n0 0.5 x 0.1 0.1\r\n", 3, "coordinate 2", "x"),
]


@pytest.mark.parametrize("name,text,line,words,value", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_row_names_file_line_value(name, text, line, words, value):
    with pytest.raises(LabelError) as ei:
        parse_yolo_txt(text, 100, 100, Path("proj/labels/img7.txt"), num_classes=3)
    err = ei.value
    assert err.line == line
    msg = str(err)
    assert f"img7.txt:{line}:" in msg and words in msg and value in msg


def test_non_utf8_file_names_line():
    with pytest.raises(LabelError) as ei:
        decode_label_bytes(b"0 0.5 0.5 0.1 0.1\n\xff\xfe\x00garbage\n", Path("l/a.txt"))
    assert ei.value.line == 2 and "a.txt:2" in str(ei.value) and "UTF-8" in str(ei.value)


def test_model_made_mark_survives_save_and_is_dropped_by_an_edit(tmp_path) -> None:
    from core.annotation import ImageAnnotation, Instance
    from core.data.formats.yolo_txt import format_yolo_txt, parse_yolo_txt

    poly = [[10, 10], [50, 12], [30, 40]]
    model_made = Instance(class_id=1, polygons=[poly], source="model", score=0.875)
    human = Instance(class_id=0, box=(5, 5, 20, 25))
    out = format_yolo_txt([model_made, human], 100, 80)
    parsed = parse_yolo_txt(out.text, 100, 80, sidecar=out.sidecar).instances
    assert [(i.source, i.score) for i in parsed] == [("model", 0.875), ("human", None)]
    # a person moves a vertex: the row's coordinates change, so the mark no longer applies
    edited = out.text.replace(out.text.split()[1], "0.150000", 1)
    parsed = parse_yolo_txt(edited, 100, 80, sidecar=out.sidecar).instances
    assert parsed[0].source == "human" and parsed[0].score is None
    assert ImageAnnotation(tmp_path / "a.jpg", 100, 80, parsed).instances[1].is_box
