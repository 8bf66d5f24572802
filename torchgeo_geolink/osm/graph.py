# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSMGraphBuilder: OSM features + window bounds -> GeoLink graph."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch_geometric.data import HeteroData

from .constants import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS
from .embedding import NodeEmbedder
from .encoders import CachedTagEncoder, HashingTagEncoder, TagEncoder
from .frame_tags import tags_from_frame
from .geometry import split_by_type
from .positions import line_positions, point_positions, polygon_positions
from .relations import EdgeSet, build_edges
from .tags import KeyWeights

__all__ = ('OSMGraphBuilder', 'empty_graph', 'graph_from_parts')


def empty_graph(dim: int = 512) -> HeteroData:
    """Return a graph with no nodes that still holds all node and edge types.

    Args:
        dim: Width of the node embeddings.

    Returns:
        The empty graph.

    .. versionadded:: 0.1
    """
    return graph_from_parts(
        {t: torch.zeros(0, dim) for t in NODE_TYPES},
        {t: torch.zeros(0, POS_POINTS[t], 2) for t in NODE_TYPES},
        {
            e: (np.zeros((2, 0), np.int64), np.zeros((0, c), np.float32))
            for e, c in EDGE_ATTR_DIMS.items()
        },
        ids={t: torch.zeros(0, dtype=torch.long) for t in NODE_TYPES},
    )


def graph_from_parts(
    x: Mapping[str, Tensor],
    pos: Mapping[str, Tensor | NDArray[np.floating]],
    edges: Mapping[tuple[str, str, str], EdgeSet | tuple[Tensor, Tensor]],
    ids: Mapping[str, Tensor | NDArray[np.integer]] | None = None,
) -> HeteroData:
    """Assemble a GeoLink ``HeteroData`` from node features, positions and edges.

    Args:
        x: Node type -> ``(N, D)`` embeddings.
        pos: Node type -> ``(N, K, 2)`` normalized positions.
        edges: Edge type -> ``(edge_index (2, E), edge_attr (E, C))``.
        ids: Optional node type -> ``(N,)`` row of each node's feature in the input
            table (stored as ``id``).

    Returns:
        The graph, with every node and edge type present and the contract's dtypes.

    .. versionadded:: 0.1
    """
    data = HeteroData()
    for node_type in NODE_TYPES:
        store = data[node_type]
        store.x = torch.as_tensor(x[node_type], dtype=torch.float32)
        store.pos = torch.as_tensor(pos[node_type], dtype=torch.float32).reshape(
            -1, POS_POINTS[node_type], 2
        )
        store.num_nodes = int(store.x.shape[0])
        if ids is not None:
            store.id = torch.as_tensor(ids[node_type], dtype=torch.long)
    for edge_type in EDGE_TYPES:
        edge_index, edge_attr = edges[edge_type]
        data[edge_type].edge_index = torch.as_tensor(
            edge_index, dtype=torch.long
        ).reshape(2, -1)
        data[edge_type].edge_attr = torch.as_tensor(
            edge_attr, dtype=torch.float32
        ).reshape(-1, EDGE_ATTR_DIMS[edge_type])
    return data


class OSMGraphBuilder:
    """Turn OSM features and window bounds into a GeoLink heterogeneous graph.

    ``builder(features, bounds)`` returns a :class:`~torch_geometric.data.HeteroData`
    with node types ``polygon``, ``line`` and ``point`` (each always present) holding
    ``x`` (float32 ``(N, D)`` tag embedding: log-frequency weighted mean of the tag
    embeddings, see :class:`~torchgeo_geolink.osm.NodeEmbedder`), ``pos`` (float32
    ``(N, K, 2)``, normalized to the bounds with x right and y down, not clipped:
    polygon K=4 = three interior samples at 0/120/240 degrees then the centroid, line
    K=3 = centroid, start, end, point K=1) and ``id`` (long: the row of the node's
    feature in ``features``), and all nine ``(src, 'to', dst)`` edge types with
    ``edge_index`` and one-hot ``edge_attr`` (see
    :func:`~torchgeo_geolink.osm.build_edges`).

    Features are taken as given, clipped or not (like the reference). Their geometries
    are cleaned first: force 2-D, repair invalid ones, explode multi-part geometries and
    collections (parts share the feature's tags and ``id``), drop empty ones. Node order
    within a type is the input order.

    Built with default arguments it works offline: the tag encoder is a
    :class:`HashingTagEncoder` and each distinct tag string is encoded once for the
    builder's lifetime.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        tag_encoder: TagEncoder | None = None,
        key_weights: KeyWeights | None = None,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        errors: Literal['raise', 'drop'] = 'raise',
        equals_first: bool = True,
    ) -> None:
        """Initialize the builder.

        Args:
            tag_encoder: Embeds tag strings; default :class:`HashingTagEncoder` (512-d,
                offline). Use :class:`~torchgeo_geolink.osm.CLIPTagEncoder` to reproduce
                the official features.
            key_weights: Per-key weights; default: the shipped key-frequency table.
            cache: Encode each distinct tag string once (in memory; wraps the encoder in
                a :class:`CachedTagEncoder` unless it already is one).
            cache_dir: Also persist the cache in this folder (requires ``cache``).
            errors: Features that cannot be used (see
                :func:`~torchgeo_geolink.osm.geometry.split_by_type`): ``'raise'`` an
                :class:`~torchgeo_geolink.errors.InvalidFeatureError` or ``'drop'``
                them.
            equals_first: Label identical geometries ``equals`` (fixes B3); False
                reproduces the reference.

        Raises:
            ValueError: If ``cache_dir`` is given without ``cache``.
        """
        if cache_dir is not None and not cache:
            msg = 'cache_dir requires cache=True'
            raise ValueError(msg)
        encoder: TagEncoder = (
            tag_encoder if tag_encoder is not None else HashingTagEncoder()
        )
        if cache and not isinstance(encoder, CachedTagEncoder):
            encoder = CachedTagEncoder(encoder, cache_dir)
        self.tag_encoder = encoder
        self.embedder = NodeEmbedder(encoder, key_weights)
        self.errors: Literal['raise', 'drop'] = errors
        self.equals_first = equals_first

    @property
    def dim(self) -> int:
        """Width of the node embeddings."""
        return self.embedder.dim

    def node_features(self, tags: Sequence[Mapping[str, str]]) -> Tensor:
        """Embed features from their tags (one encode call for the distinct strings).

        Args:
            tags: One tag mapping per feature.

        Returns:
            float32 tensor ``(len(tags), dim)``.
        """
        return self.embedder(tags)

    @staticmethod
    def node_positions(
        node_type: str,
        geometries: Sequence[object] | NDArray[np.object_],
        bounds: Sequence[float],
    ) -> NDArray[np.float32]:
        """Normalized positions of nodes of one type.

        Args:
            node_type: ``'polygon'``, ``'line'`` or ``'point'``.
            geometries: Their single-part geometries.
            bounds: Window ``(xmin, ymin, xmax, ymax)`` in the geometries' CRS.

        Returns:
            float32 array ``(N, K, 2)``.

        Raises:
            ValueError: If ``node_type`` is unknown.
        """
        geoms = np.empty(len(geometries), dtype=object)
        geoms[:] = list(geometries)
        if node_type == 'polygon':
            return polygon_positions(geoms, bounds)
        if node_type == 'line':
            return line_positions(geoms, bounds)
        if node_type == 'point':
            return point_positions(geoms, bounds)
        msg = f'unknown node type {node_type!r}, expected one of {NODE_TYPES}'
        raise ValueError(msg)

    def build_edges(
        self,
        polygons: Sequence[object] | NDArray[np.object_],
        lines: Sequence[object] | NDArray[np.object_],
        points: Sequence[object] | NDArray[np.object_],
    ) -> dict[tuple[str, str, str], EdgeSet]:
        """All nine edge sets over single-part valid geometries.

        Args:
            polygons: Polygons.
            lines: Line strings.
            points: Points.

        Returns:
            Edge type -> ``(edge_index, edge_attr)`` numpy arrays.
        """
        return build_edges(polygons, lines, points, equals_first=self.equals_first)

    def __call__(self, features: pd.DataFrame, bounds: Sequence[float]) -> HeteroData:
        """Build the graph of a window's features.

        Args:
            features: A GeoDataFrame with a geometry column and tags (a GeoLink
                ``label`` column, a ``tags`` dict column, an ``other_tags`` hstore
                column, or one column per key).
            bounds: Window ``(xmin, ymin, xmax, ymax)`` in the features' CRS.

        Returns:
            The GeoLink graph.

        Raises:
            TypeError: If ``features`` is not a GeoDataFrame.
            ValueError: If the bounds are not a proper box, or tags cannot be parsed.
            InvalidFeatureError: If a feature cannot be used and ``errors='raise'``.
        """
        geometry = getattr(features, 'geometry', None)
        if not isinstance(features, pd.DataFrame) or geometry is None:
            msg = f'features must be a geopandas.GeoDataFrame with a geometry column, got {type(features).__name__}'
            raise TypeError(msg)
        ids = features.index.to_list()
        nodes = split_by_type(geometry.to_numpy(), ids=ids, errors=self.errors)
        bounds = tuple(float(b) for b in bounds)
        tags = tags_from_frame(features)
        used = np.unique(np.concatenate([rows for _, rows in nodes.values()]))
        table = torch.zeros(len(features), self.dim)
        if used.size:
            table[torch.from_numpy(used)] = self.node_features([tags[r] for r in used])
        x = {t: table[torch.from_numpy(rows)] for t, (_, rows) in nodes.items()}
        pos = {
            t: self.node_positions(t, geoms, bounds) for t, (geoms, _) in nodes.items()
        }
        edges = self.build_edges(
            nodes['polygon'][0], nodes['line'][0], nodes['point'][0]
        )
        return graph_from_parts(
            x, pos, edges, ids={t: rows for t, (_, rows) in nodes.items()}
        )

    def __repr__(self) -> str:
        """Return a short description.

        Returns:
            The representation.
        """
        return f'{type(self).__name__}(tag_encoder={self.tag_encoder!r}, errors={self.errors!r})'
