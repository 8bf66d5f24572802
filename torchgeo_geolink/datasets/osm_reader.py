# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Read and clean OSM vector files into single-part polygon, line and point features."""

import os
import pathlib
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, cast

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import pyogrio.errors
import shapely
from geopandas import GeoDataFrame
from pyproj import CRS
from torchgeo.datasets.utils import Path

from ..errors import InvalidFeatureError, OSMFileError
from ..osm.constants import NODE_TYPES
from ..osm.frame_tags import TagRows, iter_tag_rows
from ..osm.geometry import split_by_type
from .pbf_quackosm import read_pbf_quackosm

__all__ = (
    'PBF_LAYERS',
    'READ_CHUNK',
    'VECTOR_SUFFIXES',
    'FileFeatures',
    'LoadReport',
    'PBFReader',
    'TagInterner',
    'file_crs',
    'read_features',
    'read_vector_file',
    'resolve_files',
)

#: File name endings read as vector files when a directory is searched.
VECTOR_SUFFIXES = (
    '.geojson',
    '.json',
    '.gpkg',
    '.shp',
    '.parquet',
    '.geoparquet',
    '.osm.pbf',
    '.pbf',
    '.osm',
    '.fgb',
)

#: Layers of GDAL's OSM driver read by default. ``multilinestrings`` (route and waterway
#: relations) is left out: its parts duplicate the ways of the ``lines`` layer (in the
#: shipped Helsinki extract, 8.6k lines but 3.9k distinct geometries), which turns every
#: street into a clique of ``equals`` edges; pass ``layers=`` to read it.
PBF_LAYERS = ('points', 'lines', 'multipolygons')
#: Readers of ``.pbf`` files: GDAL's OSM driver (the default) or QuackOSM.
PBFReader = Literal['gdal', 'quackosm']
#: Rows whose tags are parsed and cleaned at a time: the per-feature tag dicts of a
#: whole region would take more memory than the store built from them.
READ_CHUNK = 65536

_MULTI_TYPES = (
    int(shapely.GeometryType.MULTIPOINT),
    int(shapely.GeometryType.MULTILINESTRING),
    int(shapely.GeometryType.MULTIPOLYGON),
    int(shapely.GeometryType.GEOMETRYCOLLECTION),
)


@dataclass
class LoadReport:
    """What happened to the features of one file while it was loaded.

    .. versionadded:: 0.1

    Every feature read is either kept (as one or more single-part features) or dropped
    for one reason.

    Attributes:
        path: the file.
        read: features read (inside ``roi`` when one is given).
        repaired: invalid geometries repaired with :func:`shapely.make_valid`.
        exploded: geometries read with more than one part (multipart geometries,
            collections) split into parts.
        dropped_empty: empty or missing geometries dropped.
        dropped_nonfinite: geometries with NaN or infinite coordinates dropped.
        dropped_degenerate: geometries dropped because nothing of their dimension is
            left (e.g. a polygon that collapses to a line when repaired).
        dropped_keys: features left out because they carry one of ``drop_keys``.
        dropped_unmatched: features left out because they carry none of ``keys``.
        dropped_reprojection: features dropped because they cannot be reprojected to the
            dataset CRS.
        kept: single-part features kept (polygons, lines and points).
    """

    path: str
    read: int = 0
    repaired: int = 0
    exploded: int = 0
    dropped_empty: int = 0
    dropped_nonfinite: int = 0
    dropped_degenerate: int = 0
    dropped_keys: int = 0
    dropped_unmatched: int = 0
    dropped_reprojection: int = 0
    kept: int = 0

    def merge_geometry_counts(self, other: 'LoadReport') -> None:
        """Add the geometry clean-up counts of another report (of part of the file).

        Args:
            other: the report.
        """
        self.repaired += other.repaired
        self.exploded += other.exploded
        self.dropped_empty += other.dropped_empty
        self.dropped_nonfinite += other.dropped_nonfinite
        self.dropped_degenerate += other.dropped_degenerate

    @property
    def dropped(self) -> int:
        """Features dropped, all reasons together."""
        return (
            self.dropped_empty
            + self.dropped_nonfinite
            + self.dropped_degenerate
            + self.dropped_keys
            + self.dropped_unmatched
            + self.dropped_reprojection
        )

    def summary(self) -> str:
        """Describe the counts in one line.

        Returns:
            E.g. ``'read 100, kept 98 (2 repaired, 1 exploded); dropped 2 empty'``.
        """
        fixes = [
            f'{n} {what}'
            for n, what in ((self.repaired, 'repaired'), (self.exploded, 'exploded'))
            if n
        ]
        reasons = [
            f'{n} {what}'
            for n, what in (
                (self.dropped_empty, 'empty'),
                (self.dropped_nonfinite, 'with NaN or infinite coordinates'),
                (self.dropped_degenerate, 'degenerate'),
                (self.dropped_keys, 'with a dropped key'),
                (self.dropped_unmatched, 'without any of the wanted keys'),
                (self.dropped_reprojection, 'not reprojectable'),
            )
            if n
        ]
        text = f'read {self.read}, kept {self.kept}'
        if fixes:
            text += f' ({", ".join(fixes)})'
        if reasons:
            text += f'; dropped {", ".join(reasons)}'
        return text


class TagInterner:
    """Tags of many features as interned ``(key, value)`` pairs in CSR form.

    Feature ``i`` carries the pairs ``pairs[indptr[i]:indptr[i + 1]]``, in the order of
    its tag mapping.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        """Start with no feature."""
        self._index: dict[tuple[str, str], int] = {}
        #: Key of each distinct pair.
        self.keys: list[str] = []
        #: Value of each distinct pair.
        self.values: list[str] = []
        self._counts: list[np.ndarray] = []
        self._pairs: list[np.ndarray] = []
        self._indptr: np.ndarray | None = None

    def __len__(self) -> int:
        """Return the number of features added.

        Returns:
            The number of features.
        """
        return sum(len(c) for c in self._counts)

    def add(self, rows: TagRows) -> None:
        """Add features.

        Args:
            rows: the tags of each feature.
        """
        n_values = max(len(rows.value_names), 1)
        # distinct pairs numbered in order of first appearance, as a dict lookup per
        # tag would number them
        inverse, codes = pd.factorize(rows.keys * n_values + rows.values)
        index, ids = self._index, np.empty(len(codes), dtype=np.int32)
        items = zip(
            (codes // n_values).tolist(), (codes % n_values).tolist(), strict=True
        )
        for j, (k, v) in enumerate(items):
            item = (rows.key_names[k], rows.value_names[v])
            pair = index.get(item)
            if pair is None:
                pair = index[item] = len(self.keys)
                self.keys.append(item[0])
                self.values.append(item[1])
            ids[j] = pair
        self._pairs.append(ids[inverse])
        self._counts.append(np.diff(rows.indptr))
        self._indptr = None

    def as_rows(self) -> TagRows:
        """The features' tags as rows whose keys and values are numbered by pair.

        Returns:
            Feature ``i``'s tags, ready to :meth:`add` to another interner (which
            merges the tags of several files).
        """
        pairs = self.pairs.astype(np.int64)
        return TagRows(self.indptr, pairs, pairs, self.keys, self.values)

    @property
    def indptr(self) -> np.ndarray:
        """``(n + 1,)`` int64 start of each feature's pairs."""
        if self._indptr is None:
            counts = np.concatenate([np.empty(0, dtype=np.int64), *self._counts])
            self._counts = [counts]
            self._indptr = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=self._indptr[1:])
        return self._indptr

    @property
    def pairs(self) -> np.ndarray:
        """int32 pair id of each tag of each feature."""
        self._pairs = [np.concatenate([np.empty(0, dtype=np.int32), *self._pairs])]
        return self._pairs[0]

    def tags(self, row: int) -> dict[str, str]:
        """The tags of one feature.

        Args:
            row: the feature.

        Returns:
            Its tag mapping.
        """
        indptr, pairs = self.indptr, self.pairs
        return {
            self.keys[p]: self.values[p]
            for p in pairs[indptr[row] : indptr[row + 1]].tolist()
        }


@dataclass
class FileFeatures:
    """The cleaned single-part features of one file, in the file's CRS.

    .. versionadded:: 0.1

    Attributes:
        path: the file.
        crs: the file's :term:`coordinate reference system (CRS)`.
        geometries: single-part, valid, 2-D geometries.
        kinds: node kind of each (0 polygon, 1 line, 2 point).
        tags: normalized tags of each, interned.
        report: what happened while the file was read.
    """

    path: str
    crs: CRS
    geometries: np.ndarray
    kinds: np.ndarray
    tags: TagInterner
    report: LoadReport


def resolve_files(paths: Path | Iterable[Path], filename_glob: str) -> list[str]:
    """List the vector files to load.

    Args:
        paths: files, or directories searched recursively for files with a known vector
            suffix.
        filename_glob: glob (without suffix) that file names in directories must match.

    Returns:
        Sorted, distinct file paths.

    Raises:
        OSMFileError: if a path does not exist or no vector file is found.

    .. versionadded:: 0.1
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    files: set[str] = set()
    for item in items:
        path = pathlib.Path(item)
        if path.is_dir():
            for found in path.rglob(filename_glob):
                if found.is_file() and found.name.lower().endswith(VECTOR_SUFFIXES):
                    files.add(str(found))
        elif path.is_file():
            files.add(str(path))
        else:
            raise OSMFileError(f'{path}: no such file or directory')
    if not files:
        raise OSMFileError(
            f'no vector file ({", ".join(VECTOR_SUFFIXES)}) found in {[str(i) for i in items]}'
        )
    return sorted(files)


def _roi_in(roi: shapely.Geometry, roi_crs: CRS, crs: CRS | None) -> shapely.Geometry:
    """Express a region of interest in another CRS (its edges densified first).

    Args:
        roi: the region.
        roi_crs: its CRS.
        crs: the wanted CRS (None: the same).

    Returns:
        The region in *crs*.
    """
    if crs is None or CRS.from_user_input(crs) == roi_crs:
        return roi
    xmin, ymin, xmax, ymax = roi.bounds
    step = max(xmax - xmin, ymax - ymin) / 64 or 1.0
    dense = shapely.segmentize(roi, step)
    return gpd.GeoSeries([dense], crs=roi_crs).to_crs(crs).iloc[0]


#: Arrow field types read into pandas' nullable dtypes. Read through NumPy, an integer
#: or boolean field holding nulls becomes float64 (``lanes: 2`` would give the tag
#: ``lanes=2.0``, ``oneway: true`` ``oneway=1.0``, and integers above 2**53 would lose
#: digits); the nullable dtypes keep the values as written.
_NULLABLE_DTYPES: dict[pa.DataType, object] = {
    **dict.fromkeys(
        (
            pa.int8(),
            pa.int16(),
            pa.int32(),
            pa.int64(),
            pa.uint8(),
            pa.uint16(),
            pa.uint32(),
        ),
        pd.Int64Dtype(),
    ),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}
_TO_PANDAS = {'types_mapper': _NULLABLE_DTYPES.get}


def _read_options(name: str) -> dict[str, object]:
    """Keyword arguments of :func:`pyogrio.read_dataframe` for a file.

    Fields are read through Arrow into nullable dtypes (see ``_NULLABLE_DTYPES``); for
    CSV files, GDAL takes the geometry from a WKT column under its usual names and drops
    that column.

    Args:
        name: the file's name, lower case.

    Returns:
        The keyword arguments.
    """
    options: dict[str, object] = {
        'use_arrow': True,
        'arrow_to_pandas_kwargs': _TO_PANDAS,
    }
    if name.endswith('.csv'):
        options |= {
            'GEOM_POSSIBLE_NAMES': 'WKT,geometry,geom,the_geom',
            'KEEP_GEOM_COLUMNS': 'NO',
        }
    return options


#: Fields GDAL's KML and LIBKML drivers give every placemark (styling and timing of the
#: placemark itself).
_KML_FIELDS = frozenset(
    {
        'description',
        'timestamp',
        'begin',
        'end',
        'altitudeMode',
        'tessellate',
        'extrude',
        'visibility',
        'drawOrder',
        'icon',
        'snippet',
    }
)


def _checked_frames(
    path: str, layers: Sequence[str], frames: list[pd.DataFrame]
) -> list[GeoDataFrame]:
    """Check that every layer has a geometry; warn of missing shapefile attributes.

    Args:
        path: the file.
        layers: the layers read.
        frames: one frame per layer.

    Returns:
        The frames.

    Raises:
        OSMFileError: if a layer has no geometry column.
    """
    for layer, frame in zip(layers, frames, strict=True):
        if not isinstance(frame, GeoDataFrame):
            msg = (
                f'{path}: layer {layer!r} has no geometry (columns {list(frame.columns)}); a CSV file needs its '
                'geometry as WKT text in a column named WKT or geometry'
            )
            raise OSMFileError(msg)
    if path.lower().endswith(('.kml', '.kmz')):
        # KML's own placemark fields are no tags; its <name> element holds the feature's
        # name
        frames = [
            frame.drop(columns=[c for c in frame.columns if c in _KML_FIELDS]).rename(
                columns={} if 'name' in frame.columns else {'Name': 'name'}
            )
            if isinstance(frame, GeoDataFrame)
            else frame
            for frame in frames
        ]
    if path.lower().endswith('.shp') and not any(
        pathlib.Path(path).with_suffix(suffix).exists() for suffix in ('.dbf', '.DBF')
    ):
        msg = (
            f'{path}: the shapefile has no .dbf file next to it, so its features have no attributes: every '
            'feature is read without tags'
        )
        warnings.warn(msg, UserWarning, stacklevel=4)
    # every frame was checked to be a GeoDataFrame above
    return cast(list[GeoDataFrame], frames)


def _xml_complete(path: str, root: str) -> bool:
    """Tell whether an XML file ends with the closing tag of its root element.

    Args:
        path: the file.
        root: the root element's name.

    Returns:
        True when the last non-blank bytes of the file are ``</root>``.
    """
    with open(path, 'rb') as file:
        file.seek(max(os.path.getsize(path) - 1024, 0))
        tail = file.read()
    return tail.rstrip().endswith(f'</{root}>'.encode())


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """Decode a protobuf varint.

    Args:
        data: the encoded message.
        position: where the varint starts.

    Returns:
        The value and the position after it.

    Raises:
        ValueError: if the varint runs past the end of *data*.
    """
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError('varint runs past the end of the block header')
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def _pbf_problem(path: str) -> str | None:
    """Walk the blocks of an OSM PBF file and tell whether it is truncated or corrupt.

    GDAL's OSM driver stops silently at a truncated block and serves the features read
    so far; the block structure (a 4-byte length, a ``BlobHeader`` holding the
    ``datasize`` of the blob that follows) shows it.

    Args:
        path: the ``.osm.pbf`` file.

    Returns:
        What is wrong, or None when every block is complete.
    """
    size = os.path.getsize(path)
    position = 0
    with open(path, 'rb') as file:
        while position < size:
            head = file.read(4)
            length = int.from_bytes(head, 'big')
            if len(head) < 4:
                return f'the file ends inside the block header at byte {position}'
            if length > 64 * 1024:  # the format limits a BlobHeader to 64 KiB
                return f'invalid block header at byte {position}'
            header = file.read(length)
            if len(header) < length:
                return f'the file ends inside the block header at byte {position}'
            datasize, cursor = None, 0
            try:
                while cursor < len(header):
                    key, cursor = _varint(header, cursor)
                    if key & 7 == 2:  # length-delimited: type, indexdata
                        skip, cursor = _varint(header, cursor)
                        cursor += skip
                    elif key & 7 == 0:
                        value, cursor = _varint(header, cursor)
                        if key >> 3 == 3:
                            datasize = value
                    else:
                        return f'invalid block header at byte {position}'
            except ValueError:
                return f'invalid block header at byte {position}'
            if datasize is None:
                return f'block header at byte {position} has no data size'
            end = position + 4 + length + datasize
            if end > size:
                return f'the block at byte {position} needs {end - size} more bytes than the file holds'
            file.seek(end)
            position = end
    return None


def read_vector_file(
    path: str,
    layers: Sequence[str] | None,
    roi: shapely.Geometry | None = None,
    roi_crs: CRS | None = None,
    pbf_reader: PBFReader = 'gdal',
) -> list[GeoDataFrame]:
    """Read the feature layers of one vector file.

    Args:
        path: the file (GeoJSON, GeoPackage, Shapefile, GeoParquet, ``.osm.pbf`` or
            anything GDAL reads).
        layers: layers to read (default: every layer; the :data:`PBF_LAYERS` for OSM
            files).
        roi: read only the features that intersect this region (GDAL's spatial filter,
            through pyogrio's ``mask``); None reads every feature.
        roi_crs: CRS of *roi* (default: the file's).
        pbf_reader: what reads ``.pbf`` files: ``'gdal'`` (GDAL's OSM driver, by
            layer) or ``'quackosm'`` (one frame of every tagged feature, see
            :func:`~torchgeo_geolink.datasets.pbf_quackosm.read_pbf_quackosm`).

    Returns:
        One frame per layer read.

    Raises:
        OSMFileError: if the file cannot be read or a requested layer is missing.
        ValueError: if *layers* are asked of QuackOSM, which has none.

    .. versionadded:: 0.1
    """
    name = path.lower()
    if name.endswith('.pbf') and pbf_reader == 'quackosm' and layers is not None:
        msg = (
            f"{path}: layers={list(layers)} are GDAL's; pbf_reader='quackosm' reads "
            'every tagged feature'
        )
        raise ValueError(msg)
    try:
        if name.endswith(('.parquet', '.geoparquet')):
            frame = gpd.read_parquet(path, to_pandas_kwargs=_TO_PANDAS)
            # The frame holds copies of the Arrow buffers: give their memory back.
            pa.default_memory_pool().release_unused()
            if roi is not None:
                region = _roi_in(roi, roi_crs or frame.crs, frame.crs)
                frame = frame[frame.intersects(region)]
            return [frame]
        if name.endswith('.pbf') and (problem := _pbf_problem(path)) is not None:
            msg = f'{path}: truncated or corrupt OSM PBF file ({problem})'
            raise OSMFileError(msg)
        if name.endswith('.pbf') and pbf_reader == 'quackosm':
            return [read_pbf_quackosm(path, roi, roi_crs)]
        if name.endswith('.osm') and not _xml_complete(path, 'osm'):
            # GDAL's OSM driver stops silently where an XML file is cut off, as for a
            # PBF file
            msg = f'{path}: truncated OSM XML file (it does not end with </osm>)'
            raise OSMFileError(msg)
        available = [str(layer) for layer in pyogrio.list_layers(path)[:, 0]]
        is_osm = name.endswith(('.pbf', '.osm'))
        if layers is None:
            wanted = (
                [layer for layer in PBF_LAYERS if layer in available]
                if is_osm
                else available
            )
        else:
            missing = [layer for layer in layers if layer not in available]
            if missing:
                msg = f'{path}: layer(s) {missing} not found; the file has layers {available}'
                raise OSMFileError(msg)
            wanted = list(layers)
        frames = []
        for layer in wanted:
            mask = None
            if roi is not None:
                layer_crs = pyogrio.read_info(path, layer=layer).get('crs')
                mask = _roi_in(roi, roi_crs or layer_crs, layer_crs)
            with warnings.catch_warnings():
                # GDAL's OSM driver reports each broken multipolygon ring; they are
                # repaired below.
                warnings.filterwarnings(
                    'ignore', category=RuntimeWarning, module='pyogrio'
                )
                frames.append(
                    pyogrio.read_dataframe(
                        path,
                        layer=layer,
                        on_invalid='fix',
                        mask=mask,
                        **_read_options(name),
                    )
                )
        return _checked_frames(path, wanted, frames)
    except OSMFileError:
        raise
    except (
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
        OSError,
        ValueError,
    ) as err:
        raise OSMFileError(f'{path}: cannot read vector file ({err})') from err
    except Exception as err:  # pyarrow and GDAL raise many types for corrupt files
        raise OSMFileError(
            f'{path}: cannot read vector file ({type(err).__name__}: {err})'
        ) from err


def file_crs(path: str, frames: list[GeoDataFrame], assumed: CRS | None) -> CRS:
    """CRS of a file's features.

    Args:
        path: the file.
        frames: its layers.
        assumed: CRS to assume when the file declares none.

    Returns:
        The CRS.

    Raises:
        OSMFileError: if the file declares no CRS and none is assumed, its layers
            disagree, or it declares a geographic CRS for coordinates that are not
            longitudes and latitudes.

    .. versionadded:: 0.1
    """
    crss = {CRS.from_user_input(f.crs) for f in frames if f.crs is not None}
    if len(crss) > 1:
        raise OSMFileError(
            f'{path}: layers have different CRSs {sorted(c.to_string() for c in crss)}'
        )
    if crss:
        crs = crss.pop()
        if crs.is_geographic:
            bounds = np.array([f.total_bounds for f in frames if len(f)]).reshape(-1, 4)
            if len(bounds) and (
                np.abs(bounds[:, [0, 2]]).max() > 360
                or np.abs(bounds[:, [1, 3]]).max() > 90
            ):
                msg = (
                    f'{path}: coordinates {bounds.min(axis=0)[:2].tolist()}..{bounds.max(axis=0)[2:].tolist()} '
                    f'are not longitudes/latitudes but the file declares {crs.name} (GeoJSON without a crs '
                    'member is read as WGS 84); write the file with its real CRS'
                )
                raise OSMFileError(msg)
        return crs
    if assumed is None:
        msg = f'{path}: the file declares no coordinate reference system; pass source_crs= to assume one'
        raise OSMFileError(msg)
    return assumed


def _clean(
    geoms: np.ndarray, report: LoadReport
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean one layer's geometries into single-part nodes, counting what happened.

    Args:
        geoms: geometries (may hold ``None``).
        report: counters updated in place (each dropped geometry counted under its
            reason).

    Returns:
        Single-part, valid, 2-D geometries, their node kind (0 polygon, 1 line, 2 point)
        and the input position each one comes from.
    """
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    present = np.flatnonzero(~missing)
    coords, owner = shapely.get_coordinates(geoms[present], return_index=True)
    nonfinite = np.zeros(len(present), dtype=bool)
    nonfinite[owner[~np.isfinite(coords).all(axis=1)]] = True
    finite = geoms[present[~nonfinite]]
    report.repaired += int((~shapely.is_valid(finite)).sum())
    report.exploded += int((shapely.get_num_geometries(finite) > 1).sum())
    nodes = split_by_type(geoms, errors='drop')
    kinds = [
        np.full(len(nodes[t][1]), k, dtype=np.int8) for k, t in enumerate(NODE_TYPES)
    ]
    out_geoms = np.concatenate([nodes[t][0] for t in NODE_TYPES])
    owner = np.concatenate([nodes[t][1] for t in NODE_TYPES])
    report.dropped_empty += int(missing.sum())
    report.dropped_nonfinite += int(nonfinite.sum())
    report.dropped_degenerate += len(finite) - len(np.unique(owner))
    return out_geoms, np.concatenate(kinds), owner


def read_features(
    path: str,
    layers: Sequence[str] | None = None,
    drop_keys: Sequence[str] = (),
    assumed_crs: CRS | None = None,
    *,
    keys: Sequence[str] | None = None,
    tag_keys: Sequence[str] | None = None,
    roi: shapely.Geometry | None = None,
    roi_crs: CRS | None = None,
    pbf_reader: PBFReader = 'gdal',
) -> FileFeatures:
    """Read one vector file and clean its features.

    Tags are normalized (whatever the source: a ``tags`` dict column, the ``other_tags``
    hstore of GDAL's OSM driver, one column per key, or GeoLink's ``label``) and
    interned layer by layer, multipart geometries and collections exploded, invalid
    geometries repaired with :func:`shapely.make_valid`, empty ones dropped and 3-D ones
    flattened. One warning per file gives the counts when a geometry was repaired or
    dropped.

    Args:
        path: the file.
        layers: layers to read (see :func:`read_vector_file`).
        drop_keys: features carrying any of these (normalized) tag keys are left out.
        assumed_crs: CRS assumed when the file declares none.
        keys: when given, only features carrying at least one of these (normalized) keys
            are kept, with all their tags.
        tag_keys: when given, only the tags with these (normalized) keys are kept; the
            features themselves are all kept (one without any of them has no tags).
        roi: read only the features that intersect this region.
        roi_crs: CRS of *roi* (default: the file's).
        pbf_reader: what reads ``.pbf`` files (see :func:`read_vector_file`).

    Returns:
        The file's features and its :class:`LoadReport`.

    Raises:
        OSMFileError: if the file cannot be read or lacks a CRS.
        InvalidFeatureError: if the tags of a feature cannot be parsed.

    .. versionadded:: 0.1
    """
    report = LoadReport(path)
    frames = read_vector_file(path, layers, roi, roi_crs, pbf_reader)
    crs = file_crs(path, frames, assumed_crs)
    geoms: list[np.ndarray] = [np.empty(0, dtype=object)]
    kinds: list[np.ndarray] = [np.empty(0, dtype=np.int8)]
    interner = TagInterner()
    # GEOS releases the GIL: the geometries of each chunk are cleaned on a second
    # thread while this one parses the chunk's tags (Python, holding the GIL).
    pool = ThreadPoolExecutor(1)
    try:
        while frames:
            frame = frames.pop(0)
            report.read += len(frame)
            frame_geoms = np.asarray(frame.geometry.values, dtype=object)
            chunks = iter_tag_rows(frame, READ_CHUNK)
            # one report per chunk, merged here: the thread writes only its own
            counts = [LoadReport(path) for _ in range(0, len(frame), READ_CHUNK)]
            cleaning = [
                pool.submit(_clean, frame_geoms[start : start + READ_CHUNK], part)
                for start, part in zip(
                    range(0, len(frame), READ_CHUNK), counts, strict=True
                )
            ]
            for future, part in zip(cleaning, counts, strict=True):
                try:
                    chunk_tags = next(chunks)
                except ValueError as err:
                    raise InvalidFeatureError(
                        f'{path}: cannot parse the tags of a feature ({err})'
                    ) from err
                part_geoms, part_kinds, owner = future.result()
                report.merge_geometry_counts(part)
                keep = np.ones(len(owner), dtype=bool)
                if drop_keys:
                    dropped = chunk_tags.carrying(drop_keys)[owner]
                    report.dropped_keys += len(np.unique(owner[dropped]))
                    keep &= ~dropped
                if keys is not None:
                    unmatched = keep & ~chunk_tags.carrying(keys)[owner]
                    report.dropped_unmatched += len(np.unique(owner[unmatched]))
                    keep &= ~unmatched
                if not keep.all():
                    part_geoms, part_kinds = part_geoms[keep], part_kinds[keep]
                    owner = owner[keep]
                part_tags = chunk_tags.take(owner)
                if tag_keys is not None:
                    part_tags = part_tags.with_keys(tag_keys)
                geoms.append(part_geoms)
                kinds.append(part_kinds)
                interner.add(part_tags)
                del chunk_tags, part_tags
            del frame, frame_geoms, chunks, cleaning, counts
    finally:
        pool.shutdown(cancel_futures=True)
        # Arrow keeps the buffers of the parsed tags for reuse: give them back.
        pa.default_memory_pool().release_unused()
    out_geoms = np.concatenate(geoms)
    report.kept = len(out_geoms)
    if (
        report.repaired
        or report.dropped_empty
        or report.dropped_nonfinite
        or report.dropped_degenerate
    ):
        warnings.warn(f'{path}: {report.summary()}', UserWarning, stacklevel=2)
    return FileFeatures(path, crs, out_geoms, np.concatenate(kinds), interner, report)
