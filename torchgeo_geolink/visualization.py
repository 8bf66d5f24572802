# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Plots of GeoLink inputs and outputs: graphs, attention and embedding maps.

Every function takes plain tensors and PyG :class:`~torch_geometric.data.HeteroData`
graphs that follow the package's graph contract (node types ``polygon``, ``line``,
``point`` with ``pos`` of shape ``(N, K, 2)`` normalized to the window, x right and y
down), so it works on the output of any dataset, transform or model of the package
without importing them. Every function returns the :class:`~matplotlib.figure.Figure` it
drew.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor
from torch_geometric.data import Batch, HeteroData

from .osm.constants import EDGE_TYPES, RELATION_COLUMNS

__all__ = (
    'EDGE_COLORS',
    'NODE_STYLES',
    'RELATION_COLORS',
    'embedding_pca_rgb',
    'plot_attention',
    'plot_embedding_pca',
    'plot_graph',
    'plot_image',
    'plot_label_panels',
)

#: Marker and color of each node type.
NODE_STYLES: dict[str, dict[str, str]] = {
    'polygon': {'marker': 's', 'color': '#1b9e77'},
    'line': {'marker': '^', 'color': '#d95f02'},
    'point': {'marker': 'o', 'color': '#7570b3'},
}

#: Which of a node's ``pos`` points marks it: the centroid (last of a polygon's 4
#: points, first of a line's 3).
_ANCHOR = {'polygon': -1, 'line': 0, 'point': 0}

_TAB10 = [to_hex(plt.get_cmap('tab10')(i)) for i in range(10)]

#: Color of each of the 9 edge types.
EDGE_COLORS: dict[tuple[str, str, str], str] = {
    edge_type: _TAB10[i % 10] for i, edge_type in enumerate(EDGE_TYPES)
}

#: Color of each spatial predicate (``edge_attr`` column name), shared by all edge
#: types.
RELATION_COLORS: dict[str, str] = {
    name: _TAB10[i % 10]
    for i, name in enumerate(
        dict.fromkeys(
            name
            for names in RELATION_COLUMNS.values()
            for name in names
            if name != 'self'
        )
    )
}


def _image_to_rgb(image: Tensor) -> np.ndarray:
    """Turn an image tensor into an array that ``imshow`` can show.

    The first three channels are shown as RGB (one channel as gray). 8-bit images are
    divided by 255; other images are stretched from their 2nd to 98th percentile (over
    all shown channels together, which keeps the color balance) to [0, 1], so normalized
    imagery displays as well as raw reflectance.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` image.

    Returns:
        ``(H, W, 3)`` float array in [0, 1].

    Raises:
        ValueError: If *image* is not 2-D or 3-D, or has no channels.
    """
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] == 0:
        msg = f'image must have shape (C, H, W) or (H, W), got {tuple(image.shape)}'
        raise ValueError(msg)
    rgb = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    if rgb.dtype == torch.uint8:
        scaled = rgb.detach().cpu().to(torch.float64) / 255
    else:
        values = rgb.detach().to(device='cpu', dtype=torch.float64)
        low, high = torch.quantile(
            values.flatten(), torch.tensor([0.02, 0.98], dtype=torch.float64)
        )
        scaled = ((values - low) / (high - low).clamp_min(1e-12)).clamp(0, 1)
    return scaled.permute(1, 2, 0).numpy()


def _show_image(ax: Axes, image: Tensor) -> tuple[int, int]:
    """Draw *image* on *ax* in pixel coordinates (pixel edges on integers, y down).

    Args:
        ax: the axes to draw on.
        image: ``(C, H, W)`` or ``(H, W)`` image.

    Returns:
        The image height and width.
    """
    rgb = _image_to_rgb(image)
    height, width = rgb.shape[:2]
    ax.imshow(rgb, extent=(0, width, height, 0), interpolation='nearest')
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    return height, width


def plot_image(
    image: Tensor, *, ax: Axes | None = None, title: str | None = None
) -> Figure:
    """Draw an image in its pixel frame, as the other plots of this module do.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` image; the first three channels are shown
            (8-bit images as they are, others contrast-stretched).
        ax: axes to draw on (default: a new figure).
        title: axes title.

    Returns:
        The figure drawn on.

    .. versionadded:: 0.1
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5), layout='constrained')
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    _show_image(ax, image)
    if title is not None:
        ax.set_title(title)
    return figure


def _anchors(graph: HeteroData, node_type: str, height: int, width: int) -> np.ndarray:
    """Pixel coordinates of the point that marks each node of one type.

    Args:
        graph: the graph.
        node_type: ``'polygon'``, ``'line'`` or ``'point'``.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(N, 2)`` array of (column, row) pixel coordinates.

    Raises:
        ValueError: If the node type's ``pos`` is not ``(N, K, 2)`` or ``(N, 2)``.
    """
    pos = graph[node_type].pos.detach().cpu().to(torch.float64)
    if pos.ndim == 2 and pos.shape[-1] == 2:
        pos = pos.unsqueeze(1)
    if pos.ndim != 3 or pos.shape[-1] != 2:
        msg = f"graph['{node_type}'].pos must have shape (N, K, 2), got {tuple(pos.shape)}"
        raise ValueError(msg)
    anchor = pos[:, _ANCHOR[node_type] if pos.shape[1] > 1 else 0]
    return (anchor * torch.tensor([width, height], dtype=torch.float64)).numpy()


def plot_graph(
    image: Tensor,
    graph: HeteroData | Batch,
    *,
    color_by: Literal['edge_type', 'relation'] = 'edge_type',
    edge_types: Sequence[tuple[str, str, str]] | None = None,
    show_positions: bool = False,
    node_size: float = 30.0,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Draw an OSM graph over its image, edges colored by relation.

    Each node is drawn at its centroid (the last of a polygon's 4 ``pos`` points, the
    first of a line's 3, the point itself), with one marker per node type. Each edge is
    a straight segment between the centroids of its two nodes; self loops are not drawn.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` image of the window the graph was built for;
            the first three channels are shown (8-bit images as they are, others
            contrast-stretched).
        graph: one graph (not a batch of several) with node types ``polygon``, ``line``
            and ``point`` carrying ``pos`` of shape ``(N, K, 2)`` normalized to the
            window, x right and y down.
        color_by: ``'edge_type'`` colors edges by which of the 9 ``(src, 'to', dst)``
            types they belong to; ``'relation'`` colors them by their spatial predicate
            (the ``edge_attr`` one-hot column: touches, overlaps, covers, crosses,
            within, delaunay, ...).
        edge_types: the edge types to draw (default: all present in *graph*).
        show_positions: also draw every ``pos`` point (a polygon's 3 interior samples, a
            line's start and end) as small dots.
        node_size: marker area of the nodes, in points squared.
        ax: axes to draw on (default: a new figure).
        title: axes title.

    Returns:
        The figure drawn on.

    Raises:
        ValueError: If *graph* is a batch of several graphs, *color_by* is unknown, or a
            ``pos`` or ``edge_attr`` has the wrong shape.
        TypeError: If *graph* is not a heterogeneous graph.

    .. versionadded:: 0.1
    """
    if isinstance(graph, Batch) and graph.num_graphs != 1:
        msg = f'plot_graph draws one graph, got a batch of {graph.num_graphs}: pass batch.get_example(i)'
        raise ValueError(msg)
    data = graph.get_example(0) if isinstance(graph, Batch) else graph
    if not isinstance(data, HeteroData):
        msg = f'graph must be a torch_geometric HeteroData, got {type(data).__name__}'
        raise TypeError(msg)
    graph = data
    if color_by not in ('edge_type', 'relation'):
        msg = f"color_by must be 'edge_type' or 'relation', got {color_by!r}"
        raise ValueError(msg)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6), layout='constrained')
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    height, width = _show_image(ax, image)

    node_types = [t for t in NODE_STYLES if t in graph.node_types and 'pos' in graph[t]]
    anchors = {t: _anchors(graph, t, height, width) for t in node_types}

    legend: dict[str, Line2D] = {}
    selected = list(graph.edge_types) if edge_types is None else list(edge_types)
    for edge_type in selected:
        src, _, dst = edge_type
        if (
            edge_type not in graph.edge_types
            or src not in anchors
            or dst not in anchors
        ):
            continue
        edge_index = graph[edge_type].edge_index.detach().cpu()
        keep = ~((edge_index[0] == edge_index[1]) & (src == dst))
        if color_by == 'relation':
            names = RELATION_COLUMNS[edge_type]
            attr = graph[edge_type].edge_attr.detach().cpu()
            if attr.ndim != 2 or attr.shape[1] != len(names):
                msg = f'{edge_type} edge_attr must have shape (E, {len(names)}), got {tuple(attr.shape)}'
                raise ValueError(msg)
            relation = attr.argmax(dim=1)
            groups = [
                (names[r], RELATION_COLORS[names[r]], keep & (relation == r))
                for r in range(len(names))
                if names[r] != 'self'
            ]
        else:
            groups = [(f'{src} → {dst}', EDGE_COLORS[edge_type], keep)]
        for label, color, mask in groups:
            index = edge_index[:, mask].numpy()
            if index.shape[1] == 0:
                continue
            segments = np.stack(
                [anchors[src][index[0]], anchors[dst][index[1]]], axis=1
            )
            collection = LineCollection(
                list(segments),
                colors=[color],
                linewidths=1.2,
                alpha=0.8,
                zorder=2,
                label=label,
            )
            collection.set_gid(f'edges:{src}:{dst}:{label}')
            ax.add_collection(collection)
            legend.setdefault(
                label, Line2D([], [], color=color, linewidth=1.5, label=label)
            )

    for node_type in node_types:
        style = NODE_STYLES[node_type]
        if show_positions and graph[node_type].pos.shape[0] > 0:
            pos = graph[node_type].pos.detach().cpu().reshape(-1, 2).to(torch.float64)
            pixels = (pos * torch.tensor([width, height], dtype=torch.float64)).numpy()
            ax.scatter(
                pixels[:, 0],
                pixels[:, 1],
                s=node_size / 4,
                c=style['color'],
                marker='.',
                zorder=3,
            )
        points = anchors[node_type]
        scatter = ax.scatter(
            points[:, 0],
            points[:, 1],
            s=node_size,
            c=style['color'],
            marker=style['marker'],
            edgecolors='white',
            linewidths=0.6,
            zorder=4,
            label=f'{node_type} ({len(points)})',
        )
        scatter.set_gid(f'nodes:{node_type}')
        legend[f'{node_type} ({len(points)})'] = Line2D(
            [],
            [],
            linestyle='',
            marker=style['marker'],
            color=style['color'],
            markeredgecolor='white',
            label=f'{node_type} ({len(points)})',
        )

    ax.legend(
        handles=list(legend.values()),
        loc='upper left',
        bbox_to_anchor=(1.01, 1.0),
        fontsize='small',
    )
    if title is not None:
        ax.set_title(title)
    return figure


def plot_attention(
    image: Tensor,
    attention: Tensor,
    node_ids: Sequence[int] | None = None,
    *,
    index: int = 0,
    grid: tuple[int, int] | None = None,
    labels: Sequence[str] | None = None,
    positions: Tensor | None = None,
    alpha: float = 0.55,
    cmap: str = 'inferno',
    ncols: int = 4,
) -> Figure:
    """Show chosen OSM objects' attention over the patches as heat maps.

    *attention* is what the two-way cross-modal block's "OSM objects attend to patches"
    step computes: one distribution over the ``h * w`` patches per OSM node. Each chosen
    node gets one panel: the image with the node's patch attention drawn over it (each
    patch a cell of the heat map), and optionally a cross at the node's position.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` image the patches were cut from.
        attention: ``(num_nodes, h * w)``, ``(num_nodes, h, w)`` or
            ``(B, num_nodes, h, w)`` attention weights.
        node_ids: indices (along the node axis of *attention*) of the objects to show
            (default: the first ``min(num_nodes, ncols)``).
        index: which sample to show when *attention* has a batch axis.
        grid: the patch grid ``(h, w)`` when *attention* is ``(num_nodes, h * w)`` and
            not square.
        labels: one title per node of the node axis (e.g. the objects' OSM tags).
        positions: ``(num_nodes, 2)`` node positions normalized to the window (x right,
            y down), marked with a cross.
        alpha: opacity of the heat map.
        cmap: matplotlib color map of the heat map.
        ncols: panels per row.

    Returns:
        The figure, one panel per chosen node.

    Raises:
        ValueError: If *attention* has an unsupported shape or its patch axis cannot be
            reshaped to *grid*, or *labels*/*positions* do not have one entry per node.
        IndexError: If a node id or *index* is out of range.

    .. versionadded:: 0.1
    """
    weights = attention.detach().cpu().to(torch.float64)
    if weights.ndim == 4:
        if not -weights.shape[0] <= index < weights.shape[0]:
            msg = f'index {index} is out of range for an attention batch of {weights.shape[0]}'
            raise IndexError(msg)
        weights = weights[index]
    elif weights.ndim == 2:
        patches = weights.shape[1]
        if grid is None:
            side = math.isqrt(patches)
            if side * side != patches:
                msg = f'attention has {patches} patches, not a square grid: pass grid=(h, w)'
                raise ValueError(msg)
            grid = (side, side)
        if grid[0] * grid[1] != patches:
            msg = f'grid {grid} has {grid[0] * grid[1]} cells but attention has {patches} patches'
            raise ValueError(msg)
        weights = weights.reshape(-1, *grid)
    elif weights.ndim != 3:
        msg = f'attention must be (nodes, h*w), (nodes, h, w) or (B, nodes, h, w), got {tuple(attention.shape)}'
        raise ValueError(msg)
    num_nodes = weights.shape[0]
    if labels is not None and len(labels) != num_nodes:
        msg = f'labels has {len(labels)} entries for {num_nodes} nodes'
        raise ValueError(msg)
    if positions is not None and tuple(positions.shape) != (num_nodes, 2):
        msg = (
            f'positions must have shape ({num_nodes}, 2), got {tuple(positions.shape)}'
        )
        raise ValueError(msg)
    chosen = (
        list(range(min(num_nodes, ncols)))
        if node_ids is None
        else [int(i) for i in node_ids]
    )
    if not chosen:
        msg = 'no node to plot: attention has no nodes or node_ids is empty'
        raise ValueError(msg)
    for node in chosen:
        if not 0 <= node < num_nodes:
            msg = f'node id {node} is out of range for attention over {num_nodes} nodes'
            raise IndexError(msg)

    ncols = max(1, min(ncols, len(chosen)))
    nrows = math.ceil(len(chosen) / ncols)
    figure, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.2 * ncols, 3.2 * nrows),
        squeeze=False,
        layout='constrained',
    )
    vmax = float(weights[chosen].max())
    for ax in axes.flat[len(chosen) :]:
        ax.set_axis_off()
    heat = None
    for ax, node in zip(axes.flat, chosen):
        height, width = _show_image(ax, image)
        heat = ax.imshow(
            weights[node].numpy(),
            extent=(0, width, height, 0),
            cmap=cmap,
            alpha=alpha,
            vmin=0.0,
            vmax=vmax,
            interpolation='nearest',
        )
        heat.set_gid(f'attention:{node}')
        if positions is not None:
            x, y = positions[node].detach().cpu().tolist()
            ax.plot(
                [x * width],
                [y * height],
                marker='x',
                color='cyan',
                markersize=10,
                mew=2,
            )
        ax.set_title(
            labels[node] if labels is not None else f'node {node}', fontsize='small'
        )
    assert heat is not None
    figure.colorbar(heat, ax=axes.ravel().tolist(), shrink=0.8, label='attention')
    return figure


def embedding_pca_rgb(embedding: Tensor) -> Tensor:
    """Project ``(C, h, w)`` patch embeddings on 3 principal components (RGB).

    The principal components are computed in torch (SVD of the centered ``(h * w, C)``
    matrix), each component's sign is fixed so that its largest loading is positive
    (deterministic colors), and each component is stretched to [0, 1] over the map.

    Args:
        embedding: ``(C, h, w)`` patch embeddings.

    Returns:
        ``(h, w, 3)`` float tensor in [0, 1]; components beyond the rank of the
        embedding are 0.

    Raises:
        ValueError: If *embedding* is not 3-D.

    .. versionadded:: 0.1
    """
    if embedding.ndim != 3:
        msg = f'embedding must have shape (C, h, w), got {tuple(embedding.shape)}'
        raise ValueError(msg)
    channels, height, width = embedding.shape
    features = embedding.detach().cpu().to(torch.float64).reshape(channels, -1).T
    features = features - features.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(features, full_matrices=False)
    components = vh[:3]
    signs = torch.sign(
        components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    )
    projected = features @ (components * torch.where(signs < 0, -1.0, 1.0)).T
    rgb = torch.zeros(height * width, 3, dtype=torch.float64)
    low = projected.min(dim=0).values
    span = projected.max(dim=0).values - low
    rgb[:, : projected.shape[1]] = torch.where(
        span > 1e-12, (projected - low) / span.clamp_min(1e-12), 0.0
    )
    return rgb.reshape(height, width, 3).to(torch.float32)


def plot_embedding_pca(
    image: Tensor,
    unimodal: Tensor,
    fused: Tensor,
    *,
    titles: Sequence[str] = ('image', 'image only', 'image + OSM'),
) -> Figure:
    """Show the image beside PCA maps of its unimodal and fused embeddings.

    Similar colors mean similar embeddings. Comparing the unimodal map (the image
    encoder alone) with the fused map (after the cross-modal block that lets patches
    attend to OSM objects) shows what OSM adds: e.g. patches of one land-use polygon
    sharing a color.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` image.
        unimodal: ``(C1, h, w)`` patch embeddings of the image encoder alone.
        fused: ``(C2, h, w)`` patch embeddings after fusion with OSM.
        titles: titles of the three panels.

    Returns:
        The figure, with three panels.

    Raises:
        ValueError: If an embedding is not ``(C, h, w)`` or *titles* does not have three
            entries.

    .. versionadded:: 0.1
    """
    if len(titles) != 3:
        msg = f'titles must have 3 entries (image, unimodal, fused), got {len(titles)}'
        raise ValueError(msg)
    maps = [embedding_pca_rgb(unimodal), embedding_pca_rgb(fused)]
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.6), layout='constrained')
    height, width = _show_image(axes[0], image)
    for ax, rgb, name in zip(axes[1:], maps, ('unimodal', 'fused')):
        shown = ax.imshow(
            rgb.numpy(), extent=(0, width, height, 0), interpolation='nearest'
        )
        shown.set_gid(f'pca:{name}')
        ax.set_axis_off()
    for ax, title in zip(axes, titles):
        ax.set_title(title)
    return figure


def plot_label_panels(
    axes: Sequence[Axes],
    sample: Mapping[str, Any],
    num_classes: int,
    ignore_index: int | None = None,
    show_titles: bool = True,
) -> Figure | None:
    """Draw a sample's ``mask`` and ``prediction`` maps on consecutive axes.

    Both maps share one color per class, so that the label and the prediction can be
    compared by eye. Pixels equal to *ignore_index* are left blank.

    Args:
        axes: One axis per map present in *sample*, in the order ``mask``,
            ``prediction``.
        sample: A sample with ``mask`` and/or ``prediction`` ``(H, W)`` class indices.
        num_classes: Number of classes (the color scale).
        ignore_index: Class value drawn blank.
        show_titles: Title the panels ``Label`` and ``Prediction``.

    Returns:
        The figure of the axes (None without axes).

    .. versionadded:: 0.1
    """
    keys = [k for k in ('mask', 'prediction') if k in sample]
    for ax, key in zip(axes, keys, strict=True):
        values = torch.as_tensor(sample[key]).squeeze().double().numpy()
        if ignore_index is not None:
            values = np.where(values == ignore_index, np.nan, values)
        ax.imshow(
            values,
            cmap='tab10' if num_classes <= 10 else 'tab20',
            vmin=0,
            vmax=max(num_classes - 1, 1),
            interpolation='none',
        )
        ax.set_axis_off()
        if show_titles:
            ax.set_title('Label' if key == 'mask' else 'Prediction')
    return cast(Figure, axes[0].get_figure()) if len(axes) else None
