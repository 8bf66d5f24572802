# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""UPerNet decoder for single-scale ViT features, and the GeoLink segmentation model (spec 4.3)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, HeteroData

from .fusion import GeoLinkFusionEncoder

__all__ = ('Feature2Pyramid', 'GeoLinkSegmentationModel', 'UPerNetHead')


def _conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int
) -> nn.Sequential:
    """Build conv, BatchNorm, ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: 1 or 3 (same padding).

    Returns:
        The block.
    """
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Feature2Pyramid(nn.Module):
    """Turn same-resolution ViT maps into a pyramid by rescaling each map.

    Scale 4: two stride-2 transposed convs (BatchNorm, GELU between); 2: one; 1: identity; 0.5: max-pool.
    """

    def __init__(
        self, in_channels: Sequence[int], rescales: Sequence[float] = (4, 2, 1, 0.5)
    ) -> None:
        """Initialise a new Feature2Pyramid.

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
    """UPerNet head: pyramid pooling on the coarsest level, top-down FPN, fused 3x3 conv, classifier."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        """Initialise a new UPerNetHead.

        Args:
            in_channels: Channels of the pyramid levels, finest first.
            num_classes: Output classes.
            channels: Width of the head.
            pool_scales: Output sizes of the pyramid pooling.
            dropout: Dropout2d before the classifier.
        """
        super().__init__()
        *lateral_in, top = in_channels
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv_bn_relu(top, channels, 1))
            for s in pool_scales
        )
        self.bottleneck = _conv_bn_relu(top + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(
            _conv_bn_relu(c, channels, 1) for c in lateral_in
        )
        self.fpn_convs = nn.ModuleList(
            _conv_bn_relu(channels, channels, 3) for _ in lateral_in
        )
        self.fpn_bottleneck = _conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Predict class logits at the finest level's resolution.

        Args:
            features: Pyramid maps, finest first.

        Returns:
            Logits ``(B, num_classes, h_0, w_0)``.
        """
        *finer, top = features
        pooled = [
            F.interpolate(
                ppm(top), size=top.shape[-2:], mode='bilinear', align_corners=False
            )
            for ppm in self.ppm
        ]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, finer, strict=True)]
        laterals.append(self.bottleneck(torch.cat([top, *pooled], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i],
                size=laterals[i - 1].shape[-2:],
                mode='bilinear',
                align_corners=False,
            )
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1], strict=True)]
        outs.append(laterals[-1])
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [
            F.interpolate(o, size=size, mode='bilinear', align_corners=False)
            for o in outs[1:]
        ]
        return self.classifier(
            self.dropout(self.fpn_bottleneck(torch.cat(outs, dim=1)))
        )


class GeoLinkSegmentationModel(nn.Module):
    """Semantic segmentation with GeoLink: fusion encoder, Feature2Pyramid neck, UPerNet head.

    BatchNorm (not SyncBatchNorm); convert with :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` for
    multi-GPU training if wanted.
    """

    def __init__(
        self,
        encoder: GeoLinkFusionEncoder,
        num_classes: int,
        channels: int = 512,
        rescales: Sequence[float] = (4, 2, 1, 0.5),
        freeze_encoder: bool = False,
    ) -> None:
        """Initialise a new GeoLinkSegmentationModel.

        Args:
            encoder: The multi-level GeoLink encoder.
            num_classes: Output classes.
            channels: Width of the UPerNet head.
            rescales: Neck scale of every encoder level.
            freeze_encoder: Keep the encoder fixed (eval mode, no gradients), as the reference's example.
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
            images: Normalised images ``(B, C, H, W)``.
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
