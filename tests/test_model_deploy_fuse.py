"""Deploy-time fusion (core/model/deploy_fuse.py): BN folding + RepVGG re-parameterisation.

Models get non-trivial weights (small noise on every parameter) and BatchNorm statistics that
are far from the identity: first calibrated on random images (so activations stay O(1)), then
running_var scaled by U(0.5, 2) and running_mean shifted, so every fold really changes weights.

Run by hand for the CPU latency table in benchmarks/README.md:
    OMP_NUM_THREADS=1 .venv/bin/python tests/test_model_deploy_fuse.py --runs 5
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.model import DeployModel, build_model, size_config
from core.model.deploy_fuse import FusedVGGBlock, fuse_for_deploy, is_batchnorm
from core.model.hgnetv2 import FrozenBatchNorm2d, HGNetv2
from core.model.hybrid_encoder import VGGBlock

ATOL = 1e-4


def _randomise_bn_stats(model: nn.Module, img: int, seed: int = 0) -> nn.Module:
    """Calibrate BN statistics on random images, then move them off the calibrated values."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if is_batchnorm(m)]
    for bn in bns:
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = None  # cumulative average: one batch -> its statistics
            bn.reset_running_stats()
    model.backbone.train()
    model.encoder.train()
    with torch.no_grad():
        model.encoder(model.backbone(torch.rand(2, 3, img, img, generator=g)))
        for bn in bns:
            bn.running_var.mul_(torch.rand(bn.num_features, generator=g) * 1.5 + 0.5)
            bn.running_mean.add_(torch.randn(bn.num_features, generator=g) * 0.2 * bn.running_var.sqrt())
    return model.eval()


def _model(size: str, img: int, task: str = "segment") -> nn.Module:
    torch.manual_seed(0)
    model = build_model(size, 3, task=task, image_size=img)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial weights that keep the decoder well conditioned
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return _randomise_bn_stats(model, img)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def test_vgg_block_merge_matches_explicit_formula():
    """Independent oracle: the merged kernel written out by hand (not via fuse_conv_bn_eval)."""
    torch.manual_seed(3)
    block = VGGBlock(4, 5, act="silu")
    with torch.no_grad():
        for layer in (block.conv1, block.conv2):
            layer.conv.weight.normal_()
            layer.norm.weight.uniform_(0.5, 2.0)
            layer.norm.bias.normal_()
            layer.norm.running_mean.normal_()
            layer.norm.running_var.uniform_(0.3, 3.0)
    block.eval()
    holder = nn.Sequential(block)
    fused = fuse_for_deploy(holder)[0]
    assert isinstance(fused, FusedVGGBlock) and isinstance(holder[0], VGGBlock)

    def scale_shift(layer):
        bn = layer.norm
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return s, bn.bias - bn.running_mean * s

    s3, t3 = scale_shift(block.conv1)
    s1, t1 = scale_shift(block.conv2)
    k = block.conv1.conv.weight * s3[:, None, None, None]
    k[:, :, 1, 1] += block.conv2.conv.weight[:, :, 0, 0] * s1[:, None]
    torch.testing.assert_close(fused.conv.weight, k, rtol=0, atol=1e-6)
    torch.testing.assert_close(fused.conv.bias, t3 + t1, rtol=0, atol=1e-6)

    x = torch.randn(2, 4, 9, 7)
    with torch.no_grad():
        want = F.silu(F.conv2d(x, k, t3 + t1, padding=1))
        torch.testing.assert_close(fused(x), want, rtol=0, atol=1e-5)
        torch.testing.assert_close(fused(x), block(x), rtol=0, atol=1e-5)


# Measured max |fused - unfused| (this CPU, fp32):
#   n/256 segment: logits 1.6e-5, boxes 5.4e-7, mask logits 5.6e-6; deploy boxes 4.8e-7,
#     scores 3.9e-7, mask probs 1.2e-6; labels identical
#   s/128 segment: logits 1.6e-5, boxes 5.4e-7, mask logits 5.2e-6; deploy <= 1.3e-6
#   n/256 detect: logits 1.6e-5, boxes 5.4e-7; deploy boxes 4.8e-7, scores 3.9e-7
def _check_fused_outputs(size: str, img: int, task: str) -> None:
    model = _model(size, img, task)
    fused = fuse_for_deploy(model)
    x = torch.rand(2, 3, img, img, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = model(x), fused(x)
        keys = ("pred_logits", "pred_boxes") + (("pred_masks",) if task == "segment" else ())
        for key in keys:
            assert a[key].shape == b[key].shape
            assert _max_diff(a[key], b[key]) < ATOL, key
        plain, fast = DeployModel(model, 20, fuse=False)(x), DeployModel(model, 20)(x)
    assert torch.equal(plain[0], fast[0])  # labels
    for u, v in zip(plain[1:], fast[1:]):  # boxes, scores[, masks]
        assert _max_diff(u, v) < ATOL


def test_fused_matches_unfused_n_segment():
    _check_fused_outputs("n", 256, "segment")


def test_fused_matches_unfused_n_detect():
    _check_fused_outputs("n", 256, "detect")


def test_fused_matches_unfused_s_segment():
    _check_fused_outputs("s", 128, "segment")


def test_synthetic_model_features_match():
    """core.bench.synthetic_model (N(0, 0.1) noise everywhere): backbone + encoder, the part
    that fusion rewrites. Measured max diff 1.0e-5 on maps of max |x| ~ 4.5. (Its decoder is
    chaotic by design — scaled heads — so end-to-end it amplifies fp32 rounding itself.)"""
    from core.bench import synthetic_model

    model = _randomise_bn_stats(synthetic_model("s", 3, 128), 128)
    fused = fuse_for_deploy(model)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feats_a = model.backbone(x)
        feats_b = fused.backbone(x)
        for u, v in zip(feats_a, feats_b):
            assert _max_diff(u, v) < ATOL
        for u, v in zip(model.encoder(feats_a), fused.encoder(feats_a)):
            assert _max_diff(u, v) < ATOL


def test_no_batchnorm_runs_and_vgg_blocks_are_one_conv():
    model = _model("s", 128)
    fused = fuse_for_deploy(model)
    ran: list[str] = []

    def hook(module, args, out):
        ran.append(type(module).__name__)

    for net in (model, fused):
        handles = [m.register_forward_hook(hook) for m in net.modules() if is_batchnorm(m)]
        with torch.no_grad():
            net(torch.rand(1, 3, 128, 128))
        for h in handles:
            h.remove()
        if net is model:
            # sanity: the unfused model runs each of its BatchNorms once
            assert len(ran) == sum(is_batchnorm(m) for m in model.modules()) > 50
            ran.clear()
    assert ran == []
    assert not any(is_batchnorm(m) for m in fused.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fused.modules())  # mask head keeps its GN

    n_vgg = sum(isinstance(m, VGGBlock) for m in model.modules())
    # S: 2 fusion blocks (1 FPN + 1 PAN per extra level: 2 levels) x 2 CSPLayers x depth
    assert n_vgg == 2 * 2 * 2 * round(3 * size_config("s").depth_mult) == 8
    assert not any(isinstance(m, VGGBlock) for m in fused.modules())
    blocks = [m for m in fused.modules() if isinstance(m, FusedVGGBlock)]
    assert len(blocks) == n_vgg
    for block in blocks:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].bias is not None


def test_original_model_untouched():
    model = _model("n", 256)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(is_batchnorm(m) for m in model.modules())
    deploy = DeployModel(model, 10)
    with torch.no_grad():
        deploy(torch.rand(1, 3, 256, 256))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert model.training and all(m.training for m in model.modules())
    assert sum(is_batchnorm(m) for m in model.modules()) == n_bn > 0
    assert any(isinstance(m, VGGBlock) for m in model.modules())
    assert deploy.model is not model and not deploy.model.training
    assert DeployModel(model, 10, fuse=False).model is model  # unfused: wraps the model itself


def test_frozen_batchnorm_backbone_is_folded():
    """L/X backbones use FrozenBatchNorm2d (buffers only); B0 with freeze_norm=True is cheap."""
    torch.manual_seed(4)
    net = HGNetv2("B0", use_lab=True, return_idx=(1, 2, 3), freeze_norm=True).eval()
    g = torch.Generator().manual_seed(4)
    frozen = [m for m in net.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen
    for bn in frozen:
        n = bn.num_features
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.normal_(0.0, 0.1, generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        bn.running_mean.normal_(0.0, 0.2, generator=g)
        assert bn.weight.shape == (n,)
    fused = fuse_for_deploy(net)
    assert not any(is_batchnorm(m) for m in fused.modules())
    x = torch.rand(1, 3, 96, 96, generator=g)
    with torch.no_grad():
        for u, v in zip(net(x), fused(x)):
            assert _max_diff(u, v) < ATOL * max(1.0, u.abs().max().item())
