# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Image normalization of the GeoLink datamodules, replaceable by the statistics a checkpoint carries."""

from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import nn

__all__ = ('NormalizationMixin',)


class NormalizationMixin:
    """Normalization ``(image - mean) / std`` that a task can replace with the statistics of its weights.

    Mixed into TorchGeo datamodules, whose ``aug`` is ``AugmentationSequential(Normalize(mean, std))``; a
    ``train_aug`` that is an :class:`~torch.nn.Sequential` must end with that same ``aug``.

    .. versionadded:: 0.1
    """

    mean: torch.Tensor
    std: torch.Tensor
    aug: nn.Module
    #: True until :meth:`set_normalization` is called or the statistics were given explicitly.
    normalization_is_default: bool = False

    def set_normalization(
        self, mean: float | Sequence[float], std: float | Sequence[float]
    ) -> None:
        """Normalize with other per-band statistics (e.g. those a pretrained checkpoint was trained with).

        Args:
            mean: Per-band mean subtracted from the images.
            std: Per-band divisor of the images.
        """
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)
        aug = K.AugmentationSequential(
            K.Normalize(mean=self.mean, std=self.std), data_keys=None, keepdim=True
        )
        train_aug = getattr(self, 'train_aug', None)
        if isinstance(train_aug, nn.Sequential) and train_aug[-1] is self.aug:
            train_aug[-1] = aug
        self.aug = aug
        self.normalization_is_default = False
