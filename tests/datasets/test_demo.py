# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tests of the embedded demo rendered from the shipped Helsinki OSM extract."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio.transform import rowcol

from torchgeo_geolink.datasets import (
    DEMO_CLASSES,
    DEMO_CRS,
    DEMO_OSM_PATH,
    DEMO_REGIONS,
    DemoImage,
    DemoLabels,
    DemoPaths,
    OSMDataset,
    build_demo,
    landuse_class,
    render_demo,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope='module')
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return build_demo(tmp_path_factory.mktemp('demo'))


@pytest.fixture(scope='module')
def osm() -> OSMDataset:
    return OSMDataset(DEMO_OSM_PATH, crs=DEMO_CRS, graph_mode='exact')


def test_demo_is_georeferenced(demo: DemoPaths, osm: OSMDataset) -> None:
    assert demo.osm == DEMO_OSM_PATH
    with rasterio.open(demo.image) as img, rasterio.open(demo.labels) as lab:
        assert CRS.from_user_input(img.crs) == CRS.from_epsg(3067)
        assert img.count == 3 and img.dtypes == ('uint8',) * 3
        assert lab.count == 1 and lab.dtypes == ('uint8',)
        assert img.transform == lab.transform and img.shape == lab.shape
        assert img.res == (1.0, 1.0)
        assert 'not a real image' in img.tags()['TIFFTAG_IMAGEDESCRIPTION']
        # the raster covers the OSM extract (snapped inwards to whole pixels)
        xmin, ymin, xmax, ymax = osm.index.total_bounds
        assert (
            xmin <= img.bounds.left < xmin + 1 and xmax - 1 < img.bounds.right <= xmax
        )
        assert (
            ymin <= img.bounds.bottom < ymin + 1 and ymax - 1 < img.bounds.top <= ymax
        )
    image = DemoImage(demo.image)
    labels = DemoLabels(demo.labels)
    assert image.crs == labels.crs == DEMO_CRS
    x0, y0 = image.bounds[0].start, image.bounds[1].start
    sample = (image & labels)[x0 + 200 : x0 + 264, y0 + 200 : y0 + 264]
    assert sample['image'].shape == (3, 64, 64)
    assert sample['mask'].shape == (64, 64)


def test_demo_is_deterministic_and_idempotent(demo: DemoPaths, tmp_path: Path) -> None:
    again = build_demo(tmp_path)
    assert sha256(again.image) == sha256(demo.image)
    assert sha256(again.labels) == sha256(demo.labels)
    stamp = json.loads((tmp_path / 'helsinki_demo.json').read_text())
    assert stamp['version'] >= 1 and stamp['osm_sha256'] == sha256(DEMO_OSM_PATH)
    # a second call finds the stamp and leaves the files alone
    mtime = again.image.stat().st_mtime_ns
    build_demo(tmp_path)
    assert again.image.stat().st_mtime_ns == mtime
    # a different recipe (seed) rebuilds and changes the texture, not the labels
    build_demo(tmp_path, seed=1)
    assert sha256(again.image) != sha256(demo.image)
    assert sha256(again.labels) == sha256(demo.labels)


def test_second_region_and_unknown_region(tmp_path: Path) -> None:
    kouvola = build_demo(tmp_path, region='kouvola')
    assert kouvola.osm == DEMO_REGIONS['kouvola'] != DEMO_OSM_PATH
    assert kouvola.image.name == 'kouvola_demo_image.tif'
    stamp = json.loads((tmp_path / 'kouvola_demo.json').read_text())
    assert stamp['osm_sha256'] == sha256(DEMO_REGIONS['kouvola'])
    osm = OSMDataset(kouvola.osm, crs=DEMO_CRS, graph_mode='exact')
    with rasterio.open(kouvola.image) as img:
        xmin, ymin, xmax, ymax = osm.index.total_bounds
        assert xmin <= img.bounds.left < xmin + 1 and ymax - 1 < img.bounds.top <= ymax
        assert (
            xmax - 1 < img.bounds.right <= xmax and ymin <= img.bounds.bottom < ymin + 1
        )
    # both regions' rasters make one dataset with two disjoint parts
    helsinki = build_demo(tmp_path)
    image = DemoImage([str(helsinki.image), str(kouvola.image)])
    parts = shapely.get_parts(image.index.geometry.union_all())
    assert len(parts) == 2
    with pytest.raises(ValueError, match="unknown region 'tampere'"):
        build_demo(tmp_path, region='tampere')


def test_labels_follow_osm_land_use(demo: DemoPaths, osm: OSMDataset) -> None:
    with rasterio.open(demo.labels) as src:
        labels = src.read(1)
        transform = src.transform
    assert set(np.unique(labels).tolist()) <= set(range(len(DEMO_CLASSES)))
    rows = [
        r
        for r in range(len(osm.geometries))
        if osm.kinds[r] == 0
        and landuse_class(osm.tags[r]) > 0
        and osm.geometries[r].area > 400
    ]
    assert len(rows) > 50
    points = shapely.point_on_surface(osm.geometries[rows])
    lines, cols = (
        np.asarray(a)
        for a in rowcol(transform, shapely.get_x(points), shapely.get_y(points))
    )
    inside = (
        (lines >= 0)
        & (lines < labels.shape[0])
        & (cols >= 0)
        & (cols < labels.shape[1])
    )
    got = labels[lines[inside], cols[inside]]
    expected = np.array([landuse_class(osm.tags[r]) for r in rows])[inside]
    # smaller land-use areas are painted over larger ones, so a few points show the
    # nested area's class
    assert (got == expected).mean() > 0.9
    # each present class covers some area
    counts = np.bincount(labels.ravel(), minlength=len(DEMO_CLASSES))
    assert (counts > 0).sum() >= 6


def test_rendered_image_shows_land_use(demo: DemoPaths) -> None:
    with rasterio.open(demo.image) as img, rasterio.open(demo.labels) as lab:
        image = img.read().astype(np.float64)
        labels = lab.read(1)
    green = image[:, labels == DEMO_CLASSES.index('green')].mean(axis=1)
    water = image[:, labels == DEMO_CLASSES.index('water')].mean(axis=1)
    assert green[1] > green[0] and green[1] > green[2]
    assert water[2] > water[0]
    assert image.std() > 20


def test_render_small_scene_and_classes() -> None:
    park = shapely.box(0, 0, 40, 40)
    pond = shapely.box(5, 5, 15, 15)
    house = shapely.box(25, 25, 35, 35)
    road = shapely.LineString([(0, 20), (40, 20)])
    geoms = np.array([park, pond, house, road], dtype=object)
    tags = [
        {'leisure': 'park'},
        {'natural': 'water'},
        {'building': 'yes'},
        {'highway': 'primary'},
    ]
    image, labels, transform = render_demo(
        geoms, tags, (0.0, 0.0, 40.0, 40.0), res=1.0, seed=3
    )
    assert image.shape == (3, 40, 40) and image.dtype == np.uint8
    assert transform.c == 0.0 and transform.f == 40.0
    # labels: the pond is painted over the park (smaller area wins), buildings and roads
    # are not land use
    assert labels[40 - 10, 10] == DEMO_CLASSES.index('water')
    assert labels[40 - 30, 30] == DEMO_CLASSES.index('green')
    assert labels[40 - 20, 38] == DEMO_CLASSES.index('green')
    # the primary road (14 m wide) is dark asphalt across the park
    assert image[:, 40 - 21, 2:38].mean() < 90
    again, labels_again, _ = render_demo(
        geoms, tags, (0.0, 0.0, 40.0, 40.0), res=1.0, seed=3
    )
    assert np.array_equal(image, again) and np.array_equal(labels, labels_again)
    other, _, _ = render_demo(geoms, tags, (0.0, 0.0, 40.0, 40.0), res=1.0, seed=4)
    assert not np.array_equal(image, other)


@pytest.mark.parametrize(
    ('tags', 'name'),
    [
        ({'landuse': 'residential'}, 'residential'),
        ({'landuse': 'retail'}, 'commercial'),
        ({'landuse': 'civil'}, 'civic'),
        ({'landuse': 'railway'}, 'railway'),
        ({'leisure': 'park', 'landuse': 'commercial'}, 'green'),
        ({'natural': 'water', 'leisure': 'park'}, 'water'),
        ({'building': 'yes'}, 'other'),
    ],
)
def test_landuse_class(tags: dict[str, str], name: str) -> None:
    assert landuse_class(tags) == DEMO_CLASSES.index(name)
