# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-level GeoLink features with the hybrid RS-OSM map, for dense tasks."""

from collections.abc import Sequence
from typing import cast

from torch import Tensor, nn
from torch_geometric.data import Batch, HeteroData

from .geolink import GeoLink

__all__ = ('GeoLinkFusionEncoder',)


class GeoLinkFusionEncoder(nn.Module):
    """Token maps of chosen ViT blocks, the last replaced by the hybrid RS-OSM map.

    Each listed block gives its raw token map (no final norm, CLS dropped) reshaped to
    ``(B, D, H/p, W/p)``. When the ViT's last block is listed (and ``hybrid``), it
    instead gives the hybrid map ``(B, 256, H/p, W/p)``: the normalized last-block
    tokens projected to the fusion size attend to every OSM node of their graph through
    the pretrained two-way block (image stream after its patch-to-object step). In
    ``legacy`` mode a random 50 nodes of a graph take part, as in the reference (fixed
    by the model's ``node_cap_seed`` in eval mode); otherwise all do. A sample without
    OSM nodes (or ``graphs=None``) gets the image-only hybrid map. No randomness in eval
    mode.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        model: GeoLink,
        output_layers: Sequence[int] = (7, 11, 15, 23),
        hybrid: bool = True,
        max_nodes: int | None = None,
    ) -> None:
        """Initialize a new GeoLinkFusionEncoder.

        Args:
            model: A (pretrained) GeoLink model; its modules are shared, not copied.
            output_layers: 0-based ViT block indices whose outputs are returned,
                increasing.
            hybrid: Replace the last block's map by the hybrid RS-OSM map.
            max_nodes: OSM nodes per graph in the fusion (first ones); default: a random
                50 in legacy mode, else no cap (see :meth:`GeoLink.fuse`).

        Raises:
            ValueError: If a layer index is out of range or the indices are not
                increasing.
        """
        super().__init__()
        depth = len(cast(nn.Sequential, model.img_encoder.blocks))
        layers = [int(i) for i in output_layers]
        if (
            not layers
            or any(not 0 <= i < depth for i in layers)
            or layers != sorted(set(layers))
        ):
            raise ValueError(
                f'output_layers must be increasing block indices in [0, {depth}), got {output_layers}'
            )
        self.model = model
        self.output_layers = tuple(layers)
        self.hybrid = hybrid
        self.max_nodes = max_nodes
        self.last_layer = depth - 1
        #: Channels of every returned map.
        self.out_channels = [
            model.fusion_embed_dim
            if hybrid and i == self.last_layer
            else model.embed_dim
            for i in layers
        ]

    def forward(
        self, images: Tensor, graphs: HeteroData | Batch | None = None
    ) -> list[Tensor]:
        """Compute the multi-level feature maps.

        Args:
            images: Normalized images ``(B, C, H, W)`` at the model's image size.
            graphs: The batch's OSM graphs (one per image), or None for image-only
                features.

        Returns:
            One map ``(B, C_i, H/p, W/p)`` per entry of ``output_layers``.
        """
        return self.forward_with_attention(images, graphs)[0]

    def forward_with_attention(
        self, images: Tensor, graphs: HeteroData | Batch | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Compute the feature maps and the object-to-patch attention.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch's OSM graphs, or None.

        Returns:
            The maps and the attention ``(B, M, L)`` of every OSM token over the patches
            (None without the hybrid map); padded tokens are listed by the validity in
            :meth:`GeoLink.dense_osm_tokens`.
        """
        model = self.model
        b = images.shape[0]
        rows, cols = model.grid_size
        blocks = model.block_outputs(model.embed_patches(images), self.output_layers)
        outputs: list[Tensor] = []
        attention = None
        for layer, x in zip(self.output_layers, blocks, strict=True):
            if self.hybrid and layer == self.last_layer:
                tokens, attention = self._hybrid(x, graphs)
            else:
                tokens = x[:, 1:]
            outputs.append(tokens.transpose(1, 2).reshape(b, -1, rows, cols))
        return outputs, attention

    def _hybrid(
        self, x: Tensor, graphs: HeteroData | Batch | None
    ) -> tuple[Tensor, Tensor | None]:
        """Fuse the last-block tokens with the OSM nodes.

        Args:
            x: Last-block tokens ``(B, 1 + L, D)``.
            graphs: The batch's OSM graphs, or None.

        Returns:
            Hybrid tokens ``(B, L, fusion_dim)`` and the object-to-patch attention (None
            without graphs).
        """
        model = self.model
        return model.fuse(model.img_norm(x[:, 1:]), graphs, self.max_nodes)
