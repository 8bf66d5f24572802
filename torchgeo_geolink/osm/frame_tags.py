# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The tags of the rows of a (Geo)DataFrame, whichever columns hold them.

Tags are read column by column into flat arrays (:class:`TagRows`): text columns and
GDAL's ``other_tags`` hstore text are parsed with Arrow compute kernels, so a region's
millions of tags never become one Python dict per feature unless asked for
(:func:`tags_from_frame`).
"""

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from geopandas.array import GeometryDtype

from .tags import normalize_key, parse_hstore, parse_label

__all__ = (
    'BOOKKEEPING_COLUMNS',
    'TagRows',
    'iter_frame_tags',
    'iter_tag_rows',
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
    present = (v for v in cells[~pd.isna(cells)] if not _is_missing(v))
    first = next(present, None)
    if first is None:
        return True
    # The first value tells which kind of copy of the geometry the column could be.
    if isinstance(first, bytes | bytearray | shapely.Geometry):
        copies = (isinstance(v, bytes | bytearray | shapely.Geometry) for v in present)
    elif isinstance(first, str) and _GEOMETRY_TEXT.match(first):
        copies = (isinstance(v, str) and bool(_GEOMETRY_TEXT.match(v)) for v in present)
    elif isinstance(first, Mapping) and _BBOX_KEYS <= set(first):
        copies = (isinstance(v, Mapping) and _BBOX_KEYS <= set(v) for v in present)
    else:
        return True
    return not all(copies)


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


@dataclass(frozen=True)
class TagRows:
    """The normalized tags of consecutive rows, in CSR form.

    Row ``i`` carries the tags ``key_names[keys[j]]: value_names[values[j]]`` for ``j``
    in ``indptr[i]:indptr[i + 1]``, in the order of its tag mapping (keys unique within
    a row).

    .. versionadded:: 0.1

    Attributes:
        indptr: ``(n + 1,)`` int64 start of each row's tags.
        keys: int64 key of each tag, a position in *key_names*.
        values: int64 value of each tag, a position in *value_names*.
        key_names: the keys.
        value_names: the values.
    """

    indptr: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    key_names: list[str]
    value_names: list[str]

    def __len__(self) -> int:
        """Return the number of rows.

        Returns:
            The number of rows.
        """
        return len(self.indptr) - 1

    def mapping(self, row: int) -> dict[str, str]:
        """The tags of one row.

        Args:
            row: the row.

        Returns:
            Its tag mapping.
        """
        a, b = self.indptr[row], self.indptr[row + 1]
        return {
            self.key_names[k]: self.value_names[v]
            for k, v in zip(
                self.keys[a:b].tolist(), self.values[a:b].tolist(), strict=True
            )
        }

    def mappings(self) -> list[dict[str, str]]:
        """The tags of every row.

        Returns:
            One tag mapping per row.
        """
        keys = [self.key_names[k] for k in self.keys.tolist()]
        values = [self.value_names[v] for v in self.values.tolist()]
        bounds = self.indptr.tolist()
        return [
            dict(zip(keys[a:b], values[a:b], strict=True))
            for a, b in itertools.pairwise(bounds)
        ]

    def take(self, rows: np.ndarray) -> 'TagRows':
        """Gather rows (in any order, repeated or not).

        Args:
            rows: positions of the rows.

        Returns:
            Their tags.
        """
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.indptr)[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        index = np.repeat(self.indptr[rows] - indptr[:-1], counts)
        index += np.arange(indptr[-1])
        return TagRows(
            indptr,
            self.keys[index],
            self.values[index],
            self.key_names,
            self.value_names,
        )

    def _key_mask(self, keys: Iterable[str]) -> np.ndarray:
        """Tell which tags have one of some keys.

        Args:
            keys: the keys.

        Returns:
            bool array, one per tag.
        """
        wanted = frozenset(keys)
        hit = np.fromiter(
            (k in wanted for k in self.key_names), dtype=bool, count=len(self.key_names)
        )
        return hit[self.keys]

    def carrying(self, keys: Iterable[str]) -> np.ndarray:
        """Tell which rows carry at least one of some keys.

        Args:
            keys: the keys.

        Returns:
            bool array, one per row.
        """
        out = np.zeros(len(self), dtype=bool)
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        out[rows[self._key_mask(keys)]] = True
        return out

    def with_keys(self, keys: Iterable[str]) -> 'TagRows':
        """Keep only the tags with some keys (every row is kept).

        Args:
            keys: the keys.

        Returns:
            The rows with those tags only.
        """
        keep = self._key_mask(keys)
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[keep], minlength=len(self)), out=indptr[1:])
        return TagRows(
            indptr, self.keys[keep], self.values[keep], self.key_names, self.value_names
        )


class _Interned:
    """Strings numbered in order of first appearance."""

    def __init__(self) -> None:
        """Start with no string."""
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def ids(self, names: Iterable[str]) -> np.ndarray:
        """Number strings, adding the new ones.

        Args:
            names: the strings.

        Returns:
            int64 number of each.
        """
        index, out = self.index, []
        for name in names:
            i = index.get(name)
            if i is None:
                i = index[name] = len(self.names)
                self.names.append(name)
            out.append(i)
        return np.array(out, dtype=np.int64)


class _RowsBuilder:
    """The tags of one chunk of rows, collected source by source.

    Each source adds its tags in (row, position in the row) order; sources are added in
    the order their tags enter a row's mapping, where a later tag with a key already
    present replaces the value and keeps the position (as assigning to a dict does).
    """

    def __init__(self, n: int, keys: _Interned) -> None:
        """Start with no tag.

        Args:
            n: number of rows.
            keys: the keys (shared by the chunks of a frame).
        """
        self.n = n
        self.keys = keys
        self.values = _Interned()
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, rows: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
        """Add the tags of one source.

        Args:
            rows: row of each tag.
            keys: key id of each tag.
            values: value id of each tag.
        """
        if len(rows):
            self._parts.append((rows, keys, values))

    def add_text(
        self,
        rows: np.ndarray,
        raw_keys: list[str],
        key_codes: np.ndarray,
        raw_values: list[str],
        value_codes: np.ndarray,
        *,
        normalize: dict[str, str] | None,
    ) -> None:
        """Add the tags of one source from distinct raw keys and values.

        Values are stripped and tags with an empty value left out; with *normalize*,
        keys are normalized (through that cache) and tags with an empty key left out.

        Args:
            rows: row of each tag.
            raw_keys: the source's distinct keys.
            key_codes: each tag's position in *raw_keys*.
            raw_values: the source's distinct values.
            value_codes: each tag's position in *raw_values*.
            normalize: cache of normalized keys; None keeps the keys as they are.
        """
        if normalize is not None:
            names = []
            for raw in raw_keys:
                key = normalize.get(raw)
                if key is None:
                    key = normalize[raw] = normalize_key(raw)
                names.append(key)
            raw_keys = names
        key_ids = self.keys.ids(raw_keys)
        texts = [v.strip() for v in raw_values]
        value_ids = self.values.ids(texts)
        keep = np.array([bool(t) for t in texts], dtype=bool)[value_codes]
        if normalize is not None:
            keep &= np.array([bool(k) for k in raw_keys], dtype=bool)[key_codes]
        self.add(rows[keep], key_ids[key_codes[keep]], value_ids[value_codes[keep]])

    def add_mappings(
        self,
        rows: list[int],
        mappings: Sequence[Mapping[str, str]],
        normalize: dict[str, str],
    ) -> None:
        """Add the tags of one source from one raw mapping per row.

        Args:
            rows: the row of each mapping, ascending.
            mappings: raw keys and values.
            normalize: cache of normalized keys.
        """
        tag_rows = np.repeat(np.array(rows, dtype=np.int64), [len(m) for m in mappings])
        raw_keys = [k for m in mappings for k in m]
        raw_values = [v for m in mappings for v in m.values()]
        codes = np.arange(len(raw_keys))
        self.add_text(tag_rows, raw_keys, codes, raw_values, codes, normalize=normalize)

    def build(self) -> TagRows:
        """Merge the sources.

        Returns:
            The chunk's tags.
        """
        parts = self._parts or [(np.empty(0, dtype=np.int64),) * 3]
        rows, keys, values = (np.concatenate(p) for p in zip(*parts, strict=True))
        order = np.argsort(rows, kind='stable')
        rows, keys, values = rows[order], keys[order], values[order]
        repeated = _repeated(rows * max(len(self.keys.names), 1) + keys)
        if repeated is not None:
            first, last = repeated
            rows, keys, values = rows[first], keys[first], values[last]
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.n), out=indptr[1:])
        return TagRows(indptr, keys, values, self.keys.names, self.values.names)


def _repeated(code: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Find the first and the last of items with the same code, as a dict would keep.

    Args:
        code: the code of each item, items in order of insertion.

    Returns:
        For each distinct code, in order of its first item: the position of that first
        item (where a dict keeps the key) and of the last (whose value it keeps); None
        when no code repeats.
    """
    by_code = np.argsort(code, kind='stable')
    sorted_code = code[by_code]
    repeated = sorted_code[1:] == sorted_code[:-1]
    if not repeated.any():
        return None
    first = by_code[np.r_[True, ~repeated]]
    last = by_code[np.r_[~repeated, True]]
    order = np.argsort(first)
    return first[order], last[order]


def _codes(array: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Dictionary-encode Arrow text.

    Args:
        array: text without nulls.

    Returns:
        Each item's position among the distinct texts, and the distinct texts.
    """
    encoded = pc.dictionary_encode(array)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    return (
        encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        encoded.dictionary.to_pylist(),
    )


def _split_hstore(text: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array]:
    """Split hstore text without escapes into items with Arrow kernels.

    Only text in the simple form ``"k"=>"v","k"=>"v"`` (quoted at both ends, no
    backslash, every quote a delimiter) is split, exactly as :func:`parse_hstore`
    splits it; anything else is left to :func:`parse_hstore`.

    Args:
        text: hstore cells without nulls.

    Returns:
        The positions of the cells split, the position of each item's cell, and each
        item's raw key and raw value.
    """
    simple = pc.and_(
        pc.and_(pc.starts_with(text, '"'), pc.ends_with(text, '"')),
        pc.invert(pc.match_substring(text, '\\')),
    )
    cells = np.flatnonzero(simple.to_numpy(zero_copy_only=False))
    text = text.take(pa.array(cells))
    items = pc.split_pattern(pc.utf8_slice_codeunits(text, 1, -1), '","')
    counts = pc.list_value_length(items).to_numpy().astype(np.int64)
    quotes = pc.count_substring(text, '"').to_numpy().astype(np.int64)
    parts = pc.split_pattern(pc.list_flatten(items), '"=>"')
    owner = np.repeat(np.arange(len(cells)), counts)
    whole = quotes == 4 * counts
    whole[owner[pc.list_value_length(parts).to_numpy() != 2]] = False
    kept = whole[owner]
    parts = parts.filter(pa.array(kept))
    return (
        cells[whole],
        cells[owner[kept]],
        pc.list_element(parts, 0),
        pc.list_element(parts, 1),
    )


def _text_array(series: pd.Series) -> pa.Array | None:
    """The cells of a column as Arrow text, when they all are text or missing.

    Args:
        series: the cells.

    Returns:
        The text (missing cells as nulls), or None when a cell holds something else
        (those columns are read cell by cell).
    """
    if isinstance(series.dtype, pd.StringDtype):
        return pa.array(series)
    if series.dtype != object:
        return None
    try:
        array = pa.array(series.to_numpy(dtype=object), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if pa.types.is_null(array.type):
        return array.cast(pa.large_string())
    return array if pa.types.is_string(array.type) else None


def _add_column(
    builder: _RowsBuilder, series: pd.Series, column: str, offset: int
) -> None:
    """Add the tags of a column holding one key.

    Args:
        builder: the chunk's tags.
        series: the chunk's cells.
        column: the column name.
        offset: frame row of the chunk's first row, for error messages.

    Raises:
        ValueError: If a cell holds something that is not a tag value.
    """
    key = [normalize_key(column)]
    array = _text_array(series)
    if array is not None:
        present = array.is_valid()
        rows = np.flatnonzero(present.to_numpy(zero_copy_only=False))
        codes, distinct = _codes(array.filter(present))
    else:
        cells = series.to_numpy(dtype=object)
        rows = np.flatnonzero(~pd.isna(cells))
        distinct = [_tag_text(cells[i], column, offset + i) for i in rows.tolist()]
        codes = np.arange(len(rows))
    keys = np.zeros(len(rows), dtype=np.int64)
    builder.add_text(rows, key, keys, distinct, codes, normalize=None)


def _add_mapping_column(
    builder: _RowsBuilder,
    series: pd.Series,
    column: str,
    offset: int,
    normalize: dict[str, str],
) -> None:
    """Add the tags of a column holding many (``tags`` or ``other_tags``).

    Args:
        builder: the chunk's tags.
        series: the chunk's cells.
        column: the column name.
        offset: frame row of the chunk's first row, for error messages.
        normalize: cache of normalized keys.

    Raises:
        ValueError: If a cell cannot be read as tags.
    """
    array = _text_array(series)
    if array is not None:
        present = np.flatnonzero(array.is_valid().to_numpy(zero_copy_only=False))
        split, item_cell, raw_keys, raw_values = _split_hstore(
            array.take(pa.array(present))
        )
        key_codes, keys = _codes(raw_keys)
        value_codes, values = _codes(raw_values)
        rows = present[item_cell]
        # a key repeated in a cell keeps its last value, blank or not
        repeated = _repeated(rows * max(len(keys), 1) + key_codes)
        if repeated is not None:
            first, last = repeated
            rows, key_codes, value_codes = (
                rows[first],
                key_codes[first],
                value_codes[last],
            )
        builder.add_text(
            rows, keys, key_codes, values, value_codes, normalize=normalize
        )
        rest = np.delete(present, split)
    else:
        rest = np.flatnonzero(~pd.isna(series.to_numpy(dtype=object)))
    cells = series.iloc[rest].to_numpy(dtype=object)
    parsed = [
        _as_mapping(cell, column, offset + row)
        for row, cell in zip(rest.tolist(), cells, strict=True)
    ]
    builder.add_mappings(rest.tolist(), parsed, normalize)


def iter_tag_rows(frame: pd.DataFrame, chunk_size: int = 65536) -> Iterator[TagRows]:
    """Extract the tags of a (Geo)DataFrame chunk by chunk of rows, as flat arrays.

    The tags of :func:`tags_from_frame`: where they come from (a ``label``, ``tags`` or
    ``other_tags`` column, one column per key) is decided once from the whole frame,
    and row numbers in error messages are the frame's. Text columns and hstore text are
    parsed with Arrow kernels; only cells they cannot split (escapes, ``NULL`` values,
    JSON, dicts) are parsed one by one.

    Args:
        frame: The features.
        chunk_size: Rows per chunk.

    Yields:
        The tags of each chunk of *chunk_size* consecutive rows, in row order (the last
        chunk may be shorter; none for an empty frame). The chunks of a frame share
        one list of keys.

    Raises:
        ValueError: As :func:`tags_from_frame`.

    .. versionadded:: 0.1
    """
    n = len(frame)
    keys = _Interned()
    label_kind = (
        _label_column_kind(frame['label'].to_numpy(dtype=object))
        if 'label' in frame.columns
        else None
    )
    if label_kind == 'geolink':
        labels = frame['label'].to_numpy(dtype=object)
        for a in range(0, n, chunk_size):
            chunk = labels[a : a + chunk_size]
            builder = _RowsBuilder(len(chunk), keys)
            parsed = [
                {} if _is_missing(label) else parse_label(label) for label in chunk
            ]
            builder.add(
                np.repeat(np.arange(len(parsed)), [len(m) for m in parsed]),
                keys.ids(k for m in parsed for k in m),
                builder.values.ids(v for m in parsed for v in m.values()),
            )
            yield builder.build()
        return
    columns = [c for c in frame.columns if _is_tag_column(frame, c)]
    if label_kind == 'tag':
        columns.append('label')
    mappings = [c for c in ('tags', 'other_tags') if c in frame.columns]
    # A region holds a few thousand distinct keys among millions of tags.
    normalize: dict[str, str] = {}
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        builder = _RowsBuilder(b - a, keys)
        for column in columns:
            _add_column(builder, frame[column].iloc[a:b], column, a)
        for column in mappings:
            _add_mapping_column(builder, frame[column].iloc[a:b], column, a, normalize)
        yield builder.build()


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
    for rows in iter_tag_rows(frame, chunk_size):
        yield rows.mappings()
