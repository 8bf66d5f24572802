# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Read the tensors the model needs from a batched OSM graph."""

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor
from torch_geometric.data import Batch, HeteroData

from ..osm.constants import EDGE_TYPES, NODE_TYPES, POS_POINTS

__all__ = ('OSMInputs', 'osm_inputs')


@dataclass
class OSMInputs:
    """Per-type node and edge tensors of a batch of ``num_graphs`` OSM graphs.

    .. versionadded:: 0.1
    """

    #: Node features ``(N_t, D)`` per node type.
    x: dict[str, Tensor]
    #: Node positions ``(N_t, K_t, 2)`` per node type, normalized to the window, x
    #: right, y down.
    pos: dict[str, Tensor]
    #: Graph index ``(N_t,)`` of every node per node type.
    batch: dict[str, Tensor]
    #: ``edge_index`` ``(2, E)`` of the nine relations.
    edge_index: dict[tuple[str, str, str], Tensor]
    #: ``edge_attr`` ``(E, C)`` of the relations that have it.
    edge_attr: dict[tuple[str, str, str], Tensor]
    #: Number of graphs.
    num_graphs: int


def osm_inputs(
    graphs: HeteroData | Batch, num_graphs: int, in_channels: int, device: torch.device
) -> OSMInputs:
    """Collect the model inputs of a batched graph, without changing it.

    Node types or relations absent from the batch become empty tensors. A plain
    :class:`HeteroData` (not a :class:`Batch`) is one graph.

    Args:
        graphs: Batched graph with node types ``polygon``, ``line``, ``point`` (``x``,
            ``pos``) and the nine relations (``edge_index``, optionally ``edge_attr``).
        num_graphs: Expected number of graphs (the number of images).
        in_channels: Expected size of the node features.
        device: Device of the model.

    Returns:
        The tensors of every node type and relation.

    Raises:
        ValueError: If the number of graphs, a feature size or a position shape is
            wrong.

    .. versionadded:: 0.1
    """
    have = graphs.num_graphs if isinstance(graphs, Batch) else 1
    if have != num_graphs:
        raise ValueError(
            f'got {num_graphs} images but {have} OSM graphs; pass one graph per image'
        )
    node_types = set(cast(HeteroData, graphs).node_types)
    x: dict[str, Tensor] = {}
    pos: dict[str, Tensor] = {}
    batch: dict[str, Tensor] = {}
    for t in NODE_TYPES:
        k = POS_POINTS[t]
        store = graphs[t] if t in node_types else None
        if store is None or 'x' not in store:
            x[t] = torch.zeros(0, in_channels, device=device)
            pos[t] = torch.zeros(0, k, 2, device=device)
            batch[t] = torch.zeros(0, dtype=torch.long, device=device)
            continue
        xt = store.x.to(device)
        if xt.dim() != 2 or xt.shape[1] != in_channels:
            raise ValueError(
                f'OSM node type {t!r}: x must be (N, {in_channels}), got {tuple(xt.shape)}; official graphs '
                'carry positions inside x: convert them with torchgeo_geolink.osm.from_official_graph'
            )
        if 'pos' not in store:
            raise ValueError(f'OSM node type {t!r} has x but no pos (N, {k}, 2)')
        pt = store.pos.to(device)
        if (
            pt.dim() == 2 and pt.shape[1] == 2 * k
        ):  # flat (N, 2K), e.g. a point type stored as (N, 2)
            pt = pt.reshape(-1, k, 2)
        if tuple(pt.shape) != (xt.shape[0], k, 2):
            raise ValueError(
                f'OSM node type {t!r}: pos must be ({xt.shape[0]}, {k}, 2), got {tuple(store.pos.shape)}'
            )
        x[t] = xt.float()
        pos[t] = pt.float()
        if 'batch' in store:
            batch[t] = store.batch.to(device)
        else:
            batch[t] = torch.zeros(xt.shape[0], dtype=torch.long, device=device)
    edge_types = set(cast(HeteroData, graphs).edge_types)
    edge_index: dict[tuple[str, str, str], Tensor] = {}
    edge_attr: dict[tuple[str, str, str], Tensor] = {}
    for et in EDGE_TYPES:
        store = graphs[et] if et in edge_types else None
        if store is None or 'edge_index' not in store:
            edge_index[et] = torch.zeros(2, 0, dtype=torch.long, device=device)
            continue
        edge_index[et] = store.edge_index.to(device)
        if 'edge_attr' in store:
            edge_attr[et] = store.edge_attr.to(device).float()
    return OSMInputs(x, pos, batch, edge_index, edge_attr, num_graphs)
