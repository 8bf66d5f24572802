# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from tests.conftest import CITY_ORIGIN
from torchgeo_geolink.datasets import (
    OSMDataset,
    collate_geolink,
    graph_to_sample,
    sample_to_graph,
    unbind_geolink,
)
from torchgeo_geolink.osm import EDGE_TYPES, NODE_TYPES

X0, Y0 = CITY_ORIGIN


def test_round_trip(city_gpkg: Path) -> None:
    sample = OSMDataset(city_gpkg)[X0 : X0 + 120, Y0 : Y0 + 120]
    graph = sample_to_graph(sample)
    assert set(graph.node_types) == set(NODE_TYPES)
    assert set(graph.edge_types) == set(EDGE_TYPES)
    assert graph.bounds.shape == (1, 4)
    back = graph_to_sample(graph)
    assert back.keys() == sample.keys()
    for key, value in sample.items():
        torch.testing.assert_close(back[key], value)


def test_missing_keys_give_empty_graph() -> None:
    graph = sample_to_graph(
        {'osm_point_x': torch.ones(2, 8), 'osm_point_pos': torch.zeros(2, 1, 2)}
    )
    assert graph['point'].num_nodes == 2
    assert graph['polygon'].x.shape == (0, 8)
    assert graph['point', 'to', 'point'].edge_attr.shape == (0, 2)
    with pytest.raises(ValueError, match='osm_line_pos has 1'):
        sample_to_graph(
            {'osm_line_x': torch.ones(2, 8), 'osm_line_pos': torch.zeros(1, 3, 2)}
        )


def test_collate_and_unbind(city_gpkg: Path) -> None:
    ds = OSMDataset(city_gpkg)
    windows = [(X0, Y0), (X0 + 44, Y0 + 44), (X0 + 100, Y0 + 100)]
    samples = []
    for x, y in windows:
        sample = ds[
            x : x + 2 if x == X0 + 44 else x + 100,
            y : y + 2 if y == Y0 + 44 else y + 100,
        ]
        sample['image'] = torch.rand(3, 8, 8)
        sample['bounds'] = torch.arange(9.0)
        samples.append(sample)
    batch = collate_geolink(samples)
    assert set(batch) == {'image', 'bounds', 'graph'}
    assert batch['image'].shape == (3, 3, 8, 8)
    assert batch['bounds'].shape == (3, 9)
    graph = batch['graph']
    assert isinstance(graph, Batch)
    assert graph.num_graphs == 3
    counts = [len(s['osm_polygon_id']) for s in samples]
    assert counts[1] == 0  # an empty graph keeps its place in the batch
    assert graph['polygon'].ptr.tolist() == [
        0,
        counts[0],
        counts[0],
        counts[0] + counts[2],
    ]
    edge_index = graph['polygon', 'to', 'polygon'].edge_index
    assert int(edge_index.max()) < graph['polygon'].num_nodes
    unbound = unbind_geolink(batch)
    assert len(unbound) == 3
    for original, restored in zip(samples, unbound, strict=True):
        for key, value in original.items():
            torch.testing.assert_close(restored[key], value)
    with pytest.raises(ValueError, match='image'):
        collate_geolink(
            [samples[0], {k: v for k, v in samples[1].items() if k != 'image'}]
        )
