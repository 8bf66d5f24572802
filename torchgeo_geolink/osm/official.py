# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Conversion between the official GeoLink graph format and ours."""

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .constants import (
    EDGE_ATTR_DIMS,
    EDGE_TYPES,
    NODE_TYPES,
    POS_POINTS,
    TAG_EMBEDDING_DIM,
)

__all__ = ('from_official_graph', 'to_official_graph')


def _node_count_and_dim(data: HeteroData, default_dim: int) -> int:
    """Infer the semantic width of a graph in the official format.

    Args:
        data: The official graph.
        default_dim: Width used when no node type has ``x``.

    Returns:
        The semantic width ``D``.

    Raises:
        ValueError: If a node type's ``x`` is not a 2-D tensor or the node types
            disagree on ``D``.
    """
    widths: dict[str, int] = {}
    for node_type in NODE_TYPES:
        if node_type in data.node_types and 'x' in data[node_type]:
            x = _tensor(data[node_type].x, f'{node_type!r} node features x')
            if x.dim() != 2:
                msg = f'{node_type!r} node features must have shape (N, D + {2 * POS_POINTS[node_type]}), got {tuple(x.shape)}'
                raise ValueError(msg)
            widths[node_type] = int(x.shape[1]) - 2 * POS_POINTS[node_type]
    if len(set(widths.values())) > 1:
        found = ', '.join(
            f'{t} {w} (x has {w + 2 * POS_POINTS[t]} columns)'
            for t, w in widths.items()
        )
        msg = f'node types disagree on the semantic width: {found}'
        raise ValueError(msg)
    return next(iter(widths.values()), default_dim)


def _tensor(value: object, what: str) -> Tensor:
    """Check that a graph attribute is a tensor.

    Args:
        value: The attribute.
        what: What it is, for the error message.

    Returns:
        The tensor.

    Raises:
        ValueError: If *value* is not a tensor.
    """
    if not isinstance(value, Tensor):
        msg = f'{what} must be a torch.Tensor, got {type(value).__name__}'
        raise ValueError(msg)  # noqa: TRY004 - callers report malformed graphs as ValueError
    return value


def _check_edge_index(
    edge_index: Tensor, edge_type: tuple[str, str, str], counts: dict[str, int]
) -> None:
    """Check that an edge set's indices are integers inside its node sets.

    Batching offsets each graph's indices by the node counts of the graphs before it, so
    an index one past the end would silently point at a node of the next graph.

    Args:
        edge_index: ``(2, E)`` indices.
        edge_type: ``(src, 'to', dst)``.
        counts: Number of nodes of each node type.

    Raises:
        ValueError: If the indices are not integers, negative, or not below the node
            count of their type.
    """
    if (
        edge_index.dtype.is_floating_point
        or edge_index.dtype.is_complex
        or edge_index.dtype == torch.bool
    ):
        msg = f'{edge_type}: edge_index must hold integers, got {edge_index.dtype}'
        raise ValueError(msg)
    if edge_index.numel() == 0:
        return
    for row, node_type in ((0, edge_type[0]), (1, edge_type[2])):
        low, high = int(edge_index[row].min()), int(edge_index[row].max())
        n = counts[node_type]
        if low < 0 or high >= n:
            side = 'source' if row == 0 else 'destination'
            bad = low if low < 0 else high
            msg = (
                f'{edge_type}: {side} index {bad} is outside the {n} {node_type!r} node(s) '
                f'(valid: 0..{n - 1})'
            )
            raise ValueError(msg)


def _copy_edges(source: HeteroData, target: HeteroData) -> None:
    """Copy all nine edge types, checking indices and widths.

    Args:
        source: Graph to read the edges from.
        target: Graph to write them to; its node types must already be set.

    Raises:
        ValueError: If an edge set has a malformed ``edge_index`` (shape, dtype, an
            index outside its node set) or ``edge_attr`` (shape, non-finite values); the
            message names the edge type.
    """
    counts = {t: int(target[t].num_nodes or 0) for t in NODE_TYPES}
    for edge_type in EDGE_TYPES:
        width = EDGE_ATTR_DIMS[edge_type]
        if edge_type in source.edge_types and 'edge_index' in source[edge_type]:
            edge_index = _tensor(
                source[edge_type].edge_index, f'{edge_type}: edge_index'
            ).detach()
            if edge_index.dim() != 2 or edge_index.shape[0] != 2:
                msg = f'{edge_type}: edge_index must have shape (2, E), got {tuple(edge_index.shape)}'
                raise ValueError(msg)
            _check_edge_index(edge_index, edge_type, counts)
            edge_index = edge_index.clone().long()
            edge_attr = source[edge_type].get('edge_attr')
            if edge_attr is None:
                edge_attr = torch.zeros(edge_index.shape[1], width)
            edge_attr = (
                _tensor(edge_attr, f'{edge_type}: edge_attr').detach().clone().float()
            )
            if edge_attr.shape != (edge_index.shape[1], width):
                msg = (
                    f'{edge_type}: edge_attr must have shape ({edge_index.shape[1]}, {width}), '
                    f'got {tuple(edge_attr.shape)}'
                )
                raise ValueError(msg)
            if not torch.isfinite(edge_attr).all():
                msg = f'{edge_type}: edge_attr holds NaN or infinite values'
                raise ValueError(msg)
        else:
            edge_index = torch.zeros(2, 0, dtype=torch.long)
            edge_attr = torch.zeros(0, width)
        target[edge_type].edge_index = edge_index
        target[edge_type].edge_attr = edge_attr


def from_official_graph(data: HeteroData, dim: int = TAG_EMBEDDING_DIM) -> HeteroData:
    """Convert an official GeoLink graph to our format (``x`` + ``pos``).

    The official node features are ``D`` semantic columns followed by the positions:
    polygon 8 (three samples, then the centroid), line 6 (centroid, start, end), point
    2. Missing node or edge types are created empty. The input is not modified.

    Args:
        data: The official graph (e.g. ``torch.load(path, weights_only=False)``).
        dim: Semantic width assumed when the graph has no node features at all.

    Returns:
        A new graph with ``x`` float32 ``(N, D)`` and ``pos`` float32 ``(N, K, 2)`` per
        node type and all nine edge types.

    Raises:
        ValueError: If the graph has unknown node or edge types, node features are not
            finite floats, too narrow or disagree on ``D`` between node types, or edges
            are malformed (an index outside its node set, a wrong dtype or width); the
            message names the node or edge type.

    .. versionadded:: 0.1
    """
    unknown = sorted(set(data.node_types) - set(NODE_TYPES)) + sorted(
        str(e) for e in set(data.edge_types) - set(EDGE_TYPES)
    )
    if unknown:
        msg = f'unknown node or edge type(s) {unknown}: an official graph has node types {list(NODE_TYPES)}'
        raise ValueError(msg)
    semantic = _node_count_and_dim(data, dim)
    out = HeteroData()
    for node_type in NODE_TYPES:
        k = POS_POINTS[node_type]
        if node_type in data.node_types and 'x' in data[node_type]:
            x = _tensor(data[node_type].x, f'{node_type!r} node features x').detach()
            if x.dim() != 2 or x.shape[1] != semantic + 2 * k:
                msg = (
                    f'{node_type!r} node features must have {semantic} semantic + {2 * k} position columns, '
                    f'got shape {tuple(x.shape)}'
                )
                raise ValueError(msg)
            if not x.is_floating_point():
                msg = (
                    f'{node_type!r} node features must be floating point, got {x.dtype}'
                )
                raise ValueError(msg)
            if not torch.isfinite(x).all():
                row = int((~torch.isfinite(x)).any(dim=1).nonzero()[0])
                msg = f'{node_type!r} node features hold NaN or infinite values (node {row})'
                raise ValueError(msg)
        else:
            x = torch.zeros(0, semantic + 2 * k)
        if semantic < 1:
            msg = f'{node_type!r} node features are too narrow for {2 * k} position columns: {tuple(x.shape)}'
            raise ValueError(msg)
        out[node_type].x = x[:, :semantic].float().clone()
        out[node_type].pos = x[:, semantic:].float().reshape(-1, k, 2).clone()
        out[node_type].num_nodes = int(x.shape[0])
    _copy_edges(data, out)
    return out


def to_official_graph(data: HeteroData) -> HeteroData:
    """Convert a graph in our format back to the official one.

    Missing node or edge types are created empty. The input is not modified.

    Args:
        data: A graph with ``x`` and ``pos`` per node type.

    Returns:
        A new graph whose ``x`` is ``cat([x, pos.flatten(1)])`` per node type, with all
        nine edge types.

    Raises:
        ValueError: If a node type lacks ``pos`` or ``pos`` does not have shape
            ``(N, K, 2)``.

    .. versionadded:: 0.1
    """
    dim = TAG_EMBEDDING_DIM
    for node_type in NODE_TYPES:
        if node_type in data.node_types and 'x' in data[node_type]:
            dim = int(data[node_type].x.shape[1])
            break
    out = HeteroData()
    for node_type in NODE_TYPES:
        k = POS_POINTS[node_type]
        present = node_type in data.node_types and 'x' in data[node_type]
        x = data[node_type].x.detach().float() if present else torch.zeros(0, dim)
        pos = data[node_type].get('pos') if present else torch.zeros(0, k, 2)
        if pos is None:
            msg = f'{node_type!r} nodes have x but no pos: not a graph in our format'
            raise ValueError(msg)
        pos = pos.detach().float()
        if pos.shape != (x.shape[0], k, 2):
            msg = f'{node_type!r}: pos must have shape ({x.shape[0]}, {k}, 2), got {tuple(pos.shape)}'
            raise ValueError(msg)
        out[node_type].x = torch.cat([x, pos.reshape(-1, 2 * k)], dim=1)
    _copy_edges(data, out)
    return out
