"""Pure editing geometry (app/canvas/geometry.py): exact values on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest

from app.canvas import geometry as geo
from core.annotation import Instance

SQUARE = [(0, 0), (10, 0), (10, 10), (0, 10)]


def test_box_parts_are_its_corners_and_corner_drag_resizes_against_the_opposite():
    box = Instance(class_id=0, box=(2, 3, 8, 9))
    np.testing.assert_array_equal(geo.parts(box)[0], [[2, 3], [8, 3], [8, 9], [2, 9]])
    assert geo.move_vertex(box, (0, 2), 12, 15).box == (2, 3, 12, 15)  # bottom-right
    assert geo.move_vertex(box, (0, 0), 10, 1).box == (8, 1, 10, 9)  # dragged past the opposite x: normalised
    assert geo.delete_vertex(box, (0, 1)) is None  # a box has no removable vertex
    assert geo.nearest_edge(box, 5, 3, 2) is None  # no vertex insertion on boxes


def test_nearest_vertex_respects_radius_and_parts_then_holes():
    inst = Instance(class_id=0, polygons=[SQUARE], holes=[[(4, 4), (6, 4), (6, 6), (4, 6)]])
    assert geo.nearest_vertex(inst, 10.5, 0.4, 1.0) == (0, 1)
    assert geo.nearest_vertex(inst, 6.2, 5.9, 1.0) == (1, 2)  # hole vertices come after the parts
    assert geo.nearest_vertex(inst, 5, 5, 1.0) is None


def test_nearest_edge_projects_onto_the_segment():
    inst = Instance(class_id=0, polygons=[SQUARE])
    part, k, q = geo.nearest_edge(inst, 4, 0.7, 1.0)
    assert (part, k) == (0, 0)
    np.testing.assert_allclose(q, [4, 0])
    part, k, q = geo.nearest_edge(inst, -0.5, 6, 1.0)  # the closing edge (vertex 3 -> vertex 0)
    assert (part, k) == (0, 3)
    np.testing.assert_allclose(q, [0, 6])
    assert geo.nearest_edge(inst, 5, 5, 1.0) is None


def test_insert_and_delete_vertex_are_inverse_and_keep_a_triangle():
    inst = Instance(class_id=0, polygons=[SQUARE])
    ins = geo.insert_vertex(inst, 0, 0, 5, 0)
    np.testing.assert_array_equal(ins.polygons[0], [[0, 0], [5, 0], [10, 0], [10, 10], [0, 10]])
    back = geo.delete_vertex(ins, (0, 1))
    np.testing.assert_array_equal(back.polygons[0], inst.polygons[0])
    tri = Instance(class_id=0, polygons=[[(0, 0), (1, 0), (0, 1)]])
    assert geo.delete_vertex(tri, (0, 0)) is None
    np.testing.assert_array_equal(inst.polygons[0], SQUARE)  # inputs are never mutated


def test_hole_edits_stay_holes():
    inst = Instance(class_id=0, polygons=[SQUARE], holes=[[(4, 4), (6, 4), (6, 6), (4, 6)]])
    out = geo.move_vertex(inst, (1, 0), 3, 3)
    np.testing.assert_array_equal(out.holes[0][0], [3, 3])
    np.testing.assert_array_equal(out.polygons[0], SQUARE)
    from shapely.geometry import Polygon

    # hole (3,3) (6,4) (6,6) (4,6): shoelace 6 (it was 4); shapely as the independent oracle
    assert Polygon(SQUARE, [out.holes[0]]).area == pytest.approx(94.0)
    assert out.area() == pytest.approx(94.0)


def test_point_in_instance_even_odd_with_holes_and_parts():
    inst = Instance(class_id=0, polygons=[SQUARE, [(20, 0), (30, 0), (25, 8)]], holes=[[(4, 4), (6, 4), (6, 6), (4, 6)]])
    assert geo.point_in_instance(inst, 1, 1)
    assert not geo.point_in_instance(inst, 5, 5)  # inside the hole
    assert geo.point_in_instance(inst, 25, 2)  # second part
    assert not geo.point_in_instance(inst, 15, 5)


def test_translation_is_clamped_to_the_image():
    inst = Instance(class_id=0, polygons=[SQUARE])
    assert geo.clamp_translation(inst, -5, 3, 100, 50) == (0, 3)
    assert geo.clamp_translation(inst, 95, 45, 100, 50) == (90, 40)
    moved = geo.translate(inst, 2, 3)
    np.testing.assert_array_equal(moved.polygons[0], np.array(SQUARE) + [2, 3])
    assert geo.translate(Instance(class_id=1, box=(0, 0, 4, 4)), 1, 2).box == (1, 2, 5, 6)
