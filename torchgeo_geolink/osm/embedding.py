# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink node embeddings: log-frequency weighted mean of a feature's tag embeddings."""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .encoders import TagEncoder
from .tags import KeyWeights, tag_strings

__all__ = ('NodeEmbedder',)


class NodeEmbedder:
    """Embed features from their tags as GeoLink does (spec section 2.2).

    Node embedding = ``sum_i w_i h_i / sum_i w_i`` over the feature's tag strings, with ``h_i`` the tag encoder's
    embedding of ``'key:value'`` and ``w_i = ln(count[key])`` (:class:`KeyWeights`); the plain mean when all
    weights are 0 (only rare or unknown keys). A feature without tags gets a zero vector.

    Vectorised over a whole frame: one ``encode`` call for its distinct strings, then a segment sum.
    """

    def __init__(
        self, encoder: TagEncoder, key_weights: KeyWeights | None = None
    ) -> None:
        """Initialise the embedder.

        Args:
            encoder: The tag encoder (wrap it in a :class:`~torchgeo_geolink.osm.CachedTagEncoder` to encode each
                distinct string once across calls).
            key_weights: Key weights; None loads the table shipped with the package.
        """
        self.encoder = encoder
        self.key_weights = (
            key_weights if key_weights is not None else KeyWeights.from_json()
        )

    @property
    def dim(self) -> int:
        """Width of the node embeddings."""
        return int(self.encoder.dim)

    def __call__(self, tags: Sequence[Mapping[str, str]]) -> Tensor:
        """Embed features.

        Args:
            tags: One tag mapping per feature.

        Returns:
            float32 tensor ``(len(tags), dim)``.
        """
        return self.embed_strings([tag_strings(t) for t in tags])

    def embed_strings(self, strings: Sequence[Sequence[str]]) -> Tensor:
        """Embed features given as lists of GeoLink tag strings.

        Args:
            strings: One list of ``'key:value'`` strings per feature.

        Returns:
            float32 tensor ``(len(strings), dim)``.
        """
        n = len(strings)
        counts = np.fromiter((len(s) for s in strings), dtype=np.int64, count=n)
        flat = [t for s in strings for t in s]
        if not flat:
            return torch.zeros(n, self.dim)
        unique, inverse = np.unique(
            np.asarray(flat, dtype=object).astype(str), return_inverse=True
        )
        table = self.encoder.encode(unique.tolist()).to(torch.float64)
        segment = torch.from_numpy(np.repeat(np.arange(n), counts))
        weights = torch.from_numpy(
            self.key_weights.for_strings(unique.tolist())[inverse]
        )
        tag_embeddings = table[torch.from_numpy(inverse.astype(np.int64))]
        weight_sum = torch.zeros(n, dtype=torch.float64).index_add_(0, segment, weights)
        # Features whose weights are all 0 fall back to the plain mean: give each of their tags weight 1.
        plain = weight_sum[segment] == 0
        weights = torch.where(plain, torch.ones_like(weights), weights)
        weight_sum = torch.zeros(n, dtype=torch.float64).index_add_(0, segment, weights)
        summed = torch.zeros(n, self.dim, dtype=torch.float64).index_add_(
            0, segment, tag_embeddings * weights[:, None]
        )
        out = summed / weight_sum.clamp_min(1e-300)[:, None]
        return out.float()
