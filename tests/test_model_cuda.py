"""The model on CUDA gives the official numbers too (skips without an NVIDIA GPU).

Same checks as test_model_reference.py, on the GPU kernels (cuDNN convolutions, CUDA
grid_sample): fp32 with TF32 off, the fixture's query selection replayed (its top-300 scores
tie at the ulp level, see that module).
"""

from __future__ import annotations

import pytest
import torch

from core.model import build_model

CUDA_OK = torch.cuda.is_available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA_OK, reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)"),
]
TOL = 1e-3


@pytest.fixture(scope="module")
def fp32_cuda():
    """Plain fp32 on the GPU: TF32 would change every matmul/conv at the 1e-3 level."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_reference_end_to_end_on_cuda(reference_dir, fp32_cuda, monkeypatch):
    from test_model_reference import _reference_query_indices, load_reference

    ref, model = load_reference(reference_dir)
    with torch.no_grad():
        ref_idx = _reference_query_indices(model, ref)  # on CPU, from the fixture's features
        model.to(fp32_cuda)
        feats = model.encoder(model.backbone(ref["input_rgb_uint8"].to(fp32_cuda).float() / 255))
        for ours, theirs in zip(feats, ref["encoder_outputs"]):
            assert (ours.cpu() - theirs.float()).abs().max().item() < 1e-4
        monkeypatch.setattr(model.decoder, "_query_indices", lambda scores, topk: ref_idx.to(scores.device))
        out = model.decoder(feats)
    assert (out["pred_logits"].cpu() - ref["pred_logits"]).abs().max().item() <= TOL
    assert (out["pred_boxes"].cpu() - ref["pred_boxes"]).abs().max().item() <= TOL


def test_mask_features_and_logits_on_cuda_equal_cpu(fp32_cuda):
    torch.manual_seed(0)
    model = build_model("s", 3, task="segment", image_size=320).eval()
    head = model.mask_head
    feats = [torch.randn(2, 256, 320 // s, 320 // s) for s in (8, 16, 32)]
    hidden = torch.randn(2, 50, 256)
    with torch.no_grad():
        cpu_feat = head.features(feats)
        cpu_logits = head.logits(hidden, cpu_feat)
        head.to(fp32_cuda)
        gpu_feat = head.features([f.to(fp32_cuda) for f in feats])
        gpu_logits = head.logits(hidden.to(fp32_cuda), gpu_feat)
    assert gpu_feat.shape == cpu_feat.shape == (2, 256, 80, 80)
    assert gpu_logits.shape == cpu_logits.shape == (2, 50, 80, 80)
    assert (gpu_feat.cpu() - cpu_feat).abs().max().item() <= 1e-4 * cpu_feat.abs().max().item()
    assert (gpu_logits.cpu() - cpu_logits).abs().max().item() <= 1e-4 * cpu_logits.abs().max().item()
