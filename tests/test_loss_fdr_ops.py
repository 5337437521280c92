"""FGL target construction: the weighting function W(n), its inverse, and bbox2distance."""

import torch

from core.loss.fdr_ops import bbox2distance, translate_gt, weighting_function

UP = torch.tensor([0.5])
REG_SCALE = torch.tensor([4.0])


def test_weighting_function_small_case_by_hand():
    # reg_max 4, up .5, reg_scale 4: upper bound 2, step (2+1)^(2/2) = 3 -> [-4, -(3-1), 0, 3-1, 4]
    torch.testing.assert_close(
        weighting_function(4, UP, REG_SCALE), torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    )


def test_weighting_function_reg_max_32_shape_and_symmetry():
    w = weighting_function(32, UP, REG_SCALE)
    assert w.shape == (33,)
    assert w[16].item() == 0.0 and w[0].item() == -4.0 and w[32].item() == 4.0
    step = 3.0 ** (1 / 15)
    assert abs(w[17].item() - (step - 1)) < 1e-6
    torch.testing.assert_close(w, -w.flip(0))
    assert torch.all(w[1:] > w[:-1])


def test_translate_gt_by_hand():
    # W = [-4, -2, 0, 2, 4]
    gt = torch.tensor([1.0, -1.5, -5.0, 4.5, 0.0])
    idx, wr, wl = translate_gt(gt, 4, REG_SCALE, UP)
    # 1.0 lies halfway between bins 2 (0) and 3 (2)
    assert idx[0].item() == 2 and abs(wr[0].item() - 0.5) < 1e-6 and abs(wl[0].item() - 0.5) < 1e-6
    # -1.5 between bins 1 (-2) and 2 (0): right weight 0.5 / 2 = 0.25
    assert idx[1].item() == 1 and abs(wr[1].item() - 0.25) < 1e-6 and abs(wl[1].item() - 0.75) < 1e-6
    # below the range: everything on bin 0
    assert idx[2].item() == 0 and wl[2].item() == 1.0 and wr[2].item() == 0.0
    # above the range: everything on the last bin
    assert abs(idx[3].item() - 3.9) < 1e-6 and wr[3].item() == 1.0 and wl[3].item() == 0.0
    # exactly on a bin
    assert idx[4].item() == 2 and abs(wl[4].item() - 1.0) < 1e-6


def test_bbox2distance_inverts_the_decoders_edge_decoding():
    """Edge offsets d -> box (the decoder's formula written out here) -> bbox2distance -> the
    two-bin interpolation of W gives d back."""
    reg_max = 32
    w = weighting_function(reg_max, UP, REG_SCALE)
    points = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])
    d = torch.tensor([[0.7, -1.3, 2.5, 0.05], [-0.2, 3.1, 0.0, -3.9]])
    s = 4.0
    x1 = points[:, 0] - (0.5 * s + d[:, 0]) * points[:, 2] / s
    y1 = points[:, 1] - (0.5 * s + d[:, 1]) * points[:, 3] / s
    x2 = points[:, 0] + (0.5 * s + d[:, 2]) * points[:, 2] / s
    y2 = points[:, 1] + (0.5 * s + d[:, 3]) * points[:, 3] / s
    boxes = torch.stack([x1, y1, x2, y2], 1)
    idx, wr, wl = bbox2distance(points, boxes, reg_max, REG_SCALE, UP)
    left = idx.long()
    recovered = w[left] * wl + w[left + 1] * wr
    torch.testing.assert_close(recovered, d.reshape(-1), atol=1e-5, rtol=0)
