"""`dfine analyze` end to end on a tiny project: COCO results file and a (fake) model."""

import csv
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from core.cli import main
from core.eval.records import ImagePred
from review_data import OBJECTS, SQ, H, W, make_project

@pytest.fixture
def project(tmp_path):
    """The review data without the duplicate: one wrong class and one missing label in b.png."""
    return make_project(tmp_path, duplicate=False)


def results_rows():
    rows = []
    for name, objs in OBJECTS.items():
        for c, (x0, y0, x1, y1) in objs:
            r = mask_utils.frPyObjects([SQ(x0, y0, x1, y1).ravel().tolist()], H, W)[0]
            rows.append({"image_id": name, "category_id": c + 1, "score": 0.9, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "segmentation": {"size": r["size"], "counts": r["counts"].decode()}})
    return rows


def check_outputs(out_dir):
    doc = json.loads((out_dir / "label_issues.json").read_text())
    kinds = {(i["kind"], i["image"].rsplit("/", 1)[-1]) for i in doc["issues"]}
    assert kinds == {("missing_label", "b.png"), ("wrong_class", "b.png")}
    by_kind = {i["kind"]: i for i in doc["issues"]}
    assert by_kind["wrong_class"]["fix"] == {"action": "set_class", "class_id": 1}
    assert by_kind["missing_label"]["fix"]["class_id"] == 0
    assert by_kind["missing_label"]["box"] == pytest.approx([60, 5, 85, 25], abs=1)
    with open(out_dir / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["kind"] for r in rows] == [i["kind"] for i in doc["issues"]]
    assert {r["class_name"] for r in rows} == {"cat"}
    sheet = cv2.imread(str(out_dir / "label_issues_contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 2 * 240  # two tiles side by side


def test_analyze_from_coco_results(project, tmp_path, capsys):
    pred_file = tmp_path / "results.json"
    pred_file.write_text(json.dumps(results_rows()))
    assert main(["analyze", str(project.root), "--predictions", str(pred_file)]) == 0
    out = capsys.readouterr()
    assert "2 likely label issues in 2 images" in out.out
    assert "warning" not in out.err
    check_outputs(project.review_dir)


def test_a_model_that_finds_nothing_is_flagged_as_undertrained(project, tmp_path, capsys):
    pred_file = tmp_path / "results.json"
    pred_file.write_text("[]")
    assert main(["analyze", str(project.root), "--predictions", str(pred_file)]) == 0
    out = capsys.readouterr()
    # its misses are no reason to delete anything: no items, only the warning (issue #30)
    assert "0 likely label issues in 2 images (none)" in out.out
    assert "warning: the model finds no match for 3 of 3 labels" in out.err
    assert "no label is suggested for deletion" in out.err


def test_analyze_with_weights_uses_the_predictor(project, tmp_path, monkeypatch):
    from core.infer import predictor as predictor_mod
    from core.infer.detections import Detections

    rows = results_rows()

    class FakePredictor:
        class_names = ["cat", "dog"]

        def predict(self, images, rle=False):
            img = images[0]
            # identify the image by its pixels: a.png has a bright pixel at (15, 15)
            name = "a.png" if img[15, 15, 0] == 200 else "b.png"
            mine = [r for r in rows if r["image_id"] == name]
            boxes = [[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]]
                     for r in mine]
            return [Detections(boxes, [r["score"] for r in mine], [r["category_id"] - 1 for r in mine],
                               (H, W), rles=[r["segmentation"] for r in mine])]

    monkeypatch.setattr(predictor_mod.Predictor, "load", classmethod(lambda cls, *a, **k: FakePredictor()))
    out = tmp_path / "rev"
    assert main(["analyze", str(project.root), "--weights", str(tmp_path / "w.pt"), "--out", str(out)]) == 0
    check_outputs(out)


@pytest.mark.parametrize("verb", ["analyze", "val"])
def test_a_checkpoint_for_another_class_list_is_refused(project, tmp_path, capsys, verb):
    """`dfine analyze --weights` checks the class list as `dfine val` does (one function)."""
    import torch

    from core.bench import synthetic_model

    other = ["dog", "cat"]  # the same names in another order: every class id would be wrong
    config = {"classes": other, "task": "segment", "model": {"size": "n", "image_size": 64}}
    ckpt = tmp_path / "best.pt"
    torch.save({"model": synthetic_model("n", 2, 64).state_dict(), "config": config, "class_names": other}, ckpt)
    assert main([verb, str(project.root), "--weights", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert f"dfine {verb}: error: {ckpt}: trained for classes ['dog', 'cat'], the project has ['cat', 'dog']" in err
    assert "Traceback" not in err and not (project.review_dir / "label_issues.json").exists()


def test_bad_category_is_a_clear_error(project, tmp_path, capsys):
    rows = results_rows()
    rows[2]["category_id"] = 7
    pred_file = tmp_path / "results.json"
    pred_file.write_text(json.dumps(rows))
    assert main(["analyze", str(project.root), "--predictions", str(pred_file)]) == 2
    err = capsys.readouterr().err
    assert "results.json" in err and "row 2" in err and "category_id" in err and "7" in err


def test_predictions_from_detections_keep_masks():
    m = np.zeros((1, 8, 8), bool)
    m[0, 2:5, 2:6] = True
    from core.infer.detections import Detections

    p = ImagePred.from_detections(Detections([[2, 2, 6, 5]], [0.8], [1], (8, 8), masks=m))
    assert mask_utils.area(p.masks).tolist() == [12]
