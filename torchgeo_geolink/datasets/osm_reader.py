# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Reading and cleaning OpenStreetMap vector files into single-part polygon, line and point features."""

import os
import pathlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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
from ..osm.geometry import split_by_type
from ..osm.tags import tags_from_frame

__all__ = (
    'PBF_LAYERS',
    'VECTOR_SUFFIXES',
    'FileFeatures',
    'LoadReport',
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

#: Layers of GDAL's OSM driver read by default. ``multilinestrings`` (route and waterway relations) is left out:
#: its parts duplicate the ways of the ``lines`` layer (in the shipped Helsinki extract, 8.6k lines but 3.9k
#: distinct geometries), which turns every street into a clique of ``equals`` edges; pass ``layers=`` to read it.
PBF_LAYERS = ('points', 'lines', 'multipolygons')

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

    Attributes:
        path: the file.
        read: features read.
        repaired: invalid geometries repaired with :func:`shapely.make_valid`.
        exploded: multipart geometries or collections (as read) split into parts.
        dropped_empty: empty (or missing) geometries dropped.
        dropped_keys: features left out because they carry one of ``drop_keys``.
        kept: single-part features kept (polygons, lines and points).
    """

    path: str
    read: int = 0
    repaired: int = 0
    exploded: int = 0
    dropped_empty: int = 0
    dropped_keys: int = 0
    kept: int = 0


@dataclass
class FileFeatures:
    """The cleaned single-part features of one file, in the file's CRS.

    .. versionadded:: 0.1

    Attributes:
        path: the file.
        crs: the file's :term:`coordinate reference system (CRS)`.
        geometries: single-part, valid, 2-D geometries.
        kinds: node kind of each (0 polygon, 1 line, 2 point).
        tags: normalised tags of each.
        report: what happened while the file was read.
    """

    path: str
    crs: CRS
    geometries: np.ndarray
    kinds: np.ndarray
    tags: list[dict[str, str]] = field(default_factory=list)
    report: LoadReport | None = None


def resolve_files(paths: Path | Iterable[Path], filename_glob: str) -> list[str]:
    """List the vector files to load.

    Args:
        paths: files, or directories searched recursively for files with a known vector suffix.
        filename_glob: glob (without suffix) that file names in directories must match.

    Returns:
        Sorted, distinct file paths.

    Raises:
        OSMFileError: if a path does not exist or no vector file is found.
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


#: Arrow field types read into pandas' nullable dtypes. Read through NumPy, an integer or boolean field holding
#: nulls becomes float64 (``lanes: 2`` would give the tag ``lanes=2.0``, ``oneway: true`` ``oneway=1.0``, and
#: integers above 2**53 would lose digits); the nullable dtypes keep the values as written.
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

    Fields are read through Arrow into nullable dtypes (see ``_NULLABLE_DTYPES``); for CSV files, GDAL takes the
    geometry from a WKT column under its usual names and drops that column.

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


def _checked_frames(
    path: str, layers: Sequence[str], frames: list[pd.DataFrame]
) -> list[GeoDataFrame]:
    """Check that every layer read has a geometry; warn when a shapefile's attributes are missing.

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
    if path.lower().endswith('.shp') and not any(
        pathlib.Path(path).with_suffix(suffix).exists() for suffix in ('.dbf', '.DBF')
    ):
        msg = (
            f'{path}: the shapefile has no .dbf file next to it, so its features have no attributes: every '
            'feature is read without tags'
        )
        warnings.warn(msg, UserWarning, stacklevel=4)
    return frames


def read_vector_file(path: str, layers: Sequence[str] | None) -> list[GeoDataFrame]:
    """Read the feature layers of one vector file.

    Args:
        path: the file (GeoJSON, GeoPackage, Shapefile, GeoParquet, ``.osm.pbf`` or anything GDAL reads).
        layers: layers to read (default: every layer; the :data:`PBF_LAYERS` for OSM files).

    Returns:
        One frame per layer read.

    Raises:
        OSMFileError: if the file cannot be read or a requested layer is missing.
    """
    name = path.lower()
    try:
        if name.endswith(('.parquet', '.geoparquet')):
            return [gpd.read_parquet(path, to_pandas_kwargs=_TO_PANDAS)]
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
            with warnings.catch_warnings():
                # GDAL's OSM driver reports each broken multipolygon ring; they are repaired below.
                warnings.filterwarnings(
                    'ignore', category=RuntimeWarning, module='pyogrio'
                )
                frames.append(
                    pyogrio.read_dataframe(
                        path, layer=layer, on_invalid='fix', **_read_options(name)
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
        OSMFileError: if the file declares no CRS and none is assumed, its layers disagree, or it declares a
            geographic CRS for coordinates that are not longitudes and latitudes.
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
    """Clean one layer's geometries into single-part polygon, line and point nodes, counting what changed.

    Args:
        geoms: geometries (may hold ``None``).
        report: counters updated in place.

    Returns:
        Single-part, valid, 2-D geometries, their node kind (0 polygon, 1 line, 2 point) and the input position
        each one comes from.
    """
    present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    report.repaired += int((~shapely.is_valid(geoms[present])).sum())
    report.exploded += int(
        np.isin(shapely.get_type_id(geoms[present]), _MULTI_TYPES).sum()
    )
    nodes = split_by_type(geoms, errors='drop')
    kinds = [
        np.full(len(nodes[t][1]), k, dtype=np.int8) for k, t in enumerate(NODE_TYPES)
    ]
    out_geoms = np.concatenate([nodes[t][0] for t in NODE_TYPES])
    owner = np.concatenate([nodes[t][1] for t in NODE_TYPES])
    report.dropped_empty += len(geoms) - len(np.unique(owner))
    return out_geoms, np.concatenate(kinds), owner


def read_features(
    path: str,
    layers: Sequence[str] | None = None,
    drop_keys: Sequence[str] = (),
    assumed_crs: CRS | None = None,
) -> FileFeatures:
    """Read one vector file and clean its features.

    Tags are normalised (whatever the source: a ``tags`` dict column, the ``other_tags`` hstore of GDAL's OSM
    driver, one column per key, or GeoLink's ``label``), multipart geometries and collections exploded, invalid
    geometries repaired with :func:`shapely.make_valid`, empty ones dropped and 3-D ones flattened.

    Args:
        path: the file.
        layers: layers to read (see :func:`read_vector_file`).
        drop_keys: features carrying any of these (normalised) tag keys are left out.
        assumed_crs: CRS assumed when the file declares none.

    Returns:
        The file's features and its :class:`LoadReport`.

    Raises:
        OSMFileError: if the file cannot be read or lacks a CRS.
        InvalidFeatureError: if the tags of a feature cannot be parsed.
    """
    report = LoadReport(path)
    frames = read_vector_file(path, layers)
    crs = file_crs(path, frames, assumed_crs)
    geoms: list[np.ndarray] = [np.empty(0, dtype=object)]
    kinds: list[np.ndarray] = [np.empty(0, dtype=np.int8)]
    tags: list[dict[str, str]] = []
    for frame in frames:
        report.read += len(frame)
        if len(frame) == 0:
            continue
        try:
            frame_tags = tags_from_frame(frame)
        except ValueError as err:
            raise InvalidFeatureError(
                f'{path}: cannot parse the tags of a feature ({err})'
            ) from err
        part_geoms, part_kinds, owner = _clean(
            np.asarray(frame.geometry.values, dtype=object), report
        )
        part_tags = [frame_tags[i] for i in owner]
        if drop_keys:
            keep = np.array(
                [not any(k in t for k in drop_keys) for t in part_tags], dtype=bool
            )
            report.dropped_keys += len(np.unique(owner[~keep]))
            part_geoms, part_kinds = part_geoms[keep], part_kinds[keep]
            part_tags = [t for t, k in zip(part_tags, keep, strict=True) if k]
        geoms.append(part_geoms)
        kinds.append(part_kinds)
        tags.extend(part_tags)
    out_geoms = np.concatenate(geoms)
    report.kept = len(out_geoms)
    return FileFeatures(path, crs, out_geoms, np.concatenate(kinds), tags, report)
