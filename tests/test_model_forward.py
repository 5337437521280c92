"""Output contract of the model (eval / train / deploy) on small CPU inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from core.model import DeployModel, build_model

IMG = 320  # size N (strides 16/32) needs >= 300 positions: 20*20 + 10*10


def _targets(b: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(b):
        n = 2 + i
        boxes = torch.cat([torch.rand(n, 2, generator=g) * 0.5 + 0.25,
                           torch.rand(n, 2, generator=g) * 0.3 + 0.1], -1)
        out.append({"labels": torch.randint(0, 3, (n,), generator=g), "boxes": boxes,
                    "masks": torch.zeros(n, IMG, IMG)})
    return out


@pytest.fixture(scope="module")
def seg_n():
    torch.manual_seed(0)
    return build_model("n", 3, task="segment", image_size=IMG)


@pytest.mark.parametrize("size, img", [("n", IMG), ("s", 160)])
def test_eval_outputs(size, img):
    torch.manual_seed(0)
    model = build_model(size, 3, task="segment", image_size=img).eval()
    x = torch.rand(2, 3, img, img)
    with torch.no_grad():
        out = model(x)
    assert set(out) == {"pred_logits", "pred_boxes", "pred_masks"}
    assert out["pred_logits"].shape == (2, 300, 3)
    assert out["pred_boxes"].shape == (2, 300, 4)
    assert out["pred_masks"].shape == (2, 300, img // 4, img // 4)
    b = out["pred_boxes"]
    assert ((b >= 0) & (b <= 1)).all()  # sigmoid-parametrised cxcywh
    det = build_model(size, 3, task="detect", image_size=img).eval()
    with torch.no_grad():
        assert set(det(x)) == {"pred_logits", "pred_boxes"}


def test_other_image_size_than_built_still_works(seg_n):
    seg_n.eval()
    with torch.no_grad():
        out = seg_n(torch.rand(1, 3, 256, 384))
    assert out["pred_masks"].shape == (1, 300, 64, 96)
    with pytest.raises(ValueError, match="too small"):
        seg_n(torch.rand(1, 3, 64, 64))


def test_training_outputs_have_official_keys_and_masks(seg_n):
    seg_n.train()
    targets = _targets(2)
    out = seg_n(torch.rand(2, 3, IMG, IMG), targets)
    for k in ("pred_logits", "pred_boxes", "pred_corners", "ref_points", "up", "reg_scale",
              "aux_outputs", "enc_aux_outputs", "pre_outputs", "enc_meta", "dn_outputs",
              "dn_pre_outputs", "dn_meta", "pred_masks"):
        assert k in out, k
    layers = 3
    assert len(out["aux_outputs"]) == layers - 1
    assert len(out["dn_outputs"]) == layers
    for aux in out["aux_outputs"]:
        assert set(aux) == {"pred_logits", "pred_boxes", "pred_corners", "ref_points",
                            "teacher_corners", "teacher_logits", "pred_masks"}
        assert aux["pred_masks"].shape == (2, 300, IMG // 4, IMG // 4)
        assert torch.equal(aux["teacher_corners"], out["pred_corners"])
    # CDN: max_gt 3 -> 33 groups of 2*3 queries = 198 denoising queries
    n_dn = out["dn_meta"]["dn_num_split"][0]
    assert out["dn_meta"]["dn_num_group"] == 100 // 3 and n_dn == 2 * 3 * (100 // 3)
    for aux in out["dn_outputs"]:
        assert aux["pred_logits"].shape == (2, n_dn, 3)
        assert aux["pred_masks"].shape == (2, n_dn, IMG // 4, IMG // 4)
    assert out["pred_corners"].shape == (2, 300, 4 * 33)
    assert len(out["dn_meta"]["dn_positive_idx"]) == 2
    assert out["dn_meta"]["dn_positive_idx"][0].numel() == 2 * (100 // 3)
    # gradients reach the mask head through masks of every kind
    loss = out["pred_masks"].mean() + out["aux_outputs"][0]["pred_masks"].mean() \
        + out["dn_outputs"][0]["pred_masks"].mean() + out["pred_logits"].mean()
    loss.backward()
    assert seg_n.mask_head.query_mlp.layers[0].weight.grad.abs().sum() > 0
    assert seg_n.mask_head.pixel_decoder.out_conv.weight.grad.abs().sum() > 0
    seg_n.zero_grad()


def test_training_without_objects_has_no_denoising(seg_n):
    seg_n.train()
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    out = seg_n(torch.rand(1, 3, IMG, IMG), empty)
    assert out["dn_meta"]["dn_num_split"] == [0, 300]
    assert out["pred_logits"].shape == (1, 300, 3)


def test_eval_masks_only_for_final_layer(seg_n, monkeypatch):
    seg_n.eval()
    calls = []
    orig = seg_n.mask_head.logits

    def spy(hidden, feat):
        calls.append(tuple(hidden.shape))
        return orig(hidden, feat)

    monkeypatch.setattr(seg_n.mask_head, "logits", spy)
    with torch.no_grad():
        seg_n(torch.rand(1, 3, IMG, IMG))
    assert calls == [(1, 1, 300, 128)]  # one layer, 300 queries, hidden 128


def test_mask_logits_are_scaled_dot_product(seg_n):
    head = seg_n.mask_head
    hidden = torch.randn(2, 5, 128)
    feat = torch.randn(2, 256, 4, 6)
    got = head.logits(hidden, feat)
    emb = head.query_mlp(hidden) / 16.0  # 1/sqrt(256)
    want = torch.einsum("bqc,bchw->bqhw", emb, feat)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_size_n_pixel_decoder_upsamples_x4(seg_n):
    assert seg_n.mask_head.pixel_decoder.upscale == 4
    s = build_model("s", 2, task="segment", image_size=160)
    assert s.mask_head.pixel_decoder.upscale == 2


def test_deploy_topk_equals_full_forward(seg_n):
    seg_n.eval()
    x = torch.rand(2, 3, IMG, IMG)
    with torch.no_grad():
        full = seg_n(x)
        labels, boxes, scores, masks = DeployModel(seg_n, top_k=7)(x)
    assert labels.shape == (2, 7) and labels.dtype == torch.int64
    assert boxes.shape == (2, 7, 4) and masks.shape == (2, 7, IMG // 4, IMG // 4)
    probs = full["pred_logits"].sigmoid()
    for b in range(2):
        flat = probs[b].flatten()
        want_scores, want_idx = flat.topk(7)
        torch.testing.assert_close(scores[b], want_scores)
        q, c = want_idx // 3, want_idx % 3
        assert torch.equal(labels[b], c)
        cx, cy, w, h = full["pred_boxes"][b, q].unbind(-1)
        torch.testing.assert_close(boxes[b], torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1))
        torch.testing.assert_close(masks[b], full["pred_masks"][b, q].sigmoid(), rtol=1e-4, atol=1e-5)


def test_deploy_detect_and_bad_topk():
    det = build_model("n", 2, task="detect", image_size=IMG)
    with torch.no_grad():
        out = DeployModel(det, top_k=5)(torch.rand(1, 3, IMG, IMG))
    assert len(out) == 3 and out[0].shape == (1, 5)
    with pytest.raises(ValueError, match="top_k"):
        DeployModel(det, top_k=601)


def test_deploy_traces_to_onnx_with_dynamic_batch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = build_model("n", 3, task="segment", image_size=IMG)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # break the ties of an untrained head (as the reference fixture does)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    wrapper = DeployModel(model, top_k=10)
    path = tmp_path / "m.onnx"
    x = torch.rand(1, 3, IMG, IMG)
    names = list(wrapper.output_names)
    torch.onnx.export(wrapper, (x,), str(path), input_names=["images"], output_names=names,
                      dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                      opset_version=17, dynamo=False)
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.rand(2, 3, IMG, IMG)
    got = sess.run(None, {"images": x2.numpy()})
    with torch.no_grad():
        want = wrapper(x2)
    assert got[0].shape == (2, 10) and got[3].shape == (2, 10, IMG // 4, IMG // 4)
    for b in range(2):  # near-tied scores may swap places: compare as a one-to-one matching
        a = np.concatenate([got[1][b], got[2][b][:, None]], 1)
        w = np.concatenate([want[1][b].numpy(), want[2][b].numpy()[:, None]], 1)
        cost = np.abs(a[:, None] - w[None]).max(-1)
        rows, cols = linear_sum_assignment(cost)
        assert cost[rows, cols].max() < 1e-3
        assert (got[0][b][rows] == want[0][b].numpy()[cols]).all()
        assert np.abs(got[3][b][rows] - want[3][b].numpy()[cols]).max() < 1e-3
