# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Cross-modal retrieval metric between image and OSM embeddings."""

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ('CrossModalRetrieval', 'embedding_std')


class CrossModalRetrieval(Metric):
    """Top-1 retrieval between paired image and OSM embeddings over a whole pool.

    Embeddings of every update (every validation batch, every process under DDP) are
    accumulated; at :meth:`compute` each image retrieves the most cosine-similar OSM
    graph of the pool and vice versa. A retrieval is correct when it returns the
    sample's own partner. Chance level is ``1 / pool size``.

    .. versionadded:: 0.1
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    image: list[Tensor]
    osm: list[Tensor]

    def __init__(self) -> None:
        """Initialize a new CrossModalRetrieval metric."""
        super().__init__()
        self.add_state('image', default=[], dist_reduce_fx='cat')
        self.add_state('osm', default=[], dist_reduce_fx='cat')

    def update(self, image: Tensor, osm: Tensor) -> None:
        """Add a batch of paired embeddings to the pool.

        Args:
            image: Image embeddings ``(B, D)``.
            osm: OSM graph embeddings ``(B, D)``, row ``i`` paired with ``image[i]``.

        Raises:
            ValueError: If the two batches do not have the same shape.
        """
        if image.shape != osm.shape or image.ndim != 2:
            msg = f'expected two (B, D) tensors of one shape, got {tuple(image.shape)} and {tuple(osm.shape)}'
            raise ValueError(msg)
        self.image.append(F.normalize(image.detach().float(), dim=-1))
        self.osm.append(F.normalize(osm.detach().float(), dim=-1))

    def _pool(self, state: list[Tensor] | Tensor) -> Tensor:
        """Concatenate an accumulated state (a list, or one synced tensor).

        Args:
            state: The state.

        Returns:
            ``(N, D)``; ``(0, 1)`` when nothing was accumulated.
        """
        if isinstance(state, Tensor):
            return state
        if not state:
            return torch.zeros(0, 1, device=self.device)
        return dim_zero_cat(state)

    def compute(self) -> dict[str, Tensor]:
        """Compute top-1 accuracy in both directions over the pool.

        Returns:
            ``top1`` (mean of both directions), ``image_to_osm_top1``,
            ``osm_to_image_top1``, ``chance`` (1 / pool size) and ``pool_size``; all
            zero when the pool is empty.
        """
        image = self._pool(self.image)
        osm = self._pool(self.osm)
        n = image.shape[0]
        if n == 0:
            zero = torch.zeros((), device=self.device)
            return {
                'top1': zero,
                'image_to_osm_top1': zero,
                'osm_to_image_top1': zero,
                'chance': zero,
                'pool_size': zero,
            }
        similarity = image @ osm.T
        target = torch.arange(n, device=similarity.device)
        i2o = (similarity.argmax(dim=1) == target).float().mean()
        o2i = (similarity.argmax(dim=0) == target).float().mean()
        return {
            'top1': (i2o + o2i) / 2,
            'image_to_osm_top1': i2o,
            'osm_to_image_top1': o2i,
            'chance': torch.tensor(1.0 / n, device=similarity.device),
            'pool_size': torch.tensor(float(n), device=similarity.device),
        }


def embedding_std(embeddings: Tensor) -> Tensor:
    """Mean per-dimension std of L2-normalized embeddings (a collapse monitor).

    Collapsed embeddings give 0; well-spread ones give about ``1 / sqrt(D)``, as in
    TorchGeo's SimCLR.

    Args:
        embeddings: Embeddings ``(B, D)``; ``B >= 2``.

    Returns:
        A scalar tensor.

    .. versionadded:: 0.1
    """
    if embeddings.shape[0] < 2:
        return torch.zeros((), device=embeddings.device)
    return F.normalize(embeddings.detach().float(), dim=-1).std(dim=0).mean()
