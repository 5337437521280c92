"""Model-free label checks: out-of-image and degenerate geometry, with exact numbers."""

import numpy as np
import pytest

from core.analysis.geometry_checks import check_geometry
from core.annotation import ImageAnnotation, Instance

SQ = lambda x0, y0, x1, y1: np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def test_geometry_checks():
    ann = ImageAnnotation("a.png", 100, 50, [
        Instance(0, polygons=[SQ(10, 10, 30, 30)], holes=[SQ(15, 15, 20, 20)]),  # 0 fine
        Instance(0, box=(90, 10, 110, 20)),  # 1 half outside -> clip box to 90..100
        Instance(1, polygons=[[[5, 5], [6, 5], [5, 6]]]),  # 2 area 0.5 px^2 -> degenerate
        Instance(1, polygons=[[[5, 5], [40, 5], [np.nan, 9]]]),  # 3 NaN -> degenerate
        Instance(1, box=(20, 20, 20.5, 40)),  # 4 0.5 px wide -> degenerate
        Instance(0, polygons=[SQ(-40, 0, 10, 10)]),  # 5 80 % outside -> clip to 0..10
        Instance(0, polygons=[SQ(0, 0, 100.5, 50)]),  # 6 within the 1 px tolerance -> fine
        Instance(1, polygons=[SQ(200, 0, 220, 10)]),  # 7 entirely outside -> delete
    ])
    issues, degenerate = check_geometry(ann)
    got = {i.instance: i for i in issues}
    assert degenerate == {2, 3, 4}
    assert set(got) == {1, 2, 3, 4, 5, 7}
    assert got[1].kind == "out_of_image" and got[1].fix == {"action": "clip", "box": [90, 10, 100, 20]}
    assert got[1].evidence["outside_fraction"] == pytest.approx(0.5) and got[1].score == pytest.approx(1.0)
    assert {got[k].kind for k in (2, 3, 4)} == {"degenerate_geometry"}
    assert "area 0.5" in got[2].evidence["reason"] and "non-finite" in got[3].evidence["reason"]
    assert got[5].evidence["outside_fraction"] == pytest.approx(0.8)
    xs = got[5].fix["polygons"][0][0::2]
    assert (min(xs), max(xs)) == (0, 10)
    assert got[7].fix == {"action": "delete"} and got[7].evidence["outside_fraction"] == pytest.approx(1.0)


def test_model_checks_skip_degenerate_labels_and_crowd_regions():
    from pycocotools import mask as mask_utils

    from core.analysis.find_mistakes import analyze_image
    from core.eval.records import ImagePred

    ann = ImageAnnotation("a.png", 100, 50, [
        Instance(1, polygons=[[[5, 5], [40, 5], [np.nan, 9]]]),  # degenerate: reported once, never rasterised
        Instance(0, polygons=[SQ(50, 0, 100, 50)], iscrowd=True),  # crowd region
        Instance(0, polygons=[SQ(10, 10, 30, 30)]),
    ])
    boxes = np.array([[10, 10, 30, 30], [60, 10, 80, 30]], float)
    rles = [mask_utils.frPyObjects(np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]]]), 50, 100)[0] for b in boxes]
    issues = analyze_image(ann, ImagePred(boxes, [0.9, 0.9], [0, 0], rles))
    # the confident prediction inside the crowd region is no missing label; instance 2 is matched
    assert [(i.kind, i.instance) for i in issues] == [("degenerate_geometry", 0)]
