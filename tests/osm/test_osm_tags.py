# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tag parsing of every source form, GeoLink tag strings and log-frequency key weights."""

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

from torchgeo_geolink.osm import (
    KeyWeights,
    parse_hstore,
    parse_label,
    tag_strings,
    tags_from_frame,
)


def frame(**columns: list) -> gpd.GeoDataFrame:
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


def test_tags_from_label_column() -> None:
    tags = tags_from_frame(frame(label=['highway:service', None, 'a:1;b:2']))
    assert tags == [{'highway': 'service'}, {}, {'a': '1', 'b': '2'}]


def test_tags_from_dict_and_json_columns() -> None:
    tags = tags_from_frame(
        frame(tags=[{'addr:street': 'X', 'n': None}, '{"shop": "bakery"}', None])
    )
    assert tags == [{'addr street': 'X'}, {'shop': 'bakery'}, {}]


def test_tags_from_gdal_osm_layer() -> None:
    """GDAL's OSM driver: some keys as columns, the rest in an hstore, plus bookkeeping columns."""
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
        {'height': '3.0'},
    ]


def test_tags_from_frame_errors_name_the_row() -> None:
    with pytest.raises(ValueError, match="row 1: column 'tags'"):
        tags_from_frame(frame(tags=['{"a": "b"}', '{not json']))
    with pytest.raises(ValueError, match="row 0: column 'label'"):
        tags_from_frame(frame(label=[3]))


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
    )  # 2,790 keys, of which 'note' and 'note ' normalise to one
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
