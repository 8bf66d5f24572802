# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Window samplers that draw where OpenStreetMap features exist."""

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import shapely
from numpy.random import BitGenerator, Generator, RandomState, SeedSequence
from shapely import Polygon
from torchgeo.datasets import GeoDataset
from torchgeo.samplers import SpatialSampler, Units
from torchgeo.samplers.utils import convolution_arithmetic

from ..datasets.osm import OSMDataset

__all__ = ('OSMGriddedPatchSampler', 'OSMRandomPatchSampler', 'find_osm_dataset')


def find_osm_dataset(dataset: GeoDataset) -> OSMDataset:
    """Find the OSM dataset of a (possibly combined) dataset.

    Args:
        dataset: an :class:`~torchgeo_geolink.datasets.OSMDataset`, or an intersection
            or union of datasets holding one (e.g. ``image & osm``).

    Returns:
        The first OSM dataset found, depth first.

    Raises:
        TypeError: if the dataset holds no OSM dataset.

    .. versionadded:: 0.1
    """
    if isinstance(dataset, OSMDataset):
        return dataset
    for child in getattr(dataset, 'datasets', ()):
        try:
            return find_osm_dataset(child)
        except TypeError:
            continue
    msg = f'{type(dataset).__name__} holds no OSMDataset: OSM-aware samplers need one (e.g. image & osm)'
    raise TypeError(msg)


def _pair(value: tuple[float, float] | float) -> tuple[float, float]:
    """Turn one value for both dimensions, or a ``(height, width)`` pair, into a pair.

    Args:
        value: one number, or two.

    Returns:
        ``(height, width)``.
    """
    if isinstance(value, int | float):
        return (value, value)
    height, width = value
    return (height, width)


def _axis_starts(
    low: float, high: float, size: float, stride: float, anchor: float, res: float
) -> np.ndarray:
    """Window starts along one axis that cover ``[low, high]`` from edge to edge.

    The first window starts on *low*, the last ends on *high*, and those between lie on
    the pixel grid, *stride* apart rounded down to whole pixels (so neighbors overlap at
    least as much as asked). With a stride that is a whole number of pixels and a lower
    edge on the grid, these are as many windows as TorchGeo's ``convolution_arithmetic``
    counts. A stride under a pixel is kept as given, off the grid.

    Args:
        low: lower edge of the region.
        high: upper edge of the region.
        size: window size.
        stride: distance between neighboring windows.
        anchor: a coordinate on the pixel grid.
        res: pixel size.

    Returns:
        The increasing starts (none when the window is larger than the region).
    """
    if not high - low >= size * (1 - 1e-9):
        return np.zeros(0)
    tolerance = 1e-9 * max(size, stride, res)
    last = max(high - size, low)
    if stride >= res * (1 - 1e-9):
        step = max(math.floor(stride / res + 1e-9), 1) * res
        first = anchor + math.ceil((low - anchor) / res - 1e-9) * res
    else:
        step, first = stride, low
    inner = first + step * np.arange(
        max(math.ceil((last - first - tolerance) / step), 0)
    )
    inner = inner[(inner > low + tolerance) & (inner < last - tolerance)]
    return np.unique(np.concatenate([[low], inner, [last]]))


def _count_features(
    osm: OSMDataset, origins: np.ndarray, size: tuple[float, float]
) -> np.ndarray:
    """Number of OSM features meeting each window.

    Args:
        osm: the OSM dataset (in the sampler's CRS).
        origins: ``(n, 2)`` lower-left corners of the windows.
        size: ``(height, width)`` of the windows in CRS units.

    Returns:
        ``(n,)`` feature counts.
    """
    if len(origins) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = shapely.box(
        origins[:, 0], origins[:, 1], origins[:, 0] + size[1], origins[:, 1] + size[0]
    )
    window_of, _ = osm.tree.query(boxes, predicate='intersects')
    return np.bincount(window_of, minlength=len(origins))


class _OSMSpatialSampler(SpatialSampler):
    """Shared set-up of the OSM-aware samplers.

    It sets the patch size in CRS units and the OSM dataset.
    """

    def __init__(
        self,
        dataset: GeoDataset,
        *,
        size: tuple[float, float] | float,
        roi: Polygon | None,
        units: Units,
        min_features: int,
    ) -> None:
        """Initialize the sampler.

        Args:
            dataset: dataset to sample from, holding an
                :class:`~torchgeo_geolink.datasets.OSMDataset`.
            size: ``(height, width)`` of each patch, or one value for both.
            roi: region of interest (defaults to the dataset's footprint).
            units: whether *size* is in pixels or CRS units.
            min_features: minimum number of OSM features a window with OSM must meet.

        Raises:
            ValueError: if *min_features* is negative, *size* is not positive, the ROI
                misses the dataset or the patch does not fit in the region.
        """
        super().__init__(dataset, roi=roi)
        if min_features < 0:
            raise ValueError(f'min_features must be >= 0, got {min_features}')
        self.osm = find_osm_dataset(dataset)
        self.min_features = min_features
        self.size = _pair(size)
        if units == Units.PIXELS:
            self.size = (self.size[0] * dataset.res[1], self.size[1] * dataset.res[0])
        if not min(self.size) > 0:
            raise ValueError(f'size must be positive, got {size}')
        name = type(self).__name__
        if self.geometry.is_empty:
            if roi is None:
                msg = f'{name}: the dataset footprint is empty'
            else:
                msg = f'{name}: the region of interest (bounds {roi.bounds}) does not meet the dataset (bounds {self.bounds})'
            raise ValueError(msg)
        width, height = (
            self.geometry.bounds[2] - self.geometry.bounds[0],
            self.geometry.bounds[3] - self.geometry.bounds[1],
        )
        if width < self.size[1] * (1 - 1e-9) or height < self.size[0] * (1 - 1e-9):
            msg = f'{name}: patch size {self.size} (CRS units) does not fit in the region {self.geometry.bounds}'
            raise ValueError(msg)

    def _snap(self, origins: np.ndarray) -> np.ndarray:
        """Snap window corners to the dataset's pixel grid.

        The grid is anchored at the footprint's lower-left corner.

        Args:
            origins: ``(n, 2)`` lower-left corners.

        Returns:
            The snapped corners.
        """
        xmin, ymin = self.bounds[0], self.bounds[1]
        res = np.asarray(self.res, dtype=np.float64)
        start = np.array([xmin, ymin])
        return np.round((origins - start) / res) * res + start

    def _inside(self, origins: np.ndarray) -> np.ndarray:
        """Whether each window lies in the sampling region (dataset footprint and ROI).

        Args:
            origins: ``(n, 2)`` lower-left corners.

        Returns:
            ``(n,)`` booleans.
        """
        if len(origins) == 0:
            return np.zeros(0, dtype=bool)
        h, w = self.size
        boxes = shapely.box(
            origins[:, 0], origins[:, 1], origins[:, 0] + w, origins[:, 1] + h
        )
        # Allow for float rounding of grid-snapped corners at the region's edge.
        tolerance = 1e-6 * max(w, h)
        return shapely.covers(
            shapely.buffer(self.geometry, tolerance, join_style='mitre'), boxes
        )


class OSMRandomPatchSampler(_OSMSpatialSampler):
    """Random windows drawn where OSM exists, weighted by feature density.

    A share ``1 - empty_fraction`` of the windows meets at least ``min_features`` OSM
    features: each is placed by picking an OSM feature uniformly at random (so windows
    fall where features are dense) and a window position uniformly among those covering
    the feature's representative point, redrawn until the window lies inside the dataset
    (and ROI) and meets ``min_features`` features. The other windows (a share
    ``empty_fraction``) are drawn uniformly over the region among windows meeting fewer
    than ``min_features`` features (with ``min_features=1``: windows without OSM).
    Windows are snapped to the pixel grid (those against the region's upper or right
    edge end on it) and never leave the dataset's footprint.

    Works on an :class:`~torchgeo_geolink.datasets.OSMDataset` or on a dataset combining
    one (``image & osm``); picklable, so it can be used with DataLoader workers.
    :meth:`state_dict` and :meth:`load_state_dict` save and restore the random state,
    also in the middle of an epoch, so that a resumed run draws the windows of the
    uninterrupted run (:class:`~torchgeo_geolink.datamodules.GeoLinkDataModule` stores
    it in Lightning checkpoints).

    .. versionadded:: 0.1
    """

    strategy = 'random'

    #: Candidate windows drawn per round of rejection sampling, as a multiple of the
    #: windows still needed.
    oversample = 4

    #: Rounds of rejection sampling before giving up.
    max_rounds = 50

    def __init__(
        self,
        dataset: GeoDataset,
        *,
        size: tuple[float, float] | float,
        length: int | None = None,
        roi: Polygon | None = None,
        units: Units = Units.PIXELS,
        generator: int
        | BitGenerator
        | Generator
        | RandomState
        | SeedSequence
        | None = None,
        min_features: int = 1,
        empty_fraction: float = 0.0,
    ) -> None:
        """Initialize a new OSMRandomPatchSampler instance.

        Args:
            dataset: dataset to sample from, holding an
                :class:`~torchgeo_geolink.datasets.OSMDataset`.
            size: ``(height, width)`` of each patch, or one value for both.
            length: number of windows per epoch (defaults to about the number of
                non-overlapping patches).
            roi: region of interest (defaults to the dataset's footprint).
            units: whether *size* is in pixels or CRS units.
            generator: seed or numpy generator (the same seed gives the same windows).
            min_features: minimum number of OSM features of a window with OSM.
            empty_fraction: share of windows with fewer than *min_features* features
                (e.g. without OSM).

        Raises:
            ValueError: if *empty_fraction* is not in [0, 1], the ROI misses the
                dataset, or the patch does not fit in the region.
        """
        super().__init__(
            dataset, size=size, roi=roi, units=units, min_features=min_features
        )
        if not 0.0 <= empty_fraction <= 1.0:
            raise ValueError(f'empty_fraction must be in [0, 1], got {empty_fraction}')
        self.empty_fraction = empty_fraction
        self.generator = np.random.default_rng(generator)
        self._length = length or convolution_arithmetic(
            shapely.area(self.geometry), self.size[0] * self.size[1]
        )
        xmin, ymin, xmax, ymax = self.geometry.bounds
        self._origin_low = np.array([xmin, ymin])
        self._origin_high = np.maximum(
            [xmax - self.size[1], ymax - self.size[0]], self._origin_low
        )
        rows = self.osm.tree.query(self.geometry, predicate='intersects')
        #: Representative points of the OSM features in the region (window anchors).
        self.anchors = shapely.get_coordinates(
            shapely.point_on_surface(self.osm.geometries[rows])
        )
        # Generator state at the start of the epoch under way (None before the first),
        # and the windows of the next epoch to skip (set by load_state_dict to resume an
        # epoch).
        self._epoch_state: Mapping[str, Any] | None = None
        self._skip = 0

    def _draw(self, n: int, with_osm: bool) -> np.ndarray:
        """Draw window corners by rejection sampling.

        Args:
            n: number of windows.
            with_osm: windows meeting at least ``min_features`` features (else fewer).

        Returns:
            ``(n, 2)`` lower-left corners.

        Raises:
            RuntimeError: if not enough windows are found.
        """
        found: list[np.ndarray] = []
        needed = n
        h, w = self.size
        for _ in range(self.max_rounds):
            if needed <= 0:
                break
            m = max(needed * self.oversample, 16)
            if with_osm:
                if len(self.anchors) == 0:
                    break
                anchor = self.anchors[
                    self.generator.integers(len(self.anchors), size=m)
                ]
                origins = anchor - self.generator.uniform(size=(m, 2)) * [w, h]
            else:
                origins = self.generator.uniform(
                    self._origin_low, self._origin_high, size=(m, 2)
                )
            # On the grid, except against the upper and right edges when these are not
            # on it.
            origins = np.clip(self._snap(origins), self._origin_low, self._origin_high)
            origins = origins[self._inside(origins)]
            counts = _count_features(self.osm, origins, self.size)
            ok = counts >= self.min_features if with_osm else counts < self.min_features
            found.append(origins[ok][:needed])
            needed -= len(found[-1])
        if needed > 0:
            kind = f'>= {self.min_features}' if with_osm else f'< {self.min_features}'
            msg = f'{type(self).__name__}: found only {n - needed} of {n} windows with {kind} OSM features'
            raise RuntimeError(msg)
        return np.concatenate(found) if found else np.zeros((0, 2))

    def __iter__(self) -> Iterator[tuple[slice, slice]]:
        """Iterate over generated sample locations for each epoch.

        The first epoch after :meth:`load_state_dict` of a state saved in the middle of
        an epoch draws that epoch again and yields only the windows it had not yet used.

        Yields:
            ``[xmin:xmax, ymin:ymax]`` coordinates to index a dataset.
        """
        self._epoch_state = self.generator.bit_generator.state
        skip, self._skip = self._skip, 0
        n = len(self)
        empty = self.generator.random(n) < self.empty_fraction
        origins = np.zeros((n, 2))
        origins[~empty] = self._draw(int((~empty).sum()), with_osm=True)
        origins[empty] = self._draw(int(empty.sum()), with_osm=False)
        h, w = self.size
        for x, y in origins[skip:].tolist():
            yield slice(x, x + w), slice(y, y + h)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Return a state that :meth:`load_state_dict` resumes as this sampler would.

        Args:
            consumed: number of windows of the epoch under way that were used (the
                resumed sampler yields the rest of that epoch); None when no epoch is
                under way (the resumed sampler starts the next one).

        Returns:
            The numpy bit generator state (taken at the start of the epoch under way
            when *consumed* is given), *consumed* and the epoch length.

        Raises:
            ValueError: if *consumed* is not in ``[0, len(self)]``.
        """
        if consumed is not None and not 0 <= consumed <= len(self):
            raise ValueError(f'consumed must be in [0, {len(self)}], got {consumed}')
        if consumed is None or self._epoch_state is None:
            state = self.generator.bit_generator.state
        else:
            state = self._epoch_state
        return {'generator': state, 'consumed': consumed or 0, 'length': len(self)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict`.

        Args:
            state: the saved state.

        Raises:
            ValueError: if the state is malformed, from another bit generator or for
                another epoch length.
        """
        try:
            generator, consumed, length = (
                state['generator'],
                int(state['consumed']),
                int(state['length']),
            )
        except (KeyError, TypeError, ValueError) as error:
            msg = f'{type(self).__name__}: malformed sampler state ({error!r}); expected the keys generator, consumed, length'
            raise ValueError(msg) from error
        if length != len(self):
            msg = f'{type(self).__name__}: the state is for epochs of {length} windows, this sampler draws {len(self)}'
            raise ValueError(msg)
        if not 0 <= consumed <= length:
            raise ValueError(
                f'{type(self).__name__}: consumed must be in [0, {length}], got {consumed}'
            )
        try:
            self.generator.bit_generator.state = generator
        except (KeyError, TypeError, ValueError) as error:
            msg = f'{type(self).__name__}: cannot restore the generator state ({error})'
            raise ValueError(msg) from error
        self._epoch_state = None
        self._skip = consumed


class OSMGriddedPatchSampler(_OSMSpatialSampler):
    """Windows on a regular grid over the region, skipping sparse cells.

    Cells with fewer than ``min_features`` OSM features are skipped.

    The grid spans the region's bounding box from edge to edge, and every window lies
    inside the dataset's footprint: the first row and column start on the region's lower
    and left edges, the last ones end on its upper and right edges, and the others lie
    on the dataset's pixel grid, *stride* apart rounded down to whole pixels (a stride
    under a pixel is kept as given, off the grid). With a stride of whole pixels and a
    region starting on the grid, the grid has as many rows and columns as TorchGeo's
    :class:`~torchgeo.samplers.GriddedPatchSampler`, whose windows may leave the region;
    with ``min_features=0`` and a stride no larger than the window, the windows cover
    every point of a rectangular region. Cells leaving a non-rectangular footprint or
    ROI are skipped.

    .. versionadded:: 0.1
    """

    strategy = 'sequential'

    def __init__(
        self,
        dataset: GeoDataset,
        *,
        size: tuple[float, float] | float,
        stride: tuple[float, float] | float | None = None,
        roi: Polygon | None = None,
        units: Units = Units.PIXELS,
        min_features: int = 1,
    ) -> None:
        """Initialize a new OSMGriddedPatchSampler instance.

        Args:
            dataset: dataset to sample from, holding an
                :class:`~torchgeo_geolink.datasets.OSMDataset`.
            size: ``(height, width)`` of each patch, or one value for both.
            stride: distance between neighboring patches (defaults to *size*).
            roi: region of interest (defaults to the dataset's footprint).
            units: whether *size* and *stride* are in pixels or CRS units.
            min_features: minimum number of OSM features of a window.

        Raises:
            ValueError: if *min_features* is negative, *size* or *stride* is not
                positive, the ROI misses the dataset or the patch does not fit in the
                region.
        """
        super().__init__(
            dataset, size=size, roi=roi, units=units, min_features=min_features
        )
        self.stride = _pair(stride) if stride is not None else self.size
        if stride is not None and units == Units.PIXELS:
            self.stride = (
                self.stride[0] * dataset.res[1],
                self.stride[1] * dataset.res[0],
            )
        if not min(self.stride) > 0:
            raise ValueError(f'stride must be positive, got {stride}')
        self._origins = self._grid()
        self._length = len(self._origins)

    def _grid(self) -> np.ndarray:
        """Corners of the grid cells kept.

        Returns:
            ``(n, 2)`` lower-left corners, row by row from the bottom.
        """
        xmin, ymin, xmax, ymax = self.geometry.bounds
        h, w = self.size
        xs = _axis_starts(
            xmin, xmax, w, self.stride[1], self.bounds[0], float(self.res[0])
        )
        ys = _axis_starts(
            ymin, ymax, h, self.stride[0], self.bounds[1], float(self.res[1])
        )
        origins = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        origins = origins[self._inside(origins)]
        return origins[
            _count_features(self.osm, origins, self.size) >= self.min_features
        ]

    def __iter__(self) -> Iterator[tuple[slice, slice]]:
        """Iterate over generated sample locations.

        Yields:
            ``[xmin:xmax, ymin:ymax]`` coordinates to index a dataset.
        """
        h, w = self.size
        for x, y in self._origins.tolist():
            yield slice(x, x + w), slice(y, y + h)
