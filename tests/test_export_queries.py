"""`dfine export --queries N` / export.queries: the exported graph runs its decoder on N of the
encoder's proposals (a CPU speed lever, issue #16). The ONNX model equals the torch model with N
queries, differs from the 300-query one, records N in its meta, and a count the model does not
have is refused by name before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from core.bench import synthetic_model
from core.errors import UserFacingError
from core.export.pipeline import export_all
from core.infer.meta import ModelMeta
from core.model import DeployModel

SIZE = 256
CLASSES = ["circle", "triangle", "rectangle"]


@pytest.fixture(scope="module")
def model():
    return synthetic_model("n", len(CLASSES), SIZE)


def test_deploy_model_with_fewer_queries_leaves_the_model_alone(model):
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = DeployModel(model, 100, fuse=False)(x)
        few = DeployModel(model, 100, fuse=False, num_queries=40)(x)
        again = DeployModel(model, 100, fuse=False)(x)
    assert model.decoder.num_queries == 300
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert not torch.equal(full[2], few[2])  # scores: the top 100 of 40 x 3 pairs, not of 300 x 3
    with pytest.raises(ValueError, match=r"decoder queries must be in \[1, 300\].*got 301"):
        DeployModel(model, 100, num_queries=301)
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 30\]"):
        DeployModel(model, 100, num_queries=10)  # 10 queries x 3 classes cannot give 100 pairs


def test_onnx_export_with_queries_equals_torch_and_records_them(model, tmp_path):
    import onnxruntime as ort

    meta = ModelMeta(list(CLASSES), "segment", (SIZE, SIZE), 100, "n")
    export_all(model, meta, tmp_path, ["onnx"], ["fp32"], queries=20, log=lambda m: None)
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["top_k"] == 60 and saved["extra"]["decoder_queries"] == 20  # 20 queries x 3 classes
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = DeployModel(model, 60, fuse=False, num_queries=20)(x)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got[0].shape == (2, 60)
    for b in range(2):  # compared as matched rows: near-equal scores may come out in either order
        labels, boxes, scores, masks = (t[b] for t in got)
        e_labels, e_boxes, e_scores, e_masks = (t[b].numpy() for t in expected)
        cost = np.abs(boxes[:, None] - e_boxes[None]).max(-1) + 1e3 * (labels[:, None] != e_labels[None])
        rows, cols = linear_sum_assignment(cost)
        assert cost[rows, cols].max() < 2e-4
        np.testing.assert_allclose(scores[rows], e_scores[cols], atol=2e-4)
        np.testing.assert_allclose(masks[rows], e_masks[cols], atol=2e-3)


def test_a_query_count_the_model_does_not_have_is_refused_before_writing(model, tmp_path):
    meta = ModelMeta(list(CLASSES), "segment", (SIZE, SIZE), 100, "n")
    with pytest.raises(UserFacingError, match="export queries: 500 asked for, the model has 300"):
        export_all(model, meta, tmp_path / "out", ["onnx"], ["fp32"], queries=500, log=lambda m: None)
    assert not (tmp_path / "out").exists()
