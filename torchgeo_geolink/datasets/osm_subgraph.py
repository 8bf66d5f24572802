# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""A global edge table of GeoLink relations and the subgraph it induces on a window."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..osm.constants import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES
from ..osm.graph import OSMGraphBuilder
from ..osm.relations import iter_edges

__all__ = ('EdgeTable', 'build_edge_table', 'expand_parts', 'induced_edges')


@dataclass
class EdgeTable:
    """Relations between all unclipped features, nine edge types in one table.

    Edges are sorted by source feature row, so the edges leaving a row are one slice of
    the table. Edge attributes are one-hot: only the hot column is stored.

    .. versionadded:: 0.1

    Attributes:
        indptr: ``(n_rows + 1,)`` int64 start of each source row's edges.
        dst: int32 destination feature row of each edge.
        edge_type: int8 position of each edge's type in
            :data:`~torchgeo_geolink.osm.EDGE_TYPES`.
        attr: int8 hot column of each edge's one-hot attribute.
    """

    indptr: np.ndarray
    dst: np.ndarray
    edge_type: np.ndarray
    attr: np.ndarray


def build_edge_table(
    builder: OSMGraphBuilder, geometries: np.ndarray, kinds: np.ndarray
) -> EdgeTable:
    """Compute the relations between all features once, as a table sorted by source.

    Args:
        builder: the graph builder whose relations are used.
        geometries: single-part geometries of all features.
        kinds: node kind of each (0 polygon, 1 line, 2 point).

    Returns:
        The edge table.

    Raises:
        ValueError: if an edge attribute is not one-hot.

    .. versionadded:: 0.1
    """
    rows_of = {t: np.flatnonzero(kinds == k) for k, t in enumerate(NODE_TYPES)}
    # One edge type at a time, each shrunk to int32 / int8 columns before the next is
    # computed: the float one-hot sets of a whole region would outweigh the table.
    parts = {}
    for key, (edge_index, edge_attr) in iter_edges(
        geometries[rows_of['polygon']],
        geometries[rows_of['line']],
        geometries[rows_of['point']],
        equals_first=builder.equals_first,
    ):
        edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        n_edges = edge_index.shape[1]
        one_hot = np.asarray(edge_attr, dtype=np.float32).reshape(
            n_edges, EDGE_ATTR_DIMS[key]
        )
        if (
            not (np.count_nonzero(one_hot, axis=1) == 1).all()
            or (one_hot.sum(axis=1) != 1).any()
        ):
            raise ValueError(f'{key} edge attributes are not one-hot')
        parts[key] = (
            rows_of[key[0]][edge_index[0]].astype(np.int32),
            rows_of[key[2]][edge_index[1]].astype(np.int32),
            one_hot.argmax(axis=1).astype(np.int8),
        )
        del edge_index, edge_attr, one_hot
    # Concatenated in EDGE_TYPES order, so that the stable sort keeps that order
    # among the edges of one source.
    src, dst, edge_type, attr = [], [], [], []
    for t, key in enumerate(EDGE_TYPES):
        key_src, key_dst, key_attr = parts.pop(key)
        src.append(key_src)
        dst.append(key_dst)
        edge_type.append(np.full(len(key_src), t, dtype=np.int8))
        attr.append(key_attr)
    all_src = np.concatenate(src)
    order = np.argsort(all_src, kind='stable')
    indptr = np.zeros(len(geometries) + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_src, minlength=len(geometries)), out=indptr[1:])
    del all_src, src
    return EdgeTable(
        indptr,
        np.concatenate(dst)[order],
        np.concatenate(edge_type)[order],
        np.concatenate(attr)[order],
    )


def expand_parts(
    src: np.ndarray,
    dst: np.ndarray,
    src_parts: np.ndarray,
    dst_parts: np.ndarray,
    is_self: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn feature-level edges into node-level edges (one node per part of a feature).

    Every part of the source is linked to every part of the destination, except self
    loops, which link each part to itself only. The parts of a feature are consecutive
    nodes.

    Args:
        src: node index of each edge's source feature's first part.
        dst: node index of each edge's destination feature's first part.
        src_parts: number of parts of each edge's source feature.
        dst_parts: number of parts of each edge's destination feature.
        is_self: whether each edge is a self loop.

    Returns:
        Source nodes, destination nodes and, for each node-level edge, the feature-level
        edge it comes from.

    .. versionadded:: 0.1
    """
    pairs = np.where(is_self, src_parts, src_parts * dst_parts)
    take = np.repeat(np.arange(len(pairs)), pairs)
    k = np.arange(int(pairs.sum())) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    width = np.where(is_self, 1, dst_parts)[take]
    self_take = is_self[take]
    i = np.where(self_take, k, k // width)
    j = np.where(self_take, k, k % width)
    return src[take] + i, dst[take] + j, take


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The value of each queried key, -1 for a key not present.

    Args:
        keys: sorted, distinct keys.
        values: the value of each key.
        query: keys to look up.

    Returns:
        int64 value of each queried key.
    """
    at = np.searchsorted(keys, query)
    at[at == len(keys)] = 0
    found = keys[at] == query if len(keys) else np.zeros(len(query), dtype=bool)
    return np.where(found, values[at] if len(keys) else -1, -1).astype(np.int64)


def induced_edges(
    table: EdgeTable, rows: np.ndarray, kinds: np.ndarray
) -> dict[str, Tensor]:
    """The nine edge sets of the subgraph induced by a window's nodes, in one pass.

    Args:
        table: the global edge table.
        rows: feature row of each node, sorted by node type then row (the parts of a
            feature are adjacent).
        kinds: node kind of each node.

    Returns:
        ``osm_<src>_to_<dst>_edge_index`` (long ``(2, E)``, node indices within their
        type) and ``osm_<src>_to_<dst>_edge_attr`` (float32 ``(E, C)``) for the nine
        edge types.

    .. versionadded:: 0.1
    """
    offsets = np.zeros(len(NODE_TYPES) + 1, dtype=np.int64)
    np.cumsum(np.bincount(kinds, minlength=len(NODE_TYPES)), out=offsets[1:])
    node_local = np.arange(len(rows)) - offsets[kinds]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    multipart = not first.all()
    feature_rows = rows[first] if multipart else rows
    # Feature row -> node index (within its type) of its first part, -1 outside the
    # window: looked up among the window's rows (an array over all rows would cost each
    # window the size of the region).
    by_row = np.argsort(feature_rows)
    sorted_rows = feature_rows[by_row]
    first_local = (node_local[first] if multipart else node_local)[by_row]

    def local(query: np.ndarray) -> np.ndarray:
        return _lookup(sorted_rows, first_local, query)

    starts = table.indptr[feature_rows]
    lengths = table.indptr[feature_rows + 1] - starts
    edge_ids = np.arange(int(lengths.sum())) + np.repeat(
        starts - (np.cumsum(lengths) - lengths), lengths
    )
    src_rows = np.repeat(feature_rows, lengths)
    dst = np.asarray(table.dst)
    dst_local = local(dst[edge_ids])
    keep = dst_local >= 0
    edge_ids, src_rows, dst_local = edge_ids[keep], src_rows[keep], dst_local[keep]
    src_local = local(src_rows)
    if multipart:
        parts = np.diff(np.append(np.flatnonzero(first), len(rows)))[by_row]
        dst_rows = dst[edge_ids]
        src_local, dst_local, take = expand_parts(
            src_local,
            dst_local,
            _lookup(sorted_rows, parts, src_rows),
            _lookup(sorted_rows, parts, dst_rows),
            src_rows == dst_rows,
        )
        edge_ids = edge_ids[take]
    edge_type = table.edge_type[edge_ids]
    order = np.argsort(edge_type, kind='stable')
    splits = np.searchsorted(edge_type[order], np.arange(len(EDGE_TYPES) + 1))
    out: dict[str, Tensor] = {}
    for t, (src_type, _, dst_type) in enumerate(EDGE_TYPES):
        sel = order[splits[t] : splits[t + 1]]
        name = f'osm_{src_type}_to_{dst_type}'
        out[f'{name}_edge_index'] = torch.from_numpy(
            np.stack([src_local[sel], dst_local[sel]])
        )
        eye = np.eye(EDGE_ATTR_DIMS[EDGE_TYPES[t]], dtype=np.float32)
        out[f'{name}_edge_attr'] = torch.from_numpy(eye[table.attr[edge_ids[sel]]])
    return out
