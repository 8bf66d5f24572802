# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Bad and odd inputs for every reader, each with the exact outcome it must have.

Every row writes its input itself (under ``tmp_path``) and states one outcome: either a
valid result, checked for the contract (finite values, ids and edge indices in range,
nothing valid dropped), or one of our error types whose message names the file (or key)
and the problem.
"""

import functools
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import torch
from matplotlib import pyplot as plt
from PIL import Image
from timm.models.vision_transformer import VisionTransformer
from torch_geometric.data import HeteroData
from torchgeo.datasets import DatasetNotFoundError, OpenStreetMap, RasterDataset

from tests.conftest import (
    CITY_CRS,
    CITY_ORIGIN,
    HELSINKI_PBF,
    city_frame,
    write_geotiff,
)
from torchgeo_geolink.datasets import (
    GeoLinkTiles,
    OSMDataset,
    WindowedRasterDataset,
    collate_geolink,
    sample_to_graph,
)
from torchgeo_geolink.errors import (
    CheckpointError,
    GeoLinkError,
    InvalidFeatureError,
    OSMFileError,
    RasterFileError,
    TileError,
)
from torchgeo_geolink.models import GeoLink, load_official_checkpoint
from torchgeo_geolink.osm import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS
from torchgeo_geolink.samplers import OSMGriddedPatchSampler, OSMRandomPatchSampler

X0, Y0 = CITY_ORIGIN
ORTHO = '+proj=ortho +lat_0=60 +lon_0=25 +datum=WGS84'  #: the far side of the Earth is not on the map
#: Number of features of the default synthetic city (16 buildings, 16 shops, 10
#: streets).
CITY_FEATURES = 42


@dataclass(frozen=True)
class Case:
    """One row of the battery.

    Attributes:
        name: the row's id.
        run: writes the input under the given folder and feeds it to the reader; for a
            valid input it checks the result's contract itself.
        raises: the error the input must raise (None: it must give a valid result).
        match: a regular expression the error (or warning) message must match.
        names: a text the error message must contain (the file's or the key's name).
        warns: the warning a valid input must give.
        marks: pytest marks (``xfail`` rows for fixes not landed yet).
    """

    name: str
    run: Callable[[Path], Any]
    raises: type[Exception] | None = None
    match: str | None = None
    names: str | None = None
    warns: type[Warning] | None = None
    marks: tuple[Any, ...] = ()


CASES: list[Case] = []


def case(
    name: str,
    *,
    raises: type[Exception] | None = None,
    match: str | None = None,
    names: str | None = None,
    warns: type[Warning] | None = None,
    marks: tuple[Any, ...] = (),
) -> Callable[[Callable[[Path], Any]], Callable[[Path], Any]]:
    """Register a row of the battery (see :class:`Case`)."""

    def register(run: Callable[[Path], Any]) -> Callable[[Path], Any]:
        CASES.append(Case(name, run, raises, match, names, warns, marks))
        return run

    return register


def xfail(item: str) -> tuple[Any, ...]:
    """Mark a row whose fix has not landed; strict, so it fails once the fix lands."""
    return (pytest.mark.xfail(strict=True, reason=f'fixed by {item}'),)


# --------------------------------------------------------------------------------------
# Contract checks of valid results


def whole(ds: OSMDataset) -> dict[str, torch.Tensor]:
    """The sample of a window 1 unit larger than the dataset on every side."""
    x, y = ds.bounds[0], ds.bounds[1]
    return ds[x.start - 1 : x.stop + 1, y.start - 1 : y.stop + 1]


def check_sample(sample: dict[str, Any], n_rows: int | None = None) -> dict[str, int]:
    """Check the graph keys of a sample; return its node count per type."""
    counts = {}
    for node_type in NODE_TYPES:
        x = sample[f'osm_{node_type}_x']
        pos = sample[f'osm_{node_type}_pos']
        counts[node_type] = len(x)
        assert torch.isfinite(x).all(), node_type
        assert pos.shape == (len(x), POS_POINTS[node_type], 2)
        assert torch.isfinite(pos).all(), node_type
        ids = sample.get(f'osm_{node_type}_id')
        if n_rows is not None and ids is not None and len(ids):
            assert 0 <= int(ids.min()) and int(ids.max()) < n_rows
    for edge_type in EDGE_TYPES:
        src, _, dst = edge_type
        name = f'osm_{src}_to_{dst}'
        edge_index = sample[f'{name}_edge_index']
        edge_attr = sample[f'{name}_edge_attr']
        assert edge_index.dtype == torch.long and edge_index.shape[0] == 2
        assert edge_attr.shape == (edge_index.shape[1], EDGE_ATTR_DIMS[edge_type])
        if edge_index.numel():
            assert int(edge_index.min()) >= 0
            assert int(edge_index[0].max()) < counts[src]
            assert int(edge_index[1].max()) < counts[dst]
            assert torch.all(edge_attr.sum(dim=1) == 1)
    return counts


def check_dataset(ds: OSMDataset, kept: int) -> dict[str, int]:
    """Check that every kept feature is served once, with a valid graph."""
    assert sum(r.kept for r in ds.reports) == kept
    counts = check_sample(whole(ds), kept)
    assert sum(counts.values()) == kept
    return counts


def tags(ds: OSMDataset) -> list[dict[str, str]]:
    return [dict(t) for t in ds.tags]


def load(path: Path, **kwargs: Any) -> OSMDataset:
    return OSMDataset(path, progress=False, **kwargs)


def city_file(folder: Path, name: str = 'city.gpkg', **kwargs: Any) -> Path:
    path = folder / name
    city_frame().to_file(path, **kwargs)
    return path


def write_features(
    folder: Path,
    name: str,
    geoms: Sequence[shapely.Geometry | None],
    crs: Any = CITY_CRS,
    **columns: list[Any],
) -> Path:
    path = folder / name
    columns = columns or {'name': [f'f{i}' for i in range(len(geoms))]}
    gpd.GeoDataFrame(columns, geometry=geoms, crs=crs).to_file(path)
    return path


def geojson_text(folder: Path, name: str, features: list[dict[str, Any]]) -> Path:
    path = folder / name
    path.write_text(json.dumps({'type': 'FeatureCollection', 'features': features}))
    return path


def feature(
    properties: dict[str, Any], geometry: dict[str, Any] | None
) -> dict[str, Any]:
    return {'type': 'Feature', 'properties': properties, 'geometry': geometry}


def point(x: float, y: float) -> dict[str, Any]:
    return {'type': 'Point', 'coordinates': [x, y]}


# --------------------------------------------------------------------------------------
# Vector files: unreadable, empty, without CRS


def _truncated(folder: Path, name: str, write: Callable[[Path], object]) -> OSMDataset:
    full = folder / f'full_{name}'
    write(full)
    data = full.read_bytes()
    path = folder / name
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return load(path)


@case(
    'gpkg-truncated',
    raises=OSMFileError,
    match='cannot read vector file',
    names='bad.gpkg',
)
def _(tmp: Path) -> Any:
    return _truncated(tmp, 'bad.gpkg', lambda p: city_frame().to_file(p))


@case(
    'geojson-truncated',
    raises=OSMFileError,
    match='cannot read vector file',
    names='bad.geojson',
)
def _(tmp: Path) -> Any:
    return _truncated(tmp, 'bad.geojson', lambda p: city_frame().to_file(p))


@case(
    'fgb-truncated',
    raises=OSMFileError,
    match='cannot read vector file',
    names='bad.fgb',
)
def _(tmp: Path) -> Any:
    return _truncated(
        tmp, 'bad.fgb', lambda p: city_frame().to_file(p, driver='FlatGeobuf')
    )


@case(
    'parquet-truncated',
    raises=OSMFileError,
    match='cannot read vector file',
    names='bad.parquet',
)
def _(tmp: Path) -> Any:
    return _truncated(tmp, 'bad.parquet', lambda p: city_frame().to_parquet(p))


@case(
    'pbf-truncated',
    raises=OSMFileError,
    match='truncated or corrupt OSM PBF',
    names='bad.osm.pbf',
)
def _(tmp: Path) -> Any:
    # GDAL's OSM driver stops silently at the cut and serves the features read so far
    return _truncated(
        tmp, 'bad.osm.pbf', lambda p: p.write_bytes(HELSINKI_PBF.read_bytes())
    )


@case(
    'pbf-random-bytes',
    raises=OSMFileError,
    match='truncated or corrupt OSM PBF',
    names='bad.osm.pbf',
)
def _(tmp: Path) -> Any:
    path = tmp / 'bad.osm.pbf'
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return load(path)


@case(
    'gpkg-random-bytes',
    raises=OSMFileError,
    match='cannot read vector file',
    names='bad.gpkg',
)
def _(tmp: Path) -> Any:
    path = tmp / 'bad.gpkg'
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return load(path)


@case(
    'geojson-empty-file',
    raises=OSMFileError,
    match='cannot read vector file',
    names='bad.geojson',
)
def _(tmp: Path) -> Any:
    path = tmp / 'bad.geojson'
    path.write_bytes(b'')
    return load(path)


@case(
    'geojson-no-features',
    raises=OSMFileError,
    match='usable feature',
    names='empty.geojson',
)
def _(tmp: Path) -> Any:
    return load(geojson_text(tmp, 'empty.geojson', []))


@case(
    'geojson-only-empty-geometries',
    raises=OSMFileError,
    match='usable feature',
    names='void.geojson',
)
def _(tmp: Path) -> Any:
    features = [
        feature({'a': 'b'}, None),
        feature({'a': 'c'}, {'type': 'Polygon', 'coordinates': []}),
    ]
    return load(geojson_text(tmp, 'void.geojson', features))


@case(
    'gpkg-without-crs',
    raises=OSMFileError,
    match='declares no coordinate reference system',
    names='nocrs.gpkg',
)
def _(tmp: Path) -> Any:
    return load(write_features(tmp, 'nocrs.gpkg', [shapely.Point(0, 0)], crs=None))


@case(
    'geojson-projected-coordinates-as-wgs84',
    raises=OSMFileError,
    match='not longitudes/latitudes',
    names='utm.geojson',
)
def _(tmp: Path) -> Any:
    return load(geojson_text(tmp, 'utm.geojson', [feature({'a': 'b'}, point(X0, Y0))]))


@case(
    'path-missing',
    raises=OSMFileError,
    match='no such file or directory',
    names='absent.gpkg',
)
def _(tmp: Path) -> Any:
    return load(tmp / 'absent.gpkg')


@case('folder-without-vector-files', raises=OSMFileError, match='no vector file')
def _(tmp: Path) -> Any:
    (tmp / 'notes.txt').write_text('hello')
    return load(tmp)


@case(
    'layer-missing',
    raises=OSMFileError,
    match=r"layer\(s\) \['roads'\] not found",
    names='city.gpkg',
)
def _(tmp: Path) -> Any:
    return load(city_file(tmp), layers=['roads'])


@case(
    'shapefile-without-shx',
    raises=OSMFileError,
    match='cannot read vector file',
    names='blocks.shp',
)
def _(tmp: Path) -> Any:
    frame = city_frame()
    frame[frame.geom_type == 'Polygon'][['building', 'geometry']].to_file(
        tmp / 'blocks.shp'
    )
    (tmp / 'blocks.shx').unlink()
    return load(tmp / 'blocks.shp')


@case(
    'csv-without-geometry',
    raises=OSMFileError,
    match='has no geometry',
    names='table.csv',
)
def _(tmp: Path) -> Any:
    path = tmp / 'table.csv'
    path.write_text('highway,lanes\nprimary,2\n')
    return load(path, source_crs=CITY_CRS)


OSM_XML = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="test">
 <node id="1" lat="60.1" lon="24.9" version="1"><tag k="amenity" v="bench"/></node>
 <node id="2" lat="60.11" lon="24.91" version="1"/>
 <node id="3" lat="60.12" lon="24.92" version="1"/>
 <way id="10" version="1"><nd ref="2"/><nd ref="3"/><tag k="highway" v="primary"/><tag k="lanes" v="2"/></way>
</osm>
"""


@case('osm-xml')
def _(tmp: Path) -> Any:
    path = tmp / 'small.osm'
    path.write_text(OSM_XML)
    ds = load(path)
    assert tags(ds) == [{'amenity': 'bench'}, {'highway': 'primary', 'lanes': '2'}]
    check_dataset(ds, 2)


@case(
    'osm-xml-truncated', raises=OSMFileError, match='truncated OSM XML', names='cut.osm'
)
def _(tmp: Path) -> Any:
    # GDAL's OSM driver stops silently at the cut (here: before the way)
    path = tmp / 'cut.osm'
    path.write_text(OSM_XML[: len(OSM_XML) // 2])
    return load(path)


@pytest.mark.parametrize(
    ('driver', 'suffix'),
    [
        ('KML', 'kml'),
        ('GML', 'gml'),
        ('GeoJSONSeq', 'geojsons'),
        ('SQLite', 'sqlite'),
        ('MapInfo File', 'tab'),
    ],
)
def test_gdal_formats_give_only_the_tags(
    tmp_path: Path, driver: str, suffix: str
) -> None:
    """Formats' own bookkeeping fields (KML styling, GML ids): only tags come back."""
    frame = gpd.GeoDataFrame(
        {'name': ['A', 'B'], 'highway': ['primary', None]},
        geometry=[
            shapely.Point(24.90, 60.10),
            shapely.LineString([(24.90, 60.10), (24.91, 60.11)]),
        ],
        crs=4326,
    )
    path = tmp_path / f'features.{suffix}'
    frame.to_file(path, driver=driver)
    ds = load(path)
    assert sorted(tags(ds), key=lambda t: t['name']) == [
        {'name': 'A', 'highway': 'primary'},
        {'name': 'B'},
    ]
    check_dataset(ds, 2)


# --------------------------------------------------------------------------------------
# Vector files: odd geometries (repaired, flattened, exploded or dropped; nothing valid
# lost)


@case('polygon-self-intersecting')
def _(tmp: Path) -> Any:
    bowtie = shapely.Polygon(
        [(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)]
    )
    ds = load(
        write_features(tmp, 'bowtie.gpkg', [bowtie, shapely.Point(X0 + 20, Y0 + 20)])
    )
    assert ds.reports[0].repaired == 1
    # make_valid splits the bowtie into its two triangles
    assert check_dataset(ds, 3) == {'polygon': 2, 'line': 0, 'point': 1}


@case('geometries-3d')
def _(tmp: Path) -> Any:
    geoms = [
        shapely.Point(X0, Y0, 5.0),
        shapely.LineString([(X0, Y0, 1.0), (X0 + 50, Y0 + 50, 2.0)]),
        shapely.box(X0 + 10, Y0, X0 + 20, Y0 + 10).buffer(0),
    ]
    geoms[2] = shapely.force_3d(geoms[2], 7.0)
    ds = load(write_features(tmp, 'solid.gpkg', geoms))
    assert not shapely.has_z(ds.geometries).any()
    check_dataset(ds, 3)


@case('coordinates-nan-and-inf')
def _(tmp: Path) -> Any:
    geoms = [
        shapely.Point(X0, Y0),
        shapely.Point(np.nan, Y0),
        shapely.LineString([(X0, Y0), (np.inf, Y0 + 10)]),
        shapely.Point(X0 + 10, Y0 + 10),
    ]
    ds = load(write_features(tmp, 'nan.gpkg', geoms))
    assert [t['name'] for t in tags(ds)] == ['f0', 'f3']
    assert ds.reports[0].dropped_nonfinite == 2
    check_dataset(ds, 2)


@case('multipolygon-single-part-not-exploded')
def _(tmp: Path) -> Any:
    one = shapely.MultiPolygon([shapely.box(X0, Y0, X0 + 10, Y0 + 10)])
    two = shapely.MultiPolygon(
        [
            shapely.box(X0 + 20, Y0, X0 + 30, Y0 + 10),
            shapely.box(X0 + 40, Y0, X0 + 50, Y0 + 10),
        ]
    )
    ds = load(write_features(tmp, 'multi.gpkg', [one, two]))
    assert ds.reports[0].exploded == 1
    check_dataset(ds, 3)


@case('geometry-collection-mixed')
def _(tmp: Path) -> Any:
    collection = shapely.GeometryCollection(
        [
            shapely.box(X0, Y0, X0 + 10, Y0 + 10),
            shapely.LineString([(X0, Y0 + 20), (X0 + 30, Y0 + 20)]),
            shapely.Point(X0 + 5, Y0 + 40),
        ]
    )
    ds = load(write_features(tmp, 'mixed.gpkg', [collection]))
    counts = check_dataset(ds, 3)
    assert counts == {'polygon': 1, 'line': 1, 'point': 1}
    assert tags(ds) == [{'name': 'f0'}] * 3


@case('points-duplicate-and-collinear')
def _(tmp: Path) -> Any:
    # Delaunay degeneracies: all points on one line, two of them equal
    geoms = [shapely.Point(X0 + i, Y0 + i) for i in range(5)] + [
        shapely.Point(X0 + 2, Y0 + 2)
    ]
    ds = load(write_features(tmp, 'line_of_points.gpkg', geoms))
    check_dataset(ds, 6)
    check_sample(
        OSMDataset(tmp / 'line_of_points.gpkg', graph_mode='exact', progress=False)[
            X0 - 1 : X0 + 6, Y0 - 1 : Y0 + 6
        ],
        6,
    )


@case('polygon-huge')
def _(tmp: Path) -> Any:
    # a polygon far larger than every window (a country boundary) next to a small one
    huge = shapely.box(X0 - 1e6, Y0 - 1e6, X0 + 1e6, Y0 + 1e6)
    ds = load(
        write_features(tmp, 'huge.gpkg', [huge, shapely.box(X0, Y0, X0 + 10, Y0 + 10)])
    )
    check_dataset(ds, 2)
    sample = ds[X0 : X0 + 50, Y0 : Y0 + 50]
    assert check_sample(sample, 2)['polygon'] == 2


@case('feature-not-reprojectable', warns=UserWarning, match=r'cannot be reprojected')
def _(tmp: Path) -> Any:
    path = write_features(
        tmp,
        'antipode.gpkg',
        [shapely.Point(24.9, 60.1), shapely.Point(-155.0, -60.0)],
        crs=4326,
    )
    ds = load(path, crs=ORTHO)
    assert ds.reports[0].dropped_reprojection == 1
    assert [t['name'] for t in tags(ds)] == ['f0']
    check_sample(whole(ds), 1)


@case(
    'feature-not-reprojectable-strict',
    raises=InvalidFeatureError,
    match='cannot be reprojected',
    names='antipode.gpkg',
)
def _(tmp: Path) -> Any:
    path = write_features(
        tmp,
        'antipode.gpkg',
        [shapely.Point(24.9, 60.1), shapely.Point(-155.0, -60.0)],
        crs=4326,
    )
    return load(path, crs=ORTHO, strict=True)


# --------------------------------------------------------------------------------------
# Vector files: tags


@case(
    'tags-hstore-malformed',
    raises=InvalidFeatureError,
    match=r"row 1: column 'other_tags'.*not an hstore",
    names='hstore.gpkg',
)
def _(tmp: Path) -> Any:
    path = write_features(
        tmp,
        'hstore.gpkg',
        [shapely.Point(X0, Y0), shapely.Point(X0 + 1, Y0)],
        other_tags=['"a"=>"b"', '"a"=>"b" broken'],
    )
    return load(path)


@case(
    'tags-json-malformed',
    raises=InvalidFeatureError,
    match=r"row 0: column 'tags' holds invalid JSON",
    names='json.gpkg',
)
def _(tmp: Path) -> Any:
    return load(
        write_features(tmp, 'json.gpkg', [shapely.Point(X0, Y0)], tags=['{"a": '])
    )


@case(
    'tags-label-mixed',
    raises=InvalidFeatureError,
    match=r"row 1: column 'label' mixes GeoLink labels",
    names='labels.geojson',
)
def _(tmp: Path) -> Any:
    return load(
        write_features(
            tmp,
            'labels.geojson',
            [shapely.Point(X0, Y0), shapely.Point(X0 + 1, Y0)],
            label=['a:b', 'plain'],
        )
    )


@case('tags-integers-with-nulls')
def _(tmp: Path) -> Any:
    # pyogrio reads an integer field with nulls elsewhere as float64
    features = [
        feature({'highway': 'primary', 'lanes': 2}, point(24.90, 60.10)),
        feature({'highway': 'service', 'lanes': None}, point(24.91, 60.10)),
    ]
    ds = load(geojson_text(tmp, 'lanes.geojson', features))
    assert tags(ds) == [{'highway': 'primary', 'lanes': '2'}, {'highway': 'service'}]
    check_dataset(ds, 2)


@case('tags-booleans')
def _(tmp: Path) -> Any:
    frame = gpd.GeoDataFrame(
        {
            'oneway': pd.array([True, False, None], dtype='boolean'),
            'lit': [True, False, True],
        },
        geometry=[shapely.Point(X0 + i, Y0) for i in range(3)],
        crs=CITY_CRS,
    )
    frame.to_file(tmp / 'flags.gpkg')
    ds = load(tmp / 'flags.gpkg')
    assert tags(ds) == [
        {'oneway': 'yes', 'lit': 'yes'},
        {'oneway': 'no', 'lit': 'no'},
        {'lit': 'yes'},
    ]


@case('torchgeo-openstreetmap-file')
def _(tmp: Path) -> Any:
    # written by TorchGeo's own OpenStreetMap code: per-key tag columns, osm_id,
    # osm_type, an integer label
    osm = OpenStreetMap.__new__(OpenStreetMap)
    osm.classes = [{'name': 'buildings', 'selector': [{'building': '*'}]}]
    square = [
        (24.90, 60.10),
        (24.91, 60.10),
        (24.91, 60.11),
        (24.90, 60.11),
        (24.90, 60.10),
    ]
    response = {
        'elements': [
            {
                'type': 'way',
                'id': 7,
                'tags': {'building': 'yes'},
                'geometry': [{'lon': x, 'lat': y} for x, y in square],
            },
            {
                'type': 'node',
                'id': 8,
                'lat': 60.105,
                'lon': 24.905,
                'tags': {'amenity': 'bench'},
            },
        ]
    }
    osm._parse_overpass_response(response).to_file(
        tmp / 'osm_features.geojson', driver='GeoJSON'
    )
    ds = load(tmp / 'osm_features.geojson')
    assert tags(ds) == [{'building': 'yes'}, {'amenity': 'bench'}]
    check_dataset(ds, 2)


@case('geolink-label-file')
def _(tmp: Path) -> Any:
    path = write_features(
        tmp,
        'tile_polygon.geojson',
        [
            shapely.box(24.90, 60.10, 24.91, 60.11),
            shapely.box(24.92, 60.10, 24.93, 60.11),
        ],
        crs=4326,
        label=['landuse:grass;golf:tee', 'building:yes'],
    )
    ds = load(path)
    assert tags(ds) == [{'landuse': 'grass', 'golf': 'tee'}, {'building': 'yes'}]


@case('csv-wkt-column-not-a-tag')
def _(tmp: Path) -> Any:
    path = tmp / 'features.csv'
    path.write_text(
        f'WKT,highway\n"POINT ({X0 + 5} {Y0 + 5})",bus_stop\n"LINESTRING ({X0} {Y0}, {X0 + 50} {Y0 + 50})",primary\n'
    )
    ds = load(path, source_crs=CITY_CRS)
    assert sorted(t['highway'] for t in tags(ds)) == ['bus_stop', 'primary']
    assert all(set(t) == {'highway'} for t in tags(ds))
    check_dataset(ds, 2)


@case('shapefile-without-dbf', warns=UserWarning, match=r'no \.dbf file.*without tags')
def _(tmp: Path) -> Any:
    frame = city_frame()
    frame[frame.geom_type == 'Polygon'][['building', 'geometry']].to_file(
        tmp / 'blocks.shp'
    )
    (tmp / 'blocks.dbf').unlink()
    ds = load(tmp / 'blocks.shp')
    assert tags(ds) == [{}] * 16
    check_dataset(ds, 16)


# --------------------------------------------------------------------------------------
# Windows


def _city(tmp: Path) -> OSMDataset:
    return load(city_file(tmp))


@case('window-zero-width', raises=IndexError, match='empty window')
def _(tmp: Path) -> Any:
    return _city(tmp)[X0 + 10 : X0 + 10, Y0 : Y0 + 50]


@case('window-inverted', raises=IndexError, match='inverted window')
def _(tmp: Path) -> Any:
    return _city(tmp)[X0 + 50 : X0, Y0 : Y0 + 50]


@case('window-outside', raises=IndexError, match='not found in dataset')
def _(tmp: Path) -> Any:
    return _city(tmp)[0:10, 0:10]


@case('window-without-features')
def _(tmp: Path) -> Any:
    # inside the footprint but between features: an empty graph, not an error
    ds = _city(tmp)
    counts = check_sample(ds[X0 + 45 : X0 + 46, Y0 + 45 : Y0 + 46], CITY_FEATURES)
    assert counts == {'polygon': 0, 'line': 0, 'point': 0}


# --------------------------------------------------------------------------------------
# Rasters


class Raster(RasterDataset):
    filename_glob = '*.tif'


@case(
    'geotiff-truncated',
    raises=DatasetNotFoundError,
    match='Dataset not found',
    names='img',
)
def _(tmp: Path) -> Any:
    # TorchGeo skips files it cannot open while indexing; with none left it says the
    # dataset is not found
    write_geotiff(tmp / 'full.tif', (X0, Y0, X0 + 64, Y0 + 64), CITY_CRS)
    data = (tmp / 'full.tif').read_bytes()
    (tmp / 'full.tif').unlink()
    (tmp / 'img' / 'bad.tif').parent.mkdir()
    (tmp / 'img' / 'bad.tif').write_bytes(data[:200])
    return Raster(tmp / 'img')


@case('raster-and-osm-disjoint', raises=RuntimeError, match='no spatial intersection')
def _(tmp: Path) -> Any:
    # TorchGeo's IntersectionDataset refuses datasets that do not overlap
    raster = Raster(
        write_geotiff(
            tmp / 'img' / 'far.tif', (X0 + 5000, Y0, X0 + 5064, Y0 + 64), CITY_CRS
        ).parent
    )
    return raster & _city(tmp)


class WindowedRaster(WindowedRasterDataset):
    filename_glob = '*.tif'


@case(
    'geotiff-pixels-truncated',
    raises=RasterFileError,
    match='cannot read the window',
    names='cut.tif',
)
def _(tmp: Path) -> Any:
    # the header (hence the index) is intact, the strips at the end are gone
    path = write_geotiff(
        tmp / 'img' / 'cut.tif', (X0, Y0, X0 + 256, Y0 + 256), CITY_CRS
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return WindowedRaster(tmp / 'img')[X0 : X0 + 256, Y0 : Y0 + 256]


@case('raster-window-inverted', raises=IndexError, match='inverted window')
def _(tmp: Path) -> Any:
    write_geotiff(tmp / 'img' / 'a.tif', (X0, Y0, X0 + 64, Y0 + 64), CITY_CRS)
    return WindowedRaster(tmp / 'img')[X0 + 10 : X0, Y0 : Y0 + 64]


@case('raster-window-partly-outside')
def _(tmp: Path) -> Any:
    # filled as TorchGeo's mosaic fills it (0 without nodata), the inside part read as
    # is
    write_geotiff(tmp / 'img' / 'a.tif', (X0, Y0, X0 + 64, Y0 + 64), CITY_CRS)
    raster = WindowedRaster(tmp / 'img')
    image = raster[X0 + 32 : X0 + 96, Y0 : Y0 + 64]['image']
    assert image.shape == (3, 64, 64)
    assert torch.equal(
        image[:, :, :32], raster[X0 + 32 : X0 + 64, Y0 : Y0 + 64]['image']
    )
    assert not image[:, :, 32:].any()


@case(
    'geotiff-without-crs',
    raises=GeoLinkError,
    match='crs',
    marks=(
        pytest.mark.xfail(
            strict=True,
            reason="open: TorchGeo's RasterDataset lets rasterio's CRSError ('CRS is invalid: None') escape "
            'without naming the file',
        ),
    ),
)
def _(tmp: Path) -> Any:
    (tmp / 'img').mkdir()
    profile = {'driver': 'GTiff', 'width': 8, 'height': 8, 'count': 1, 'dtype': 'uint8'}
    with rasterio.open(tmp / 'img' / 'nocrs.tif', 'w', **profile) as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    return WindowedRaster(tmp / 'img')


# --------------------------------------------------------------------------------------
# Tiles


POS_COLS = {'polygon': 8, 'line': 6, 'point': 2}


def official(counts: dict[str, int], dim: int = 512) -> HeteroData:
    graph = HeteroData()
    for node_type, n in counts.items():
        graph[node_type].x = torch.rand(n, dim + POS_COLS[node_type])
    for edge_type in EDGE_TYPES:
        src, _, dst = edge_type
        n = min(counts.get(src, 0), counts.get(dst, 0))
        graph[edge_type].edge_index = torch.stack([torch.arange(n), torch.arange(n)])
        graph[edge_type].edge_attr = torch.eye(EDGE_ATTR_DIMS[edge_type])[
            torch.zeros(n, dtype=torch.long)
        ]
    return graph


def tiles(root: Path, graph: HeteroData | None = None, size: int = 16) -> Path:
    for folder in ('img', 'label', 'graph'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        root / 'img' / 't.png'
    )
    Image.fromarray(rng.integers(0, 10, (size, size), dtype=np.uint8)).save(
        root / 'label' / 't.png'
    )
    torch.save(
        official({'polygon': 2, 'line': 3, 'point': 1}) if graph is None else graph,
        root / 'graph' / 't.pt',
    )
    return root


def tile(root: Path) -> dict[str, Any]:
    return GeoLinkTiles(root, split='all')[0]


@case(
    'tile-edge-index-past-node-count',
    raises=TileError,
    match=r"\('line', 'to', 'polygon'\): destination index 2 is outside the 2 'polygon'",
    names='t.pt',
)
def _(tmp: Path) -> Any:
    graph = official({'polygon': 2, 'line': 3, 'point': 1})
    graph['line', 'to', 'polygon'].edge_index = torch.tensor([[0, 2], [1, 2]])
    graph['line', 'to', 'polygon'].edge_attr = torch.eye(3)[[0, 0]]
    return tile(tiles(tmp, graph))


@case(
    'tile-edge-index-float',
    raises=TileError,
    match=r"\('point', 'to', 'point'\): edge_index must hold integers",
    names='t.pt',
)
def _(tmp: Path) -> Any:
    graph = official({'polygon': 2, 'line': 3, 'point': 1})
    graph['point', 'to', 'point'].edge_index = torch.zeros(2, 1)
    return tile(tiles(tmp, graph))


@case(
    'tile-edge-attr-width',
    raises=TileError,
    match=r"\('polygon', 'to', 'polygon'\): edge_attr must have shape \(2, 6\)",
    names='t.pt',
)
def _(tmp: Path) -> Any:
    graph = official({'polygon': 2, 'line': 3, 'point': 1})
    graph['polygon', 'to', 'polygon'].edge_attr = torch.zeros(2, 3)
    return tile(tiles(tmp, graph))


@case(
    'tile-node-features-nan',
    raises=TileError,
    match=r"'line' node features hold NaN",
    names='t.pt',
)
def _(tmp: Path) -> Any:
    graph = official({'polygon': 2, 'line': 3, 'point': 1})
    graph['line'].x[1, 5] = float('nan')
    return tile(tiles(tmp, graph))


@case('tile-graph-truncated', raises=TileError, match='cannot load graph', names='t.pt')
def _(tmp: Path) -> Any:
    root = tiles(tmp)
    data = (root / 'graph' / 't.pt').read_bytes()
    (root / 'graph' / 't.pt').write_bytes(data[: len(data) // 2])
    return tile(root)


@case(
    'tile-graph-empty-file', raises=TileError, match='cannot load graph', names='t.pt'
)
def _(tmp: Path) -> Any:
    root = tiles(tmp)
    (root / 'graph' / 't.pt').write_bytes(b'')
    return tile(root)


@case(
    'tile-graph-not-heterodata',
    raises=TileError,
    match='expected a torch_geometric HeteroData, got dict',
    names='t.pt',
)
def _(tmp: Path) -> Any:
    return tile(tiles(tmp, {'x': torch.zeros(3)}))  # ty: ignore[invalid-argument-type]


@case(
    'tile-image-truncated', raises=TileError, match='cannot read image', names='t.png'
)
def _(tmp: Path) -> Any:
    root = tiles(tmp)
    data = (root / 'img' / 't.png').read_bytes()
    (root / 'img' / 't.png').write_bytes(data[: len(data) // 2])
    return tile(root)


@case('tile-label-size', raises=TileError, match='does not match image', names='t.png')
def _(tmp: Path) -> Any:
    root = tiles(tmp)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / 'label' / 't.png')
    return tile(root)


@case(
    'tile-label-16-bit-values',
    raises=TileError,
    match=r'label values .* outside 0\.\.255',
    names='t.png',
)
def _(tmp: Path) -> Any:
    root = tiles(tmp)
    Image.fromarray(np.full((16, 16), 1000, np.uint16)).save(root / 'label' / 't.png')
    return tile(root)


@case(
    'tile-graph-missing', raises=TileError, match=r'no graph for 1 tile', names='t.pt'
)
def _(tmp: Path) -> Any:
    root = tiles(tmp)
    (root / 'graph' / 't.pt').unlink()
    return tile(root)


@case('tile-graph-without-nodes')
def _(tmp: Path) -> Any:
    root = tiles(tmp, official({}))
    sample = tile(root)
    assert check_sample(sample) == {'polygon': 0, 'line': 0, 'point': 0}
    batch = collate_geolink([sample, sample])
    assert batch['graph'].num_graphs == 2 and batch['image'].shape == (2, 3, 16, 16)


# --------------------------------------------------------------------------------------
# Checkpoints


def _official_file(tmp: Path, state: Any, config: Any = None) -> Path:
    path = tmp / 'geolink.pth'
    torch.save(
        {
            'model_config': config or {'architecture': 'vit_tiny_patch16_224'},
            'model_state_dict': state,
        },
        path,
    )
    return path


@case(
    'checkpoint-value-not-a-tensor',
    raises=CheckpointError,
    match=r"'img_norm.weight' holds a str",
    names='geolink.pth',
)
def _(tmp: Path) -> Any:
    return load_official_checkpoint(_official_file(tmp, {'img_norm.weight': 'abc'}))


@case(
    'checkpoint-truncated',
    raises=CheckpointError,
    match='cannot read',
    names='geolink.pth',
)
def _(tmp: Path) -> Any:
    path = _official_file(tmp, {'img_norm.weight': torch.ones(192)})
    path.write_bytes(path.read_bytes()[:100])
    return load_official_checkpoint(path)


@case(
    'checkpoint-empty-file',
    raises=CheckpointError,
    match='cannot read',
    names='geolink.pth',
)
def _(tmp: Path) -> Any:
    path = tmp / 'geolink.pth'
    path.write_bytes(b'')
    return load_official_checkpoint(path)


@case(
    'checkpoint-lightning-where-official-expected',
    raises=CheckpointError,
    match=r'Lightning checkpoint.*load_from_checkpoint',
    names='task.ckpt',
)
def _(tmp: Path) -> Any:
    path = tmp / 'task.ckpt'
    torch.save(
        {
            'state_dict': {'model.img_norm.weight': torch.ones(4)},
            'pytorch-lightning_version': '2.5.0',
            'hyper_parameters': {},
        },
        path,
    )
    return load_official_checkpoint(path)


@case(
    'checkpoint-missing', raises=CheckpointError, match='not found', names='absent.pth'
)
def _(tmp: Path) -> Any:
    return load_official_checkpoint(tmp / 'absent.pth')


# --------------------------------------------------------------------------------------
# Model inputs


@case(
    'model-img-size-not-multiple-of-patch',
    raises=ValueError,
    match=r'img_size \(60, 60\) is not a multiple of the patch size 16',
)
def _(tmp: Path) -> Any:
    return GeoLink('vit_tiny_patch16_224', img_size=60)


def _vit(img_size: int = 32) -> VisionTransformer:
    """A one-block timm ViT of width 32, built as GeoLink builds its image encoder."""
    return VisionTransformer(
        img_size=img_size,
        patch_size=16,
        embed_dim=32,
        depth=1,
        num_heads=2,
        num_classes=0,
        global_pool='',
    )


@functools.cache
def _tiny() -> GeoLink:
    """A small eval-mode GeoLink (32 px images, 16-wide node features), built once."""
    torch.manual_seed(0)
    return GeoLink(
        _vit(),
        osm_in_chans=16,
        osm_out_embed_dim=16,
        graph_aggr_embed_dim=16,
        fusion_embed_dim=16,
        img_decoder_embed_dim=16,
        img_decoder_depth=1,
        img_decoder_num_heads=2,
        osm_cross_modal_encoder_num_heads=2,
        consistency_embed_dim=8,
    ).eval()


def _graph(counts: tuple[int, int, int], dim: int = 16) -> HeteroData:
    graph = official(dict(zip(NODE_TYPES, counts, strict=True)), dim=dim)
    for node_type in NODE_TYPES:
        x = graph[node_type].x
        graph[node_type].x = x[:, :dim]
        graph[node_type].pos = x[:, dim:].reshape(len(x), POS_POINTS[node_type], 2)
    return graph


def _batch(*graphs: HeteroData) -> Any:
    from torch_geometric.data import Batch

    return Batch.from_data_list(list(graphs))


@case(
    'model-image-size-at-forward',
    raises=ValueError,
    match=r'expects images \(B, 3, 32, 32\), got \(1, 3, 48, 48\)',
)
def _(tmp: Path) -> Any:
    return _tiny()(torch.rand(1, 3, 48, 48), _batch(_graph((1, 1, 1))))


@case(
    'model-images-and-graphs-disagree',
    raises=ValueError,
    match='got 2 images but 1 OSM graphs',
)
def _(tmp: Path) -> Any:
    return _tiny()(torch.rand(2, 3, 32, 32), _batch(_graph((1, 1, 1))))


@case(
    'model-node-features-wrong-width',
    raises=ValueError,
    match=r"'polygon': x must be \(N, 16\), got \(2, 8\)",
)
def _(tmp: Path) -> Any:
    return _tiny()(torch.rand(1, 3, 32, 32), _batch(_graph((2, 1, 1), dim=8)))


@case('model-graph-batch-without-nodes')
def _(tmp: Path) -> Any:
    with torch.no_grad():
        out = _tiny()(
            torch.rand(2, 3, 32, 32), _batch(_graph((0, 0, 0)), _graph((0, 0, 0)))
        )
    assert torch.isfinite(out.loss)


@case('model-one-graph-empty-one-full')
def _(tmp: Path) -> Any:
    with torch.no_grad():
        out = _tiny()(
            torch.rand(2, 3, 32, 32), _batch(_graph((0, 0, 0)), _graph((3, 2, 1)))
        )
    assert torch.isfinite(out.loss)


@case(
    'model-images-nan',
    raises=ValueError,
    match='NaN',
    marks=(
        pytest.mark.xfail(
            strict=True,
            reason='open: GeoLink.forward does not check that images are finite (the loss becomes NaN)',
        ),
    ),
)
def _(tmp: Path) -> Any:
    with torch.no_grad():
        return _tiny()(
            torch.full((1, 3, 32, 32), float('nan')), _batch(_graph((1, 1, 1)))
        )


# --------------------------------------------------------------------------------------
# Samplers and batching


@case('sampler-size-zero', raises=ValueError, match='size must be positive')
def _(tmp: Path) -> Any:
    return OSMRandomPatchSampler(_city(tmp), size=0, length=3)


@case('sampler-stride-zero', raises=ValueError, match='stride must be positive')
def _(tmp: Path) -> Any:
    return OSMGriddedPatchSampler(_city(tmp), size=10, stride=0)


@case(
    'sampler-random-window-larger-than-data',
    raises=ValueError,
    match='does not fit in the region',
)
def _(tmp: Path) -> Any:
    return OSMRandomPatchSampler(_city(tmp), size=1000, length=2)


@case(
    'sampler-gridded-window-larger-than-data',
    raises=ValueError,
    match='does not fit in the region',
)
def _(tmp: Path) -> Any:
    return list(OSMGriddedPatchSampler(_city(tmp), size=1000, min_features=0))


@case('sampler-gridded-covers-region')
def _(tmp: Path) -> Any:
    # 37 px windows, 33 px stride, a region that is no multiple of the resolution: every
    # point is covered
    frame = city_frame()
    frame = frame.set_geometry(frame.translate(0.45, 0.9))
    frame.to_file(tmp / 'shifted.gpkg')
    ds = load(tmp / 'shifted.gpkg')
    ds.res = (1.0, 1.0)
    windows = [
        (x.start, y.start, x.stop, y.stop)
        for x, y in OSMGriddedPatchSampler(ds, size=37, stride=33, min_features=0)
    ]
    cover = shapely.union_all([shapely.box(*w) for w in windows])
    x, y = ds.bounds[0], ds.bounds[1]
    region = shapely.box(x.start, y.start, x.stop, y.stop)
    assert region.difference(cover).area == pytest.approx(0.0, abs=1e-9)
    assert cover.difference(region).area == pytest.approx(
        0.0, abs=1e-9
    )  # windows stay inside the data


@case('sampler-resume-mid-epoch')
def _(tmp: Path) -> Any:
    ds = _city(tmp)
    sampler = OSMRandomPatchSampler(ds, size=20, length=6, generator=3)
    first = iter(sampler)
    seen = [next(first) for _ in range(2)]
    state = sampler.state_dict(consumed=2)
    rest = list(first)
    resumed = OSMRandomPatchSampler(ds, size=20, length=6, generator=99)
    resumed.load_state_dict(state)
    assert list(resumed) == rest and len(seen + rest) == 6


@case(
    'sampler-state-for-other-length',
    raises=ValueError,
    match='the state is for epochs of 6 windows, this sampler draws 5',
)
def _(tmp: Path) -> Any:
    ds = _city(tmp)
    state = OSMRandomPatchSampler(ds, size=20, length=6, generator=3).state_dict()
    OSMRandomPatchSampler(ds, size=20, length=5).load_state_dict(state)


@case(
    'collate-images-of-different-sizes',
    raises=ValueError,
    match=r"key 'image' has different shapes in the batch \(\(3, 8, 8\), \(3, 9, 9\)\)",
)
def _(tmp: Path) -> Any:
    return collate_geolink(
        [{'image': torch.rand(3, 8, 8)}, {'image': torch.rand(3, 9, 9)}]
    )


@case(
    'sample-to-graph-edge-past-nodes',
    raises=ValueError,
    match=r"\('point', 'to', 'point'\)",
)
def _(tmp: Path) -> Any:
    sample = tile(tiles(tmp))
    sample['osm_point_to_point_edge_index'] = torch.tensor([[0], [5]])
    sample['osm_point_to_point_edge_attr'] = torch.eye(2)[[0]]
    return sample_to_graph(sample)


# --------------------------------------------------------------------------------------
# The other items of the reliability issue


@case('color-jitter-standardized-images')
def _(tmp: Path) -> Any:
    from torchgeo_geolink.datamodules import GeoLinkTilesDataModule

    root = tiles(tmp / 'tiles', size=32)
    for i in range(4):
        for folder, suffix in (('img', 'png'), ('label', 'png'), ('graph', 'pt')):
            src = root / folder / f't.{suffix}'
            (root / folder / f't{i}.{suffix}').write_bytes(src.read_bytes())
    dm = GeoLinkTilesDataModule(root=str(root), mean=[100.0] * 3, std=[50.0] * 3)
    ds = GeoLinkTiles(root, split='all')
    torch.manual_seed(0)
    assert dm.train_aug is not None
    batch = dm.train_aug(collate_geolink([ds[i] for i in range(len(ds))]))
    # standardized pixels below the mean stay negative: nothing is clipped to [0, 1]
    assert batch['image'].min() < -0.5 and batch['image'].max() > 1.5


@case('frozen-encoder-stays-in-eval-mode')
def _(tmp: Path) -> Any:
    from torchgeo_geolink.tasks import GeoLinkSegmentation

    task = GeoLinkSegmentation(
        model='vit_tiny_patch16_224',
        img_size=32,
        num_classes=3,
        decoder_channels=16,
        output_layers=[2, 5, 8, 11],
        freeze_backbone=True,
    )
    task.train()  # as Lightning does at the start of every training epoch
    encoder = task.model.encoder
    assert not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    assert task.model.head.training


@case('plot-draws-mask-and-prediction')
def _(tmp: Path) -> Any:
    ds = GeoLinkTiles(tiles(tmp), split='all')
    sample = ds[0]
    sample['prediction'] = sample['mask'].clone()
    fig = ds.plot(sample)
    titles = [ax.get_title() for ax in fig.axes]
    plt.close(fig)
    assert len(fig.axes) == 3 and any('Prediction' in t for t in titles)


@case('plot-osm-draws-mask-and-prediction')
def _(tmp: Path) -> Any:
    ds = _city(tmp)
    sample = ds[X0 : X0 + 64, Y0 : Y0 + 64]
    sample['image'] = torch.rand(3, 64, 64)
    sample['mask'] = torch.randint(0, 3, (64, 64))
    sample['prediction'] = torch.randint(0, 3, (64, 64))
    fig = ds.plot(sample)
    titles = [ax.get_title() for ax in fig.axes]
    plt.close(fig)
    assert len(fig.axes) == 3 and any('Prediction' in t for t in titles)


# --------------------------------------------------------------------------------------


def test_battery_size() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    'row', [pytest.param(c, id=c.name, marks=c.marks) for c in CASES]
)
def test_bad_input(row: Case, tmp_path: Path) -> None:
    if row.raises is not None:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            with pytest.raises(row.raises, match=row.match) as info:
                row.run(tmp_path)
        if row.names:
            assert row.names in str(info.value)
    elif row.warns is not None:
        with pytest.warns(row.warns, match=row.match):
            row.run(tmp_path)
    else:
        row.run(tmp_path)
