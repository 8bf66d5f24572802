# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Node positions: y down, K per type, determinism, interior samples, embedding rule."""

import math

import numpy as np
import pytest
import shapely
import torch
from shapely.geometry import LineString, Point, Polygon, box

from torchgeo_geolink.osm import (
    HashingTagEncoder,
    KeyWeights,
    NodeEmbedder,
    line_positions,
    point_positions,
    polygon_positions,
)
from torchgeo_geolink.osm.positions import polygon_sample_points

BOUNDS = (10.0, 20.0, 14.0, 22.0)


def test_point_positions_y_down() -> None:
    pos = point_positions(
        np.array([Point(10, 22), Point(14, 20), Point(12, 21), Point(16, 19)]), BOUNDS
    )
    assert pos.shape == (4, 1, 2) and pos.dtype == np.float32
    np.testing.assert_allclose(
        pos[:, 0], [[0, 0], [1, 1], [0.5, 0.5], [1.5, 1.5]]
    )  # not clipped


def test_line_positions_centroid_start_end() -> None:
    lines = np.array([LineString([(10, 20), (14, 20), (14, 22)])])
    pos = line_positions(lines, BOUNDS)
    assert pos.shape == (1, 3, 2)
    centroid = lines[0].centroid  # length-weighted: (4*(12,20) + 2*(14,21)) / 6
    np.testing.assert_allclose(
        pos[0, 0], [(centroid.x - 10) / 4, 1 - (centroid.y - 20) / 2], rtol=1e-6
    )
    np.testing.assert_allclose(pos[0, 1:], [[0, 1], [1, 0]])


def test_polygon_positions_layout_and_determinism() -> None:
    polygons = np.array([box(10, 20, 12, 21), box(11, 20.5, 14, 22)])
    pos = polygon_positions(polygons, BOUNDS)
    assert pos.shape == (2, 4, 2)
    np.testing.assert_allclose(pos[0, 3], [0.25, 0.75])  # centroid last
    assert pos[0, 0, 1] == pytest.approx(
        pos[0, 3, 1]
    )  # 0 degrees: same y as the centroid
    assert (
        pos[0, 1, 1] < pos[0, 3, 1] and pos[0, 2, 1] > pos[0, 3, 1]
    )  # 120 deg goes up (y down), 240 down
    np.testing.assert_array_equal(pos, polygon_positions(polygons.copy(), BOUNDS))
    shifted = polygon_positions(np.array([box(10, 20, 12, 21.001)]), BOUNDS)
    assert not np.allclose(
        shifted[0, :3], pos[0, :3], atol=1e-6
    )  # a different geometry draws other radii


def test_polygon_sample_radii_follow_spec() -> None:
    square = np.array(
        [box(0, 0, 2, 2)]
    )  # centroid (1, 1), all vertices at sqrt(2): r = sqrt(2)/2
    xy = polygon_sample_points(square, uniforms=np.array([[0.0, 0.5, 0.99]]))
    r = math.sqrt(2) / 2
    np.testing.assert_allclose(xy[0, 0], [1 + r, 1])
    np.testing.assert_allclose(
        xy[0, 1], [1 + r * math.cos(2 * math.pi / 3), 1 + r * math.sin(2 * math.pi / 3)]
    )


def test_polygon_samples_inside_concave_polygons() -> None:
    rng = np.random.default_rng(1)
    shapes = [
        Polygon(
            [(0, 0), (4, 0), (4, 1), (1, 1), (1, 4), (0, 4)]
        ),  # L shape, centroid inside
        Polygon(
            [(0, 0), (3, 0), (3, 3), (0, 3)], [[(1, 1), (2, 1), (2, 2), (1, 2)]]
        ),  # hole at the centroid
        Polygon(
            [(0, 0), (10, 0), (10, 1), (1, 1), (1, 9), (10, 9), (10, 10), (0, 10)]
        ),  # C: centroid outside
    ]
    shapes += list(
        shapely.buffer(
            shapely.points(rng.uniform(0, 50, (40, 2))), rng.uniform(0.5, 5, 40)
        )
    )
    xy = polygon_sample_points(np.array(shapes, dtype=object))
    fallbacks = 0
    for k, polygon in enumerate(shapes):
        samples = xy[k]
        centroid = polygon.centroid
        d_min = min(centroid.distance(Point(c)) for c in polygon.exterior.coords)
        for sample in samples[:3]:
            if not polygon.contains(
                Point(sample)
            ):  # the reference's fallback: d_min / 200 from the centroid
                assert Point(sample).distance(centroid) == pytest.approx(d_min / 200)
                assert not polygon.contains(centroid)
                fallbacks += 1
    assert fallbacks >= 1  # the C shape's 120/240 degree rays never enter it


def test_bad_bounds() -> None:
    with pytest.raises(ValueError, match='xmin < xmax'):
        point_positions(np.array([Point(0, 0)]), (1, 0, 0, 1))


def test_node_embedder_weighted_mean() -> None:
    encoder = HashingTagEncoder(dim=16)
    weights = KeyWeights({'highway': math.e**3, 'building': math.e, 'rare': 1})
    embedder = NodeEmbedder(encoder, weights)
    tags = [
        {'highway': 'service', 'building': 'yes'},
        {'rare': 'x', 'unknown': 'y'},
        {},
        {'building': 'yes'},
    ]
    out = embedder(tags)
    h = encoder.encode(['highway:service', 'building:yes', 'rare:x', 'unknown:y'])
    torch.testing.assert_close(out[0], (3 * h[0] + 1 * h[1]) / 4)
    torch.testing.assert_close(out[1], (h[2] + h[3]) / 2)  # all weights 0: plain mean
    assert torch.all(out[2] == 0)  # no tags: zeros
    torch.testing.assert_close(out[3], h[1])
    assert embedder(tags[2:3]).shape == (1, 16) and embedder([]).shape == (0, 16)


def test_polygon_sample_points_leaves_the_prepared_state_as_it_was() -> None:
    polygons = np.array([box(0, 0, 4, 4), box(5, 5, 6, 8), box(1, 6, 3, 9)])
    shapely.prepare(polygons[1])
    polygon_sample_points(polygons)
    assert shapely.is_prepared(polygons).tolist() == [False, True, False]
