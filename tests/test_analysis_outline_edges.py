"""The outline edge check: a label the model does not support is spurious only if the pixels
agree. On the label-mistake benchmark the fold models miss real low-contrast or half-hidden
objects completely, and their labels ranked as spurious beside the labels drawn on background."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.analysis.find_mistakes import analyze_image, edge_factor, with_pixels
from core.analysis.outline_edges import EdgeCalibration, EdgeEvidence, ImageEdges, edge_step, occupied_mask, outline_edge_z, outline_samples
from core.analysis.settings import AnalysisConfig
from core.annotation import ImageAnnotation, Instance
from core.eval.records import ImagePred

SIZE = 200


def _striped_background(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Stripes and grain like the benchmark's backgrounds: edges everywhere, none along a label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = 120 + 15 * np.sin((0.6 * xx + 0.8 * yy) * 2 * np.pi / 11)
    img = np.repeat(img[..., None], 3, axis=2) + rng.normal(0, 7, (size, size, 3))
    return img.astype(np.float32)


def _disc(cx: float, cy: float, r: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _scene(tmp_path, contrast: float = 25.0):
    """A low-contrast disc (labelled) and a square label on bare background, written as PNG."""
    img = _striped_background()
    disc = _disc(60, 60, 28)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(disc).astype(np.int32)], 1)
    img[mask.astype(bool)] += contrast
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
    square = np.array([[120, 120], [170, 120], [170, 170], [120, 170]], float)
    return ImageAnnotation(path, SIZE, SIZE, [Instance(0, [disc]), Instance(1, [square])])


def test_outline_samples_walk_the_polygon_one_pixel_apart_with_unit_normals():
    pts, normals = outline_samples([np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)])
    assert pts.shape == (40, 2) and normals.shape == (40, 2)
    assert pts[0] == pytest.approx([0.5, 0.0]) and pts[10] == pytest.approx([10.0, 0.5])
    assert np.linalg.norm(normals, axis=1) == pytest.approx(np.ones(40))
    assert normals[0] == pytest.approx([0.0, 1.0])  # perpendicular to the first side


def test_edge_step_is_the_colour_distance_across_the_outline():
    img = np.zeros((20, 20, 3), np.float32)
    img[:, 10:] = 100.0
    pts, normals = outline_samples([np.array([[10, 2], [10, 18]], float)])
    assert edge_step(img, pts, normals) == pytest.approx(100.0 * np.sqrt(3), rel=1e-6)
    flat = np.full((20, 20, 3), 7.0, np.float32)
    assert edge_step(flat, pts, normals) == pytest.approx(0.0)


def test_a_low_contrast_object_has_an_edge_and_background_has_none(tmp_path):
    ann = _scene(tmp_path)
    edges = ImageEdges(ann, lambda p: cv2.imread(str(p)))
    on_object, on_background = edges.of(0), edges.of(1)
    assert on_object is not None and on_background is not None
    assert on_object.z > 6.0 and abs(on_background.z) < 3.0
    assert on_object.placements >= 6 and on_object.step > on_object.background_step + 15
    # the same disc outline moved off the object (half its size) is background again
    img = cv2.GaussianBlur(cv2.imread(str(ann.image_path)).astype(np.float32), (0, 0), 1.0)
    occ = occupied_mask(ann.instances, SIZE, SIZE, 1.0)
    moved = outline_edge_z(img, [_disc(60, 130, 28)], occ)
    assert moved is not None and moved.z < on_object.z - 5


def test_a_missed_object_is_not_ranked_as_a_spurious_label(tmp_path):
    """No prediction at all: both labels are unsupported; only the one on background is spurious."""
    ann = _scene(tmp_path)
    empty = ImagePred(np.zeros((0, 4)), [], [], image_id="scene.png")
    issues = {i.instance: i for i in analyze_image(ann, empty, "segment", flips=None)}
    # calibrated on this image alone: its two labels against their outlines moved onto background
    assert issues[1].kind == "spurious_label" and issues[1].score >= 0.75
    assert issues[1].evidence["p_background"] > 0.5 and abs(issues[1].evidence["edge_z"]) < 3
    assert issues[0].score < 0.1 and issues[0].evidence["edge_z"] > 6
    assert "likely an object the model misses" in issues[0].message
    # without the check (or in detect mode) both rank alike, as before
    plain = analyze_image(ann, empty, "segment", flips=None, read=None)
    assert [round(i.score, 4) for i in plain] == [0.75, 0.75]
    off = analyze_image(ann, empty, "segment", AnalysisConfig(edge_check=False), flips=None)
    assert [round(i.score, 4) for i in off] == [0.75, 0.75]


def test_what_an_edge_means_comes_from_the_project_and_only_sways_the_model_s_claim():
    rng = np.random.default_rng(0)
    cal = EdgeCalibration(label_z=rng.normal(8, 2, 300), null_z=rng.normal(0, 1, 3000))
    assert edge_factor(None, cal) is None and edge_factor(EdgeEvidence(0.0, 1, 1, 10), None) is None
    p = [edge_factor(EdgeEvidence(z, 1, 1, 10), cal) for z in (-2, 0, 2, 4, 6, 8, 12)]
    assert p == sorted(p, reverse=True) and p[0] > 0.95 and p[-1] < 0.05
    # where the two distributions overlap the pixels cannot tell: the model's claim stands
    assert with_pixels(0.6, 0.5) == pytest.approx(0.6) and with_pixels(0.6, None) == 0.6
    assert with_pixels(0.6, 0.9) > 0.9 and with_pixels(0.6, 0.1) < 0.2


def test_an_unreadable_or_mismatched_image_only_skips_the_check(tmp_path):
    ann = _scene(tmp_path)
    empty = ImagePred(np.zeros((0, 4)), [], [], image_id="scene.png")
    (tmp_path / "scene.png").write_bytes(b"not a png")
    issues = analyze_image(ann, empty, "segment", flips=None)
    assert [round(i.score, 4) for i in issues] == [0.75, 0.75]
    assert all("not readable" in i.evidence["edge_check"] for i in issues)
    cv2.imwrite(str(tmp_path / "scene.png"), np.zeros((100, 150, 3), np.uint8))
    issues = analyze_image(ann, empty, "segment", flips=None)
    assert all(i.evidence["edge_check"] == "image is 150x100, labels say 200x200" for i in issues)


BIG = 300


def _disc_scene(tmp_path, label_centre):
    """A clear disc at (100, 100), r 40, in a 300 px image; one disc label of that size at
    ``label_centre``."""
    img = _striped_background(size=BIG)
    mask = np.zeros((BIG, BIG), np.uint8)
    cv2.fillPoly(mask, [np.round(_disc(100, 100, 40)).astype(np.int32)], 1)
    img[mask.astype(bool)] += 60.0
    path = tmp_path / "disc.png"
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
    return ImageAnnotation(path, BIG, BIG, [Instance(0, [_disc(*label_centre, 40)])])


def _one_mask(polygon: np.ndarray, score: float) -> ImagePred:
    from core import rle as rle_ops

    m = rle_ops.polygons_to_rle([polygon], [], BIG, BIG)
    return ImagePred(rle_ops.to_xyxy([m]).reshape(-1, 4), [score], [0], [m], image_id="disc.png")


def test_the_pixels_arbitrate_a_bad_outline_claim(tmp_path):
    """The model's mask and the label overlap by IoU ~0.5. When the label is the one on the disc's
    edge (the model's blob is off), the claim goes; when the label is off, it stands."""
    blob = _disc(118, 112, 33)  # the model's mask: off the disc
    ann = _disc_scene(tmp_path, (100, 100))
    edges = ImageEdges(ann, lambda p: cv2.imread(str(p)))
    verdict = edges.compare(0, [blob])
    assert verdict.label_cover > 0.9 and verdict.model_cover < 0.4
    issues = [i for i in analyze_image(ann, _one_mask(blob, 0.9), "segment", flips=None) if i.kind == "bad_geometry"]
    plain = analyze_image(ann, _one_mask(blob, 0.9), "segment", flips=None, read=None)
    assert [i.kind for i in plain] == ["bad_geometry"] and plain[0].score > 0.3  # what it was before
    # the label's outline on an edge as the (image's) labels are, the model's off it: vetoed
    assert issues and issues[0].evidence["p_label_off"] < 0.05 and issues[0].score < 0.05 * plain[0].score

    moved = _disc_scene(tmp_path, (118, 112))  # now the label is off and the model on the disc
    issues = analyze_image(moved, _one_mask(_disc(100, 100, 40), 0.9), "segment", flips=None)
    assert [i.kind for i in issues] == ["bad_geometry"]
    assert issues[0].evidence["label_outline_on_edge"] < 0.4 < 0.9 < issues[0].evidence["model_outline_on_edge"]
    assert issues[0].score == pytest.approx(
        analyze_image(moved, _one_mask(_disc(100, 100, 40), 0.9), "segment", flips=None, read=None)[0].score)
    assert "the model's for" in issues[0].message


def test_no_verdict_without_room_for_background_placements(tmp_path):
    """The same disc in a 150 px crop whose rest is labelled too: no background to compare with."""
    ann = _disc_scene(tmp_path, (100, 100))
    crop = cv2.imread(str(ann.image_path))[25:175, 25:175]
    cv2.imwrite(str(tmp_path / "crop.png"), crop)
    rest = np.array([[0, 0], [150, 0], [150, 150], [0, 150]], float)
    small = ImageAnnotation(tmp_path / "crop.png", 150, 150, [Instance(0, [_disc(75, 75, 40)]), Instance(1, [rest])])
    edges = ImageEdges(small, lambda p: cv2.imread(str(p)))
    assert edges.of(0) is None and edges.compare(0, [_disc(80, 80, 30)]) is None


