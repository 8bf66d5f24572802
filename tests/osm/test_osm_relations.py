# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Spatial relation edges: the reference's predicate table, equality with all pairs."""

import itertools
import threading

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import Delaunay, QhullError
from shapely.geometry import LineString, Point, Polygon, box

from torchgeo_geolink.osm import (
    EDGE_ATTR_DIMS,
    EDGE_TYPES,
    RELATION_COLUMNS,
    build_edges,
    delaunay_edges,
    iter_edges,
    relations,
)

Edges = dict[tuple[int, int], str]


def as_dict(edges: dict, edge_type: tuple[str, str, str]) -> Edges:
    """Edge set -> {(src, dst): column name}, checking that edge_attr is one-hot."""
    edge_index, edge_attr = edges[edge_type]
    assert edge_index.dtype == np.int64 and edge_index.shape[0] == 2
    assert edge_attr.dtype == np.float32 and edge_attr.shape == (
        edge_index.shape[1],
        EDGE_ATTR_DIMS[edge_type],
    )
    assert np.all(edge_attr.sum(1) == 1) and set(np.unique(edge_attr)) <= {0.0, 1.0}
    names = RELATION_COLUMNS[edge_type]
    out = {
        (int(s), int(d)): names[int(c)]
        for (s, d), c in zip(edge_index.T, edge_attr.argmax(1), strict=True)
    }
    assert len(out) == edge_index.shape[1], 'duplicate edges'
    return out


def reference_edges(
    polygons: list, lines: list, points: list, equals_first: bool = True
) -> dict[tuple, Edges]:
    """All-pairs edges with scalar shapely predicates, in the reference's order."""

    def same_type(geoms: list) -> Edges:
        out: Edges = {}
        for i, a in enumerate(geoms):
            out[i, i] = 'self'
            for j, b in enumerate(geoms):
                if i == j or a.disjoint(b):
                    continue
                if a.touches(b):
                    out[i, j] = 'touches'
                elif equals_first and a.equals(b):
                    out[i, j] = 'equals'
                # The reference classifies relate(g_j, g_i) for i < j, testing "g_j
                # covers g_i" first.
                elif i < j and a.covered_by(b):
                    out[i, j] = 'coveredBy'
                elif a.covers(b):
                    out[i, j] = 'covers'
                elif a.covered_by(b):
                    out[i, j] = 'coveredBy'
                elif a.relate_pattern(b, 'T*T***T**'):
                    out[i, j] = 'overlaps'
        return out

    def line_polygon() -> tuple[Edges, Edges]:
        l2p: Edges = {}
        for (i, a), (j, b) in itertools.product(enumerate(lines), enumerate(polygons)):
            if a.disjoint(b):
                continue
            if a.touches(b):
                l2p[i, j] = 'touches'
            elif a.covered_by(b):
                l2p[i, j] = 'coveredBy'
            elif a.relate_pattern(b, 'T*T******') or a.relate_pattern(b, 'T*****T**'):
                l2p[i, j] = 'crosses'
        converse = {'touches': 'touches', 'crosses': 'crosses', 'coveredBy': 'covers'}
        return l2p, {(j, i): converse[r] for (i, j), r in l2p.items()}

    def point_other(others: list) -> tuple[Edges, Edges]:
        p2o: Edges = {}
        for (i, a), (j, b) in itertools.product(enumerate(points), enumerate(others)):
            if a.touches(b):
                p2o[i, j] = 'touches'
            elif a.within(b):
                p2o[i, j] = 'within'
        converse = {'touches': 'touches', 'within': 'contains'}
        return p2o, {(j, i): converse[r] for (i, j), r in p2o.items()}

    def point_point() -> Edges:
        out: Edges = {(i, i): 'self' for i in range(len(points))}
        if len(points) > 3:
            try:
                triangles = Delaunay([p.coords[0] for p in points]).simplices
            except QhullError:
                triangles = []
            for tri in triangles:
                for a, b in itertools.permutations(tri.tolist(), 2):
                    out[a, b] = 'delaunay'
        return out

    l2p, p2l = line_polygon()
    pt2l, l2pt = point_other(lines)
    pt2p, p2pt = point_other(polygons)
    return {
        ('polygon', 'to', 'polygon'): same_type(polygons),
        ('line', 'to', 'line'): same_type(lines),
        ('line', 'to', 'polygon'): l2p,
        ('polygon', 'to', 'line'): p2l,
        ('point', 'to', 'line'): pt2l,
        ('line', 'to', 'point'): l2pt,
        ('point', 'to', 'polygon'): pt2p,
        ('polygon', 'to', 'point'): p2pt,
        ('point', 'to', 'point'): point_point(),
    }


def test_polygon_polygon_table() -> None:
    polygons = [
        box(0, 0, 4, 4),  # 0
        box(1, 1, 2, 2),  # 1: inside 0
        box(4, 0, 5, 1),  # 2: touches 0
        box(3, 3, 6, 6),  # 3: overlaps 0
        box(0, 0, 4, 4),  # 4: equals 0
        box(
            0, 0, 2, 4
        ),  # 5: inside 0, sharing its boundary (covered, not properly within)
        box(10, 10, 11, 11),  # 6: disjoint
    ]
    edges = as_dict(build_edges(polygons, [], []), ('polygon', 'to', 'polygon'))
    for i in range(7):
        assert edges[i, i] == 'self'
    assert edges[0, 1] == 'covers' and edges[1, 0] == 'coveredBy'
    assert edges[0, 2] == 'touches' and edges[2, 0] == 'touches'
    assert edges[0, 3] == 'overlaps' and edges[3, 0] == 'overlaps'
    assert edges[0, 4] == 'equals' and edges[4, 0] == 'equals'  # B3 fixed
    assert edges[0, 5] == 'covers' and edges[5, 0] == 'coveredBy'
    assert not any(6 in pair for pair in edges if pair != (6, 6))
    # the reference order (B3): the lower index is "coveredBy" the higher one
    legacy = as_dict(
        build_edges(polygons, [], [], equals_first=False), ('polygon', 'to', 'polygon')
    )
    assert legacy[0, 4] == 'coveredBy' and legacy[4, 0] == 'covers'
    assert 'equals' not in legacy.values()


def test_line_line_table() -> None:
    lines = [
        LineString([(0, 0), (4, 0)]),  # 0
        LineString([(4, 0), (4, 4)]),  # 1: touches 0 at an endpoint
        LineString([(2, -1), (2, 1)]),  # 2: crosses 0 -> 'overlaps' (B4 kept)
        LineString([(1, 0), (2, 0)]),  # 3: sub-segment of 0
        LineString([(3, 0), (6, 0)]),  # 4: collinear partial overlap with 0
        LineString([(2, 0), (2, -3)]),  # 5: T-junction on 0 -> touches
    ]
    edges = as_dict(build_edges([], lines, []), ('line', 'to', 'line'))
    assert edges[0, 1] == edges[1, 0] == 'touches'
    assert edges[0, 2] == edges[2, 0] == 'overlaps'
    assert edges[0, 3] == 'covers' and edges[3, 0] == 'coveredBy'
    assert edges[0, 4] == edges[4, 0] == 'overlaps'
    assert edges[0, 5] == edges[5, 0] == 'touches'
    assert all(edges[i, i] == 'self' for i in range(6))


def test_line_polygon_table() -> None:
    polygon = [box(0, 0, 4, 4)]
    lines = [
        LineString([(0, 0), (0, 4)]),  # 0: along the boundary -> touches
        LineString([(1, 1), (2, 2)]),  # 1: inside -> coveredBy
        LineString([(2, 2), (6, 2)]),  # 2: in and out -> crosses
        LineString([(4, 1), (6, 1)]),  # 3: starts on the boundary, goes out -> touches
        LineString([(7, 7), (8, 8)]),  # 4: disjoint
        LineString([(0, 1), (2, 1)]),  # 5: from the boundary inwards -> coveredBy
    ]
    edges = build_edges(polygon, lines, [])
    l2p = as_dict(edges, ('line', 'to', 'polygon'))
    p2l = as_dict(edges, ('polygon', 'to', 'line'))
    assert l2p == {
        (0, 0): 'touches',
        (1, 0): 'coveredBy',
        (2, 0): 'crosses',
        (3, 0): 'touches',
        (5, 0): 'coveredBy',
    }
    assert p2l == {
        (0, 0): 'touches',
        (0, 1): 'covers',
        (0, 2): 'crosses',
        (0, 3): 'touches',
        (0, 5): 'covers',
    }


def test_point_other_table() -> None:
    polygon = [box(0, 0, 4, 4)]
    line = [LineString([(10, 0), (12, 0)])]
    points = [Point(2, 2), Point(0, 2), Point(10, 0), Point(11, 0), Point(20, 20)]
    edges = build_edges(polygon, line, points)
    assert as_dict(edges, ('point', 'to', 'polygon')) == {
        (0, 0): 'within',
        (1, 0): 'touches',
    }
    assert as_dict(edges, ('polygon', 'to', 'point')) == {
        (0, 0): 'contains',
        (0, 1): 'touches',
    }
    assert as_dict(edges, ('point', 'to', 'line')) == {
        (2, 0): 'touches',
        (3, 0): 'within',
    }
    assert as_dict(edges, ('line', 'to', 'point')) == {
        (0, 2): 'touches',
        (0, 3): 'contains',
    }


def test_point_on_closed_ring_is_within() -> None:
    ring = [
        LineString([(0, 0), (1, 0), (1, 1), (0, 0)])
    ]  # closed: no boundary, its start is interior
    edges = build_edges([], ring, [Point(0, 0)])
    assert as_dict(edges, ('point', 'to', 'line')) == {(0, 0): 'within'}


@pytest.mark.parametrize('n', [0, 1, 2, 3])
def test_delaunay_threshold_self_loops_only(n: int) -> None:
    xy = np.array([[0, 0], [1, 0], [0, 1]], dtype=float)[:n]
    edges = as_dict(
        {('point', 'to', 'point'): delaunay_edges(xy)}, ('point', 'to', 'point')
    )
    assert edges == {(i, i): 'self' for i in range(n)}


def test_delaunay_square() -> None:
    xy = np.array([[0, 0], [1, 0], [1, 1], [0, 1.1]])
    edges = as_dict(
        {('point', 'to', 'point'): delaunay_edges(xy)}, ('point', 'to', 'point')
    )
    delaunay = {pair for pair, r in edges.items() if r == 'delaunay'}
    assert len(delaunay) == 10  # 5 undirected edges of two triangles, both directions
    assert all((b, a) in delaunay for a, b in delaunay)
    assert sum(r == 'self' for r in edges.values()) == 4


@pytest.mark.parametrize(
    'xy',
    [
        [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]],  # collinear
        [[1, 1]] * 5,  # all identical
    ],
)
def test_delaunay_degenerate_gives_self_loops(xy: list) -> None:
    edges = as_dict(
        {('point', 'to', 'point'): delaunay_edges(np.array(xy, float))},
        ('point', 'to', 'point'),
    )
    assert edges == {(i, i): 'self' for i in range(len(xy))}


def test_delaunay_edges_are_the_triangulation_edges() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, size=(400, 2))
    xy[:20] = xy[20:40]  # duplicates, which Qhull leaves out
    expected = set()
    for simplex in Delaunay(xy).simplices.tolist():
        expected |= {(a, b) for a, b in itertools.permutations(simplex, 2)}
    edge_index, edge_attr = delaunay_edges(xy)
    pairs = list(zip(*edge_index.tolist(), strict=True))
    assert pairs == sorted(pairs)
    assert {p for p, a in zip(pairs, edge_attr[:, 1], strict=True) if a} == expected
    assert {p for p, a in zip(pairs, edge_attr[:, 0], strict=True) if a} == {
        (i, i) for i in range(len(xy))
    }


def test_delaunay_duplicates_do_not_crash() -> None:
    xy = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [1, 1], [0, 0]], float)
    edges = as_dict(
        {('point', 'to', 'point'): delaunay_edges(xy)}, ('point', 'to', 'point')
    )
    assert sum(r == 'self' for r in edges.values()) == 6
    assert sum(r == 'delaunay' for r in edges.values()) >= 10


def test_all_types_present_and_empty() -> None:
    edges = build_edges([], [], [])
    assert list(edges) == list(EDGE_TYPES)
    for edge_type, (edge_index, edge_attr) in edges.items():
        assert edge_index.shape == (2, 0) and edge_attr.shape == (
            0,
            EDGE_ATTR_DIMS[edge_type],
        )


def test_edges_sorted_by_source_then_target() -> None:
    polygons = [box(i, 0, i + 1.5, 1) for i in range(6)][::-1]
    edge_index, _ = build_edges(polygons, [], [])['polygon', 'to', 'polygon']
    keys = edge_index[0] * 100 + edge_index[1]
    assert np.all(np.diff(keys) > 0)


# --- all-pairs equality on random tiles (integer grid: many degenerate contacts) ---

coord = st.integers(0, 6)


@st.composite
def tiles(draw: st.DrawFn) -> tuple[list, list, list]:
    polygons = []
    for _ in range(draw(st.integers(0, 7))):
        x0, y0 = draw(coord), draw(coord)
        kind = draw(st.sampled_from(['box', 'triangle']))
        if kind == 'box':
            polygons.append(
                box(x0, y0, x0 + draw(st.integers(1, 4)), y0 + draw(st.integers(1, 4)))
            )
        else:
            tri = Polygon(
                [(x0, y0), (draw(coord), draw(coord)), (draw(coord), draw(coord))]
            )
            if tri.is_valid and tri.area > 0:
                polygons.append(tri)
    lines = []
    for _ in range(draw(st.integers(0, 7))):
        vertices = draw(
            st.lists(st.tuples(coord, coord), min_size=2, max_size=4, unique=True)
        )
        lines.append(LineString(vertices))
    points = [Point(p) for p in draw(st.lists(st.tuples(coord, coord), max_size=8))]
    return polygons, lines, points


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiles(), st.booleans())
def test_build_edges_matches_all_pairs_reference(
    tile: tuple[list, list, list], equals_first: bool
) -> None:
    polygons, lines, points = tile
    fast = build_edges(polygons, lines, points, equals_first=equals_first)
    slow = reference_edges(polygons, lines, points, equals_first=equals_first)
    for edge_type in EDGE_TYPES:
        assert as_dict(fast, edge_type) == slow[edge_type], edge_type


def test_build_edges_matches_reference_on_random_city() -> None:
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 100, size=(60, 2))
    polygons = list(
        shapely.buffer(shapely.points(centers), rng.uniform(1, 8, 60), quad_segs=2)
    )
    starts = rng.uniform(0, 100, size=(30, 2))
    lines = [
        LineString([s, s + rng.normal(0, 15, 2), s + rng.normal(0, 25, 2)])
        for s in starts
    ]
    points = list(shapely.points(rng.uniform(0, 100, size=(50, 2))))
    fast = build_edges(polygons, lines, points)
    slow = reference_edges(polygons, lines, points)
    for edge_type in EDGE_TYPES:
        assert as_dict(fast, edge_type) == slow[edge_type], edge_type
    assert len(slow['polygon', 'to', 'polygon']) > 60  # the tile has real overlaps


def test_parallel_candidate_queries_give_the_serial_edges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(2)
    polygons = shapely.buffer(
        shapely.points(rng.uniform(0, 100, (300, 2))), 4, quad_segs=2
    )
    lines = shapely.linestrings(rng.uniform(0, 100, (200, 2, 2)))
    on_lines = shapely.line_interpolate_point(lines[:100], 0.5, normalized=True)
    points = np.concatenate([on_lines, shapely.points(rng.uniform(0, 100, (150, 2)))])
    serial = build_edges(polygons, lines, points)
    monkeypatch.setattr(relations, 'PARALLEL_QUERY_MIN', 7)
    monkeypatch.setattr(relations, '_usable_cores', lambda: 3)
    parallel = build_edges(polygons, lines, points)
    for edge_type in EDGE_TYPES:
        assert serial[edge_type][0].shape[1] > 0, edge_type
        np.testing.assert_array_equal(parallel[edge_type][0], serial[edge_type][0])
        np.testing.assert_array_equal(parallel[edge_type][1], serial[edge_type][1])


def test_iter_edges_yields_the_edge_sets_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    polygons = shapely.buffer(shapely.points(rng.uniform(0, 50, (40, 2))), 3)
    lines = shapely.linestrings(rng.uniform(0, 50, (30, 2, 2)))
    points = shapely.points(rng.uniform(0, 50, (30, 2)))
    lazy = iter_edges(polygons, lines, points, equals_first=False)
    first_type, first = next(lazy)
    assert first_type == ('polygon', 'to', 'polygon')
    rest = dict(lazy)
    whole = build_edges(polygons, lines, points, equals_first=False)
    assert list(whole) == list(EDGE_TYPES)
    assert {first_type, *rest} == set(EDGE_TYPES)
    for edge_type, (edge_index, edge_attr) in [(first_type, first), *rest.items()]:
        np.testing.assert_array_equal(edge_index, whole[edge_type][0])
        np.testing.assert_array_equal(edge_attr, whole[edge_type][1])


def test_closing_iter_edges_early_stops_its_triangulation_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(4)
    points = shapely.points(rng.uniform(0, 50, (400, 2)))
    monkeypatch.setattr(relations, 'PARALLEL_QUERY_MIN', 100)
    monkeypatch.setattr(relations, '_usable_cores', lambda: 2)
    before = threading.active_count()
    lazy = iter_edges(None, None, points)
    next(lazy)
    assert threading.active_count() == before + 1  # Qhull runs beside the passes
    lazy.close()
    assert threading.active_count() == before
    whole = dict(iter_edges(None, None, points))
    expected = delaunay_edges(shapely.get_coordinates(points))
    np.testing.assert_array_equal(whole['point', 'to', 'point'][0], expected[0])
