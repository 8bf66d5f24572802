# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch
from torch import Tensor
from torch_geometric.nn import GATConv, HeteroConv

from torchgeo_geolink.models import OSMHeteroGAT
from torchgeo_geolink.models.osm_encoder import BipartiteGATConv
from torchgeo_geolink.osm import EDGE_TYPES


def _pair(
    heads: int, concat: bool, dropout: float = 0.0
) -> tuple[GATConv, BipartiteGATConv]:
    ref = GATConv(  # ty: ignore[abstract-class-instantiation]
        12, 5, heads, concat, dropout=dropout, add_self_loops=False
    )
    fast = BipartiteGATConv(  # ty: ignore[abstract-class-instantiation]
        12, 5, heads, concat, dropout=dropout, add_self_loops=False
    )
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _graph(
    n_src: int, n_dst: int, n_edges: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x_src = torch.randn(n_src, 12, generator=gen)
    x_dst = torch.randn(n_dst, 12, generator=gen)
    edge_index = torch.stack(
        [
            torch.randint(max(n_src, 1), (n_edges,), generator=gen),
            torch.randint(max(n_dst, 1), (n_edges,), generator=gen),
        ]
    )
    return x_src, x_dst, edge_index


def _run(conv: GATConv, x_src: Tensor, x_dst: Tensor, edge_index: Tensor) -> dict:
    xs = x_src.clone().requires_grad_()
    xd = x_dst.clone().requires_grad_()
    out, (ei, alpha) = conv((xs, xd), edge_index, return_attention_weights=True)
    # A weighted sum so that every output element gets a distinct gradient
    weight = torch.linspace(-1, 2, out.numel()).view_as(out)
    (out * weight).sum().backward()
    result = {'out': out.detach(), 'alpha': alpha.detach(), 'x_src.grad': xs.grad}
    result['x_dst.grad'] = xd.grad
    for name, p in conv.named_parameters():
        result[f'{name}.grad'] = p.grad
    assert torch.equal(ei, edge_index)
    return result


@pytest.mark.parametrize(
    ('n_src', 'n_dst', 'n_edges'),
    [(7, 4, 15), (3, 9, 20), (5, 6, 0), (4, 0, 0), (0, 3, 0), (1, 1, 3)],
)
@pytest.mark.parametrize(('heads', 'concat'), [(1, True), (2, True), (2, False)])
def test_matches_gatconv(
    n_src: int, n_dst: int, n_edges: int, heads: int, concat: bool
) -> None:
    ref, fast = _pair(heads, concat)
    x_src, x_dst, edge_index = _graph(n_src, n_dst, n_edges, seed=n_src + 10 * n_dst)
    expected = _run(ref, x_src, x_dst, edge_index)
    actual = _run(fast, x_src, x_dst, edge_index)
    assert actual['out'].shape == (n_dst, 5 * heads if concat else 5)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        other = actual[key]
        if value is None:
            # PyG leaves the grad of an unused input unset: so must we
            assert other is None or not other.any(), key
        else:
            assert other is not None, key
            torch.testing.assert_close(other, value, msg=key)
    if n_src > 1 and n_edges > n_dst:
        # Guard against a vacuous comparison: the attention term of the destination
        # matters (through the leaky ReLU: it cancels in the softmax when all the edges
        # into a node share a single source)
        assert expected['att_dst.grad'].abs().sum() > 0


def test_dropout_matches_gatconv() -> None:
    ref, fast = _pair(1, True, dropout=0.5)
    x_src, x_dst, edge_index = _graph(8, 5, 30, seed=0)
    torch.manual_seed(1)
    expected = ref((x_src, x_dst), edge_index)
    torch.manual_seed(1)
    actual = fast((x_src, x_dst), edge_index)
    torch.testing.assert_close(actual, expected)
    fast.eval()
    assert not torch.allclose(fast((x_src, x_dst), edge_index), actual)


@pytest.mark.parametrize(
    ('add_self_loops', 'edge_dim'), [(False, None), (False, 2), (True, None)]
)
def test_falls_back_to_gatconv(add_self_loops: bool, edge_dim: int | None) -> None:
    # A single node set, edge features and self loops take GATConv's own path
    x_src, _, edge_index = _graph(6, 6, 12, seed=3)
    attr = None if edge_dim is None else torch.randn(12, edge_dim)
    ref = GATConv(  # ty: ignore[abstract-class-instantiation]
        12, 5, add_self_loops=add_self_loops, edge_dim=edge_dim
    )
    fast = BipartiteGATConv(  # ty: ignore[abstract-class-instantiation]
        12, 5, add_self_loops=add_self_loops, edge_dim=edge_dim
    )
    fast.load_state_dict(ref.state_dict())
    torch.testing.assert_close(
        fast(x_src, edge_index, attr), ref(x_src, edge_index, attr)
    )
    torch.testing.assert_close(
        fast((x_src, x_src), edge_index, attr), ref((x_src, x_src), edge_index, attr)
    )


def test_osm_hetero_gat_uses_bipartite_conv() -> None:
    gat = OSMHeteroGAT(in_channels=12, out_channels=5)
    layer = gat.convs[0]
    assert isinstance(layer, HeteroConv)
    convs = layer.convs
    assert all(isinstance(conv, BipartiteGATConv) for conv in convs.values())
    keys = set(gat.state_dict())
    for src, _, dst in EDGE_TYPES:
        prefix = f'convs.0.convs.<{src}___to___{dst}>.'
        for name in ('att_src', 'att_dst', 'bias', 'lin.weight'):
            assert prefix + name in keys
    assert len(keys) == 4 * len(EDGE_TYPES)
