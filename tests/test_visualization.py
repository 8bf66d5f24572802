# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tests of torchgeo_geolink.visualization."""

from collections.abc import Iterator
from typing import Any

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.image import AxesImage
from torch_geometric.data import Batch, HeteroData

from torchgeo_geolink.osm import NODE_TYPES, POS_POINTS, RELATION_COLUMNS
from torchgeo_geolink.visualization import (
    EDGE_COLORS,
    RELATION_COLORS,
    embedding_pca_rgb,
    plot_attention,
    plot_embedding_pca,
    plot_graph,
)


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close('all')


def make_graph() -> HeteroData:
    """Two polygons, one line, three points; every edge type present (some empty)."""
    graph = HeteroData()
    graph['polygon'].pos = torch.tensor(
        [
            [[0.1, 0.1], [0.2, 0.1], [0.15, 0.2], [0.15, 0.15]],
            [[0.6, 0.6], [0.7, 0.6], [0.65, 0.7], [0.5, 0.75]],
        ]
    )
    graph['line'].pos = torch.tensor([[[0.5, 0.25], [0.0, 0.25], [1.0, 0.25]]])
    graph['point'].pos = torch.tensor([[[0.9, 0.1]], [[0.8, 0.9]], [[0.3, 0.8]]])
    for node_type in NODE_TYPES:
        n = graph[node_type].pos.shape[0]
        graph[node_type].x = torch.randn(n, 8)
    edges = {
        ('polygon', 'to', 'polygon'): ([[0, 1, 0, 1], [0, 1, 1, 0]], [0, 0, 1, 1]),
        ('line', 'to', 'line'): ([[0], [0]], [0]),
        ('line', 'to', 'polygon'): ([[0], [0]], [1]),
        ('polygon', 'to', 'line'): ([[0], [0]], [1]),
        ('point', 'to', 'polygon'): ([[1], [1]], [1]),
        ('polygon', 'to', 'point'): ([[1], [1]], [1]),
        ('point', 'to', 'point'): (
            [[0, 1, 2, 0, 1, 0], [0, 1, 2, 1, 0, 2]],
            [0, 0, 0, 1, 1, 1],
        ),
        ('point', 'to', 'line'): ([[], []], []),
        ('line', 'to', 'point'): ([[], []], []),
    }
    for edge_type, (index, relation) in edges.items():
        graph[edge_type].edge_index = torch.tensor(index, dtype=torch.long).reshape(
            2, -1
        )
        graph[edge_type].edge_attr = torch.nn.functional.one_hot(
            torch.tensor(relation, dtype=torch.long), len(RELATION_COLUMNS[edge_type])
        ).float()
    return graph


def gid_map(ax: Axes) -> dict[str, Any]:
    return {
        str(artist.get_gid()): artist
        for artist in [*ax.collections, *ax.images]
        if artist.get_gid()
    }


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def test_plot_graph_nodes_at_pixel_positions() -> None:
    image = torch.rand(3, 50, 100)
    graph = make_graph()
    fig = plot_graph(image, graph)
    ax = fig.axes[0]
    artists = gid_map(ax)
    polygons = artists['nodes:polygon']
    assert isinstance(polygons, PathCollection)
    # Polygon nodes sit at their centroid (the last pos point), scaled to (width,
    # height).
    np.testing.assert_allclose(
        np.asarray(polygons.get_offsets()), [[15.0, 7.5], [50.0, 37.5]]
    )
    # Line nodes at their centroid (first pos point).
    np.testing.assert_allclose(artists['nodes:line'].get_offsets(), [[50.0, 12.5]])
    np.testing.assert_allclose(
        artists['nodes:point'].get_offsets(), [[90.0, 5.0], [80.0, 45.0], [30.0, 40.0]]
    )
    # The image fills the axes in pixel coordinates, y down.
    assert ax.get_xlim() == (0.0, 100.0)
    assert ax.get_ylim() == (50.0, 0.0)


def test_plot_graph_edges_by_type_skip_self_loops() -> None:
    graph = make_graph()
    fig = plot_graph(torch.rand(3, 40, 40), graph)
    ax = fig.axes[0]
    artists = gid_map(ax)
    polygon_edges = artists['edges:polygon:polygon:polygon → polygon']
    assert isinstance(polygon_edges, LineCollection)
    # 4 edges of which 2 self loops: 2 segments between the two centroids.
    segments = polygon_edges.get_segments()
    assert len(segments) == 2
    np.testing.assert_allclose(segments[0], [[6.0, 6.0], [20.0, 30.0]])
    assert 'edges:line:line:line → line' not in artists  # only a self loop
    assert len(artists['edges:point:point:point → point'].get_segments()) == 3
    assert 'edges:point:line:point → line' not in artists  # empty edge type
    np.testing.assert_allclose(
        np.asarray(polygon_edges.get_colors())[0],
        to_rgba(EDGE_COLORS['polygon', 'to', 'polygon'], alpha=0.8),
    )
    legend = legend_texts(ax)
    assert 'line → polygon' in legend
    assert 'polygon (2)' in legend
    assert 'point (3)' in legend


def test_plot_graph_color_by_relation() -> None:
    fig = plot_graph(torch.rand(3, 40, 40), make_graph(), color_by='relation')
    ax = fig.axes[0]
    labels = {c.get_label() for c in ax.collections if isinstance(c, LineCollection)}
    assert labels == {'touches', 'crosses', 'within', 'contains', 'delaunay'}
    legend = legend_texts(ax)
    assert 'self' not in legend
    crosses = next(c for c in ax.collections if c.get_label() == 'crosses')
    np.testing.assert_allclose(
        np.asarray(crosses.get_colors())[0],
        to_rgba(RELATION_COLORS['crosses'], alpha=0.8),
    )
    # line->polygon and polygon->line crossing edges share one color group per edge
    # type.
    assert sum(c.get_label() == 'crosses' for c in ax.collections) == 2


def test_plot_graph_selected_edge_types_and_positions() -> None:
    graph = make_graph()
    fig = plot_graph(
        torch.rand(1, 20, 20),
        graph,
        edge_types=[('point', 'to', 'point')],
        show_positions=True,
        title='t',
    )
    ax = fig.axes[0]
    edge_labels = [
        c.get_label() for c in ax.collections if isinstance(c, LineCollection)
    ]
    assert edge_labels == ['point → point']
    # show_positions adds one unlabeled scatter per node type with all K points.
    dots = [
        c for c in ax.collections if isinstance(c, PathCollection) and not c.get_gid()
    ]
    assert sorted(len(np.asarray(d.get_offsets())) for d in dots) == [3, 3, 8]
    assert ax.get_title() == 't'


def test_plot_graph_empty_graph() -> None:
    graph = HeteroData()
    for node_type in NODE_TYPES:
        graph[node_type].pos = torch.zeros(0, POS_POINTS[node_type], 2)
    fig = plot_graph(torch.rand(3, 10, 10), graph)
    ax = fig.axes[0]
    assert not any(isinstance(c, LineCollection) for c in ax.collections)
    assert len(gid_map(ax)['nodes:point'].get_offsets()) == 0


def test_plot_graph_batch_of_one_and_errors() -> None:
    graph = make_graph()
    batch = Batch.from_data_list([graph])
    fig = plot_graph(torch.rand(3, 10, 10), batch)
    assert 'nodes:polygon' in gid_map(fig.axes[0])
    with pytest.raises(ValueError, match='batch of 2'):
        plot_graph(torch.rand(3, 10, 10), Batch.from_data_list([graph, graph]))
    with pytest.raises(ValueError, match='color_by'):
        plot_graph(torch.rand(3, 10, 10), graph, color_by='color')  # ty: ignore[invalid-argument-type]
    bad = make_graph()
    bad['line'].pos = torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match=r"graph\['line'\].pos"):
        plot_graph(torch.rand(3, 10, 10), bad)
    with pytest.raises(ValueError, match='image must have shape'):
        plot_graph(torch.rand(2, 3, 10, 10), graph)


def test_plot_attention_heat_maps() -> None:
    image = torch.rand(3, 64, 64)
    attention = torch.softmax(torch.randn(5, 16), dim=1)
    fig = plot_attention(
        image, attention, node_ids=[1, 3], labels=[f'obj{i}' for i in range(5)]
    )
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    assert [ax.get_title() for ax in panels] == ['obj1', 'obj3']
    heat = gid_map(panels[1])['attention:3']
    assert isinstance(heat, AxesImage)
    np.testing.assert_allclose(
        np.asarray(heat.get_array()), attention[3].reshape(4, 4).double().numpy()
    )
    # The heat map covers the image exactly; one color scale for all panels.
    assert heat.get_extent() == [0, 64, 64, 0]
    assert heat.get_clim() == (0.0, pytest.approx(float(attention[[1, 3]].max())))


def test_plot_attention_batched_and_positions() -> None:
    attention = torch.zeros(2, 3, 2, 4)
    attention[1, 2, 0, 3] = 1.0
    positions = torch.tensor([[0.1, 0.2], [0.5, 0.5], [0.9, 0.1]])
    fig = plot_attention(
        torch.rand(3, 20, 40), attention, [2], index=1, positions=positions
    )
    ax = next(ax for ax in fig.axes if ax.images)
    heat = np.asarray(gid_map(ax)['attention:2'].get_array())
    assert heat.shape == (2, 4)
    assert heat[0, 3] == 1.0
    assert heat.sum() == 1.0
    marker = ax.lines[0]
    assert (
        np.asarray(marker.get_xdata())[0],
        np.asarray(marker.get_ydata())[0],
    ) == pytest.approx((36.0, 2.0))
    assert ax.get_title() == 'node 2'


def test_plot_attention_rectangular_grid_and_errors() -> None:
    image = torch.rand(3, 10, 20)
    fig = plot_attention(image, torch.rand(2, 8), grid=(2, 4))
    assert len([ax for ax in fig.axes if ax.images]) == 2
    with pytest.raises(ValueError, match='not a square grid'):
        plot_attention(image, torch.rand(2, 8))
    with pytest.raises(ValueError, match='has 6 cells'):
        plot_attention(image, torch.rand(2, 8), grid=(2, 3))
    with pytest.raises(IndexError, match='node id 5'):
        plot_attention(image, torch.rand(2, 16), [5])
    with pytest.raises(IndexError, match='index 3'):
        plot_attention(image, torch.rand(2, 2, 4, 4), index=3)
    with pytest.raises(ValueError, match='labels has 1'):
        plot_attention(image, torch.rand(2, 16), labels=['a'])
    with pytest.raises(ValueError, match='positions must'):
        plot_attention(image, torch.rand(2, 16), positions=torch.rand(3, 2))
    with pytest.raises(ValueError, match='attention must be'):
        plot_attention(image, torch.rand(16))
    with pytest.raises(ValueError, match='no node'):
        plot_attention(image, torch.rand(2, 16), [])


def test_embedding_pca_rgb_recovers_structure() -> None:
    h, w = 6, 8
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32),
        torch.arange(w, dtype=torch.float32),
        indexing='ij',
    )
    # 16 channels: a strong left-right gradient, a weaker top-bottom one, a tiny noise
    # floor.
    basis = torch.randn(16, 3)
    signal = torch.stack(
        [10 * (xs - xs.mean()), 3 * (ys - ys.mean()), 0.01 * torch.randn(h, w)]
    )
    embedding = torch.einsum('ck,khw->chw', basis, signal) + 5.0
    rgb = embedding_pca_rgb(embedding)
    assert rgb.shape == (h, w, 3)
    assert rgb.dtype == torch.float32
    assert rgb.min() >= 0
    assert rgb.max() <= 1
    for c in range(3):
        assert rgb[..., c].min() == 0
        assert rgb[..., c].max() == pytest.approx(1.0)
    # First component follows x (monotonic along rows), second follows y.
    red = rgb[..., 0]
    corr_x = torch.corrcoef(torch.stack([red.flatten(), xs.flatten()]))[0, 1]
    corr_y = torch.corrcoef(torch.stack([rgb[..., 1].flatten(), ys.flatten()]))[0, 1]
    assert abs(corr_x) > 0.99
    assert abs(corr_y) > 0.99
    # Deterministic colors: invariant to an offset, a positive scale and a permutation
    # of the channels.
    torch.testing.assert_close(embedding_pca_rgb(embedding), rgb)
    torch.testing.assert_close(
        embedding_pca_rgb(3 * embedding - 7), rgb, atol=1e-3, rtol=0
    )
    torch.testing.assert_close(
        embedding_pca_rgb(embedding[torch.randperm(16)]), rgb, atol=1e-3, rtol=0
    )


def test_embedding_pca_rgb_low_rank_and_errors() -> None:
    embedding = torch.zeros(2, 3, 3)
    embedding[0] = torch.arange(9.0).reshape(3, 3)
    rgb = embedding_pca_rgb(embedding)
    # Rank 1: one informative component, the others stay 0.
    assert rgb[..., 0].max() == pytest.approx(1.0)
    assert torch.all(rgb[..., 1:] == 0)
    with pytest.raises(ValueError, match=r'\(C, h, w\)'):
        embedding_pca_rgb(torch.rand(1, 4, 3, 3))


def test_plot_embedding_pca_panels() -> None:
    unimodal = torch.randn(32, 4, 4)
    fused = torch.randn(8, 4, 4)
    fig = plot_embedding_pca(torch.rand(3, 32, 32), unimodal, fused)
    assert [ax.get_title() for ax in fig.axes] == ['image', 'image only', 'image + OSM']
    shown = gid_map(fig.axes[2])['pca:fused']
    np.testing.assert_allclose(
        np.asarray(shown.get_array()), embedding_pca_rgb(fused).numpy()
    )
    assert shown.get_extent() == [0, 32, 32, 0]
    with pytest.raises(ValueError, match='titles'):
        plot_embedding_pca(torch.rand(3, 8, 8), unimodal, fused, titles=('a',))


def test_image_display_scaling() -> None:
    # 8-bit images are shown as they are; float images are stretched jointly (2nd-98th
    # percentile) to [0, 1].
    image = torch.zeros(3, 10, 10, dtype=torch.uint8)
    image[0] = 255
    image[1] = 51
    fig = plot_graph(image, make_graph())
    shown = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(shown[0, 0], [1.0, 0.2, 0.0])
    plt.close(fig)
    normalized = torch.linspace(-2, 2, 4 * 50 * 50).reshape(4, 50, 50)
    fig = plot_embedding_pca(normalized, torch.randn(4, 2, 2), torch.randn(4, 2, 2))
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert shown.shape == (50, 50, 3)  # first three of four channels
    assert shown.min() == 0.0
    assert shown.max() == 1.0
    # Joint stretch: the first channel (lowest values) is darker than the third
    # everywhere.
    assert np.all(shown[..., 0] <= shown[..., 2])
    gray = plot_attention(torch.rand(8, 8), torch.rand(1, 4))
    assert np.asarray(gray.axes[0].images[0].get_array()).shape == (8, 8, 3)
