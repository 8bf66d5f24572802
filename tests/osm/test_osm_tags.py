# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tag parsing of every source form, GeoLink tag strings, log-frequency key weights."""

import json
import math
from collections.abc import Sized
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import Point
from torchgeo.datasets import OpenStreetMap

from torchgeo_geolink.datasets.osm_reader import read_vector_file
from torchgeo_geolink.osm import (
    KeyWeights,
    iter_frame_tags,
    parse_hstore,
    parse_label,
    tag_strings,
    tags_from_frame,
)


def frame(**columns: Sized) -> gpd.GeoDataFrame:
    n = len(next(iter(columns.values())))
    return gpd.GeoDataFrame(
        columns, geometry=[Point(i, i) for i in range(n)], crs='EPSG:4326'
    )


def test_parse_label() -> None:
    assert parse_label('landuse:grass;golf:tee') == {'landuse': 'grass', 'golf': 'tee'}
    assert parse_label('addr street:Main St;name:A:B') == {
        'addr street': 'Main St',
        'name': 'A:B',
    }
    assert parse_label('building;;') == {'building': ''}
    assert parse_label('') == {}
    assert parse_label('name:Café Ünïcode 東京') == {'name': 'Café Ünïcode 東京'}


def test_parse_hstore_escapes_and_odd_characters() -> None:
    text = r'"name"=>"Say \"hi\"","addr:street"=>"A;B","note"=>"x=>y","empty"=>NULL, "back\\slash"=>"ö"'
    assert parse_hstore(text) == {
        'name': 'Say "hi"',
        'addr:street': 'A;B',
        'note': 'x=>y',
        'back\\slash': 'ö',
    }
    assert parse_hstore('') == {}
    with pytest.raises(ValueError, match='not an hstore'):
        parse_hstore('"a"=>"b" garbage')


def _hstore_quote(text: str) -> str:
    return '"' + text.replace('\\', '\\\\').replace('"', '\\"') + '"'


_HSTORE_TEXT = st.text(alphabet='ab "\\,=>:;', max_size=6)


@given(
    st.lists(st.tuples(_HSTORE_TEXT, st.one_of(st.none(), _HSTORE_TEXT)), max_size=5),
    st.sampled_from([',', ', ']),
    st.sampled_from(['=>', ' => ']),
)
def test_parse_hstore_reads_what_gdal_writes(
    items: list[tuple[str, str | None]], separator: str, arrow: str
) -> None:
    # Quotes and backslashes escaped, NULL values, GDAL's separators or spaced ones:
    # the split fast path (no escapes) and the general parser give the same tags.
    text = separator.join(
        _hstore_quote(k) + arrow + ('NULL' if v is None else _hstore_quote(v))
        for k, v in items
    )
    # a NULL value is dropped; a repeated key keeps its last value
    expected = {k: v for k, v in items if v is not None}
    assert parse_hstore(text) == expected


def test_parse_hstore_refuses_a_dangling_key() -> None:
    with pytest.raises(ValueError, match='not an hstore'):
        parse_hstore('"a"=>"b","c"')


def test_tags_from_label_column() -> None:
    tags = tags_from_frame(frame(label=['highway:service', None, 'a:1;b:2']))
    assert tags == [{'highway': 'service'}, {}, {'a': '1', 'b': '2'}]


def test_tags_from_dict_and_json_columns() -> None:
    tags = tags_from_frame(
        frame(tags=[{'addr:street': 'X', 'n': None}, '{"shop": "bakery"}', None])
    )
    assert tags == [{'addr street': 'X'}, {'shop': 'bakery'}, {}]


def test_tags_from_gdal_osm_layer() -> None:
    """GDAL's OSM driver: key columns, an hstore of the rest, bookkeeping columns."""
    gdf = frame(
        osm_id=['1', '2'],
        highway=['residential', None],
        name=[None, 'Kauppatori'],
        z_order=[3, 0],
        other_tags=['"surface"=>"asphalt","maxspeed:forward"=>"30"', None],
    )
    assert tags_from_frame(gdf) == [
        {'highway': 'residential', 'surface': 'asphalt', 'maxspeed forward': '30'},
        {'name': 'Kauppatori'},
    ]


def test_tags_from_column_per_key_skips_nulls() -> None:
    gdf = frame(
        id=[1, 2, 3],
        building=['yes', np.nan, pd.NA],
        height=[12.5, None, 3],
        timestamp=[0, 0, 0],
    )
    assert tags_from_frame(gdf) == [
        {'building': 'yes', 'height': '12.5'},
        {},
        {'height': '3'},
    ]


def test_tags_from_frame_errors_name_the_row() -> None:
    with pytest.raises(ValueError, match="row 1: column 'tags'"):
        tags_from_frame(frame(tags=['{"a": "b"}', '{not json']))
    with pytest.raises(ValueError, match="row 1: column 'label' mixes GeoLink labels"):
        tags_from_frame(frame(label=['a:b', 'plain text']))
    with pytest.raises(ValueError, match="row 1: column 'label' mixes text and int"):
        tags_from_frame(frame(label=['plain', 3]))
    with pytest.raises(ValueError, match="row 0: column 'label' holds a dict"):
        tags_from_frame(frame(label=[{'a': 'b'}]))
    with pytest.raises(ValueError, match="row 1: column 'colour' holds a bytes"):
        tags_from_frame(frame(colour=['red', b'\x00']))


def test_iter_frame_tags_chunks_give_the_frame_tags() -> None:
    mixed = frame(
        highway=['primary', None, 'service', None, 'track'],
        lanes=[2.0, np.nan, 1.0, 3.0, np.nan],
        other_tags=['"surface"=>"asphalt"', None, '', '"name"=>"B"', None],
    )
    labels = frame(label=['a:1', None, 'b:2;c:3', 'd:4', 'e:5'])
    for data in (mixed, labels):
        whole = tags_from_frame(data)
        assert whole[2] != {}
        for size in (1, 2, 3, 5, 8):
            chunks = list(iter_frame_tags(data, size))
            assert [len(c) for c in chunks] == [
                min(size, 5 - a) for a in range(0, 5, size)
            ]
            assert [t for c in chunks for t in c] == whole
    assert list(iter_frame_tags(mixed.iloc[:0], 2)) == []


def test_iter_frame_tags_errors_name_the_frame_row() -> None:
    bad = frame(tags=['{"a": "b"}', '{}', '{}', '{not json'])
    chunks = iter_frame_tags(bad, 2)
    assert next(chunks) == [{'a': 'b'}, {}]
    with pytest.raises(ValueError, match="row 3: column 'tags'"):
        next(chunks)
    # The label column's kind is read from the whole frame, not chunk by chunk.
    with pytest.raises(ValueError, match="row 3: column 'label' mixes GeoLink labels"):
        next(iter_frame_tags(frame(label=['a:b', 'c:d', 'e:f', 'plain text']), 2))


def test_tag_strings() -> None:
    assert tag_strings({'addr:street': 'Main St', 'building': 'yes', 'area': ''}) == [
        'addr street:Main St',
        'building:yes',
        'area',
    ]
    assert tag_strings(parse_label('landuse:grass;golf:tee')) == [
        'landuse:grass',
        'golf:tee',
    ]


def test_shipped_key_weights() -> None:
    weights = KeyWeights.from_json()
    assert (
        len(weights) == 2789
    )  # 2,790 keys, of which 'note' and 'note ' normalize to one
    assert weights.weight('highway') == pytest.approx(math.log(3_940_545))
    assert weights.weight('highway') == pytest.approx(15.19, abs=0.01)
    assert weights.weight('addr:street') == weights.weight('addr street') > 0
    assert weights.weight('certainly-not-a-key') == 0.0
    np.testing.assert_allclose(
        weights.for_strings(['building:yes', 'nope:x', 'landuse']),
        [math.log(725_072), 0.0, weights.weight('landuse')],
    )


def test_key_weights_from_file(tmp_path: Path) -> None:
    path = tmp_path / 'freq.json'
    path.write_text(json.dumps({'a': 1, 'b': math.e**2}))
    weights = KeyWeights.from_json(path)
    np.testing.assert_allclose(weights(['a', 'b', 'c']), [0.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="'bad'"):
        KeyWeights({'bad': 0})


def test_typed_cells_are_written_as_osm_text() -> None:
    gdf = frame(
        lanes=pd.array([2, None, 4], dtype='Int64'),
        width=[2.0, np.nan, 2.5],
        oneway=pd.array([True, False, None], dtype='boolean'),
        flag=[True, False, True],
        highway=[['primary', 'secondary'], None, ('service',)],
        start=[pd.Timestamp('2020-01-02'), pd.NaT, pd.NaT],
    )
    assert tags_from_frame(gdf) == [
        {
            'lanes': '2',
            'width': '2',
            'oneway': 'yes',
            'flag': 'yes',
            'highway': 'primary;secondary',
            'start': '2020-01-02 00:00:00',
        },
        {'oneway': 'no', 'flag': 'no'},
        {'lanes': '4', 'width': '2.5', 'flag': 'yes', 'highway': 'service'},
    ]
    # JSON tags hold typed values too
    assert tags_from_frame(frame(tags=['{"lanes": 2, "oneway": true, "w": 1.5}'])) == [
        {'lanes': '2', 'oneway': 'yes', 'w': '1.5'}
    ]


GEOJSON_TYPED = """{"type": "FeatureCollection", "features": [
{"type": "Feature", "properties": {"lanes": 2, "oneway": true, "ref": 12345678901234567, "name": "A"},
 "geometry": {"type": "Point", "coordinates": [24.9, 60.1]}},
{"type": "Feature", "properties": {"lanes": null, "oneway": false, "ref": null, "name": "B"},
 "geometry": {"type": "Point", "coordinates": [24.9, 60.2]}},
{"type": "Feature", "properties": {"name": "C"}, "geometry": {"type": "Point", "coordinates": [24.9, 60.3]}}
]}"""

TYPED_TAGS = [
    {'lanes': '2', 'oneway': 'yes', 'ref': '12345678901234567', 'name': 'A'},
    {'oneway': 'no', 'name': 'B'},
    {'name': 'C'},
]


@pytest.mark.parametrize('driver', ['GeoJSON', 'GPKG', 'FlatGeobuf', 'Parquet'])
def test_integer_and_boolean_fields_with_nulls_keep_their_text(
    tmp_path: Path, driver: str
) -> None:
    """Nullable integer fields read as float64 via NumPy (lanes=2.0, oneway=1.0)."""
    source = tmp_path / 'typed.geojson'
    source.write_text(GEOJSON_TYPED)
    path = source
    if driver != 'GeoJSON':
        path = tmp_path / f'typed.{driver.lower()}'
        gdf = gpd.GeoDataFrame(
            {
                'lanes': pd.array([2, None, None], dtype='Int64'),
                'oneway': pd.array([True, False, None], dtype='boolean'),
                'ref': pd.array([12345678901234567, None, None], dtype='Int64'),
                'name': ['A', 'B', 'C'],
            },
            geometry=[Point(24.9, 60.1), Point(24.9, 60.2), Point(24.9, 60.3)],
            crs='EPSG:4326',
        )
        if driver == 'Parquet':
            gdf.to_parquet(path)
        else:
            gdf.to_file(path, driver=driver)
    (read,) = read_vector_file(str(path), None)
    # FlatGeobuf writes features in the order of its spatial index
    assert tags_from_frame(read.sort_values('name')) == TYPED_TAGS


def test_geometry_copies_are_not_tags(tmp_path: Path) -> None:
    """GDAL's CSV driver keeps its WKT text; others carry WKB or a GeoParquet bbox."""
    gdf = frame(
        name=['a', 'b'],
        WKT=['POINT (0 0)', 'LINESTRING Z (0 0 1, 1 1 1)'],
        geom_text=['SRID=4326;POINT(1 1)', None],
        wkb=[shapely.to_wkb(Point(0, 0)), shapely.to_wkb(Point(1, 1))],
        bbox=[{'xmin': 0, 'ymin': 0, 'xmax': 1, 'ymax': 1}] * 2,
        other_geom=gpd.GeoSeries([Point(0, 0), Point(1, 1)]),
        gml_id=['f.0', 'f.1'],
    )
    assert tags_from_frame(gdf) == [{'name': 'a'}, {'name': 'b'}]
    path = tmp_path / 'features.csv'
    path.write_text(
        'WKT,highway,lanes\n"LINESTRING (0 0,1 1)",primary,2\n"POINT (3 3)",bus_stop,\n'
    )
    (read,) = read_vector_file(str(path), None)
    assert tags_from_frame(read) == [
        {'highway': 'primary', 'lanes': '2'},
        {'highway': 'bus_stop'},
    ]
    assert read.geometry.geom_type.tolist() == ['LineString', 'Point']
    # a geometry text column under another name, as pandas' to_csv writes a GeoDataFrame
    path.write_text('geometry,highway\n"POINT (3 3)",bus_stop\n')
    (read,) = read_vector_file(str(path), None)
    assert tags_from_frame(read) == [{'highway': 'bus_stop'}]


def torchgeo_osm_file(path: Path) -> Path:
    """Write a file as TorchGeo's ``OpenStreetMap`` caches an Overpass response."""
    osm = OpenStreetMap.__new__(
        OpenStreetMap
    )  # parsing needs the classes only, not a download
    osm.classes = [
        {'name': 'buildings', 'selector': [{'building': '*'}]},
        {'name': 'roads', 'selector': [{'highway': '*'}]},
    ]
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
                'id': 1,
                'tags': {'building': 'yes', 'building:levels': '3'},
                'geometry': [{'lon': x, 'lat': y} for x, y in square],
            },
            {
                'type': 'way',
                'id': 2,
                'tags': {'highway': 'residential', 'name': 'Katu'},
                'geometry': [
                    {'lon': 24.90, 'lat': 60.12},
                    {'lon': 24.92, 'lat': 60.12},
                ],
            },
            {
                'type': 'node',
                'id': 3,
                'lat': 60.105,
                'lon': 24.905,
                'tags': {'amenity': 'bench'},
            },
        ]
    }
    gdf = osm._parse_overpass_response(response)
    gdf.to_file(path, driver='GeoJSON')
    return path


def test_torchgeo_openstreetmap_layout(tmp_path: Path) -> None:
    """TorchGeo's layout: tag-key columns, osm_id, osm_type and an integer ``label``."""
    path = torchgeo_osm_file(tmp_path / 'osm_features.geojson')
    (read,) = read_vector_file(str(path), None)
    assert read['label'].tolist() == [1, 2, 0]
    assert tags_from_frame(read) == [
        {'building': 'yes', 'building levels': '3'},
        {'highway': 'residential', 'name': 'Katu'},
        {'amenity': 'bench'},
    ]


def test_geolink_label_layout_is_detected_by_content(tmp_path: Path) -> None:
    """GeoLink's layout, as its pipeline writes it: only a ``label`` of ``k:v;k:v``."""
    path = tmp_path / 'tile_polygon.geojson'
    gpd.GeoDataFrame(
        {'label': ['landuse:grass;golf:tee', 'building:yes;addr street:Main St', None]},
        geometry=[Point(0, 0), Point(1, 1), Point(2, 2)],
        crs='EPSG:4326',
    ).to_file(path, driver='GeoJSON')
    (read,) = read_vector_file(str(path), None)
    assert tags_from_frame(read) == [
        {'landuse': 'grass', 'golf': 'tee'},
        {'building': 'yes', 'addr street': 'Main St'},
        {},
    ]
    # a label that is no GeoLink label is the OSM key 'label', read like the other key
    # columns
    assert tags_from_frame(
        frame(label=['Kauppatori', None], place=['square', 'x'])
    ) == [{'place': 'square', 'label': 'Kauppatori'}, {'place': 'x'}]
