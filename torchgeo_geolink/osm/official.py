# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Conversion between the official GeoLink graph format (positions appended to ``x``) and ours (``pos``)."""

import torch
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
    """Infer the semantic width of a graph in the official format from its first non-empty node type.

    Args:
        data: The official graph.
        default_dim: Width used when no node type has ``x``.

    Returns:
        The semantic width ``D``.
    """
    for node_type in NODE_TYPES:
        if node_type in data.node_types and 'x' in data[node_type]:
            return int(data[node_type].x.shape[1]) - 2 * POS_POINTS[node_type]
    return default_dim


def _copy_edges(source: HeteroData, target: HeteroData) -> None:
    """Copy all nine edge types (empty when absent), checking the ``edge_attr`` widths.

    Args:
        source: Graph to read the edges from.
        target: Graph to write them to.

    Raises:
        ValueError: If an edge set has a malformed ``edge_index`` or ``edge_attr``.
    """
    for edge_type in EDGE_TYPES:
        width = EDGE_ATTR_DIMS[edge_type]
        if edge_type in source.edge_types and 'edge_index' in source[edge_type]:
            edge_index = source[edge_type].edge_index.detach().clone().long()
            if edge_index.dim() != 2 or edge_index.shape[0] != 2:
                msg = f'{edge_type}: edge_index must have shape (2, E), got {tuple(edge_index.shape)}'
                raise ValueError(msg)
            edge_attr = source[edge_type].get('edge_attr')
            if edge_attr is None:
                edge_attr = torch.zeros(edge_index.shape[1], width)
            edge_attr = edge_attr.detach().clone().float()
            if edge_attr.shape != (edge_index.shape[1], width):
                msg = (
                    f'{edge_type}: edge_attr must have shape ({edge_index.shape[1]}, {width}), '
                    f'got {tuple(edge_attr.shape)}'
                )
                raise ValueError(msg)
        else:
            edge_index = torch.zeros(2, 0, dtype=torch.long)
            edge_attr = torch.zeros(0, width)
        target[edge_type].edge_index = edge_index
        target[edge_type].edge_attr = edge_attr


def from_official_graph(data: HeteroData, dim: int = TAG_EMBEDDING_DIM) -> HeteroData:
    """Convert an official GeoLink graph (positions appended to ``x``) to our format (``x`` + ``pos``).

    The official node features are ``D`` semantic columns followed by the positions: polygon 8 (three samples,
    then the centroid), line 6 (centroid, start, end), point 2. Missing node or edge types are created empty. The
    input is not modified.

    Args:
        data: The official graph (e.g. ``torch.load(path, weights_only=False)``).
        dim: Semantic width assumed when the graph has no node features at all.

    Returns:
        A new graph with ``x`` float32 ``(N, D)`` and ``pos`` float32 ``(N, K, 2)`` per node type and all nine
        edge types.

    Raises:
        ValueError: If node features are too narrow or the node types disagree on ``D``, or edges are malformed.
    """
    semantic = _node_count_and_dim(data, dim)
    out = HeteroData()
    for node_type in NODE_TYPES:
        k = POS_POINTS[node_type]
        if node_type in data.node_types and 'x' in data[node_type]:
            x = data[node_type].x.detach()
            if x.dim() != 2 or x.shape[1] != semantic + 2 * k:
                msg = (
                    f'{node_type!r} node features must have {semantic} semantic + {2 * k} position columns, '
                    f'got shape {tuple(x.shape)}'
                )
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
    """Convert a graph in our format back to the official one (positions appended to ``x``).

    Missing node or edge types are created empty. The input is not modified.

    Args:
        data: A graph with ``x`` and ``pos`` per node type.

    Returns:
        A new graph whose ``x`` is ``cat([x, pos.flatten(1)])`` per node type, with all nine edge types.

    Raises:
        ValueError: If a node type lacks ``pos`` or ``pos`` does not have shape ``(N, K, 2)``.
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
