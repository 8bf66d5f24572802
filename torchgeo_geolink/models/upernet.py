# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""ViT feature pyramid, UPerNet head and the GeoLink segmentation model."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import Tensor, nn
from torch_geometric.data import Batch, HeteroData

from .fusion import GeoLinkFusionEncoder

__all__ = ('Feature2Pyramid', 'GeoLinkSegmentationModel', 'UPerNetHead')


class Feature2Pyramid(nn.Module):
    """Turn same-resolution ViT maps into a pyramid by rescaling each map.

    Scale 4: two stride-2 transposed convs (BatchNorm, GELU between); 2: one; 1:
    identity; 0.5: max-pool.

    .. versionadded:: 0.1
    """

    def __init__(
        self, in_channels: Sequence[int], rescales: Sequence[float] = (4, 2, 1, 0.5)
    ) -> None:
        """Initialize a new Feature2Pyramid.

        Args:
            in_channels: Channels of every input map.
            rescales: Scale factor of every map, each 4, 2, 1 or 0.5.

        Raises:
            ValueError: If the lengths differ or a scale is not supported.
        """
        super().__init__()
        if len(in_channels) != len(rescales):
            raise ValueError(
                f'{len(in_channels)} feature maps but {len(rescales)} rescales'
            )
        self.ops = nn.ModuleList()
        for c, s in zip(in_channels, rescales, strict=True):
            match s:
                case 4:
                    op: nn.Module = nn.Sequential(
                        nn.ConvTranspose2d(c, c, 2, stride=2),
                        nn.BatchNorm2d(c),
                        nn.GELU(),
                        nn.ConvTranspose2d(c, c, 2, stride=2),
                    )
                case 2:
                    op = nn.ConvTranspose2d(c, c, 2, stride=2)
                case 1:
                    op = nn.Identity()
                case 0.5:
                    op = nn.MaxPool2d(2)
                case _:
                    raise ValueError(f'unsupported rescale {s}; use 4, 2, 1 or 0.5')
            self.ops.append(op)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Rescale the maps.

        Args:
            features: Maps ``(B, C_i, h, w)``.

        Returns:
            The rescaled maps.
        """
        return [op(f) for op, f in zip(self.ops, features, strict=True)]


class UPerNetHead(nn.Module):
    """UPerNet head: smp's ``UPerNetDecoder`` and a classifier.

    smp's decoder layer-normalizes every pyramid level, runs pyramid pooling (output
    sizes 1, 2, 3 and 6) on the coarsest one and a top-down FPN with 3x3 convs, and
    fuses all levels at the finest resolution with a 3x3 conv (conv, BatchNorm, ReLU
    throughout). Dropout and a 1x1 convolution then give the class logits. smp provides
    the decoder but not a ViT's pyramid (see :class:`Feature2Pyramid`), so the levels
    come from that neck.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        dropout: float = 0.1,
    ) -> None:
        """Initialize a new UPerNetHead.

        Args:
            in_channels: Channels of the pyramid levels, finest first (at least two
                levels).
            num_classes: Output classes.
            channels: Width of the head.
            dropout: Dropout2d before the classifier.

        Raises:
            ValueError: If fewer than two levels are given.
        """
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(
                f'UPerNetHead needs at least two pyramid levels, got in_channels={list(in_channels)}'
            )
        # smp's decoder expects an encoder's full list [1, 1/2, 1/4, ...] and skips the
        # first two levels.
        self.decoder = UPerNetDecoder(
            encoder_channels=[0, 0, *in_channels],
            encoder_depth=len(in_channels) + 1,
            decoder_channels=channels,
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Predict class logits at the finest level's resolution.

        Args:
            features: Pyramid maps, finest first.

        Returns:
            Logits ``(B, num_classes, h_0, w_0)``.
        """
        skipped = features[0][:, :0]
        decoded = self.decoder([skipped, skipped, *features])
        return self.classifier(self.dropout(decoded))


class GeoLinkSegmentationModel(nn.Module):
    """Semantic segmentation with GeoLink: fusion encoder, pyramid, UPerNet.

    BatchNorm (not SyncBatchNorm); convert with
    :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` for multi-GPU training if
    wanted.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        encoder: GeoLinkFusionEncoder,
        num_classes: int,
        channels: int = 512,
        rescales: Sequence[float] = (4, 2, 1, 0.5),
        freeze_encoder: bool = False,
    ) -> None:
        """Initialize a new GeoLinkSegmentationModel.

        Args:
            encoder: The multi-level GeoLink encoder.
            num_classes: Output classes.
            channels: Width of the UPerNet head.
            rescales: Neck scale of every encoder level.
            freeze_encoder: Keep the encoder fixed (eval mode, no gradients), as the
                reference's example.
        """
        super().__init__()
        self.encoder = encoder
        self.neck = Feature2Pyramid(encoder.out_channels, rescales)
        self.head = UPerNetHead(encoder.out_channels, num_classes, channels)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True) -> 'GeoLinkSegmentationModel':
        """Set the training mode, keeping a frozen encoder in eval mode.

        Args:
            mode: Training mode.

        Returns:
            This model.
        """
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(
        self, images: Tensor, graphs: HeteroData | Batch | None = None
    ) -> Tensor:
        """Predict per-pixel class logits.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch's OSM graphs, or None.

        Returns:
            Logits ``(B, num_classes, H, W)``.
        """
        with torch.set_grad_enabled(
            torch.is_grad_enabled() and not self.freeze_encoder
        ):
            features = self.encoder(images, graphs)
        logits = self.head(self.neck(features))
        return F.interpolate(
            logits, size=images.shape[-2:], mode='bilinear', align_corners=False
        )
