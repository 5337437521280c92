"""Issue #34: one validator. Training's validation, `dfine val` and the export report's torch row
run the same code (core.eval.validate) and give the same numbers on the same checkpoint and split
(tiny model, tiny split, CPU)."""

from __future__ import annotations

import json

import pytest
from test_train_helpers import dfine, tiny_project

from core.messages import ResultEvent, TrainMetricsEvent, parse_event, read_export_report


# training that leaves the weights as they start (seed 0): two runs give the same model
FROZEN = ["--no-progress", "--device", "cpu", "--set", "train.epochs=1", "train.batch_size=2", "train.workers=0",
          "train.lr=1e-12", "train.backbone_lr=0"]


def _label_val_with_predictions(root, checkpoint) -> float:
    """The val images' labels become the model's own best few masks, so that an untrained model
    scores above zero and the comparison below is not one of zeros; returns a threshold that keeps
    about those (an untrained model's scores are low)."""
    from core.annotation import ImageAnnotation, Instance
    from core.data.images import read_image
    from core.geometry import mask_to_polygons
    from core.infer.predictor import Predictor
    from core.project import Project

    project = Project.open(root)
    predictor = Predictor.load(checkpoint, conf=0.0)
    lowest = 1.0
    for path in project.split_images("val"):
        image = read_image(path)
        det = predictor.predict([image])[0]
        instances = []
        for k in range(len(det)):
            outers, holes = mask_to_polygons(det.masks[k])
            if outers and len(instances) < 3:
                instances.append(Instance(int(det.labels[k]), polygons=outers, holes=holes))
                lowest = min(lowest, float(det.scores[k]))
        assert instances
        project.save_annotation(ImageAnnotation(path, image.shape[1], image.shape[0], instances))
    return lowest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tiny_project(tmp_path_factory.mktemp("validator") / "p", n_train=2, n_val=2)
    dfine("train", str(root), "--name", "first", *FROZEN)
    conf = _label_val_with_predictions(root, root / "runs" / "first" / "last.pt")
    cfg = root / "project.yaml"  # infer.conf: the F1 threshold of all three
    text = cfg.read_text(encoding="utf-8")
    assert "  conf: 0.5\n" in text
    cfg.write_text(text.replace("  conf: 0.5\n", f"  conf: {max(0.01, conf * 0.999):.6f}\n", 1), encoding="utf-8")
    proc = dfine("train", str(root), "--events", "-", "--name", "r", *FROZEN)
    events = [parse_event(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    final = [e for e in events if isinstance(e, TrainMetricsEvent)][-1].metrics
    return root, final


def test_training_val_and_export_report_agree(run, tmp_path):
    root, final = run
    checkpoint = root / "runs" / "r" / "last.pt"  # saved right after the final validation
    proc = dfine("val", str(root), "--weights", str(checkpoint), "--device", "cpu", "--events", "-")
    val = [parse_event(line) for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    assert isinstance(val, ResultEvent) and val.metrics is not None
    assert val.metrics == final  # every number: F1/P/R/IoU, the best threshold, box and mask AP
    assert final.f1 is not None and final.f1 > 0.3 and final.mask_map is not None and final.mask_map > 0.1
    dfine("export", str(checkpoint), "--project", str(root), "--formats", "onnx", "--precision", "fp32",
          "--out", str(tmp_path / "exp"), "--timing-images", "1")
    report = read_export_report(tmp_path / "exp" / "report.json")
    assert report.model.mask_head == "paper"  # the head the checkpoint was trained with
    torch_row = report.results[0]
    assert torch_row.format == "torch"
    for name in ("f1", "precision", "recall", "iou"):  # the report rounds to 4 places
        assert getattr(torch_row, f"val_{name}") == round(getattr(final, name), 4), name
    print(json.dumps({"training": final.model_dump(), "report_torch_row": torch_row.model_dump()}))
