# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink node embeddings: log-frequency weighted mean of tag embeddings."""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .encoders import TagEncoder
from .tags import KeyWeights, tag_strings

__all__ = ('NodeEmbedder',)


class NodeEmbedder:
    """Embed features from their tags as GeoLink does.

    Node embedding = ``sum_i w_i h_i / sum_i w_i`` over the feature's tag strings, with
    ``h_i`` the tag encoder's embedding of ``'key:value'`` and ``w_i = ln(count[key])``
    (:class:`KeyWeights`); the plain mean when all weights are 0 (only rare or unknown
    keys). A feature without tags gets a zero vector.

    Vectorized over a whole frame: one ``encode`` call for its distinct strings, then a
    segment sum.

    .. versionadded:: 0.1
    """

    def __init__(
        self, encoder: TagEncoder, key_weights: KeyWeights | None = None
    ) -> None:
        """Initialize the embedder.

        Args:
            encoder: The tag encoder (wrap it in a
                :class:`~torchgeo_geolink.osm.CachedTagEncoder` to encode each distinct
                string once across calls).
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
        table = self.encoder.encode(unique.tolist()).to(torch.float32)
        segment = np.repeat(np.arange(n), counts)
        weights = self.key_weights.for_strings(unique.tolist())[inverse]
        weight_sum = np.bincount(segment, weights=weights, minlength=n)
        # Features whose weights are all 0 fall back to the plain mean: give each of
        # their tags weight 1.
        weights = np.where(weight_sum[segment] == 0, 1.0, weights)
        weights /= np.bincount(segment, weights=weights, minlength=n)[segment]
        # (n, U) sparse matrix of normalized weights times the (U, dim) table of
        # distinct strings.
        mixing = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([segment, inverse.astype(np.int64)])),
            torch.from_numpy(weights.astype(np.float32)),
            size=(n, len(unique)),
            check_invariants=False,  # built from valid in-range indices just above
        )
        return torch.sparse.mm(mixing, table)
