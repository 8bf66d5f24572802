# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""DataModule for GeoLink's tile format (image, label and official graph per tile)."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import DataLoader
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets.utils import Sample

from ..datasets.tiles import GeoLinkTiles
from ..datasets.utils import collate_geolink
from ..models.weights import OFFICIAL_TAG_ENCODER
from .normalization import NormalizationMixin

__all__ = ('GeoLinkStreamingTilesDataModule', 'GeoLinkTilesDataModule')


class GeoLinkTilesDataModule(NormalizationMixin, NonGeoDataModule):
    """LightningDataModule for :class:`~torchgeo_geolink.datasets.GeoLinkTiles`.

    For example, GeoLink's UFZ tiles.

    Batches are collated with :func:`~torchgeo_geolink.datasets.collate_geolink` (images
    and masks stacked, the graphs in one PyG ``Batch`` under ``'graph'``), so tiles must
    share one size. On the device, images are normalized and, for training, augmented
    jointly with their masks and graphs
    (:class:`~torchgeo_geolink.transforms.GeoLinkAugmentation`).

    .. versionadded:: 0.1
    """

    #: The tag encoder of GeoLink's pre-built graphs, CLIP ViT-B/16's text tower
    #: (checked by the tasks against the tag encoder of their weights).
    tag_encoder_identity: str | None = OFFICIAL_TAG_ENCODER

    def __init__(
        self,
        root: str = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        missing_graph: Literal['error', 'empty'] = 'error',
        size: int | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: bool = True,
        color_jitter: bool = True,
        color_jitter_max: float = 255.0,
        crop_scale: tuple[float, float] = (0.35, 1.0),
    ) -> None:
        """Initialize a new GeoLinkTilesDataModule instance.

        Args:
            root: folder holding ``img/``, ``graph/`` and optionally ``label/``.
            batch_size: tiles per batch.
            num_workers: DataLoader worker processes.
            val_fraction: share of tiles in the validation split (without split files).
            test_fraction: share of tiles in the test split (without split files).
            missing_graph: a tile without graph is an error (``'error'``) or gets an
                empty graph.
            size: resize every tile to ``size x size`` pixels (None: tiles must share
                one size).
            mean: per-channel mean subtracted from the images; None (with *std* None)
                uses 0, or the statistics recorded with the task's pretrained weights
                when it has them.
            std: per-channel divisor of the images; None uses 255 (8-bit imagery to
                ``[0, 1]``) or the weights'.
            augment: jointly augment training images, masks and graphs.
            color_jitter: also jitter training image colors (on the raw images, before
                normalizing).
            color_jitter_max: intensity of white in the raw tiles (255 for 8-bit tiles);
                color jitter raises a ValueError on values outside
                ``[0, color_jitter_max]``.
            crop_scale: range of the random crop's area fraction.
        """
        # BaseDataModule builds ``self.aug`` (kornia's Normalize, other batch keys pass
        # through) from these.
        self._init_statistics(mean, std)
        super().__init__(
            GeoLinkTiles,
            batch_size=batch_size,
            num_workers=num_workers,
            root=root,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            missing_graph=missing_graph,
            size=size,
        )
        self.collate_fn = collate_geolink
        if augment:
            self._init_train_augmentation(color_jitter, color_jitter_max, crop_scale)


class GeoLinkStreamingTilesDataModule(GeoLinkTilesDataModule):
    """LightningDataModule for a prepared corpus, ready for multi-node DDP.

    The corpus is prepared by ``python -m torchgeo_geolink.prepare``.

    Reads :class:`~torchgeo_geolink.datasets.GeoLinkStreamingTiles` with
    :class:`litdata.StreamingDataLoader`: graphs are read from the shards, not built,
    every DDP rank and DataLoader worker streams its own share of the chunks (no
    per-rank preprocessing, no distributed sampler), and the training split is shuffled
    per epoch from ``seed``, identically on every rank. Normalization and augmentation
    are those of :class:`GeoLinkTilesDataModule`. Needs the ``scale`` extra
    (``litdata``).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        root: str = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        size: int | None = None,
        seed: int = 0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: bool = True,
        color_jitter: bool = True,
        color_jitter_max: float = 255.0,
        crop_scale: tuple[float, float] = (0.35, 1.0),
    ) -> None:
        """Initialize a new GeoLinkStreamingTilesDataModule instance.

        Args:
            root: folder written by ``torchgeo_geolink.prepare`` (holding ``train/``,
                ``val/``, ``test/``).
            batch_size: tiles per batch and process.
            num_workers: DataLoader worker processes.
            size: resize every tile to ``size x size`` pixels (None: tiles must share
                one size).
            seed: seed of the per-epoch shuffle of the training split.
            mean: per-channel mean subtracted from the images (None: the default of
                :class:`GeoLinkTilesDataModule`).
            std: per-channel divisor of the images (None: the default of
                :class:`GeoLinkTilesDataModule`, 8-bit tiles to ``[0, 1]``).
            augment: jointly augment training images, masks and graphs.
            color_jitter: also jitter training image colors.
            color_jitter_max: intensity of white in the raw tiles (255 for 8-bit tiles).
            crop_scale: range of the random crop's area fraction.
        """
        from ..datasets.streaming import GeoLinkStreamingTiles

        normalization: dict[str, Any] = {
            k: v for k, v in (('mean', mean), ('std', std)) if v is not None
        }
        super().__init__(
            root=root,
            batch_size=batch_size,
            num_workers=num_workers,
            size=size,
            augment=augment,
            color_jitter=color_jitter,
            color_jitter_max=color_jitter_max,
            crop_scale=crop_scale,
            **normalization,
        )
        self.dataset_class = GeoLinkStreamingTiles
        self.kwargs = {'root': root, 'size': size, 'seed': seed}
        # The corpus's graphs come from the tag encoder recorded by the prepare run.
        manifest = Path(root) / 'manifest.json'
        self.tag_encoder_identity = (
            json.loads(manifest.read_text('utf-8')).get('tag_encoder')
            if manifest.exists()
            else None
        )

    def _dataloader_factory(self, split: str) -> DataLoader[Sample]:
        """Build the streaming DataLoader of a split.

        Args:
            split: ``'train'``, ``'val'``, ``'test'`` or ``'predict'``.

        Returns:
            A :class:`litdata.StreamingDataLoader` (it sets the epoch of the shuffle on
            each pass).
        """
        from litdata import StreamingDataLoader

        # TorchGeo 0.10 private API, used here only: NonGeoDataModule's four public
        # *_dataloader methods all call _dataloader_factory(split), so overriding it
        # swaps the DataLoader class in one place instead of four; _valid_attribute
        # picks the split's dataset/batch size with TorchGeo's own error messages.
        # Recheck both when upgrading TorchGeo.
        dataset = self._valid_attribute(f'{split}_dataset', 'dataset')
        batch_size = self._valid_attribute(f'{split}_batch_size', 'batch_size')
        return StreamingDataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=split == 'train',
            persistent_workers=self.num_workers > 0,
        )
