# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import pickle
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset
from torchgeo.samplers import Units

from tests.conftest import CITY_CRS, CITY_ORIGIN, city_frame, write_geotiff
from torchgeo_geolink.datasets import OSMDataset, collate_geolink
from torchgeo_geolink.samplers import (
    OSMGriddedPatchSampler,
    OSMRandomPatchSampler,
    find_osm_dataset,
)

X0, Y0 = CITY_ORIGIN


class Raster(RasterDataset):
    filename_glob = '*.tif'


@pytest.fixture
def paired(tmp_path: Path) -> tuple[RasterDataset, OSMDataset]:
    # A 600 x 600 m raster; OSM: a 200 m city in its lower-left corner and a lone bench
    # in the far corner (so that the OSM footprint, hence `image & osm`, spans the whole
    # raster).
    write_geotiff(
        tmp_path / 'img' / 'image.tif', (X0, Y0, X0 + 600, Y0 + 600), CITY_CRS, bands=1
    )
    bench = gpd.GeoDataFrame(
        {'amenity': ['bench']},
        geometry=[shapely.Point(X0 + 599, Y0 + 599)],
        crs=CITY_CRS,
    )
    frame = gpd.GeoDataFrame(
        pd.concat([city_frame(), bench], ignore_index=True), crs=CITY_CRS
    )
    frame.to_crs(4326).to_file(tmp_path / 'city.geojson')
    return Raster(tmp_path / 'img'), OSMDataset(tmp_path / 'city.geojson')


def windows(
    sampler: OSMRandomPatchSampler | OSMGriddedPatchSampler,
) -> list[tuple[float, float, float, float]]:
    return [(x.start, y.start, x.stop, y.stop) for x, y in sampler]


def counts(
    osm: OSMDataset, boxes: list[tuple[float, float, float, float]]
) -> np.ndarray:
    return np.array(
        [len(osm.tree.query(shapely.box(*b), predicate='intersects')) for b in boxes]
    )


def test_random_seeded_inside_and_dense(
    paired: tuple[RasterDataset, OSMDataset],
) -> None:
    image, osm = paired
    ds = image & osm
    assert find_osm_dataset(ds) is osm
    sampler = OSMRandomPatchSampler(
        ds, size=50, length=200, generator=1, min_features=3
    )
    first = windows(sampler)
    assert first == windows(
        OSMRandomPatchSampler(ds, size=50, length=200, generator=1, min_features=3)
    )
    assert first != windows(sampler)  # a new epoch draws new windows
    assert len(first) == 200
    boxes = np.array(first)
    assert np.allclose(boxes[:, 2] - boxes[:, 0], 50)
    # Never outside the raster, snapped to its 1 m grid.
    assert (boxes[:, :2] >= [X0, Y0]).all()
    assert (boxes[:, 2:] <= [X0 + 600, Y0 + 600]).all()
    np.testing.assert_allclose(boxes[:, :2] - np.round(boxes[:, :2]), 0, atol=1e-6)
    assert (counts(osm, first) >= 3).all()


@pytest.mark.parametrize('empty_fraction', [0.0, 0.3])
def test_random_share_of_empty_windows(
    paired: tuple[RasterDataset, OSMDataset], empty_fraction: float
) -> None:
    image, osm = paired
    n = 400
    sampler = OSMRandomPatchSampler(
        image & osm,
        size=40,
        length=n,
        generator=0,
        min_features=1,
        empty_fraction=empty_fraction,
    )
    meeting = (counts(osm, windows(sampler)) >= 1).mean()
    tolerance = 3 * np.sqrt(empty_fraction * (1 - empty_fraction) / n)
    assert abs(meeting - (1 - empty_fraction)) <= tolerance + 1e-9


def test_random_errors(paired: tuple[RasterDataset, OSMDataset]) -> None:
    image, osm = paired
    with pytest.raises(ValueError, match='empty_fraction'):
        OSMRandomPatchSampler(osm, size=10, empty_fraction=1.5)
    with pytest.raises(ValueError, match='does not fit'):
        OSMRandomPatchSampler(image & osm, size=1000)
    with pytest.raises(TypeError, match='holds no OSMDataset'):
        OSMRandomPatchSampler(image, size=10)
    with pytest.raises(RuntimeError, match='found only'):
        list(
            OSMRandomPatchSampler(
                osm, size=50, length=5, min_features=10_000, generator=0
            )
        )


def test_gridded_skips_cells_without_osm(
    paired: tuple[RasterDataset, OSMDataset],
) -> None:
    image, osm = paired
    ds = image & osm
    sampler = OSMGriddedPatchSampler(ds, size=100, stride=100, min_features=1)
    grid = windows(sampler)
    assert len(sampler) == len(grid)
    # The 200 m city covers a 2 x 2 block of 100 m cells (touching neighbors hold
    # boundary streets), the bench one.
    assert 5 <= len(grid) <= 10
    assert (counts(osm, grid) >= 1).all()
    everything = windows(OSMGriddedPatchSampler(ds, size=100, min_features=0))
    assert len(everything) == 36
    boxes = np.array(everything)
    assert (boxes[:, :2] >= [X0, Y0]).all()
    assert (boxes[:, 2:] <= [X0 + 600, Y0 + 600]).all()
    # A stride that does not divide the extent: the last cells end on the edge, never
    # beyond it.
    odd = np.array(
        windows(OSMGriddedPatchSampler(ds, size=70, stride=70, min_features=0))
    )
    assert odd[:, 2].max() >= X0 + 598  # the footprint ends at the bench (x = 599)
    assert (odd[:, 2:] <= [X0 + 600 + 1e-6, Y0 + 600 + 1e-6]).all()


def test_units_roi_pickle_and_dataloader(
    paired: tuple[RasterDataset, OSMDataset],
) -> None:
    image, osm = paired
    ds = image & osm
    roi = shapely.box(X0, Y0, X0 + 150, Y0 + 150)
    sampler = OSMRandomPatchSampler(
        ds, size=32.0, units=Units.CRS, length=8, roi=roi, generator=3
    )
    boxes = np.array(windows(sampler))
    assert (boxes[:, 2:] <= [X0 + 150, Y0 + 150]).all()
    clone = pickle.loads(pickle.dumps(sampler))
    assert len(list(clone)) == 8
    loader = DataLoader(
        ds, sampler=sampler, batch_size=4, collate_fn=collate_geolink, num_workers=2
    )
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]['image'].shape == (4, 1, 32, 32)
    assert batches[0]['graph'].num_graphs == 4
    assert gpd.GeoSeries([roi]).area[0] > 0


def test_random_state_resumes_mid_epoch_and_between_epochs(
    paired: tuple[RasterDataset, OSMDataset],
) -> None:
    image, osm = paired
    ds = image & osm

    def make() -> OSMRandomPatchSampler:
        return OSMRandomPatchSampler(
            ds, size=40, length=12, generator=5, empty_fraction=0.25
        )

    reference = make()
    epochs = [windows(reference) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]

    # Interrupted after 5 windows of the second epoch.
    run = make()
    windows(run)
    iterator = iter(run)
    for _ in range(5):
        next(iterator)
    state = run.state_dict(consumed=5)
    resumed = make()
    resumed.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert windows(resumed) == epochs[1][5:]
    assert windows(resumed) == epochs[2]

    # Saved between epochs: the next epoch is the uninterrupted run's.
    run = make()
    windows(run)
    between = make()
    between.load_state_dict(run.state_dict())
    assert windows(between) == epochs[1]


def test_random_state_errors(paired: tuple[RasterDataset, OSMDataset]) -> None:
    image, osm = paired
    sampler = OSMRandomPatchSampler(image & osm, size=40, length=12, generator=0)
    state = sampler.state_dict()
    longer = OSMRandomPatchSampler(image & osm, size=40, length=13, generator=0)
    with pytest.raises(ValueError, match='epochs of 12 windows, this sampler draws 13'):
        longer.load_state_dict(state)
    with pytest.raises(ValueError, match='malformed sampler state'):
        sampler.load_state_dict({'generator': state['generator']})
    with pytest.raises(ValueError, match=r'consumed must be in \[0, 12\]'):
        sampler.load_state_dict({**state, 'consumed': 13})
    with pytest.raises(ValueError, match=r'consumed must be in \[0, 12\]'):
        sampler.state_dict(consumed=-1)
    with pytest.raises(ValueError, match='cannot restore the generator state'):
        sampler.load_state_dict({**state, 'generator': {'bit_generator': 'MT19937'}})


def test_gridded_errors(paired: tuple[RasterDataset, OSMDataset]) -> None:
    image, osm = paired
    with pytest.raises(
        ValueError, match=r'OSMGriddedPatchSampler: patch size.*does not fit'
    ):
        OSMGriddedPatchSampler(image & osm, size=700)
    with pytest.raises(ValueError, match='stride must be positive'):
        OSMGriddedPatchSampler(image & osm, size=10, stride=0)
    far = shapely.box(X0 + 1_000, Y0, X0 + 1_100, Y0 + 100)
    with pytest.raises(
        ValueError, match=r'region of interest.*does not meet the dataset'
    ):
        OSMGriddedPatchSampler(image & osm, size=10, roi=far)
