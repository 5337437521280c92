"""COCO results file -> per-image predictions: id/category mapping and clear errors."""

import json

import numpy as np
import pytest

from core.annotation import ImageAnnotation
from core.errors import LabelError
from core import rle
from core.eval.coco_results import load_coco_results
from core.eval.evaluator import Evaluator
from core.eval.records import gt_from_annotation

ANNS = [ImageAnnotation(f"/data/images/sub/{n}.jpg", 40, 30, []) for n in ("x", "y")]
NAMES = ["cat", "dog"]


def write(tmp_path, data):
    p = tmp_path / "res.json"
    p.write_text(json.dumps(data))
    return p


def test_plain_list_with_names_ints_and_polygons(tmp_path):
    rows = [
        {"image_id": "y.jpg", "category_id": 2, "score": 0.7, "bbox": [1, 2, 10, 5]},
        {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0, 0, 10, 10],
         "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
        {"image_id": "sub/y.jpg", "category_id": 1, "score": 0.3,
         "segmentation": rle.to_json(rle.box_to_rle([5, 5, 9, 9], 30, 40))},
    ]
    preds = load_coco_results(write(tmp_path, rows), ANNS, NAMES, "/data/images")
    x, y = preds
    assert x.labels.tolist() == [0] and rle.area(x.masks).tolist() == [100]
    assert y.labels.tolist() == [1, 0] and y.scores.tolist() == [0.7, 0.3]
    assert y.boxes[0].tolist() == [1, 2, 11, 7]  # xywh -> xyxy
    assert rle.area(y.masks).tolist() == [50, 16]  # box-only row -> box mask; RLE row as given
    assert y.boxes[1].tolist() == [5, 5, 9, 9]  # no bbox: taken from the mask


def test_coco_dict_maps_by_file_name_and_category_name(tmp_path):
    data = {"images": [{"id": 7, "file_name": "sub/x.jpg"}],
            "categories": [{"id": 3, "name": "dog"}, {"id": 9, "name": "cat"}],
            "annotations": [{"image_id": 7, "category_id": 3, "score": 0.5, "bbox": [0, 0, 4, 4]}]}
    x, y = load_coco_results(write(tmp_path, data), ANNS, NAMES, "/data/images", with_masks=False)
    assert x.labels.tolist() == [1] and len(y) == 0 and x.masks is None


@pytest.mark.parametrize("row, msg", [
    ({"image_id": "zz.jpg", "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1]}, "image_id matches no"),
    ({"image_id": "x.jpg", "category_id": 0, "score": 0.5, "bbox": [0, 0, 1, 1]}, "category_offset=1"),
    ({"image_id": "x.jpg", "score": 0.5}, "needs image_id, category_id and score"),
])
def test_bad_rows_name_file_and_row(tmp_path, row, msg):
    with pytest.raises(LabelError, match=msg) as e:
        load_coco_results(write(tmp_path, [row]), ANNS, NAMES)
    assert "res.json" in str(e.value) and "row 0" in str(e.value)


def test_summary_is_json_ready_and_has_headline():
    sq = np.array([[2, 2], [12, 2], [12, 12], [2, 12]], float)
    from core.annotation import Instance

    ann = ImageAnnotation("a.png", 40, 30, [Instance(1, polygons=[sq])])
    g = gt_from_annotation(ann)
    from core.eval.records import ImagePred

    p = ImagePred([[2, 2, 12, 12]], [0.8], [1], [rle.box_to_rle([2, 2, 12, 12], 30, 40)])
    ev = Evaluator(2, NAMES)
    ev.add(g, p)
    s = ev.summary()
    d = json.loads(json.dumps(s.to_dict()))
    assert d["f1"] == 1.0 and d["per_class"]["dog"]["tp"] == 1 and d["per_class"]["cat"]["f1"] is None
    assert d["confusion_labels"] == ["cat", "dog", "background"]
    h = s.headline()
    assert h.mask_map == pytest.approx(1.0) and h.box_map50 == pytest.approx(1.0)
