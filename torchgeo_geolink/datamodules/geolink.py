# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink DataModule: raster imagery and OpenStreetMap graphs, split by region.

The imagery is joined with the OSM graphs as ``image & osm``.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import shapely
import torch
from matplotlib.figure import Figure
from pyproj import CRS
from torch import Tensor
from torch.utils.data import DataLoader
from torchgeo.datamodules import GeoDataModule
from torchgeo.datasets import GeoDataset, IntersectionDataset, RasterDataset

from ..datasets.demo import DemoImage, DemoLabels, build_demo
from ..datasets.osm import OSMDataset
from ..datasets.osm_reader import PBFReader
from ..datasets.raster import WindowedRasterDataset
from ..datasets.utils import check_split_fractions, collate_geolink, merge_keep_first
from ..errors import CheckpointError
from ..osm.encoders import make_tag_encoder
from ..samplers import OSMGriddedPatchSampler, OSMRandomPatchSampler, find_osm_dataset
from .normalization import NormalizationMixin

__all__ = (
    'GeoLinkDataModule',
    'dominant_class',
    'make_tag_encoder',
    'merge_keep_first',
    'region_rois',
)


class _ResumableLoader(DataLoader):
    """The training DataLoader, which Lightning counts as resumable mid-epoch.

    What it yields is set by its window sampler, whose state
    :meth:`GeoLinkDataModule.state_dict` saves and
    :meth:`GeoLinkDataModule.load_state_dict` restores (also at epoch ends, where
    Lightning restores no loader state); the loader itself has no state to add.
    """

    def state_dict(self) -> dict[str, Any]:
        """The loader's own state: none (the datamodule holds the sampler's).

        Returns:
            An empty dict.
        """
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the loader's own state: nothing to restore.

        Args:
            state_dict: the state saved by :meth:`state_dict`.
        """


class _ImageRaster(WindowedRasterDataset):
    """Any raster image (all bands), read as ``'image'``."""


class _LabelRaster(WindowedRasterDataset):
    """Any single-band raster of class labels, read as ``'mask'``."""

    is_image = False


def region_rois(
    footprint: shapely.Geometry, val_fraction: float, test_fraction: float
) -> tuple[shapely.Geometry, shapely.Geometry | None, shapely.Geometry | None]:
    """Split a footprint into train, validation and test regions by horizontal strips.

    The regions do not overlap in space.

    Every disjoint part of the footprint (e.g. two cities) is split on its own: its
    validation region is its southern ``val_fraction`` of its height, its test region
    its northern ``test_fraction``, and training gets the rest, so that every area
    contributes to every split. The regions only share their boundary lines, and the
    samplers keep every window inside its region, so no validation or test window
    overlaps a training window.

    Args:
        footprint: the dataset's footprint.
        val_fraction: share of each part's height given to validation (0 for none).
        test_fraction: share of each part's height given to testing (0 for none).

    Returns:
        The train, validation and test regions (None where the fraction is 0).

    Raises:
        ValueError: if a fraction is negative or they leave no training region.

    .. versionadded:: 0.1
    """
    check_split_fractions(val_fraction, test_fraction)
    train, val, test = [], [], []
    for part in shapely.get_parts(footprint):
        xmin, ymin, xmax, ymax = part.bounds
        height = ymax - ymin
        y_val = ymin + val_fraction * height
        y_test = ymax - test_fraction * height
        train.append(shapely.intersection(part, shapely.box(xmin, y_val, xmax, y_test)))
        val.append(shapely.intersection(part, shapely.box(xmin, ymin, xmax, y_val)))
        test.append(shapely.intersection(part, shapely.box(xmin, y_test, xmax, ymax)))
    return (
        shapely.union_all(train),
        shapely.union_all(val) if val_fraction > 0 else None,
        shapely.union_all(test) if test_fraction > 0 else None,
    )


def dominant_class(mask: Tensor, ignore_index: int | None = None) -> Tensor:
    """The most frequent class of each mask of a batch.

    Args:
        mask: Integer class masks ``(B, H, W)`` (or ``(B, ...)``), values >= 0.
        ignore_index: Value not counted; a mask made only of it gets this value.

    Returns:
        ``(B,)`` long: the class with the most pixels in each mask, the lowest such
        class on ties.

    Raises:
        ValueError: if the mask has negative values.

    .. versionadded:: 0.1
    """
    flat = mask.reshape(mask.shape[0], -1).long()
    if flat.numel() and int(flat.min()) < 0:
        raise ValueError(
            f'dominant_class: mask values must be >= 0, got {int(flat.min())}'
        )
    num_classes = int(flat.max()) + 1 if flat.numel() else 1
    counts = torch.zeros(
        flat.shape[0], num_classes, dtype=torch.long, device=flat.device
    )
    counts.scatter_add_(1, flat, torch.ones_like(flat))
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        counts[:, ignore_index] = 0
    label = counts.argmax(dim=1)
    if ignore_index is not None:
        label[counts.sum(dim=1) == 0] = ignore_index
    return label


def _as_paths(paths: str | Path | Sequence[str | Path]) -> list[str]:
    """Normalize one path or several to a list of strings.

    Args:
        paths: one path or a sequence of paths.

    Returns:
        The paths as strings.
    """
    if isinstance(paths, str | Path):
        return [str(paths)]
    return [str(p) for p in paths]


class GeoLinkDataModule(NormalizationMixin, GeoDataModule):
    """LightningDataModule pairing raster imagery with OpenStreetMap graphs for GeoLink.

    The dataset is ``image & osm`` (the image on the left, so the OSM features follow
    its CRS and resolution), plus an optional label raster read as ``mask``
    (``image & labels & osm``). It is split by region into horizontal strips (see
    :func:`region_rois`): training windows are drawn at random where OSM features exist
    (:class:`~torchgeo_geolink.samplers.OSMRandomPatchSampler`), validation and test
    windows on a grid (:class:`~torchgeo_geolink.samplers.OSMGriddedPatchSampler`), each
    strictly inside its own region, so no evaluation window overlaps a training window.
    Batches are collated with :func:`~torchgeo_geolink.datasets.collate_geolink` (one
    PyG ``Batch`` under ``'graph'``). On the device, images are normalized
    (``(image - mean) / std``) and, for training, augmented jointly with their graphs by
    :class:`~torchgeo_geolink.transforms.GeoLinkAugmentation`.

    With ``image_paths=None`` the embedded demo is used:
    :func:`~torchgeo_geolink.datasets.build_demo` renders (once, under *root*) an image
    from the shipped real Helsinki OSM extract, which is then the OSM input. **The demo
    imagery is rendered from OSM, not a real image.**

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        image_paths: str | Sequence[str] | None = None,
        osm_paths: str | Sequence[str] | None = None,
        label_paths: str | Sequence[str] | None = None,
        root: str = 'data/geolink_demo',
        demo_labels: bool = False,
        demo_regions: Sequence[str] = ('helsinki',),
        res: float | None = None,
        batch_size: int = 32,
        patch_size: int = 64,
        length: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.1,
        eval_stride: int | None = None,
        min_features: int = 1,
        empty_fraction: float = 0.0,
        drop_osm_keys: Sequence[str] = (),
        osm_tag_keys: Sequence[str] | None = None,
        graph_mode: Literal['induced', 'exact'] = 'induced',
        tag_encoder: Literal['hashing', 'clip', 'sentence-transformers'] = 'hashing',
        tag_encoder_model: str | None = None,
        tag_dim: int = 512,
        tag_cache_dir: str | None = None,
        osm_cache_dir: str | None = None,
        osm_pbf_reader: PBFReader = 'gdal',
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: bool = True,
        color_jitter: bool = True,
        color_jitter_max: float = 255.0,
        crop_scale: tuple[float, float] = (0.35, 1.0),
        seed: int = 0,
        predict_region: Literal['all', 'train', 'val', 'test']
        | Sequence[float] = 'all',
        target: Literal['mask', 'dominant_class'] = 'mask',
        target_ignore_index: int | None = None,
    ) -> None:
        """Initialize a new GeoLinkDataModule instance.

        Args:
            image_paths: raster files (or directories) of the imagery; None uses the
                embedded demo.
            osm_paths: OSM vector files (GeoJSON, GeoPackage, Shapefile, GeoParquet,
                ``.osm.pbf``); None with the demo uses the shipped extracts of its
                regions. Required when *image_paths* is given.
            label_paths: optional label rasters (class values), returned as ``mask``.
            root: folder where the demo is built (only used when *image_paths* is None).
            demo_labels: with the demo, also load its land-use labels
                (:data:`~torchgeo_geolink.datasets.DEMO_CLASSES`) as ``mask``.
            demo_regions: the demo regions to render and join (keys of
                :data:`~torchgeo_geolink.datasets.DEMO_REGIONS`); each is split into
                train, validation and test strips on its own (see :func:`region_rois`).
            res: resolution to read the imagery at, in CRS units (default: the first
                raster's own).
            batch_size: windows per batch.
            patch_size: window side in pixels (at *res*).
            length: training windows per epoch (default: about the number of
                non-overlapping windows).
            num_workers: DataLoader worker processes.
            val_fraction: share of the area's height (southern strip) used for
                validation.
            test_fraction: share of the area's height (northern strip) used for testing.
            eval_stride: stride of the validation/test/predict grid in pixels (default:
                *patch_size*, no overlap).
            min_features: minimum number of OSM features of a training, validation or
                test window.
            empty_fraction: share of training windows drawn with fewer than
                *min_features* features.
            drop_osm_keys: OSM features with any of these tag keys are withheld from the
                graphs (e.g. the keys that define the labels of a downstream task).
            osm_tag_keys: when given, only the OSM tags with these keys are embedded
                (every feature is kept; see
                :class:`~torchgeo_geolink.datasets.OSMDataset`'s *tag_keys*).
            graph_mode: ``'induced'`` (relations computed once, fast) or ``'exact'``
                (per window).
            tag_encoder: text encoder of the OSM tags.
            tag_encoder_model: model name or folder of the text encoder
                (``clip``/``sentence-transformers``).
            tag_dim: embedding width of the ``hashing`` encoder.
            tag_cache_dir: folder of an on-disk tag-embedding cache.
            osm_cache_dir: folder of the on-disk cache of the prepared OSM store, shared
                by DataLoader workers and DDP ranks and reused across runs (see
                :class:`~torchgeo_geolink.datasets.OSMDataset`); None for no cache.
            osm_pbf_reader: what reads ``.osm.pbf`` files: ``'gdal'`` (the default,
                faster) or ``'quackosm'`` (the ``quackosm`` extra; see
                :class:`~torchgeo_geolink.datasets.OSMDataset`).
            mean: per-channel mean subtracted from the images; None (with *std* None)
                uses 0, or the statistics recorded with the task's pretrained weights
                when it has them.
            std: per-channel divisor of the images; None uses 255 (8-bit imagery to
                ``[0, 1]``) or the weights'.
            augment: jointly augment training images and graphs (crop, flips, 90-degree
                rotations).
            color_jitter: also jitter training image colors (on the raw images, before
                normalizing).
            color_jitter_max: intensity of white in the raw images (255 for 8-bit
                imagery); color jitter raises a ValueError on values outside
                ``[0, color_jitter_max]``.
            crop_scale: range of the random crop's area fraction.
            seed: seed of the training window sampler.
            predict_region: where ``predict`` windows are gridded (every window, with or
                without OSM, at *eval_stride*): ``'all'`` (the whole footprint), the
                ``'train'``, ``'val'`` or ``'test'`` region, or a box
                ``[xmin, ymin, xmax, ymax]`` in the dataset CRS (intersected with the
                footprint).
            target: ``'mask'`` (per-pixel labels only) or ``'dominant_class'``: batches
                also carry ``label`` ``(B,)`` long, the most frequent class of each
                window's ``mask`` after augmentation (ties go to the lowest class), for
                scene classification and kNN probes. Needs labels (*demo_labels* or
                *label_paths*).
            target_ignore_index: label value not counted for ``'dominant_class'`` (e.g.
                the nodata value of a label raster); a window made only of it gets this
                value as its ``label``.

        Raises:
            ValueError: if *image_paths* is given without *osm_paths*, the split
                fractions are invalid, or ``target='dominant_class'`` is asked for
                without labels.
        """
        if image_paths is not None and osm_paths is None:
            raise ValueError(
                'GeoLinkDataModule: osm_paths is required when image_paths is given'
            )
        check_split_fractions(val_fraction, test_fraction)
        if target not in ('mask', 'dominant_class'):
            msg = f"GeoLinkDataModule: target must be 'mask' or 'dominant_class', got {target!r}"
            raise ValueError(msg)
        if target == 'dominant_class' and label_paths is None and not demo_labels:
            msg = "GeoLinkDataModule: target='dominant_class' needs labels: set demo_labels=True or label_paths"
            raise ValueError(msg)
        # BaseDataModule builds ``self.aug`` (kornia's Normalize, other batch keys pass
        # through) from these.
        self._init_statistics(mean, std)
        super().__init__(
            OSMDataset,
            batch_size=batch_size,
            patch_size=patch_size,
            length=length,
            num_workers=num_workers,
        )
        self.image_paths = image_paths
        self.osm_paths = osm_paths
        self.label_paths = label_paths
        self.root = root
        self.demo_labels = demo_labels
        self.demo_regions = tuple(demo_regions)
        self.res = res
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.eval_stride = eval_stride
        self.min_features = min_features
        self.empty_fraction = empty_fraction
        self.drop_osm_keys = tuple(drop_osm_keys)
        self.osm_cache_dir = osm_cache_dir
        self.osm_pbf_reader = osm_pbf_reader
        self.osm_tag_keys = None if osm_tag_keys is None else tuple(osm_tag_keys)
        self.graph_mode = graph_mode
        self.tag_encoder = tag_encoder
        self.tag_encoder_model = tag_encoder_model
        self.tag_dim = tag_dim
        self.tag_cache_dir = tag_cache_dir
        #: Identity of the tag encoder that embeds the graphs' tags (set by
        #: :meth:`setup`); tasks check it against the tag encoder their weights were
        #: trained with.
        self.tag_encoder_identity: str | None = None
        self.seed = seed
        self.predict_region = predict_region
        self.target = target
        self.target_ignore_index = target_ignore_index
        self.collate_fn = collate_geolink

        if augment:
            self._init_train_augmentation(
                color_jitter, color_jitter_max, crop_scale, patch_size
            )

        #: The joined dataset ``image (& labels) & osm`` (set by :meth:`setup`).
        self.geo_dataset: GeoDataset | None = None
        #: Training, validation and test regions (set by :meth:`setup`).
        self.rois: dict[str, shapely.Geometry | None] = {}

    @property
    def is_demo(self) -> bool:
        """Whether the embedded demo is used.

        Returns:
            True when no image paths were given.
        """
        return self.image_paths is None

    def prepare_data(self) -> None:
        """Build the embedded demo once (on one process) when it is used."""
        if self.is_demo:
            for region in self.demo_regions:
                build_demo(self.root, region=region)

    def _build_dataset(self) -> GeoDataset:
        """Create ``image (& labels) & osm``.

        Returns:
            The joined dataset.
        """
        label: RasterDataset | None = None
        if self.is_demo:
            demo = [build_demo(self.root, region=r) for r in self.demo_regions]
            image: RasterDataset = DemoImage([str(p.image) for p in demo], res=self.res)
            osm_paths: str | Sequence[str] = (
                [str(p.osm) for p in demo] if self.osm_paths is None else self.osm_paths
            )
            if self.demo_labels:
                label = DemoLabels([str(p.labels) for p in demo], res=image.res)
        else:
            assert self.image_paths is not None and self.osm_paths is not None
            image = _ImageRaster(_as_paths(self.image_paths), res=self.res)
            osm_paths = self.osm_paths
        if self.label_paths is not None:
            label = _LabelRaster(
                _as_paths(self.label_paths), crs=image.crs, res=image.res
            )
        encoder = make_tag_encoder(
            self.tag_encoder, self.tag_encoder_model, self.tag_dim, self.tag_cache_dir
        )
        self.tag_encoder_identity = encoder.identity
        # only the OSM the imagery covers is read: features outside it never meet a
        # window
        footprint = image.index.geometry.union_all()
        osm = OSMDataset(
            _as_paths(osm_paths),
            crs=CRS.from_user_input(image.crs),
            res=image.res,
            tag_encoder=encoder,
            graph_mode=self.graph_mode,
            drop_keys=self.drop_osm_keys,
            tag_keys=self.osm_tag_keys,
            roi=footprint,
            cache_dir=self.osm_cache_dir,
            pbf_reader=self.osm_pbf_reader,
        )
        left: GeoDataset = image
        if label is not None:
            left = IntersectionDataset(image, label, collate_fn=merge_keep_first)
        return IntersectionDataset(left, osm, collate_fn=merge_keep_first)

    def setup(self, stage: str) -> None:
        """Build the dataset (once), the regions and the samplers of *stage*.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if self.geo_dataset is None:
            self.geo_dataset = self._build_dataset()
        dataset = self.dataset = self.geo_dataset
        footprint = dataset.index.geometry.union_all()
        train, val, test = region_rois(footprint, self.val_fraction, self.test_fraction)
        self.rois = {'train': train, 'val': val, 'test': test}
        stride = self.eval_stride or self.patch_size
        if stage == 'fit':
            self.train_sampler = OSMRandomPatchSampler(
                dataset,
                size=self.patch_size,
                length=self.length,
                roi=train,
                generator=self.seed,
                min_features=self.min_features,
                empty_fraction=self.empty_fraction,
            )
            pending = self.__dict__.pop('_train_sampler_state', None)
            if pending is not None:
                self._load_train_sampler_state(pending)
        if stage in ('fit', 'validate') and val is not None:
            self.val_sampler = OSMGriddedPatchSampler(
                dataset,
                size=self.patch_size,
                stride=stride,
                roi=val,
                min_features=self.min_features,
            )
        if stage == 'test' and test is not None:
            self.test_sampler = OSMGriddedPatchSampler(
                dataset,
                size=self.patch_size,
                stride=stride,
                roi=test,
                min_features=self.min_features,
            )
        if stage == 'predict':
            self.predict_sampler = OSMGriddedPatchSampler(
                dataset,
                size=self.patch_size,
                stride=stride,
                roi=self._predict_roi(footprint),
                min_features=0,
            )

    def _predict_roi(self, footprint: shapely.Geometry) -> shapely.Geometry:
        """The region gridded for prediction (see *predict_region*).

        Args:
            footprint: the dataset's footprint.

        Returns:
            The region.

        Raises:
            ValueError: if *predict_region* names a region without area (a fraction of
                0) or is not a name or a box of four numbers, or if the box misses the
                footprint.
        """
        region = self.predict_region
        if isinstance(region, str):
            if region == 'all':
                return footprint
            roi = self.rois.get(region)
            if region not in ('train', 'val', 'test'):
                msg = f"GeoLinkDataModule: predict_region must be 'all', 'train', 'val', 'test' or a box, got {region!r}"
                raise ValueError(msg)
            if roi is None:
                msg = f'GeoLinkDataModule: predict_region {region!r} has no area ({region}_fraction is 0)'
                raise ValueError(msg)
            return roi
        box = [float(v) for v in region]
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            msg = f'GeoLinkDataModule: predict_region box must be [xmin, ymin, xmax, ymax], got {box}'
            raise ValueError(msg)
        roi = shapely.intersection(footprint, shapely.box(*box))
        if roi.is_empty:
            msg = f'GeoLinkDataModule: predict_region box {box} misses the dataset footprint {footprint.bounds}'
            raise ValueError(msg)
        return roi

    def add_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Add the ``label`` of each window to a batch when ``target='dominant_class'``.

        Applied by :meth:`on_after_batch_transfer` after the augmentation, so a cropped
        window is labeled by what it shows; call it on batches transformed outside
        Lightning's loop (e.g. a kNN probe's).

        Args:
            batch: A collated, transferred batch with ``mask`` ``(B, H, W)``.

        Returns:
            The batch, with ``label`` ``(B,)`` long (batches without ``mask`` are
            returned unchanged).
        """
        if self.target == 'dominant_class' and 'mask' in batch:
            batch['label'] = dominant_class(batch['mask'], self.target_ignore_index)
        return batch

    def on_after_batch_transfer(
        self, batch: dict[str, Any], dataloader_idx: int
    ) -> dict[str, Any]:
        """Normalize and augment a batch on the device, then add its target.

        The normalization and augmentation are TorchGeo's; :meth:`add_target` adds the
        target.

        Args:
            batch: A collated batch on the device.
            dataloader_idx: Index of the dataloader.

        Returns:
            The transformed batch.
        """
        return self.add_target(super().on_after_batch_transfer(batch, dataloader_idx))

    def state_dict(self) -> dict[str, Any]:
        """State for Lightning checkpoints: the training window sampler's random state.

        Lightning resumes a run interrupted in the middle of an epoch by running that
        epoch's remaining batches from a new iterator of the training loader (and
        restores loader states only in the middle of an epoch), so the sampler's state
        is kept here, with the number of windows of the epoch under way already trained
        on. A resumed run then draws the interrupted epoch again and skips those
        windows, or starts the next epoch, exactly as the uninterrupted run on one
        device does (with several devices, the interrupted epoch is drawn again from its
        start).

        Returns:
            ``{'train_sampler': ..., 'batch_size': ...}`` (see
            :meth:`OSMRandomPatchSampler.state_dict <torchgeo_geolink.samplers.OSMRandomPatchSampler.state_dict>`),
            or an empty dict before :meth:`setup` of ``'fit'``.
        """
        sampler = getattr(self, 'train_sampler', None)
        if not isinstance(sampler, OSMRandomPatchSampler):
            return {}
        consumed: int | None = None
        trainer = self.trainer
        if trainer is not None:
            # Batches of the epoch under way whose training step ran (Lightning resumes
            # after these).
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if done < trainer.num_training_batches:
                consumed = done * self.batch_size if trainer.world_size == 1 else 0
        return {
            'train_sampler': sampler.state_dict(consumed),
            'batch_size': self.batch_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`.

        Before :meth:`setup`, the state is kept and applied there.

        Args:
            state_dict: the datamodule's state from a checkpoint.

        Raises:
            CheckpointError: if the sampler state is malformed or does not fit this
                datamodule's training sampler (e.g. another ``length``), or if it was
                saved in the middle of an epoch with another ``batch_size``.
        """
        state = state_dict.get('train_sampler')
        if state is None:
            return
        saved = state_dict.get('batch_size', self.batch_size)
        if (
            isinstance(state, Mapping)
            and state.get('consumed')
            and saved != self.batch_size
        ):
            msg = (
                f'{type(self).__name__}: the checkpoint was written in the middle of an epoch with batch_size '
                f'{saved}, this datamodule has batch_size {self.batch_size}: the rest of that epoch cannot be '
                'resumed (resume from an end-of-epoch checkpoint, or keep the batch size)'
            )
            raise CheckpointError(msg)
        if isinstance(getattr(self, 'train_sampler', None), OSMRandomPatchSampler):
            self._load_train_sampler_state(state)
        else:
            self._train_sampler_state = state

    def _load_train_sampler_state(self, state: Mapping[str, Any]) -> None:
        """Restore the training sampler's state.

        Args:
            state: the sampler's state.

        Raises:
            CheckpointError: if the state does not fit the sampler.
        """
        assert isinstance(self.train_sampler, OSMRandomPatchSampler)
        try:
            self.train_sampler.load_state_dict(state)
        except ValueError as error:
            msg = f'{type(self).__name__}: checkpoint key train_sampler: {error}'
            raise CheckpointError(msg) from error

    def train_dataloader(self) -> Any:
        """Training batches: the random windows of the training region.

        The loader draws its base seed from its own generator (seeded with *seed*), not
        from torch's global one: Lightning creates the loader's iterator at another
        point of a run resumed in the middle of an epoch than of the uninterrupted run,
        and a draw from the global generator there would shift the augmentations, masks
        and dropout of the rest of the resumed run.

        Returns:
            The data loader.
        """
        loader = super().train_dataloader()
        if not isinstance(loader.sampler, OSMRandomPatchSampler):
            return loader  # e.g. a subclass's batch sampler: left as TorchGeo builds it
        return _ResumableLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=loader.sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            drop_last=loader.drop_last,
            persistent_workers=loader.persistent_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> Any:
        """Validation batches: the grid over the validation region.

        There are none when ``val_fraction`` is 0.

        Returns:
            The data loader, or an empty list (Lightning then skips validation) without
            a validation region.
        """
        if self.val_fraction == 0:
            return []
        return super().val_dataloader()

    def test_dataloader(self) -> Any:
        """Test batches: the grid over the test region.

        There are none when ``test_fraction`` is 0.

        Returns:
            The data loader, or an empty list (Lightning then runs no test batch)
            without a test region.
        """
        if self.test_fraction == 0:
            return []
        return super().test_dataloader()

    def plot(
        self,
        sample: Mapping[str, Any],
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure | None:
        """Plot a sample with the OSM dataset's plot (image, OSM features, graph nodes).

        Args:
            sample: a sample of the dataset, or one element of an unbound batch.
            show_titles: flag indicating whether to show titles above each panel.
            suptitle: optional string to use as a suptitle.

        Returns:
            The figure, or None before :meth:`setup`.
        """
        if self.geo_dataset is None:
            return None
        osm = find_osm_dataset(self.geo_dataset)
        return osm.plot(dict(sample), show_titles=show_titles, suptitle=suptitle)
