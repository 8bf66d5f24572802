# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Heterogeneous graph-attention encoder of OSM object graphs."""

from collections.abc import Mapping

from torch import Tensor, nn
from torch.nn.parameter import is_lazy
from torch_geometric.nn import GATConv, HeteroConv
from torch_geometric.typing import Adj, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor

from ..osm.constants import EDGE_TYPES

__all__ = ('BipartiteGATConv', 'OSMHeteroGAT')


class BipartiteGATConv(GATConv):
    """A ``GATConv`` that does not project bipartite destination nodes.

    With one projection ``W`` shared by source and destination (integer
    ``in_channels``), PyG projects both node sets, but the projected destination nodes
    only enter the attention term ``alpha_dst = (W x_dst) . a_dst``. This layer computes
    it as ``x_dst . (W^T a_dst)``, saving one
    ``(N_dst, in_channels) x (in_channels, heads * out_channels)`` matmul per relation
    in the forward pass and two in the backward pass. Parameters, outputs and gradients
    are those of :class:`~torch_geometric.nn.conv.GATConv`; every other case (a single
    node tensor, separate ``lin_src``/``lin_dst``, edge features, self loops, residual,
    sparse adjacency) runs :meth:`torch_geometric.nn.conv.GATConv.forward`.

    .. versionadded:: 0.1
    """

    def forward(  # ty: ignore[incompatible-method-override]
        self,
        x: Tensor | tuple[Tensor, Tensor | None],
        edge_index: Adj,
        edge_attr: Tensor | None = None,
        size: tuple[int, int] | None = None,
        return_attention_weights: bool | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]] | tuple[Tensor, SparseTensor]:
        """Run the layer.

        Args:
            x: Node features, or the pair ``(x_src, x_dst)`` of a bipartite graph.
            edge_index: Edge indices ``(2, E)`` from source to destination nodes.
            edge_attr: Edge features (only with ``edge_dim``).
            size: Number of source and destination nodes; inferred from *x* if ``None``.
            return_attention_weights: If set, also return
                ``(edge_index, attention_weights)``.

        Returns:
            Destination node embeddings, and the attention weights if requested.
        """
        lin = self.lin
        if (
            isinstance(x, Tensor)
            or x[1] is None
            or lin is None
            or lin.bias is not None
            or is_lazy(lin.weight)
            or self.lin_edge is not None
            or edge_attr is not None
            or self.add_self_loops
            or self.res is not None
            or not isinstance(edge_index, Tensor)
            or is_torch_sparse_tensor(edge_index)
        ):
            return super().forward(
                x, edge_index, edge_attr, size, return_attention_weights
            )
        x_src, x_dst = x
        heads, channels = self.heads, self.out_channels
        if size is None:
            size = (x_src.size(0), x_dst.size(0))
        h_src = lin(x_src).view(-1, heads, channels)
        # (W x_dst) . a_dst == x_dst . (W^T a_dst), per head:
        att_dst = (
            lin.weight.view(heads, channels, -1) * self.att_dst.view(heads, channels, 1)
        ).sum(1)
        alpha_src = (h_src * self.att_src).sum(dim=-1)
        alpha_dst = x_dst @ att_dst.t()
        alpha = self.edge_updater(
            edge_index, alpha=(alpha_src, alpha_dst), edge_attr=None, size=size
        )
        out = self.propagate(edge_index, x=(h_src, None), alpha=alpha, size=size)
        if self.concat:
            out = out.view(-1, heads * channels)
        else:
            out = out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out


class OSMHeteroGAT(nn.Module):
    """Heterogeneous GAT over the nine OSM relations.

    Each layer is a :class:`~torch_geometric.nn.conv.HeteroConv` of one single-head
    :class:`BipartiteGATConv` (a :class:`~torch_geometric.nn.conv.GATConv`) per
    relation, with one projection shared by source and destination (integer
    ``in_channels``), no added self loops, mean over the relations that end at a node
    type, then ReLU. The reference uses one layer and ignores the edge attributes (B2);
    passing *edge_dims* makes the attention use the relation one-hots (a new
    architecture, not loadable from the official checkpoint).

    The parameter names match the official checkpoint
    (``convs.0.convs.<src___to___dst>.*``).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        in_channels: int = 512,
        out_channels: int = 128,
        num_layers: int = 1,
        edge_dims: Mapping[tuple[str, str, str], int] | None = None,
    ) -> None:
        """Initialize a new OSMHeteroGAT.

        Args:
            in_channels: Size of the node features (tag embeddings).
            out_channels: Size of the node embeddings.
            num_layers: Number of message-passing layers (hops).
            edge_dims: Size of the edge attributes per relation (e.g.
                ``torchgeo_geolink.osm.EDGE_ATTR_DIMS``) to make attention edge-aware;
                ``None`` ignores them.

        Raises:
            ValueError: If *num_layers* is smaller than 1 or *edge_dims* lacks a
                relation.
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
                        et: BipartiteGATConv(  # ty: ignore[abstract-class-instantiation]
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
            x_dict: Node features ``(N_t, in_channels)`` of every node type (possibly
                with 0 rows).
            edge_index_dict: ``edge_index`` ``(2, E)`` of every relation.
            edge_attr_dict: ``edge_attr`` ``(E, C)`` of every relation; used only with
                ``edge_dims``.

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
