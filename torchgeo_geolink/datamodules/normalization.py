# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Image normalization of the GeoLink datamodules.

It can be replaced by the statistics a checkpoint carries.
"""

from collections.abc import Callable, Sequence
from typing import cast

import kornia.augmentation as K
import torch
from torch import nn
from torchgeo.datasets.utils import Sample

from ..transforms import DEFAULT_COLOR_JITTER, GeoLinkAugmentation

__all__ = ('NormalizationMixin',)


class NormalizationMixin:
    """Normalization ``(image - mean) / std`` with statistics that a task can replace.

    A task replaces them with the statistics of its weights.

    Mixed into TorchGeo datamodules, whose ``aug`` is
    ``AugmentationSequential(Normalize(mean, std))``; a ``train_aug`` that is an
    :class:`~torch.nn.Sequential` must end with that same ``aug``.

    .. versionadded:: 0.1
    """

    mean: torch.Tensor
    std: torch.Tensor
    aug: Callable[[Sample], Sample]
    #: True until :meth:`set_normalization` is called or the statistics were given
    #: explicitly.
    normalization_is_default: bool = False

    def _init_statistics(
        self, mean: float | Sequence[float] | None, std: float | Sequence[float] | None
    ) -> None:
        """Set the statistics before ``BaseDataModule.__init__``.

        ``BaseDataModule.__init__`` builds ``aug`` from them.

        Args:
            mean: Per-band mean; None (with *std* None) is 0 and may be replaced by a
                checkpoint's statistics.
            std: Per-band divisor; None is 255 (8-bit imagery to ``[0, 1]``).
        """
        self.normalization_is_default = mean is None and std is None
        self.mean = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32)
        self.std = torch.as_tensor(255.0 if std is None else std, dtype=torch.float32)

    def _init_train_augmentation(
        self,
        color_jitter: bool,
        color_jitter_max: float,
        crop_scale: tuple[float, float],
        size: int | None = None,
    ) -> None:
        """Set ``train_aug``: augment raw images, masks, graphs jointly, then ``aug``.

        The color jitter needs the raw range, and the warps commute with the per-band
        normalization.

        Args:
            color_jitter: Jitter the colors too
                (:data:`~torchgeo_geolink.transforms.DEFAULT_COLOR_JITTER`).
            color_jitter_max: Intensity of white in the raw images.
            crop_scale: Range of the random crop's area fraction.
            size: Output side of the augmented images (None keeps the input size).
        """
        augmentation = GeoLinkAugmentation(
            size=size,
            crop_scale=crop_scale,
            color_jitter=DEFAULT_COLOR_JITTER if color_jitter else None,
            color_jitter_max=color_jitter_max,
        )
        # ``aug`` is the kornia AugmentationSequential that BaseDataModule or
        # set_normalization built
        self.train_aug = nn.Sequential(augmentation, cast(nn.Module, self.aug))

    def set_normalization(
        self, mean: float | Sequence[float], std: float | Sequence[float]
    ) -> None:
        """Normalize with other per-band statistics.

        For example, those a pretrained checkpoint was trained with.

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
