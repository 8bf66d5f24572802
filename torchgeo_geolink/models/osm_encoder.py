# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Heterogeneous graph-attention encoder of OSM object graphs."""

from collections.abc import Mapping

from torch import Tensor, nn
from torch_geometric.nn import GATConv, HeteroConv

__all__ = ('EDGE_TYPES', 'NODE_TYPES', 'OSMHeteroGAT')

#: OSM node types, in the order of the graph contract.
NODE_TYPES: tuple[str, str, str] = ('polygon', 'line', 'point')

#: The nine relations ``(src, 'to', dst)`` of the graph contract.
EDGE_TYPES: tuple[tuple[str, str, str], ...] = tuple(
    (src, 'to', dst) for src in NODE_TYPES for dst in NODE_TYPES
)


class OSMHeteroGAT(nn.Module):
    """Heterogeneous GAT over the nine OSM relations (spec 3.3).

    Each layer is a :class:`~torch_geometric.nn.conv.HeteroConv` of one single-head
    :class:`~torch_geometric.nn.conv.GATConv` per relation, with one projection shared by source and
    destination (integer ``in_channels``), no added self loops, mean over the relations that end at a node type,
    then ReLU. The reference uses one layer and ignores the edge attributes (B2); passing *edge_dims* makes the
    attention use the relation one-hots (a new architecture, not loadable from the official checkpoint).

    The parameter names match the official checkpoint (``convs.0.convs.<src___to___dst>.*``).
    """

    def __init__(
        self,
        in_channels: int = 512,
        out_channels: int = 128,
        num_layers: int = 1,
        edge_dims: Mapping[tuple[str, str, str], int] | None = None,
    ) -> None:
        """Initialise a new OSMHeteroGAT.

        Args:
            in_channels: Size of the node features (tag embeddings).
            out_channels: Size of the node embeddings.
            num_layers: Number of message-passing layers (hops).
            edge_dims: Size of the edge attributes per relation (e.g.
                ``torchgeo_geolink.osm.EDGE_ATTR_DIMS``) to make attention edge-aware; ``None`` ignores them.

        Raises:
            ValueError: If *num_layers* is smaller than 1 or *edge_dims* lacks a relation.
        """
        super().__init__()
        if num_layers < 1:
            raise ValueError(
                f'OSMHeteroGAT needs at least one layer, got num_layers={num_layers}'
            )
        if edge_dims is not None:
            missing = [et for et in EDGE_TYPES if et not in edge_dims]
            if missing:
                raise ValueError(f'edge_dims lacks the relations {missing}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.use_edge_attr = edge_dims is not None
        self.convs = nn.ModuleList()
        for layer in range(num_layers):
            self.convs.append(
                HeteroConv(
                    {
                        et: GATConv(  # ty: ignore[abstract-class-instantiation]
                            in_channels if layer == 0 else out_channels,
                            out_channels,
                            heads=1,
                            add_self_loops=False,
                            edge_dim=None if edge_dims is None else edge_dims[et],
                        )
                        for et in EDGE_TYPES
                    },
                    aggr='mean',
                )
            )
        self.act = nn.ReLU()

    def forward(
        self,
        x_dict: Mapping[str, Tensor],
        edge_index_dict: Mapping[tuple[str, str, str], Tensor],
        edge_attr_dict: Mapping[tuple[str, str, str], Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Embed the nodes of a (batched) OSM graph.

        Args:
            x_dict: Node features ``(N_t, in_channels)`` of every node type (possibly with 0 rows).
            edge_index_dict: ``edge_index`` ``(2, E)`` of every relation.
            edge_attr_dict: ``edge_attr`` ``(E, C)`` of every relation; used only with ``edge_dims``.

        Returns:
            Node embeddings ``(N_t, out_channels)`` of every node type.
        """
        h = dict(x_dict)
        for conv in self.convs:
            if self.use_edge_attr and edge_attr_dict is not None:
                out = conv(h, edge_index_dict, edge_attr_dict=edge_attr_dict)
            else:
                out = conv(h, edge_index_dict)
            h = {t: self.act(out[t]) for t in out}
        return h
