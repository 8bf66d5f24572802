# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Per-channel normalisation of the image of a collated GeoLink batch (graphs and other keys pass through)."""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ('NormalizeImage',)


class NormalizeImage(nn.Module):
    """``image = (image - mean) / std`` per channel on a batch dict; every other key is passed through unchanged.

    Unlike :class:`kornia.augmentation.Normalize` inside an ``AugmentationSequential``, it never looks at the other
    keys, so a batch holding a PyG graph (``'graph'``) or georeferencing tensors goes through untouched.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 255.0
    ) -> None:
        """Initialise a new NormalizeImage instance.

        Args:
            mean: per-channel mean (or one value for all channels).
            std: per-channel standard deviation (or one value for all channels).

        Raises:
            ValueError: if a standard deviation is not positive.
        """
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if (std_t <= 0).any():
            raise ValueError(f'NormalizeImage: std must be positive, got {std}')
        self.register_buffer('mean', mean_t, persistent=False)
        self.register_buffer('std', std_t, persistent=False)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Normalise ``batch['image']`` (``(B, C, H, W)`` or ``(C, H, W)``).

        Args:
            batch: the batch.

        Returns:
            a new dict with the normalised image.

        Raises:
            ValueError: if the number of channels does not match ``mean``/``std``.
        """
        out = dict(batch)
        image: Tensor = batch['image']
        channels = image.shape[-3]
        mean, std = self.mean, self.std
        for name, value in (('mean', mean), ('std', std)):
            if len(value) not in (1, channels):
                raise ValueError(
                    f'NormalizeImage: {name} has {len(value)} values but the image has {channels} channels'
                )
        shape = (-1, 1, 1)
        out['image'] = (image.float() - mean.to(image.device).reshape(shape)) / std.to(
            image.device
        ).reshape(shape)
        return out
