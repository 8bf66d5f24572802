# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSMGraphBuilder: graph contract, bad input and the official osm2graph examples."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import torch
from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiLineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
    box,
)
from torch_geometric.data import Batch, HeteroData
from torch_geometric.data.data import BaseData

from torchgeo_geolink.errors import InvalidFeatureError
from torchgeo_geolink.osm import (
    EDGE_ATTR_DIMS,
    EDGE_TYPES,
    NODE_TYPES,
    POS_POINTS,
    CachedTagEncoder,
    HashingTagEncoder,
    OSMGraphBuilder,
    empty_graph,
)

#: The OSM layers and bounding boxes of the official example tiles (see
#: tests/data/official).
EXAMPLES = Path(__file__).resolve().parents[1] / 'data' / 'official' / 'osm2graph'
BOUNDS = (0.0, 0.0, 10.0, 10.0)


def check_contract(graph: HeteroData, dim: int = 512) -> None:
    assert set(graph.node_types) == set(NODE_TYPES)
    assert set(graph.edge_types) == set(EDGE_TYPES)
    for t in NODE_TYPES:
        n = graph[t].num_nodes
        assert graph[t].x.dtype == torch.float32 and graph[t].x.shape == (n, dim)
        assert graph[t].pos.dtype == torch.float32 and graph[t].pos.shape == (
            n,
            POS_POINTS[t],
            2,
        )
        assert graph[t].id.dtype == torch.long and graph[t].id.shape == (n,)
    for e in EDGE_TYPES:
        edge_index, edge_attr = graph[e].edge_index, graph[e].edge_attr
        assert edge_index.dtype == torch.long and edge_index.shape[0] == 2
        assert edge_attr.dtype == torch.float32 and edge_attr.shape == (
            edge_index.shape[1],
            EDGE_ATTR_DIMS[e],
        )
        assert torch.all(edge_attr.sum(1) == 1)
        src, _, dst = e
        if edge_index.numel():
            assert (
                edge_index[0].max() < graph[src].num_nodes
                and edge_index[1].max() < graph[dst].num_nodes
            )


def features(geometries: list, labels: list[str] | None = None) -> gpd.GeoDataFrame:
    labels = (
        labels
        if labels is not None
        else [f'building:b{i}' for i in range(len(geometries))]
    )
    return gpd.GeoDataFrame({'label': labels}, geometry=geometries, crs='EPSG:3857')


@pytest.fixture(scope='module')
def builder() -> OSMGraphBuilder:
    return OSMGraphBuilder()


def test_builder_graph(builder: OSMGraphBuilder) -> None:
    gdf = features(
        [
            box(1, 1, 4, 4),
            Point(2, 2),
            LineString([(0, 5), (9, 5)]),
            box(3, 3, 6, 6),
            Point(8, 8),
        ],
        [
            'building:yes;addr street:Main',
            'amenity:cafe',
            'highway:residential',
            'landuse:grass',
            'shop:x',
        ],
    )
    graph = builder(gdf, BOUNDS)
    check_contract(graph)
    assert graph['polygon'].id.tolist() == [0, 3] and graph['point'].id.tolist() == [
        1,
        4,
    ]
    assert graph['line'].id.tolist() == [2]
    expected = builder.node_features([{'building': 'yes', 'addr street': 'Main'}])
    torch.testing.assert_close(graph['polygon'].x[0], expected[0])
    np.testing.assert_allclose(graph['point'].pos[0, 0], [0.2, 0.8])
    np.testing.assert_allclose(graph['line'].pos[0, 1:], [[0.0, 0.5], [0.9, 0.5]])
    assert graph['point', 'to', 'polygon'].edge_index.tolist() == [[0], [0]]
    again = OSMGraphBuilder()(gdf, BOUNDS)  # a fresh builder gives the same graph
    for t in NODE_TYPES:
        assert torch.equal(again[t].x, graph[t].x) and torch.equal(
            again[t].pos, graph[t].pos
        )


def test_builder_batches(builder: OSMGraphBuilder) -> None:
    graphs: list[BaseData] = [
        builder(features([box(1, 1, 2, 2), Point(1, 1)]), BOUNDS),
        builder(features([]), BOUNDS),
    ]
    batch = Batch.from_data_list(graphs)
    assert batch['polygon'].x.shape == (1, 512) and batch['point'].batch.tolist() == [0]
    assert batch.num_graphs == 2


def test_no_features_gives_valid_empty_graph(builder: OSMGraphBuilder) -> None:
    graph = builder(features([]), BOUNDS)
    check_contract(graph)
    assert all(graph[t].num_nodes == 0 for t in NODE_TYPES)
    check_contract(empty_graph())


def test_empty_and_missing_geometries_are_dropped(builder: OSMGraphBuilder) -> None:
    graph = builder(features([None, Polygon(), box(1, 1, 2, 2), LineString()]), BOUNDS)
    assert graph['polygon'].id.tolist() == [2]
    assert graph['line'].num_nodes == 0 and graph['point'].num_nodes == 0


def test_multipart_and_collections_are_exploded(builder: OSMGraphBuilder) -> None:
    gdf = features(
        [
            MultiPolygon([box(1, 1, 2, 2), box(5, 5, 6, 6)]),
            MultiLineString([[(0, 0), (1, 0)], [(3, 3), (4, 4)]]),
            MultiPoint([(1, 1), (9, 9)]),
            GeometryCollection(
                [box(7, 7, 8, 8), Point(0.5, 0.5), LineString([(7, 0), (8, 0)])]
            ),
        ]
    )
    graph = builder(gdf, BOUNDS)
    check_contract(graph)
    assert graph['polygon'].id.tolist() == [0, 0, 3]
    assert graph['line'].id.tolist() == [1, 1, 3]
    assert graph['point'].id.tolist() == [2, 2, 3]
    torch.testing.assert_close(
        graph['polygon'].x[0], graph['polygon'].x[1]
    )  # parts share the tags


def test_3d_geometries_are_flattened(builder: OSMGraphBuilder) -> None:
    gdf = features(
        [Polygon([(1, 1, 5), (3, 1, 5), (3, 3, 9), (1, 3, 5)]), Point(2, 2, 100)]
    )
    graph = builder(gdf, BOUNDS)
    assert graph['polygon'].num_nodes == 1 and graph['point'].num_nodes == 1
    assert graph['point', 'to', 'polygon'].edge_attr.tolist() == [
        [0.0, 1.0]
    ]  # within, judged in 2-D


def test_invalid_polygon_is_repaired(builder: OSMGraphBuilder) -> None:
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    spike = Polygon(
        [(4, 4), (6, 4), (6, 6), (4, 6), (4, 5), (3, 5), (4, 5)]
    )  # polygon plus a dangling edge
    graph = builder(features([bowtie, spike]), BOUNDS)
    assert graph['polygon'].id.tolist() == [
        0,
        0,
        1,
    ]  # bowtie -> two triangles; spike -> its square
    assert graph['line'].num_nodes == 0  # the repaired spike's line part is not kept


def test_collapsed_polygon_raises_or_drops() -> None:
    flat = Polygon([(1, 1), (2, 2), (3, 3)])
    gdf = features([box(0, 0, 1, 1), flat], ['a:1', 'b:2'])
    gdf.index = pd.Index(['way/1', 'way/2'])
    with pytest.raises(
        InvalidFeatureError, match=r"feature 'way/2' \(row 1\).*collapses"
    ):
        OSMGraphBuilder()(gdf, BOUNDS)
    graph = OSMGraphBuilder(errors='drop')(gdf, BOUNDS)
    assert graph['polygon'].id.tolist() == [0] and graph['line'].num_nodes == 0


def test_non_finite_coordinates_raise() -> None:
    with pytest.raises(InvalidFeatureError, match=r'row 1.*non-finite'):
        OSMGraphBuilder()(features([Point(1, 1), Point(np.nan, 1)]), BOUNDS)


def test_duplicate_and_collinear_points(builder: OSMGraphBuilder) -> None:
    collinear = builder(features([Point(i, i) for i in range(6)]), BOUNDS)
    assert collinear['point', 'to', 'point'].edge_index.shape[1] == 6  # self loops only
    duplicates = builder(
        features([Point(1, 1)] * 3 + [Point(2, 1), Point(1, 3), Point(1, 1)]), BOUNDS
    )
    check_contract(duplicates)
    assert duplicates['point', 'to', 'point'].edge_attr[:, 1].sum() > 0


def test_odd_characters_in_tags(builder: OSMGraphBuilder) -> None:
    gdf = gpd.GeoDataFrame(
        {
            'tags': [
                {
                    'name': 'Ünïcode 東京 "quoted"',
                    'note': 'a;b=>c',
                    'addr:street': "O'Brien\\",
                },
                {},
            ]
        },
        geometry=[Point(1, 1), Point(2, 2)],
    )
    graph = builder(gdf, BOUNDS)
    assert (
        torch.isfinite(graph['point'].x).all() and graph['point'].x[0].abs().sum() > 0
    )
    assert torch.all(graph['point'].x[1] == 0)  # no tags


def test_bad_arguments(builder: OSMGraphBuilder) -> None:
    with pytest.raises(TypeError, match='GeoDataFrame'):
        builder(pd.DataFrame({'a': [1]}), BOUNDS)
    with pytest.raises(ValueError, match='bounds'):
        builder(features([Point(1, 1)]), (0, 0, 0, 1))
    with pytest.raises(ValueError, match='cache_dir'):
        OSMGraphBuilder(cache=False, cache_dir='x')


def test_builder_encodes_each_string_once() -> None:
    builder = OSMGraphBuilder(tag_encoder=HashingTagEncoder(dim=8))
    assert isinstance(builder.tag_encoder, CachedTagEncoder)
    gdf = features(
        [Point(1, 1), Point(2, 2), box(1, 1, 3, 3)], ['a:1;b:2', 'a:1', 'b:2;c:3']
    )
    builder(gdf, BOUNDS)
    builder(gdf, BOUNDS)
    assert len(builder.tag_encoder) == 3
    assert builder(gdf, BOUNDS)['point'].x.shape == (2, 8)


EXPECTED_COUNTS = {
    'a1085095888_S2_20': (10, 0, 0),
    'a472140250_FI_21': (8, 9, 1),
    'a702502933_US_21': (36, 6, 9),
    'n4503852781_DE_': (15, 1, 4),
    'w221548378_US_21': (12, 7, 0),
}


@pytest.mark.parametrize('name', sorted(EXPECTED_COUNTS))
def test_official_example_tiles(builder: OSMGraphBuilder, name: str) -> None:
    tile = EXAMPLES / name
    bbox = json.loads((tile / f'{name}_meta.json').read_text())['bbox']
    layers = [
        gpd.read_file(tile / f'{name}_{t}.geojson')
        for t in NODE_TYPES
        if (tile / f'{name}_{t}.geojson').exists()
    ]
    gdf = gpd.GeoDataFrame(pd.concat(layers, ignore_index=True), crs=layers[0].crs)
    graph = builder(gdf, bbox)
    check_contract(graph)
    assert tuple(graph[t].num_nodes for t in NODE_TYPES) == EXPECTED_COUNTS[name]
    for t in ('polygon', 'line'):  # one self loop per node
        n = graph[t].num_nodes
        attr = graph[t, 'to', t].edge_attr
        assert attr.shape[0] >= n and attr[:, 0].sum() == n
    for src, _, dst in EDGE_TYPES:  # transposed edge sets mirror each other
        forward = graph[src, 'to', dst].edge_index
        backward = graph[dst, 'to', src].edge_index
        assert {tuple(p) for p in forward.T.tolist()} == {
            tuple(p) for p in backward.flip(0).T.tolist()
        }
    # clipped features: positions (except polygon interior samples, centroids) lie in
    # the tile
    if graph['line'].num_nodes:
        assert graph['line'].pos.min() >= -1e-5 and graph['line'].pos.max() <= 1 + 1e-5
    assert (
        graph['polygon'].pos[:, 3].min() >= 0 and graph['polygon'].pos[:, 3].max() <= 1
    )
    poly_geoms = gdf.geometry[graph['polygon'].id.numpy()].to_numpy()
    interior = shapely.contains_xy(
        np.repeat(poly_geoms, 3),
        bbox[0]
        + graph['polygon'].pos[:, :3, 0].double().numpy().ravel() * (bbox[2] - bbox[0]),
        bbox[1]
        + (1 - graph['polygon'].pos[:, :3, 1].double().numpy().ravel())
        * (bbox[3] - bbox[1]),
    )
    centroid_inside = np.repeat(
        shapely.contains(poly_geoms, shapely.centroid(poly_geoms)), 3
    )
    assert np.all(
        interior | ~centroid_inside
    )  # outside only via the reference's fallback
