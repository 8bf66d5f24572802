# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Test helpers: random contract-following OSM graphs and tiny GeoLink models."""

from collections.abc import Callable, Sequence

import torch
from timm.models.vision_transformer import VisionTransformer
from torch_geometric.data import Batch, HeteroData

from torchgeo_geolink.models import GeoLink
from torchgeo_geolink.osm import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS

D = 32  #: Node feature size of the tiny test models.

MakeGraph = Callable[..., HeteroData]


def make_graph(
    counts: Sequence[int], dim: int = D, seed: int = 0, drop: Sequence[str] = ()
) -> HeteroData:
    """A random graph: counts[i] nodes of NODE_TYPES[i], none of the types in *drop*."""
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    for t, n in zip(NODE_TYPES, counts, strict=True):
        if t in drop:
            continue
        data[t].x = torch.randn(n, dim, generator=gen)
        data[t].pos = torch.rand(n, POS_POINTS[t], 2, generator=gen)
    for et in EDGE_TYPES:
        src, _, dst = et
        if src in drop or dst in drop:
            continue
        ns, nd = data[src].num_nodes or 0, data[dst].num_nodes or 0
        e = 2 * min(ns, nd) if ns and nd else 0
        src_i = torch.randint(max(ns, 1), (e,), generator=gen)
        dst_i = torch.randint(max(nd, 1), (e,), generator=gen)
        data[et].edge_index = torch.stack([src_i, dst_i])
        attr = torch.zeros(e, EDGE_ATTR_DIMS[et])
        if e:
            attr[
                torch.arange(e), torch.randint(EDGE_ATTR_DIMS[et], (e,), generator=gen)
            ] = 1
        data[et].edge_attr = attr
    return data


def batch_of(*graphs: HeteroData) -> Batch:
    """Batch graphs as the data layer's collate does."""
    return Batch.from_data_list(list(graphs))


def tiny_vit(
    depth: int = 4, img_size: int = 64, in_chans: int = 3
) -> VisionTransformer:
    """A timm ViT (patch 16, width 64, 4 heads, no head or pooling) as in GeoLink."""
    return VisionTransformer(
        img_size=img_size,
        patch_size=16,
        in_chans=in_chans,
        embed_dim=64,
        depth=depth,
        num_heads=4,
        num_classes=0,
        global_pool='',
    )


def tiny_geolink(**kwargs: object) -> GeoLink:
    """A small GeoLink: 4-block ViT of width 64 at 64 px (4 x 4 patches), D = 32."""
    torch.manual_seed(0)
    args: dict = {
        'osm_in_chans': D,
        'osm_out_embed_dim': 16,
        'graph_aggr_embed_dim': 16,
        'fusion_embed_dim': 32,
        'img_decoder_embed_dim': 32,
        'img_decoder_depth': 1,
        'img_decoder_num_heads': 4,
        'osm_cross_modal_encoder_num_heads': 4,
        'consistency_embed_dim': 8,
    }
    args.update(kwargs)
    return GeoLink(tiny_vit(), **args)
