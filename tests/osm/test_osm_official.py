# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""To/from the official GeoLink graph format: synthetic graphs, the UFZ examples."""

from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from torchgeo_geolink.osm import (
    EDGE_ATTR_DIMS,
    EDGE_TYPES,
    NODE_TYPES,
    POS_POINTS,
    from_official_graph,
    to_official_graph,
)

#: Official-format graphs committed with the tests (built from the shipped Helsinki OSM,
#: see tests/data/official).
FIXTURES = Path(__file__).resolve().parents[1] / 'data' / 'official' / 'ufz' / 'graph'
#: The official release's own UFZ graphs, when a checkout of its example data sits next
#: to the repository.
UFZ = (
    Path(__file__).resolve().parents[2]
    / '..'
    / 'shared'
    / 'data'
    / 'geolink_examples'
    / 'ufz'
    / 'graph'
)
OFFICIAL_GRAPHS = sorted(FIXTURES.glob('*.pt')) + (
    sorted(UFZ.glob('*.pt')) if UFZ.is_dir() else []
)


def official_graph(dim: int = 16) -> HeteroData:
    torch.manual_seed(0)
    data = HeteroData()
    counts = {
        'polygon': 3,
        'line': 2,
    }  # no point nodes, as when a tile has no point layer
    for t, n in counts.items():
        data[t].x = torch.randn(n, dim + 2 * POS_POINTS[t])
    data['polygon', 'to', 'polygon'].edge_index = torch.tensor(
        [[0, 1, 2, 0], [0, 1, 2, 1]]
    )
    data['polygon', 'to', 'polygon'].edge_attr = torch.eye(6)[[0, 0, 0, 3]]
    data['line', 'to', 'polygon'].edge_index = torch.tensor([[1], [2]])
    data['line', 'to', 'polygon'].edge_attr = torch.eye(3)[[1]]
    return data


def test_from_official_graph_splits_positions_and_fills_missing_types() -> None:
    data = official_graph()
    before = {t: data[t].x.clone() for t in ('polygon', 'line')}
    ours = from_official_graph(data)
    assert set(ours.node_types) == set(NODE_TYPES) and set(ours.edge_types) == set(
        EDGE_TYPES
    )
    torch.testing.assert_close(ours['polygon'].x, data['polygon'].x[:, :16])
    torch.testing.assert_close(
        ours['polygon'].pos[1, 3], data['polygon'].x[1, 22:24]
    )  # centroid last
    torch.testing.assert_close(
        ours['line'].pos[0, 2], data['line'].x[0, 20:22]
    )  # end vertex
    assert ours['point'].x.shape == (0, 16) and ours['point'].pos.shape == (0, 1, 2)
    assert ours['point', 'to', 'line'].edge_attr.shape == (0, 2)
    for t, x in before.items():  # the input is not mutated
        assert torch.equal(data[t].x, x)
    ours['polygon'].x[0, 0] = 123.0
    assert data['polygon'].x[0, 0] != 123.0


def test_round_trip() -> None:
    data = official_graph()
    back = to_official_graph(from_official_graph(data))
    for t in ('polygon', 'line'):
        assert torch.equal(back[t].x, data[t].x)
    for e in EDGE_TYPES:
        if e in data.edge_types:
            assert torch.equal(back[e].edge_index, data[e].edge_index)
            assert torch.equal(back[e].edge_attr, data[e].edge_attr)
        else:
            assert back[e].edge_index.shape == (2, 0) and back[e].edge_attr.shape == (
                0,
                EDGE_ATTR_DIMS[e],
            )
    assert back['point'].x.shape == (0, 18)


def test_malformed_graphs_raise() -> None:
    data = official_graph()
    data['line'].x = torch.randn(2, 3)
    with pytest.raises(
        ValueError, match=r'disagree on the semantic width: polygon 16 .*, line -3'
    ):
        from_official_graph(data)
    data = official_graph()
    data['line'].x = torch.randn(2 * 22)
    with pytest.raises(ValueError, match=r"'line' node features must have shape"):
        from_official_graph(data)
    data = official_graph()
    data['polygon', 'to', 'polygon'].edge_attr = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"\('polygon', 'to', 'polygon'\): edge_attr"):
        from_official_graph(data)
    ours = from_official_graph(official_graph())
    del ours['line'].pos
    with pytest.raises(ValueError, match="'line' nodes have x but no pos"):
        to_official_graph(ours)


@pytest.mark.parametrize(
    ('edge_type', 'edge_index', 'message'),
    [
        (
            ('polygon', 'to', 'polygon'),
            [[0, 3], [0, 1]],
            r"\('polygon', 'to', 'polygon'\): source index 3 is outside the 3 'polygon' node\(s\) \(valid: 0\.\.2\)",
        ),
        (
            ('line', 'to', 'polygon'),
            [[1], [-1]],
            r"\('line', 'to', 'polygon'\): destination index -1 is outside the 3 'polygon'",
        ),
        (
            ('point', 'to', 'line'),
            [[0], [0]],
            r"\('point', 'to', 'line'\): source index 0 is outside the 0 'point' node\(s\)",
        ),
    ],
)
def test_edge_indices_outside_their_node_sets_raise(
    edge_type: tuple[str, str, str], edge_index: list[list[int]], message: str
) -> None:
    data = official_graph()
    data[edge_type].edge_index = torch.tensor(edge_index)
    data[edge_type].edge_attr = torch.eye(EDGE_ATTR_DIMS[edge_type])[
        [0] * len(edge_index[0])
    ]
    with pytest.raises(ValueError, match=message):
        from_official_graph(data)
    ours = from_official_graph(official_graph())
    ours[edge_type].edge_index = torch.tensor(edge_index)
    ours[edge_type].edge_attr = data[edge_type].edge_attr
    with pytest.raises(ValueError, match=message):
        to_official_graph(ours)


def test_edge_index_dtype_values_and_types_are_checked() -> None:
    data = official_graph()
    data['polygon', 'to', 'polygon'].edge_index = torch.tensor([[0.0], [1.5]])
    data['polygon', 'to', 'polygon'].edge_attr = torch.eye(6)[[0]]
    with pytest.raises(
        ValueError, match=r'edge_index must hold integers, got torch.float32'
    ):
        from_official_graph(data)
    data = official_graph()
    data['polygon'].x[1, 0] = float('nan')
    with pytest.raises(ValueError, match=r"'polygon' node features hold NaN .*node 1"):
        from_official_graph(data)
    data = official_graph()
    data['line'].x = data['line'].x.numpy()
    with pytest.raises(
        ValueError, match=r"'line' node features x must be a torch.Tensor, got ndarray"
    ):
        from_official_graph(data)
    data = official_graph()
    data['polygon', 'near', 'line'].edge_index = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match=r"unknown node or edge type.*'near'"):
        from_official_graph(data)


@pytest.mark.parametrize('path', OFFICIAL_GRAPHS, ids=lambda p: p.stem)
def test_official_ufz_graphs(path: Path) -> None:
    data = torch.load(path, weights_only=False)
    ours = from_official_graph(data)
    for t in NODE_TYPES:
        n = ours[t].num_nodes
        assert ours[t].x.shape == (n, 512) and ours[t].pos.shape == (
            n,
            POS_POINTS[t],
            2,
        )
        if n:
            assert (
                ours[t].pos.min() >= -0.5 and ours[t].pos.max() <= 1.5
            )  # clipped features, normalized
            assert torch.isfinite(ours[t].x).all()
    for e in EDGE_TYPES:
        edge_index, edge_attr = ours[e].edge_index, ours[e].edge_attr
        assert edge_attr.shape == (edge_index.shape[1], EDGE_ATTR_DIMS[e])
        assert torch.all(edge_attr.sum(1) == 1)
        src, _, dst = e
        if edge_index.numel():
            assert (
                edge_index[0].max() < ours[src].num_nodes
                and edge_index[1].max() < ours[dst].num_nodes
            )
    for t in ('polygon', 'line', 'point'):  # one self loop per node, first column
        self_loops = ours[t, 'to', t].edge_index[
            :, ours[t, 'to', t].edge_attr[:, 0] == 1
        ]
        assert (
            torch.equal(self_loops[0], self_loops[1])
            and self_loops.shape[1] == ours[t].num_nodes
        )
    back = to_official_graph(ours)
    for t in NODE_TYPES:
        if t in data.node_types:
            torch.testing.assert_close(back[t].x, data[t].x.float())
