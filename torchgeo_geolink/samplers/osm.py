# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Window samplers that draw where OpenStreetMap features exist."""

import math
from collections.abc import Iterator

import numpy as np
import shapely
from numpy.random import BitGenerator, Generator, RandomState, SeedSequence
from shapely import Polygon
from torchgeo.datasets import GeoDataset
from torchgeo.samplers import SpatialSampler, Units
from torchgeo.samplers.utils import _to_tuple, convolution_arithmetic

from ..datasets.osm import OSMDataset

__all__ = ('OSMGriddedPatchSampler', 'OSMRandomPatchSampler')


def find_osm_dataset(dataset: GeoDataset) -> OSMDataset:
    """Find the OSM dataset of a (possibly combined) dataset.

    Args:
        dataset: an :class:`~torchgeo_geolink.datasets.OSMDataset`, or an intersection or union of datasets
            holding one (e.g. ``image & osm``).

    Returns:
        The first OSM dataset found, depth first.

    Raises:
        TypeError: if the dataset holds no OSM dataset.
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
    """Shared set-up of the OSM-aware samplers: patch size in CRS units and the OSM dataset."""

    def __init__(
        self,
        dataset: GeoDataset,
        *,
        size: tuple[float, float] | float,
        roi: Polygon | None,
        units: Units,
        min_features: int,
    ) -> None:
        """Initialise the sampler.

        Args:
            dataset: dataset to sample from, holding an :class:`~torchgeo_geolink.datasets.OSMDataset`.
            size: ``(height, width)`` of each patch, or one value for both.
            roi: region of interest (defaults to the dataset's footprint).
            units: whether *size* is in pixels or CRS units.
            min_features: minimum number of OSM features a window with OSM must meet.

        Raises:
            ValueError: if *min_features* is negative or *size* is not positive.
        """
        super().__init__(dataset, roi=roi)
        if min_features < 0:
            raise ValueError(f'min_features must be >= 0, got {min_features}')
        self.osm = find_osm_dataset(dataset)
        self.min_features = min_features
        self.size = _to_tuple(size)
        if units == Units.PIXELS:
            self.size = (self.size[0] * dataset.res[1], self.size[1] * dataset.res[0])
        if min(self.size) <= 0:
            raise ValueError(f'size must be positive, got {size}')

    def _snap(self, origins: np.ndarray) -> np.ndarray:
        """Snap window corners to the dataset's pixel grid.

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
        """Whether each window lies inside the sampling region (dataset footprint and ROI).

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

    A share ``1 - empty_fraction`` of the windows meets at least ``min_features`` OSM features: each is placed
    by picking an OSM feature uniformly at random (so windows fall where features are dense) and a window
    position uniformly among those covering the feature's representative point, redrawn until the window lies
    inside the dataset (and ROI) and meets ``min_features`` features. The other windows (a share
    ``empty_fraction``) are drawn uniformly over the region among windows meeting fewer than ``min_features``
    features (with ``min_features=1``: windows without OSM). Windows are snapped to the pixel grid and never
    leave the dataset's footprint.

    Works on an :class:`~torchgeo_geolink.datasets.OSMDataset` or on a dataset combining one (``image & osm``);
    picklable, so it can be used with DataLoader workers.
    """

    strategy = 'random'

    #: Candidate windows drawn per round of rejection sampling, as a multiple of the windows still needed.
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
            dataset: dataset to sample from, holding an :class:`~torchgeo_geolink.datasets.OSMDataset`.
            size: ``(height, width)`` of each patch, or one value for both.
            length: number of windows per epoch (defaults to about the number of non-overlapping patches).
            roi: region of interest (defaults to the dataset's footprint).
            units: whether *size* is in pixels or CRS units.
            generator: seed or numpy generator (the same seed gives the same windows).
            min_features: minimum number of OSM features of a window with OSM.
            empty_fraction: share of windows with fewer than *min_features* features (e.g. without OSM).

        Raises:
            ValueError: if *empty_fraction* is not in [0, 1], or no window fits in the region.
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
        self._origin_high = np.array([xmax - self.size[1], ymax - self.size[0]])
        if (self._origin_high < self._origin_low).any():
            msg = f'patch size {self.size} (CRS units) does not fit in the region {self.geometry.bounds}'
            raise ValueError(msg)
        rows = self.osm.tree.query(self.geometry, predicate='intersects')
        #: Representative points of the OSM features in the region (window anchors).
        self.anchors = shapely.get_coordinates(
            shapely.point_on_surface(self.osm.geometries[rows])
        )

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
                origins = np.clip(origins, self._origin_low, self._origin_high)
            else:
                origins = self.generator.uniform(
                    self._origin_low, self._origin_high, size=(m, 2)
                )
            origins = self._snap(origins)
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

        Yields:
            ``[xmin:xmax, ymin:ymax]`` coordinates to index a dataset.
        """
        n = len(self)
        empty = self.generator.random(n) < self.empty_fraction
        origins = np.zeros((n, 2))
        origins[~empty] = self._draw(int((~empty).sum()), with_osm=True)
        origins[empty] = self._draw(int(empty.sum()), with_osm=False)
        h, w = self.size
        for x, y in origins.tolist():
            yield slice(x, x + w), slice(y, y + h)


class OSMGriddedPatchSampler(_OSMSpatialSampler):
    """Windows on a regular grid over the region, skipping cells with fewer than ``min_features`` OSM features.

    The grid starts at the region's lower-left corner and its last row and column are shifted back to end on
    the region's edge, so every window lies inside the dataset's footprint (cells leaving a non-rectangular
    footprint or ROI are skipped). Windows are snapped to the pixel grid.
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
            dataset: dataset to sample from, holding an :class:`~torchgeo_geolink.datasets.OSMDataset`.
            size: ``(height, width)`` of each patch, or one value for both.
            stride: distance between neighbouring patches (defaults to *size*).
            roi: region of interest (defaults to the dataset's footprint).
            units: whether *size* and *stride* are in pixels or CRS units.
            min_features: minimum number of OSM features of a window.
        """
        super().__init__(
            dataset, size=size, roi=roi, units=units, min_features=min_features
        )
        self.stride = _to_tuple(stride) if stride is not None else self.size
        if stride is not None and units == Units.PIXELS:
            self.stride = (
                self.stride[0] * dataset.res[1],
                self.stride[1] * dataset.res[0],
            )
        self._origins = self._grid()
        self._length = len(self._origins)

    def _grid(self) -> np.ndarray:
        """Corners of the grid cells kept.

        Returns:
            ``(n, 2)`` lower-left corners, row by row from the bottom.
        """
        xmin, ymin, xmax, ymax = self.geometry.bounds
        h, w = self.size
        if xmax - xmin < w or ymax - ymin < h:
            return np.zeros((0, 2))

        def starts(low: float, high: float, size: float, stride: float) -> np.ndarray:
            """Cell starts along one axis, the last one ending on the edge."""
            n = math.floor((high - low - size) / stride + 1e-9) + 1
            out = low + stride * np.arange(n)
            if out[-1] + size < high - 1e-9 * size:
                out = np.append(out, high - size)
            return out

        xs = starts(xmin, xmax, w, self.stride[1])
        ys = starts(ymin, ymax, h, self.stride[0])
        origins = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        origins = self._snap(origins)
        # Snapping may push the last cell past the edge by less than a pixel: pull it back onto the grid.
        res = np.asarray(self.res, dtype=np.float64)
        over = origins + np.array([w, h]) > np.array([xmax, ymax])
        origins = np.where(over, origins - res, origins)
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
