# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""TorchGeo's sampler contract, for our samplers.

It covers size, stride, units, ROI, small areas, pickling and workers.

The cases follow TorchGeo's own tests of ``RandomPatchSampler``/``GriddedPatchSampler``
(and of the older ``RandomGeoSampler``/``GridGeoSampler``), run on real OSM datasets
read from GeoPackages whose footprints are the boxes of those tests. Where our samplers
promise more (every window inside the region, gridded windows reaching every edge) the
tests check that; where they differ on purpose, the test says so.
"""

import math
import pickle
from collections.abc import Callable
from itertools import product
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS
from torch.utils.data import DataLoader
from torchgeo.samplers import Units
from torchgeo.samplers.utils import convolution_arithmetic

from torchgeo_geolink.datasets import OSMDataset, collate_geolink
from torchgeo_geolink.samplers import OSMGriddedPatchSampler, OSMRandomPatchSampler

CRS_ALBERS = CRS.from_epsg(3005)
Box = tuple[float, float, float, float]
MakeOSM = Callable[..., OSMDataset]


def write_footprint(path: Path, box: Box, step: float) -> None:
    """A GeoPackage of benches on a lattice over *box* whose footprint is *box*."""
    xmin, ymin, xmax, ymax = box
    xs = np.unique(np.append(np.arange(xmin, xmax, step), xmax))
    ys = np.unique(np.append(np.arange(ymin, ymax, step), ymax))
    x, y = np.meshgrid(xs, ys)
    points = shapely.points(x.ravel(), y.ravel())
    frame = gpd.GeoDataFrame(
        {'amenity': ['bench'] * len(points)}, geometry=points, crs=CRS_ALBERS
    )
    frame.to_file(path, driver='GPKG')


@pytest.fixture(scope='module')
def make_osm(tmp_path_factory: pytest.TempPathFactory) -> MakeOSM:
    """Build an OSM dataset with one file per footprint box."""
    root = tmp_path_factory.mktemp('footprints')
    count = iter(range(1_000_000))

    def make(
        boxes: list[Box], res: float = 10.0, step: float | None = None
    ) -> OSMDataset:
        folder = root / str(next(count))
        folder.mkdir()
        paths = []
        for i, box in enumerate(boxes):
            side = max(box[2] - box[0], box[3] - box[1])
            path = folder / f'{i}.gpkg'
            write_footprint(path, box, step or max(side / 20, 1e-3))
            paths.append(path)
        return OSMDataset(paths, res=res)

    return make


@pytest.fixture(scope='module')
def square(make_osm: MakeOSM) -> OSMDataset:
    """TorchGeo's test dataset: two files of footprint ``box(0, 0, 100, 100)``.

    Their resolution is 10.
    """
    return make_osm([(0, 0, 100, 100), (0, 0, 100, 100)])


def boxes_of(sampler: OSMRandomPatchSampler | OSMGriddedPatchSampler) -> np.ndarray:
    return np.array([(x.start, y.start, x.stop, y.stop) for x, y in sampler])


def assert_inside(boxes: np.ndarray, region: shapely.Geometry) -> None:
    grown = shapely.buffer(region, 1e-6, join_style='mitre')
    assert shapely.covers(grown, shapely.box(*boxes.T)).all()


def assert_sizes(
    boxes: np.ndarray, sampler: OSMRandomPatchSampler | OSMGriddedPatchSampler
) -> None:
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], sampler.size[1])
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], sampler.size[0])


def assert_covers(boxes: np.ndarray, region: shapely.Geometry) -> None:
    """The windows leave no part of *region* out (up to float rounding)."""
    left = shapely.difference(region, shapely.union_all(shapely.box(*boxes.T)))
    assert shapely.area(left) < 1e-6 * shapely.area(region)


RANDOM_SIZES = list(
    product([3, 4.5, (2, 2), (3, 4.5), (4.5, 3)], [Units.PIXELS, Units.CRS])
)
GRID_SIZES = list(
    product(
        [
            (8, 1),
            (6, 2),
            (4, 3),
            (4, 4),
            (2, 4),
            (2.5, 3),
            ((8, 6), (1, 2)),
            ((6, 4), (2, 3)),
            (8, None),
        ],
        [Units.PIXELS, Units.CRS],
    )
)


class TestRandomContract:
    @pytest.mark.parametrize(('size', 'units'), RANDOM_SIZES)
    def test_iter_and_len(
        self, square: OSMDataset, size: float | tuple[float, float], units: Units
    ) -> None:
        sampler = OSMRandomPatchSampler(
            square, size=size, length=10, units=units, generator=0
        )
        boxes = boxes_of(sampler)
        assert len(sampler) == len(boxes) == 10
        scale = square.res[0] if units == Units.PIXELS else 1
        expected = tuple(np.broadcast_to(np.asarray(size, dtype=float), 2) * scale)
        assert sampler.size == pytest.approx(expected)
        assert_sizes(boxes, sampler)
        assert_inside(boxes, sampler.geometry)

    def test_roi(self, square: OSMDataset) -> None:
        roi = shapely.box(0, 0, 50, 50)
        sampler = OSMRandomPatchSampler(square, size=2, length=10, roi=roi, generator=0)
        assert_inside(boxes_of(sampler), roi)

    def test_roi_outside_the_dataset(self, square: OSMDataset) -> None:
        # TorchGeo yields no window at all; ours says why it has none.
        with pytest.raises(ValueError, match='does not meet the dataset'):
            OSMRandomPatchSampler(square, size=2, roi=shapely.box(0, 200, 50, 250))

    def test_small_area(self, make_osm: MakeOSM) -> None:
        # A 1 m footprint next to a 10 m one, at 1 m: 2 px windows fit only in the large
        # one.
        ds = make_osm([(0, 0, 10, 10), (20, 20, 21, 21)], res=1.0, step=0.5)
        sampler = OSMRandomPatchSampler(ds, size=2, length=10, generator=0)
        boxes = boxes_of(sampler)
        assert len(boxes) == 10
        assert_inside(boxes, shapely.box(0, 0, 10, 10))

    def test_zero_size(self, square: OSMDataset) -> None:
        # TorchGeo samples points with size 0; our windows rasterize OSM, so they need
        # an area.
        with pytest.raises(ValueError, match='size must be positive'):
            OSMRandomPatchSampler(square, size=0, length=10)

    def test_window_the_size_of_the_footprint(self, make_osm: MakeOSM) -> None:
        # A zero-area footprint next to a 10 x 10 one: every 1 px window (at res 10) is
        # the whole footprint.
        ds = make_osm([(0, 0, 0, 0), (0, 0, 10, 10)], step=1.0)
        sampler = OSMRandomPatchSampler(ds, size=1, length=10, generator=0)
        for x, y in sampler:
            assert (x, y) == (slice(0.0, 10.0), slice(0.0, 10.0))

    def test_random_seed(self, square: OSMDataset) -> None:
        first = OSMRandomPatchSampler(square, size=2, length=10, generator=0)
        second = OSMRandomPatchSampler(
            square, size=2, length=10, generator=np.random.default_rng(0)
        )
        other = OSMRandomPatchSampler(square, size=2, length=10, generator=1)
        np.testing.assert_array_equal(boxes_of(first), boxes_of(second))
        assert not np.array_equal(boxes_of(first), boxes_of(other))

    def test_reaches_edges_off_the_grid(self, make_osm: MakeOSM) -> None:
        # 105 m at 10 m: a 10 px window fits at x = 0 (on the grid) or x = 5 (against
        # the right edge).
        ds = make_osm([(0, 0, 105, 105)])
        boxes = boxes_of(OSMRandomPatchSampler(ds, size=10, length=40, generator=0))
        assert set(boxes[:, 0]) == {0.0, 5.0}
        assert set(boxes[:, 3]) == {100.0, 105.0}
        assert_inside(boxes, shapely.box(0, 0, 105, 105))

    def test_pickle(self, square: OSMDataset) -> None:
        sampler = OSMRandomPatchSampler(square, size=2, length=10, generator=0)
        boxes_of(sampler)
        clone = pickle.loads(pickle.dumps(sampler))
        # The copy carries the random state: both draw the same next epoch.
        np.testing.assert_array_equal(boxes_of(clone), boxes_of(sampler))

    @pytest.mark.parametrize('num_workers', [0, 2])
    def test_dataloader(self, square: OSMDataset, num_workers: int) -> None:
        sampler = OSMRandomPatchSampler(square, size=2, length=6, generator=0)
        loader = DataLoader(
            square,
            sampler=sampler,
            batch_size=3,
            num_workers=num_workers,
            collate_fn=collate_geolink,
        )
        batches = list(loader)
        assert len(batches) == 2
        assert all(batch['graph'].num_graphs == 3 for batch in batches)
        assert all(batch['graph']['point'].num_nodes > 0 for batch in batches)


class TestGriddedContract:
    @pytest.mark.parametrize(('size_stride', 'units'), GRID_SIZES)
    def test_iter_len_and_cover(
        self,
        square: OSMDataset,
        size_stride: tuple[float | tuple[float, float], float | tuple[float, float]],
        units: Units,
    ) -> None:
        size, stride = size_stride
        sampler = OSMGriddedPatchSampler(
            square, size=size, stride=stride, units=units, min_features=0
        )
        boxes = boxes_of(sampler)
        assert len(sampler) == len(boxes) > 0
        assert len(np.unique(boxes, axis=0)) == len(boxes)
        assert_sizes(boxes, sampler)
        assert_inside(boxes, sampler.geometry)
        if all(np.less_equal(sampler.stride, sampler.size)):
            assert_covers(boxes, sampler.geometry)
        xmin, ymin, xmax, ymax = sampler.geometry.bounds
        rows = convolution_arithmetic(ymax - ymin, sampler.size[0], sampler.stride[0])
        cols = convolution_arithmetic(xmax - xmin, sampler.size[1], sampler.stride[1])
        pixels = np.divide(sampler.stride, square.res)
        if all((pixels < 1) | np.isclose(pixels, np.round(pixels))):
            # TorchGeo's count of rows and columns.
            assert len(sampler) == rows * cols
        else:
            # Strides are rounded down to whole pixels: at least as many windows.
            assert len(sampler) >= rows * cols

    def test_roi(self, square: OSMDataset) -> None:
        roi = shapely.box(0, 0, 50, 50)
        boxes = boxes_of(
            OSMGriddedPatchSampler(square, size=2, stride=1, roi=roi, min_features=0)
        )
        assert_inside(boxes, roi)
        assert_covers(boxes, roi)

    def test_roi_outside_the_dataset(self, square: OSMDataset) -> None:
        # TorchGeo yields no window at all; ours says why it has none.
        roi = shapely.box(0, 200, 50, 250)
        with pytest.raises(ValueError, match='does not meet the dataset'):
            OSMGriddedPatchSampler(square, size=2, stride=1, roi=roi)

    def test_small_area(self, make_osm: MakeOSM) -> None:
        # TorchGeo yields no window (or one leaving the region); ours says that the
        # window does not fit.
        ds = make_osm([(0, 0, 1, 1)])
        with pytest.raises(
            ValueError, match=r'patch size \(20\.0, 20\.0\).*does not fit'
        ):
            OSMGriddedPatchSampler(ds, size=2, stride=10, min_features=0)

    def test_tiles_side_by_side(self, make_osm: MakeOSM) -> None:
        ds = make_osm([(0, 0, 10, 10), (0, 10, 10, 20)], step=1.0)
        windows = list(OSMGriddedPatchSampler(ds, size=1, min_features=0))
        assert windows == [
            (slice(0.0, 10.0), slice(0.0, 10.0)),
            (slice(0.0, 10.0), slice(10.0, 20.0)),
        ]

    def test_integer_multiple(self, make_osm: MakeOSM) -> None:
        ds = make_osm([(0, 0, 10, 10)], step=1.0)
        sampler = OSMGriddedPatchSampler(
            ds, size=10, stride=10, units=Units.CRS, min_features=0
        )
        assert list(sampler) == [(slice(0.0, 10.0), slice(0.0, 10.0))]

    def test_float_multiple(self, make_osm: MakeOSM) -> None:
        # TorchGeo's grids leave the region here (0-5 and 5-10, or centered -2-3 and
        # 3-8); ours ends on its edge.
        ds = make_osm([(0, 0, 6, 5)], step=1.0)
        sampler = OSMGriddedPatchSampler(
            ds, size=5, stride=5, units=Units.CRS, min_features=0
        )
        assert list(sampler) == [
            (slice(0.0, 5.0), slice(0.0, 5.0)),
            (slice(1.0, 6.0), slice(0.0, 5.0)),
        ]

    @pytest.mark.parametrize('res', [1.0, 3.0, 10.0])
    def test_region_not_a_multiple_of_the_resolution(
        self, make_osm: MakeOSM, res: float
    ) -> None:
        # An OSM footprint ends anywhere: 37 px windows 33 px apart must still reach the
        # upper and right edges without leaving the footprint, and the inner rows and
        # columns stay on the pixel grid.
        box = (3.3, 7.1, 1_263.8, 1_105.2)
        ds = make_osm([box], res=res, step=40.0)
        sampler = OSMGriddedPatchSampler(ds, size=37, stride=33, min_features=0)
        boxes = boxes_of(sampler)
        region = shapely.box(*box)
        assert_inside(boxes, region)
        assert_covers(boxes, region)
        assert boxes[:, :2].min(axis=0) == pytest.approx(box[:2])
        assert boxes[:, 2:].max(axis=0) == pytest.approx(box[2:])
        for axis in (0, 1):
            starts = np.unique(boxes[:, axis])
            inner = (starts[1:-1] - box[axis]) / res
            np.testing.assert_allclose(inner, np.round(inner), atol=1e-6)
            # 33 px apart, up to the pixel the snapping moves a start
            assert np.all(np.abs(np.diff(starts[:-1]) - 33 * res) <= res + 1e-6)

    def test_roi_off_the_grid(self, square: OSMDataset) -> None:
        # The ROI's edges are off the 10 m grid: the first and last windows sit on them,
        # the others on the grid.
        roi = shapely.box(12.5, 7.5, 83.3, 91.1)
        sampler = OSMGriddedPatchSampler(
            square, size=2, stride=1.5, roi=roi, min_features=0
        )
        boxes = boxes_of(sampler)
        assert_inside(boxes, roi)
        assert_covers(boxes, roi)
        assert sorted(set(boxes[:, 0])) == [12.5, 20.0, 30.0, 40.0, 50.0, 60.0, 63.3]
        assert sorted(set(boxes[:, 1])) == pytest.approx(
            [7.5, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 71.1]
        )

    def test_pickle(self, square: OSMDataset) -> None:
        sampler = OSMGriddedPatchSampler(square, size=2, stride=1)
        clone = pickle.loads(pickle.dumps(sampler))
        assert len(clone) == len(sampler) > 0
        assert list(clone) == list(sampler)

    @pytest.mark.parametrize('num_workers', [0, 2])
    def test_dataloader(self, square: OSMDataset, num_workers: int) -> None:
        sampler = OSMGriddedPatchSampler(square, size=5, min_features=1)
        loader = DataLoader(
            square,
            sampler=sampler,
            batch_size=2,
            num_workers=num_workers,
            collate_fn=collate_geolink,
        )
        graphs = sum(batch['graph'].num_graphs for batch in loader)
        assert graphs == len(sampler) == 4
        assert math.isclose(sampler.size[0], 50.0)
