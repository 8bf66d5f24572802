# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Columnar tag extraction (TagRows) against the per-row meaning of the tags."""

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from torchgeo_geolink.datasets.osm_reader import read_vector_file
from torchgeo_geolink.osm import (
    BOOKKEEPING_COLUMNS,
    TagRows,
    iter_tag_rows,
    normalize_key,
    parse_hstore,
    tags_from_frame,
)

HELSINKI = (
    Path(__file__).resolve().parents[2]
    / 'torchgeo_geolink'
    / 'data'
    / 'helsinki.osm.pbf'
)


def frame(
    **columns: Sequence[object] | pd.api.extensions.ExtensionArray,
) -> gpd.GeoDataFrame:
    n = len(next(iter(columns.values())))
    return gpd.GeoDataFrame(
        columns, geometry=[Point(i, i) for i in range(n)], crs='EPSG:4326'
    )


def per_row(
    data: pd.DataFrame, columns: Sequence[str], hstore: str | None
) -> list[dict[str, str]]:
    """The tags one dict per row gives: text columns, then the hstore column.

    A later tag with a key already present replaces its value and keeps its place.
    """
    out = []
    for row in range(len(data)):
        tags: dict[str, str] = {}
        for column in columns:
            value = data[column].iloc[row]
            if isinstance(value, str) and value.strip():
                tags[normalize_key(column)] = value.strip()
        text = None if hstore is None else data[hstore].iloc[row]
        if isinstance(text, str) and text.strip():
            for raw, value in parse_hstore(text.strip()).items():
                key = normalize_key(raw)
                if key and value.strip():
                    tags[key] = value.strip()
        out.append(tags)
    return out


# Quotes, backslashes, separators, NULL and whitespace Python and Arrow may disagree on.
_CHARS = st.text(alphabet='ab "\\,=>: \u3000\x1cNUL', max_size=12)
_PLAIN = st.text(alphabet='ab c:;=>,\u3000é', max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            _CHARS,
            st.lists(st.tuples(_PLAIN, _PLAIN), max_size=4).map(
                lambda items: ','.join(f'"{k}"=>"{v}"' for k, v in items)
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(['str', object]),
)
@example(cells=['":"=>":",":"=>""', '"a"b"=>"c"'], dtype='str')
def test_hstore_cells_split_by_arrow_read_as_parse_hstore(
    cells: list[str | None], dtype: str | type
) -> None:
    # text columns of pandas' string dtype and object columns holding only text (as
    # pandas 2 reads them) take the Arrow path
    names = [f' n{i} ' if i % 2 else None for i in range(len(cells))]
    data = frame(
        name=pd.array(names, dtype=dtype), other_tags=pd.array(cells, dtype=dtype)
    )
    try:
        expected = per_row(data, ['name'], 'other_tags')
    except ValueError:
        with pytest.raises(ValueError, match="column 'other_tags'"):
            list(iter_tag_rows(data))
        return
    assert tags_from_frame(data) == expected


def test_repeated_keys_keep_their_first_place_and_last_value() -> None:
    data = frame(
        name=['column name', None, '  '],
        **{'addr:city': ['A', 'B', None], 'addr city': [None, 'C', 'D']},
        other_tags=[
            '"name"=>"hstore name","shop"=>"x","shop"=>"y"',
            '"addr:city"=>"E","a"=>"  ","  "=>"blank key"',
            # within a cell the last value wins before blank values are left out
            '"shop"=>"z","shop"=>" "',
        ],
    )
    expected = per_row(data, ['name', 'addr:city', 'addr city'], 'other_tags')
    assert expected == [
        {'name': 'hstore name', 'addr city': 'A', 'shop': 'y'},
        {'addr city': 'E'},
        {'addr city': 'D'},
    ]
    assert tags_from_frame(data) == expected
    assert [t for rows in iter_tag_rows(data, 1) for t in rows.mappings()] == expected


def test_object_columns_of_text_and_of_other_values() -> None:
    data = frame(
        name=pd.array(['A ', None, np.nan, ' '], dtype=object),
        lanes=pd.array(['2', 3, None, 4.0], dtype=object),
        other_tags=pd.array(['"x"=>"1"', None, pd.NA, '"y"=>"2"'], dtype=object),
        empty=pd.array([None] * 4, dtype=object),
    )
    assert tags_from_frame(data) == [
        {'name': 'A', 'lanes': '2', 'x': '1'},
        {'lanes': '3'},
        {},
        {'lanes': '4', 'y': '2'},
    ]


def test_escaped_and_null_cells_fall_back_to_the_parser() -> None:
    data = frame(
        other_tags=[
            r'"name"=>"Say \"hi\"","x"=>NULL',
            '"a"=>"1","b"=>"2"',
            ' "c"=>"3" ',
            '{"json": "yes"}',
        ]
    )
    assert tags_from_frame(data) == [
        {'name': 'Say "hi"'},
        {'a': '1', 'b': '2'},
        {'c': '3'},
        {'json': 'yes'},
    ]
    # splits in two on the delimiters, but holds a stray quote
    with pytest.raises(ValueError, match="row 1: column 'other_tags'"):
        tags_from_frame(frame(other_tags=['"a"=>"1"', '"a"b"=>"c"']))


def test_tag_rows_take_carrying_with_keys() -> None:
    rows = next(
        iter_tag_rows(
            frame(
                highway=['primary', None, 'service'],
                name=['A', 'B', None],
                other_tags=[None, '"shop"=>"bakery"', None],
            )
        )
    )
    assert isinstance(rows, TagRows)
    assert len(rows) == 3
    assert rows.mapping(1) == {'name': 'B', 'shop': 'bakery'}
    taken = rows.take(np.array([2, 0, 0, 1]))
    assert taken.mappings() == [
        {'highway': 'service'},
        {'highway': 'primary', 'name': 'A'},
        {'highway': 'primary', 'name': 'A'},
        {'name': 'B', 'shop': 'bakery'},
    ]
    assert rows.carrying(['shop', 'highway']).tolist() == [True, True, True]
    assert rows.carrying(['name']).tolist() == [True, True, False]
    assert rows.carrying(['missing']).tolist() == [False, False, False]
    assert rows.with_keys(['name', 'shop']).mappings() == [
        {'name': 'A'},
        {'name': 'B', 'shop': 'bakery'},
        {},
    ]
    assert rows.take(np.array([], dtype=np.int64)).mappings() == []


def test_gdal_layers_of_a_real_extract_read_as_one_dict_per_row() -> None:
    # GDAL's OSM driver: a text column per common key, the rest in other_tags.
    for layer in read_vector_file(str(HELSINKI), None):
        columns = [
            c
            for c in layer.columns
            if c.lower() not in BOOKKEEPING_COLUMNS and c != layer.geometry.name
        ]
        expected = per_row(layer, columns, 'other_tags')
        assert sum(map(len, expected)) > len(layer)
        assert tags_from_frame(layer) == expected
