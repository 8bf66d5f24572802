# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSM tag parsing, GeoLink tag strings and log-frequency key weights."""

import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from geopandas.array import GeometryDtype

__all__ = (
    'BOOKKEEPING_COLUMNS',
    'KeyWeights',
    'iter_frame_tags',
    'normalize_key',
    'parse_hstore',
    'parse_label',
    'tag_strings',
    'tags_from_frame',
)

#: Columns that are never tags when a frame stores one column per key (pyrosm, osmnx,
#: GDAL OSM driver, ...).
BOOKKEEPING_COLUMNS: frozenset[str] = frozenset(
    {
        'geometry',
        'id',
        'osm_id',
        'osm_way_id',
        'osmid',
        'osm_type',
        'element',
        'element_type',
        'type_osm',
        'version',
        'timestamp',
        'changeset',
        'user',
        'uid',
        'visible',
        'nodes',
        'ways',
        'members',
        'lat',
        'lon',
        'z_order',
        'fid',
        'index',
        'level_0',
        'label',
        'tags',
        'other_tags',
        # Fields GDAL drivers add to the features they read: the geometry text kept by
        # the CSV driver, GML ids, the feature id and geometry columns of
        # SQLite/PostGIS-style sources.
        'wkt',
        'geom',
        'the_geom',
        'wkb_geometry',
        'ogc_fid',
        'gml_id',
    }
)

# A geometry written as (E)WKT text, as the CSV driver keeps it next to the geometry it
# parses.
_GEOMETRY_TEXT = re.compile(
    r'\s*(?:SRID=\d+\s*;\s*)?(?:POINT|LINESTRING|POLYGON|MULTIPOINT|MULTILINESTRING|MULTIPOLYGON'
    r'|GEOMETRYCOLLECTION|LINEARRING|CIRCULARSTRING|COMPOUNDCURVE|CURVEPOLYGON|MULTICURVE|MULTISURFACE'
    r'|TRIANGLE|TIN|POLYHEDRALSURFACE)\s*(?:ZM|Z|M)?\s*(?:\(|EMPTY\s*$)',
    re.IGNORECASE,
)
# Keys of the per-row bounding box struct that GeoParquet 1.1 writers add as a ``bbox``
# column.
_BBOX_KEYS = frozenset({'xmin', 'ymin', 'xmax', 'ymax'})

# One `"key"=>"value"` item of an hstore string; both sides may hold backslash-escaped
# characters.
_HSTORE_ITEM = re.compile(
    r'"((?:[^"\\]|\\.)*)"\s*=>\s*(NULL|"((?:[^"\\]|\\.)*)")', re.DOTALL
)
_HSTORE_UNESCAPE = re.compile(r'\\(.)', re.DOTALL)


def normalize_key(key: str) -> str:
    """Write an OSM key the way GeoLink does (``:`` as a space, stripped).

    Args:
        key: An OSM tag key, e.g. ``'addr:street'``.

    Returns:
        The GeoLink key, e.g. ``'addr street'``.

    .. versionadded:: 0.1
    """
    return key.strip().replace(':', ' ')


def parse_label(label: str) -> dict[str, str]:
    """Parse a GeoLink label ``'k:v;k:v'`` into a mapping.

    The key is the text before the first ``:`` (GeoLink writes keys holding ``:`` with a
    space instead), the value everything after it. An entry without ``:`` becomes a key
    with an empty value; empty entries are skipped; a repeated key keeps its last value.

    Args:
        label: The label, e.g. ``'landuse:grass;golf:tee'``.

    Returns:
        The tags, e.g. ``{'landuse': 'grass', 'golf': 'tee'}``.

    .. versionadded:: 0.1
    """
    tags: dict[str, str] = {}
    for entry in label.split(';'):
        if not entry.strip():
            continue
        key, _, value = entry.partition(':')
        key = normalize_key(key)
        if key:
            tags[key] = value.strip()
    return tags


def parse_hstore(text: str) -> dict[str, str]:
    """Parse an hstore string, as in the ``other_tags`` column of GDAL's OSM driver.

    Args:
        text: E.g. ``'"name"=>"Kauppatori","addr:street"=>"Pohjoisesplanadi 1"'``;
            ``NULL`` values are dropped, backslash escapes are resolved.

    Returns:
        The tags with their original keys (not yet normalized).

    Raises:
        ValueError: If ``text`` holds something that is not a sequence of
            ``"key"=>"value"`` items.

    .. versionadded:: 0.1
    """
    text = text.strip()
    escaped = '\\' in text
    if not escaped and text[:1] == text[-1:] == '"':
        # Without escapes every quote delimits: split on the delimiters, and keep the
        # result when each item is exactly one quoted key and one quoted value.
        items = text[1:-1].split('","')
        if text.count('"') == 4 * len(items):
            try:  # dict() refuses an item that does not split in two
                return dict(item.split('"=>"') for item in items)
            except ValueError:
                pass
    tags: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _HSTORE_ITEM.match(text, position)
        if match is None:
            msg = f'not an hstore string at character {position}: {text[position : position + 40]!r}'
            raise ValueError(msg)
        key, raw, value = match.groups()
        if raw != 'NULL':
            if escaped:
                key = _HSTORE_UNESCAPE.sub(r'\1', key)
                value = _HSTORE_UNESCAPE.sub(r'\1', value)
            tags[key] = value
        position = match.end()
        while position < len(text) and text[position] in ', \t\n':
            position += 1
    return tags


def _is_missing(value: object) -> bool:
    """Tell whether a cell holds no value (None, NaN, pandas NA/NaT or a blank string).

    Args:
        value: A cell of a data frame.

    Returns:
        True when the cell holds no tag value.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping | list | tuple | np.ndarray):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _tag_text(value: object, column: str, row: int) -> str:
    """Write a cell as an OSM tag value (text as is, numbers as OSM writes them).

    OSM values are text; files store them typed. Integers are written as integers, also
    when they come back as floats (GDAL reads an integer field holding nulls as
    ``float64``, so ``lanes: 2`` reads as ``2.0``), other numbers in their shortest
    round-trip form, booleans as ``yes``/``no`` and lists (OSM's multiple values, as
    osmnx stores them) joined with ``;``.

    Args:
        value: A non-missing cell.
        column: The column name, for error messages.
        row: The row position, for error messages.

    Returns:
        The tag value, stripped.

    Raises:
        ValueError: If the cell holds something that is not a tag value (bytes, a
            geometry, a nested mapping).
    """
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | np.bool_):
        return 'yes' if value else 'no'
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer():
            return str(int(number))
        return repr(number)
    if isinstance(value, list | tuple | np.ndarray):
        items = [v for v in value if not _is_missing(v)]
        return ';'.join(_tag_text(v, column, row) for v in items)
    if not isinstance(value, bytes | bytearray | shapely.Geometry | Mapping):
        return str(value).strip()
    msg = (
        f'row {row}: column {column!r} holds a {type(value).__name__}, not a tag value'
    )
    raise ValueError(msg)


def _is_tag_column(frame: pd.DataFrame, column: object) -> bool:
    """Tell whether a column of a frame holds one tag key.

    Not tags: the geometry and :data:`BOOKKEEPING_COLUMNS` (names compared
    case-insensitively), any other geometry column, geometries written as (E)WKT text or
    WKB bytes (the CSV driver keeps the ``WKT`` text it parses, other drivers and
    writers keep similar copies), and GeoParquet's per-row ``bbox`` struct.

    Args:
        frame: The features.
        column: A column name.

    Returns:
        True when the column's cells are tag values of the key ``column``.
    """
    if not isinstance(column, str) or column.lower() in BOOKKEEPING_COLUMNS:
        return False
    if column == getattr(frame, '_geometry_column_name', None):
        return False
    series = frame[column]
    if isinstance(series.dtype, GeometryDtype):
        return False
    if series.dtype != object and not pd.api.types.is_string_dtype(series.dtype):
        return True
    cells = series.to_numpy(dtype=object)
    values = [v for v in cells[~pd.isna(cells)] if not _is_missing(v)]
    if not values:
        return True
    if all(isinstance(v, bytes | bytearray | shapely.Geometry) for v in values):
        return False
    if all(isinstance(v, str) and _GEOMETRY_TEXT.match(v) for v in values):
        return False
    return not all(isinstance(v, Mapping) and _BBOX_KEYS <= set(v) for v in values)


def _is_label_text(value: str) -> bool:
    """Tell whether a text is a GeoLink label: ``;``-separated ``key:value`` entries.

    Args:
        value: A non-blank cell of a ``label`` column.

    Returns:
        True when an entry has a non-empty key before a ``:`` (entries without ``:`` are
        keys without value, as :func:`parse_label` reads them).
    """
    return any(
        ':' in entry and entry.partition(':')[0].strip() for entry in value.split(';')
    )


def _label_column_kind(values: np.ndarray) -> str:
    """Tell what a column named ``label`` holds, from its content.

    Args:
        values: The column's cells.

    Returns:
        ``'geolink'`` for GeoLink labels (``k:v;k:v`` text, the only tag source of the
        frame), ``'class'`` for class numbers (TorchGeo's ``OpenStreetMap`` writes an
        integer ``label`` next to one column per tag key) and ``'tag'`` for text that is
        an ordinary tag value of the OSM key ``label``.

    Raises:
        ValueError: If the column mixes GeoLink labels with other values (names the
            first such row).
    """
    present = [(row, v) for row, v in enumerate(values) if not _is_missing(v)]
    if not present:
        return 'class'
    texts = [(row, v) for row, v in present if isinstance(v, str)]
    if not texts:
        odd = [
            (row, v)
            for row, v in present
            if not isinstance(v, int | float | np.integer | np.floating)
        ]
        if odd:
            row, value = odd[0]
            msg = (
                f"row {row}: column 'label' holds a {type(value).__name__}, expected GeoLink label text "
                "('key:value;...') or class numbers"
            )
            raise ValueError(msg)
        return 'class'
    labels = [_is_label_text(v) for _, v in texts]
    if len(texts) == len(present) and all(labels):
        return 'geolink'
    if len(texts) == len(present) and not any(labels):
        return 'tag'
    if any(labels):
        row, value = next(
            (row, v)
            for row, v in present
            if not (isinstance(v, str) and _is_label_text(v))
        )
        msg = (
            f"row {row}: column 'label' mixes GeoLink labels ('key:value;...') with {value!r} "
            f'({type(value).__name__})'
        )
        raise ValueError(msg)
    row, value = next((row, v) for row, v in present if not isinstance(v, str))
    msg = f"row {row}: column 'label' mixes text and {type(value).__name__} values ({value!r})"
    raise ValueError(msg)


def _as_mapping(value: object, column: str, row: int) -> dict[str, str]:
    """Turn a ``tags`` cell (mapping, JSON or hstore text) into a mapping.

    Args:
        value: The cell.
        column: The column name, for error messages.
        row: The row position, for error messages.

    Returns:
        The tags of the cell (original keys).

    Raises:
        ValueError: If the cell cannot be read as tags.
    """
    if _is_missing(value):
        return {}
    if isinstance(value, Mapping):
        return {
            str(k): _tag_text(v, column, row)
            for k, v in value.items()
            if not _is_missing(v)
        }
    if isinstance(value, str):
        text = value.strip()
        if text.startswith('{'):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError as error:
                msg = f'row {row}: column {column!r} holds invalid JSON tags ({error})'
                raise ValueError(msg) from error
            if not isinstance(
                decoded, dict
            ):  # pragma: no cover - startswith('{') implies an object
                msg = f'row {row}: column {column!r} does not hold a JSON object'
                raise ValueError(msg)
            return {
                str(k): _tag_text(v, column, row)
                for k, v in decoded.items()
                if not _is_missing(v)
            }
        try:
            return parse_hstore(text)
        except ValueError as error:
            msg = f'row {row}: column {column!r}: {error}'
            raise ValueError(msg) from error
    msg = f'row {row}: column {column!r} holds a {type(value).__name__}, expected a dict or JSON/hstore text'
    raise ValueError(msg)


@functools.cache
def _shipped_counts() -> dict[str, float]:
    """Read the key-frequency table shipped with the package (once per process).

    Returns:
        Key -> count.
    """
    text = (
        files('torchgeo_geolink')
        .joinpath('data', 'tag_key_frequency.json')
        .read_text('utf-8')
    )
    return json.loads(text)


def tags_from_frame(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Extract one normalized tag mapping per row of a (Geo)DataFrame.

    Understood sources, combined when several are present:

    * a ``label`` column of GeoLink labels (``k:v;k:v`` text); when present it is the
      only source used. A ``label`` column is recognized by its content: class numbers
      (as TorchGeo's ``OpenStreetMap`` dataset writes next to one column per tag key)
      are not tags, other text is the tag ``label``;
    * a ``tags`` column of dicts or JSON text (pyrosm stores its extra tags as JSON
      text);
    * an ``other_tags`` column of hstore text (GDAL's OSM driver);
    * one column per key (pyrosm, osmnx, GDAL OSM driver, TorchGeo), excluding geometry,
      the ``BOOKKEEPING_COLUMNS`` and copies of the geometry (WKT text, WKB bytes,
      GeoParquet's ``bbox``); null cells are skipped.

    Keys are normalized with :func:`normalize_key`. Values are stripped text; typed
    cells are written as OSM writes them: integers as integers (also when a file's nulls
    turned the column into floats, ``2.0`` -> ``2``), booleans as ``yes``/``no``, lists
    joined with ``;``.

    Args:
        frame: The features.

    Returns:
        One dict per row, in row order.

    Raises:
        ValueError: If a ``label``, ``tags`` or ``other_tags`` cell cannot be parsed, or
            a cell of a tag column holds something that is not a tag value (names row
            and column).

    .. versionadded:: 0.1
    """
    return [
        tags for chunk in iter_frame_tags(frame, max(len(frame), 1)) for tags in chunk
    ]


def iter_frame_tags(
    frame: pd.DataFrame, chunk_size: int = 65536
) -> Iterator[list[dict[str, str]]]:
    """Extract the tags of a (Geo)DataFrame chunk by chunk of rows.

    The same tags as :func:`tags_from_frame`, which reads the frame in one chunk: where
    the tags come from (a ``label``, ``tags`` or ``other_tags`` column, one column per
    key) is decided once from the whole frame, and row numbers in error messages are the
    frame's. Only one chunk's dicts are alive at a time when the caller consumes each
    chunk before asking for the next, which bounds the memory of reading a large file.

    Args:
        frame: The features.
        chunk_size: Rows per chunk.

    Yields:
        One dict per row of each chunk of *chunk_size* consecutive rows, in row order
        (the last chunk may be shorter; none for an empty frame).

    Raises:
        ValueError: As :func:`tags_from_frame`.

    .. versionadded:: 0.1
    """
    n = len(frame)
    label_kind = (
        _label_column_kind(frame['label'].to_numpy(dtype=object))
        if 'label' in frame.columns
        else None
    )
    if label_kind == 'geolink':
        labels = frame['label'].to_numpy(dtype=object)
        for a in range(0, n, chunk_size):
            yield [
                {} if _is_missing(label) else parse_label(label)
                for label in labels[a : a + chunk_size]
            ]
        return
    columns = [c for c in frame.columns if _is_tag_column(frame, c)]
    if label_kind == 'tag':
        columns.append('label')
    mappings = [c for c in ('tags', 'other_tags') if c in frame.columns]
    # A region holds a few thousand distinct keys among millions of tags.
    normalized: dict[str, str] = {}
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        tags: list[dict[str, str]] = [{} for _ in range(b - a)]
        for column in columns:
            key = normalize_key(column)
            values = frame[column].iloc[a:b].to_numpy(dtype=object)
            # pd.isna finds None, NaN and NA in one pass; blank strings give empty text
            for i in np.flatnonzero(~pd.isna(values)).tolist():
                text = _tag_text(values[i], column, a + i)
                if text:
                    tags[i][key] = text
        for column in mappings:
            values = frame[column].iloc[a:b].to_numpy(dtype=object)
            for i in np.flatnonzero(~pd.isna(values)).tolist():
                for raw, val in _as_mapping(values[i], column, a + i).items():
                    key = normalized.get(raw)
                    if key is None:
                        key = normalized[raw] = normalize_key(raw)
                    text = val.strip()
                    if key and text:
                        tags[i][key] = text
        yield tags


def tag_strings(tags: Mapping[str, str]) -> list[str]:
    """GeoLink tag strings of one feature: ``'key:value'``.

    A tag with an empty value is written as its key alone (as an entry without ``:`` of
    a label would be).

    Args:
        tags: The feature's tags.

    Returns:
        One string per tag, in the mapping's order.

    .. versionadded:: 0.1
    """
    out = []
    for key, value in tags.items():
        key = normalize_key(key)
        out.append(f'{key}:{value}' if value else key)
    return out


class KeyWeights:
    """GeoLink's per-key tag weights: ``ln(count[key])`` from a key-frequency table.

    Frequent keys are up-weighted (log frequency, not IDF). A key missing from the table
    counts as 1, hence weight 0, like a key seen once: it only contributes when every
    tag of a feature has weight 0, in which case the node embedding falls back to the
    plain mean (the reference meant this but crashes on unknown keys, bug B13).

    .. versionadded:: 0.1
    """

    def __init__(self, counts: Mapping[str, float]) -> None:
        """Initialize from a key -> count mapping.

        Args:
            counts: Occurrence count of each key (keys written GeoLink-style, ``:`` as a
                space).

        Raises:
            ValueError: If a count is below 1 or not finite.
        """
        weights: dict[str, float] = {}
        for key, count in counts.items():
            count = float(count)
            if not math.isfinite(count) or count < 1:
                msg = (
                    f'key frequency of {key!r} must be a finite count >= 1, got {count}'
                )
                raise ValueError(msg)
            key = normalize_key(key)
            # Keys equal after normalization (the shipped table has 'note' and 'note '):
            # keep the larger count.
            weights[key] = max(weights.get(key, 0.0), math.log(count))
        self._weights = weights

    @classmethod
    def from_json(cls, path: str | Path | None = None) -> 'KeyWeights':
        """Load a ``{key: count}`` JSON table.

        Args:
            path: The JSON file; None loads the table shipped with the package (2,790
                keys, from the official GeoLink release, derived from OpenStreetMap
                data, ODbL).

        Returns:
            The key weights.
        """
        if path is None:
            text = (
                files('torchgeo_geolink')
                .joinpath('data', 'tag_key_frequency.json')
                .read_text('utf-8')
            )
        else:
            text = Path(path).read_text('utf-8')
        return cls(json.loads(text))

    @classmethod
    @functools.cache
    def _shipped(cls) -> 'KeyWeights':
        """Return the shipped table's weights, built once per process.

        Returns:
            The key weights.
        """
        return cls(_shipped_counts())

    def __len__(self) -> int:
        """Return the number of keys in the table.

        Returns:
            The number of keys.
        """
        return len(self._weights)

    def weight(self, key: str) -> float:
        """Return the weight of one key.

        Args:
            key: An OSM key (normalized on the fly).

        Returns:
            ``ln(count)``, or 0 for unknown keys.
        """
        return self._weights.get(normalize_key(key), 0.0)

    def __call__(self, keys: Iterable[str]) -> np.ndarray:
        """Return the weights of many keys.

        Args:
            keys: OSM keys.

        Returns:
            float64 array of weights.
        """
        get = self._weights.get
        return np.fromiter((get(normalize_key(k), 0.0) for k in keys), dtype=np.float64)

    def for_strings(self, tags: Sequence[str]) -> np.ndarray:
        """Return the weights of GeoLink tag strings, looked up by their key.

        Args:
            tags: Tag strings such as ``'highway:service'``.

        Returns:
            float64 array of weights.
        """
        return self(t.partition(':')[0] for t in tags)
