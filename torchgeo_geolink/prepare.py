# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Prepare a paper-scale tile corpus of GeoLink graphs on Ray Data, as litdata shards.

GeoLink pretrains on image tiles paired with the OpenStreetMap features clipped to each
tile's bounding box (about 1.27 M pairs in the paper). Building those graphs inside the
training data loader costs every DataLoader worker and every DDP rank the same CPU work
on every epoch; this module builds them once:

.. code-block:: bash

   # local: 8 Ray workers on this machine
   python -m torchgeo_geolink.prepare --tiles tiles.parquet --osm region.osm.pbf --output corpus/ --num-workers 8

   # cluster: the same command on the head node of a running Ray cluster (``ray start``)
   RAY_ADDRESS=auto python -m torchgeo_geolink.prepare --tiles tiles.parquet --osm europe/ --output /shared/corpus/

and :class:`~torchgeo_geolink.datasets.GeoLinkStreamingTiles` streams the result to
(multi-node) DDP training.

The run has four steps, each resumable (a rerun with the same inputs and settings skips
what is done):

1. **Plan**: the tile index is read, each tile gets its split, and the tiles are ordered
   along a Hilbert curve (of their centers in longitude/latitude) and cut into shards of
   ``tiles_per_shard`` neighboring tiles, so that a shard needs the OSM features of a
   small area only. The plan is written to ``plan.parquet``.
2. **Stage**: each OSM source is read once (one Ray task per file), reduced to the
   features that meet a tile, and written as a GeoParquet file (tags as JSON text,
   geometries repaired, spatially sorted, with a bounding-box covering column so that a
   shard reads only its row groups, and each feature's row in the source so that a
   tile's features keep the source's order).
3. **Tag table**: every distinct tag string of the staged features is embedded once, in
   batches, by the tag encoder (on a GPU when given one) and stored as one float32 table
   (``tags/``); a :class:`~torchgeo_geolink.osm.CachedTagEncoder` folder
   (``tag_cache_dir``) keeps the embeddings for later corpora. Workers only look strings
   up in the memory-mapped table.
4. **Shards**: Ray Data tasks build the shards (``num_workers`` at a time; each worker
   process opens the tag table once and keeps it for the following shards). Per tile,
   the features meeting its box are clipped to it (:func:`clip_to_tile`) and
   :class:`~torchgeo_geolink.osm.OSMGraphBuilder` builds the graph exactly as GeoLink
   does per tile. Samples are written with litdata's writer into ``<split>/`` (one chunk
   series and one index per shard) and a marker file per finished shard; the split
   indexes are merged at the end.

.. versionadded:: 0.1
"""

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
import uuid
import warnings
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyogrio.errors
import shapely
import torch
from pyproj import CRS, Transformer
from torch import Tensor

from .datasets.utils import graph_to_sample
from .errors import OSMFileError, PreparedDataError, TileError
from .osm import (
    NODE_TYPES,
    CachedTagEncoder,
    HashingTagEncoder,
    KeyWeights,
    OSMGraphBuilder,
    TagEncoder,
    tag_strings,
    tags_from_frame,
)

__all__ = (
    'PrepareReport',
    'TagTable',
    'TagTableEncoder',
    'build_shard',
    'clip_to_tile',
    'main',
    'prepare',
    'read_tile_index',
)

#: Version of the output layout; a folder written by another version is not resumed.
FORMAT_VERSION = 1
#: Layers of GDAL's OSM driver holding features (``multilinestrings`` and
#: ``other_relations`` are left out).
PBF_LAYERS = ('points', 'lines', 'multipolygons')
#: Raster suffixes read as georeferenced tiles when the tile index is given as images.
RASTER_SUFFIXES = ('.tif', '.tiff', '.jp2', '.vrt', '.img')
#: Suffixes of vector tile indexes.
INDEX_SUFFIXES = (
    '.parquet',
    '.geoparquet',
    '.gpkg',
    '.geojson',
    '.json',
    '.fgb',
    '.shp',
)
#: Suffixes of OSM sources found in folders.
OSM_SUFFIXES = ('.pbf', '.osm', *INDEX_SUFFIXES)
SPLITS = ('train', 'val', 'test')
_STAGED_ROW_GROUP = 20_000
_DIMENSION_OF_KIND = {'polygon': 2, 'line': 1, 'point': 0}


def _atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers never see it half written.

    Args:
        path: Destination.
        text: Content.
    """
    tmp = path.with_name(f'.{path.name}.{uuid.uuid4().hex}.tmp')
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, path)


def _split_of(name: str, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split of a tile from a CRC-32 hash of its name.

    Args:
        name: Tile name.
        val_fraction: Share of tiles in the validation split.
        test_fraction: Share of tiles in the test split.

    Returns:
        ``'train'``, ``'val'`` or ``'test'``.
    """
    u = zlib.crc32(name.encode()) / 2**32
    if u < val_fraction:
        return 'val'
    if u < val_fraction + test_fraction:
        return 'test'
    return 'train'


def _expand(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    suffixes: tuple[str, ...],
) -> list[Path]:
    """Expand files and folders (searched recursively) into sorted files.

    Args:
        paths: Files or folders.
        suffixes: Lower-case suffixes searched in folders.

    Returns:
        The files, sorted and distinct.

    Raises:
        FileNotFoundError: If a path does not exist.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: set[Path] = set()
    for item in items:
        path = Path(item)
        if path.is_dir():
            out.update(
                p.resolve()
                for p in path.rglob('*')
                if p.is_file() and p.name.lower().endswith(suffixes)
            )
        elif path.is_file():
            out.add(path.resolve())
        else:
            msg = f'{path}: no such file or directory'
            raise FileNotFoundError(msg)
    return sorted(out)


def _index_from_frame(
    frame: pd.DataFrame, source: Path, crs: CRS | str | int | None
) -> pd.DataFrame:
    """Turn a tile-index table (footprints or boxes) into plan columns.

    Args:
        frame: The table: a geometry column, or ``xmin/ymin/xmax/ymax``,
            ``west/south/east/north`` or a ``bbox`` column of four numbers; optionally
            ``name``, ``image``, ``crs`` and ``split``.
        source: The file it was read from (for messages and relative image paths).
        crs: CRS of tiles whose table declares none.

    Returns:
        Columns ``name``, ``image``, ``crs``, ``xmin``, ``ymin``, ``xmax``, ``ymax`` and
        (when given) ``split``.

    Raises:
        TileError: If the boxes or the CRS cannot be found.
    """
    n = len(frame)
    if isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame:
        bounds = frame.geometry.bounds.to_numpy(dtype=np.float64)
        frame_crs = frame.crs
    else:
        frame_crs = None
        lower = {str(c).lower(): c for c in frame.columns}
        if all(k in lower for k in ('xmin', 'ymin', 'xmax', 'ymax')):
            cols = [lower[k] for k in ('xmin', 'ymin', 'xmax', 'ymax')]
            bounds = frame[cols].to_numpy(dtype=np.float64)
        elif all(k in lower for k in ('west', 'south', 'east', 'north')):
            cols = [lower[k] for k in ('west', 'south', 'east', 'north')]
            bounds = frame[cols].to_numpy(dtype=np.float64)
        elif 'bbox' in lower:
            values = [
                np.asarray(v, dtype=np.float64).reshape(-1)
                for v in frame[lower['bbox']]
            ]
            if any(v.shape != (4,) for v in values):
                msg = f'{source}: column "bbox" must hold four numbers [xmin, ymin, xmax, ymax] per tile'
                raise TileError(msg)
            bounds = np.stack(values) if values else np.zeros((0, 4))
        else:
            msg = (
                f'{source}: the tile index needs a geometry column, xmin/ymin/xmax/ymax, west/south/east/north or '
                f'a bbox column; it has {list(frame.columns)}'
            )
            raise TileError(msg)
    if 'crs' in frame.columns:
        known = {str(c): CRS.from_user_input(c).to_string() for c in set(frame['crs'])}
        crss = [known[str(c)] for c in frame['crs']]
    else:
        chosen = frame_crs if frame_crs is not None else crs
        if chosen is None:
            msg = f'{source}: the tile index declares no CRS and has no "crs" column; pass crs= (e.g. EPSG:4326)'
            raise TileError(msg)
        crss = [CRS.from_user_input(chosen).to_string()] * n
    if 'name' in frame.columns:
        names = [str(v) for v in frame['name']]
    elif 'image' in frame.columns:
        names = [Path(str(v)).stem for v in frame['image']]
    else:
        names = [f'{source.stem}-{i:08d}' for i in range(n)]
    images = []
    for value in frame['image'] if 'image' in frame.columns else [''] * n:
        if (
            value is None
            or (isinstance(value, float) and math.isnan(value))
            or not str(value)
        ):
            images.append('')
            continue
        image = Path(str(value))
        images.append(
            str(image if image.is_absolute() else (source.parent / image).resolve())
        )
    out = pd.DataFrame(
        {
            'name': names,
            'image': images,
            'crs': crss,
            'xmin': bounds[:, 0],
            'ymin': bounds[:, 1],
            'xmax': bounds[:, 2],
            'ymax': bounds[:, 3],
        }
    )
    if 'split' in frame.columns:
        out['split'] = [str(s) for s in frame['split']]
    return out


def read_tile_index(
    tiles: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    crs: CRS | str | int | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.0,
) -> pd.DataFrame:
    """Read a tile index: georeferenced rasters or a table of tile boxes.

    Accepted inputs (mixed freely):

    * raster files (``.tif``, ``.tiff``, ``.jp2``, ``.vrt``, ``.img``) or folders of
      them: each file is a tile whose box and CRS are read with rasterio (north-up
      rasters only);
    * a table of tiles: a GeoParquet/GeoPackage/GeoJSON of tile footprints (the box of
      each geometry is used), or a plain Parquet file with ``xmin/ymin/xmax/ymax``,
      ``west/south/east/north`` or a ``bbox`` column. Optional columns: ``name``
      (default: the image's stem), ``image`` (path of the image, relative to the table's
      folder), ``crs`` (one CRS per tile; otherwise the table's CRS or ``crs``) and
      ``split`` (``train``/``val``/``test``).

    Args:
        tiles: Files or folders.
        crs: CRS of tile tables that declare none.
        val_fraction: Share of validation tiles, assigned by a CRC-32 hash of the name,
            for tiles without ``split``.
        test_fraction: Share of test tiles, likewise.

    Returns:
        One row per tile, sorted by name, with columns ``name``, ``image`` (absolute
        path or ``''``), ``crs`` (authority string or WKT), ``xmin``, ``ymin``,
        ``xmax``, ``ymax`` (in the tile's CRS) and ``split``.

    Raises:
        TileError: If a file cannot be read, lacks a CRS, holds an invalid box or a
            split name is unknown, or if two tiles share a name or no tile is found.
        ValueError: If the split fractions are invalid.

    .. versionadded:: 0.1
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        msg = f'invalid split fractions: val {val_fraction}, test {test_fraction}'
        raise ValueError(msg)
    try:
        files = _expand(tiles, RASTER_SUFFIXES + INDEX_SUFFIXES)
    except FileNotFoundError as error:
        raise TileError(str(error)) from error
    frames: list[pd.DataFrame] = []
    rasters: list[dict[str, Any]] = []
    for path in files:
        name = path.name.lower()
        if name.endswith(RASTER_SUFFIXES):
            import rasterio

            try:
                with rasterio.open(path) as src:
                    if src.crs is None:
                        msg = f'{path}: the raster has no CRS; list it in a tile index with a crs instead'
                        raise TileError(msg)
                    if not src.transform.is_rectilinear or src.transform.e > 0:
                        msg = f'{path}: only north-up rasters are supported (transform {tuple(src.transform)[:6]})'
                        raise TileError(msg)
                    b = src.bounds
                    rasters.append(
                        {
                            'name': path.stem,
                            'image': str(path),
                            'crs': src.crs.to_string(),
                            'xmin': b.left,
                            'ymin': b.bottom,
                            'xmax': b.right,
                            'ymax': b.top,
                        }
                    )
            except rasterio.errors.RasterioIOError as error:
                msg = f'{path}: cannot read the raster ({error})'
                raise TileError(msg) from error
            continue
        try:
            if name.endswith(('.parquet', '.geoparquet')):
                metadata = pq.read_schema(path).metadata or {}
                table: pd.DataFrame = (
                    gpd.read_parquet(path)
                    if b'geo' in metadata
                    else pd.read_parquet(path)
                )
            else:
                table = pyogrio.read_dataframe(path)
        except (OSError, ValueError, pyogrio.errors.DataSourceError) as error:
            msg = f'{path}: cannot read the tile index ({error})'
            raise TileError(msg) from error
        frames.append(_index_from_frame(table, path, crs))
    if rasters:
        frames.append(pd.DataFrame(rasters))
    index = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if index.empty:
        msg = f'no tile found in {tiles!r}'
        raise TileError(msg)
    bounds = index[['xmin', 'ymin', 'xmax', 'ymax']].to_numpy()
    bad = ~(
        np.isfinite(bounds).all(axis=1)
        & (bounds[:, 0] < bounds[:, 2])
        & (bounds[:, 1] < bounds[:, 3])
    )
    if bad.any():
        row = index.iloc[int(np.flatnonzero(bad)[0])]
        msg = f'tile {row["name"]!r}: invalid box {bounds[int(np.flatnonzero(bad)[0])].tolist()} (need xmin < xmax, ymin < ymax)'
        raise TileError(msg)
    duplicated = index['name'].duplicated()
    if duplicated.any():
        msg = f'tile name {index["name"][duplicated].iloc[0]!r} is used by more than one tile'
        raise TileError(msg)
    if 'split' not in index.columns:
        index['split'] = None
    given = index['split'].notna()
    unknown = sorted(set(index.loc[given, 'split']) - set(SPLITS))
    if unknown:
        msg = f'unknown split name(s) {unknown}; expected {SPLITS}'
        raise TileError(msg)
    index.loc[~given, 'split'] = [
        _split_of(n, val_fraction, test_fraction) for n in index.loc[~given, 'name']
    ]
    return index.sort_values('name', ignore_index=True)


def _plan_shards(index: pd.DataFrame, tiles_per_shard: int) -> pd.DataFrame:
    """Order tiles along a Hilbert curve of their centers and cut them into shards.

    Args:
        index: Output of :func:`read_tile_index`.
        tiles_per_shard: Tiles per shard.

    Returns:
        The index in shard order with a ``shard`` column.
    """
    lon = np.empty(len(index))
    lat = np.empty(len(index))
    for crs, rows in index.groupby('crs').indices.items():
        sub = index.iloc[rows]
        cx = ((sub['xmin'] + sub['xmax']) / 2).to_numpy()
        cy = ((sub['ymin'] + sub['ymax']) / 2).to_numpy()
        transformer = Transformer.from_crs(crs, 'EPSG:4326', always_xy=True)
        lon[rows], lat[rows] = transformer.transform(cx, cy)
    points = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs='EPSG:4326')
    distance = points.hilbert_distance(
        total_bounds=(-180.0, -90.0, 180.0, 90.0), level=16
    )
    order = np.lexsort((index['name'].to_numpy(), distance.to_numpy()))
    plan = index.iloc[order].reset_index(drop=True)
    plan['shard'] = np.arange(len(plan)) // tiles_per_shard
    return plan


@dataclasses.dataclass
class PrepareReport:
    """What a :func:`prepare` run did.

    .. versionadded:: 0.1
    """

    #: Output folder.
    output: Path
    #: Tiles in the plan.
    tiles: int
    #: Shards in the plan.
    shards: int
    #: Shards built by this run.
    shards_built: int
    #: Shards found finished and skipped.
    shards_skipped: int
    #: Tiles per split.
    split_sizes: dict[str, int]
    #: OSM features staged (all sources, only those meeting a tile).
    features: int
    #: Distinct tag strings in the tag table.
    tag_strings: int
    #: Tag strings this run passed to the tag encoder (the others came from the table or
    #: the cache).
    tag_strings_encoded: int
    #: Wall-clock seconds per step (plan, stage, tags, shards, index).
    seconds: dict[str, float]


class TagTable:
    """Persistent table of distinct tag strings and their embeddings (memory-mapped).

    Stored as ``table.json`` (encoder identity, width, count), ``strings.parquet`` (one
    string per row) and ``embeddings.npy``. Every DataLoader worker, Ray worker and node
    opening the same folder shares the pages.

    .. versionadded:: 0.1
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Open a table.

        Args:
            root: Its folder.

        Raises:
            PreparedDataError: If the folder holds no complete table.
        """
        self.root = Path(root)
        try:
            meta = json.loads((self.root / 'table.json').read_text('utf-8'))
            strings = (
                pq.read_table(self.root / 'strings.parquet')
                .column('string')
                .to_pylist()
            )
            embeddings = np.load(self.root / 'embeddings.npy', mmap_mode='r')
        except (OSError, ValueError, KeyError) as error:
            msg = f'{self.root}: not a complete tag table ({error})'
            raise PreparedDataError(msg) from error
        if (
            embeddings.shape != (len(strings), meta['dim'])
            or len(strings) != meta['count']
        ):
            msg = f'{self.root}: tag table holds {embeddings.shape} embeddings for {len(strings)} strings'
            raise PreparedDataError(msg)
        #: Identity of the encoder that made the embeddings.
        self.identity: str = meta['identity']
        #: Width of the embeddings.
        self.dim: int = int(meta['dim'])
        self.strings: list[str] = strings
        self.embeddings = embeddings
        self._row = {s: i for i, s in enumerate(strings)}

    def __len__(self) -> int:
        """Return the number of strings.

        Returns:
            The number of distinct strings held.
        """
        return len(self.strings)

    def __contains__(self, text: object) -> bool:
        """Tell whether a string is in the table.

        Args:
            text: The string.

        Returns:
            True when it has an embedding.
        """
        return text in self._row

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """Row of each string.

        Args:
            texts: Strings of the table.

        Returns:
            int64 rows.

        Raises:
            PreparedDataError: If a string is not in the table.
        """
        try:
            return np.fromiter(
                (self._row[t] for t in texts), dtype=np.int64, count=len(texts)
            )
        except KeyError as error:
            msg = f'{self.root}: tag string {error.args[0]!r} is not in the tag table'
            raise PreparedDataError(msg) from None

    @staticmethod
    def write(
        root: str | os.PathLike[str],
        strings: Iterable[str],
        encoder: TagEncoder,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> tuple['TagTable', int]:
        """Create or extend a table to hold ``strings``, encoding only new ones.

        Args:
            root: Its folder.
            strings: Tag strings it must hold.
            encoder: Tag encoder; an existing table must come from an encoder of the
                same identity.
            cache_dir: Also keep the embeddings in this
                :class:`~torchgeo_geolink.osm.CachedTagEncoder` folder (reused by later
                tables and by :class:`~torchgeo_geolink.osm.OSMGraphBuilder`).

        Returns:
            The table and the number of strings passed to the encoder.

        Raises:
            PreparedDataError: If the existing table comes from another encoder.
        """
        root = Path(root)
        wanted = sorted(set(strings))
        old_strings: list[str] = []
        old = np.zeros((0, encoder.dim), np.float32)
        if (root / 'table.json').exists():
            table = TagTable(root)
            if table.identity != encoder.identity:
                msg = f'{root}: the tag table was made by {table.identity!r}, not {encoder.identity!r}'
                raise PreparedDataError(msg)
            old_strings, old = table.strings, np.asarray(table.embeddings)
        known = set(old_strings)
        new = [s for s in wanted if s not in known]
        if not new and (root / 'table.json').exists():
            return TagTable(root), 0
        cached = (
            encoder
            if isinstance(encoder, CachedTagEncoder)
            else CachedTagEncoder(
                encoder, None if cache_dir is None else Path(cache_dir)
            )
        )
        before = len(cached)
        embeddings = (
            cached.encode(new).numpy().astype(np.float32)
            if new
            else np.zeros((0, encoder.dim), np.float32)
        )
        encoded = len(cached) - before
        root.mkdir(parents=True, exist_ok=True)
        stamp = uuid.uuid4().hex
        # Write the new table beside the old one, then swap the three files (readers
        # reopen by table.json).
        all_strings = old_strings + new
        tmp_strings = root / f'.strings.{stamp}.parquet'
        tmp_embeddings = root / f'.embeddings.{stamp}.npy'
        pq.write_table(
            pa.table({'string': pa.array(all_strings, pa.string())}), tmp_strings
        )
        np.save(tmp_embeddings, np.concatenate([old, embeddings]))
        os.replace(tmp_strings, root / 'strings.parquet')
        os.replace(tmp_embeddings, root / 'embeddings.npy')
        meta = {
            'identity': encoder.identity,
            'dim': int(encoder.dim),
            'count': len(all_strings),
        }
        _atomic_write_text(root / 'table.json', json.dumps(meta))
        return TagTable(root), encoded

    def encoder(self) -> 'TagTableEncoder':
        """A tag encoder answering from this table.

        Returns:
            The encoder.
        """
        return TagTableEncoder(self)


class TagTableEncoder:
    """Tag encoder that looks strings up in a :class:`TagTable`.

    .. versionadded:: 0.1
    """

    def __init__(self, table: TagTable) -> None:
        """Initialize the encoder.

        Args:
            table: The table.
        """
        self.table = table
        self.dim = table.dim

    @property
    def identity(self) -> str:
        """Identity of the encoder that filled the table."""
        return self.table.identity

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Look strings up.

        Args:
            texts: Strings of the table.

        Returns:
            float32 tensor ``(len(texts), dim)``.

        Raises:
            PreparedDataError: If a string is not in the table.
        """
        rows = self.table.rows(texts)
        return torch.from_numpy(
            np.ascontiguousarray(self.table.embeddings[rows], dtype=np.float32)
        )

    def __repr__(self) -> str:
        """Return a short description.

        Returns:
            The representation.
        """
        return f'{type(self).__name__}({self.table.root}, identity={self.identity!r}, size={len(self.table)})'


def clip_to_tile(
    features: gpd.GeoDataFrame,
    bounds: Sequence[float],
    tree: shapely.STRtree | None = None,
) -> gpd.GeoDataFrame:
    """The features of one tile, clipped to its box, as GeoLink builds a tile's graph.

    Features meeting the box are taken; those whose bounding box lies inside it are kept
    whole, the others are clipped to it (:func:`shapely.clip_by_rect`) and split into
    parts, of which only those of the feature's own dimension are kept (a polygon that
    only touches the tile along its edge gives no node).

    Args:
        features: Features in the tile's CRS with a ``tags`` column (or any tag columns
            :func:`~torchgeo_geolink.osm.tags_from_frame` understands); geometries
            valid.
        bounds: Tile ``(xmin, ymin, xmax, ymax)``.
        tree: :class:`shapely.STRtree` of ``features.geometry`` (built when None).

    Returns:
        One row per kept part, in feature order, with the feature's columns, a fresh
        ``RangeIndex`` and a ``feature`` column holding the feature's row position in
        ``features``.

    .. versionadded:: 0.1
    """
    xmin, ymin, xmax, ymax = (float(b) for b in bounds)
    geoms = features.geometry.to_numpy()
    if tree is None:
        tree = shapely.STRtree(geoms)
    rows = np.sort(
        tree.query(shapely.box(xmin, ymin, xmax, ymax), predicate='intersects')
    )
    b = shapely.bounds(geoms[rows])
    inside = (
        (b[:, 0] >= xmin) & (b[:, 1] >= ymin) & (b[:, 2] <= xmax) & (b[:, 3] <= ymax)
    )
    parts = np.empty(len(rows), dtype=object)
    parts[inside] = geoms[rows[inside]]
    parts[~inside] = shapely.clip_by_rect(geoms[rows[~inside]], xmin, ymin, xmax, ymax)
    pieces, owner = shapely.get_parts(parts, return_index=True)
    keep = ~shapely.is_empty(pieces) & (
        shapely.get_dimensions(pieces) == shapely.get_dimensions(geoms[rows])[owner]
    )
    pieces, owner = pieces[keep], owner[keep]
    out = features.iloc[rows[owner]].copy()
    out['feature'] = rows[owner]
    out = out.set_geometry(gpd.GeoSeries(pieces, index=out.index, crs=features.crs))
    return out.reset_index(drop=True)


def _read_source(path: Path) -> gpd.GeoDataFrame:
    """Read every feature layer of an OSM source, tags in a ``tags`` column.

    Args:
        path: PBF, GeoParquet or any vector file GDAL reads.

    Returns:
        Columns ``tags`` (dict) and ``geometry`` (valid, in the file's CRS).

    Raises:
        OSMFileError: If the file cannot be read, declares no CRS or its layers disagree
            on it.
    """
    name = path.name.lower()
    frames: list[gpd.GeoDataFrame] = []
    try:
        if name.endswith(('.parquet', '.geoparquet')):
            frames.append(gpd.read_parquet(path))
        else:
            available = [str(layer) for layer in pyogrio.list_layers(path)[:, 0]]
            layers = (
                [lay for lay in PBF_LAYERS if lay in available]
                if name.endswith(('.pbf', '.osm'))
                else available
            )
            for layer in layers:
                with warnings.catch_warnings():
                    # GDAL's OSM driver reports each broken multipolygon ring; they are
                    # repaired here.
                    warnings.filterwarnings(
                        'ignore', category=RuntimeWarning, module='pyogrio'
                    )
                    frames.append(
                        pyogrio.read_dataframe(path, layer=layer, on_invalid='fix')
                    )
    except (
        OSError,
        ValueError,
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
    ) as error:
        msg = f'{path}: cannot read the OSM source ({error})'
        raise OSMFileError(msg) from error
    crss = {
        CRS.from_user_input(f.crs).to_string()
        for f in frames
        if f.crs is not None and len(f)
    }
    if any(f.crs is None for f in frames if len(f)):
        msg = f'{path}: the file declares no coordinate reference system; write it with its CRS'
        raise OSMFileError(msg)
    if len(crss) > 1:
        msg = f'{path}: layers have different CRSs {sorted(crss)}'
        raise OSMFileError(msg)
    crs = crss.pop() if crss else 'EPSG:4326'
    tags: list[dict[str, str]] = []
    geoms: list[np.ndarray] = []
    for frame in frames:
        if not len(frame):
            continue
        try:
            tags.extend(tags_from_frame(frame))
        except ValueError as error:
            msg = f'{path}: cannot parse the tags of a feature ({error})'
            raise OSMFileError(msg) from error
        geoms.append(frame.geometry.to_numpy())
    geometry = np.concatenate(geoms) if geoms else np.empty(0, dtype=object)
    present = ~shapely.is_missing(geometry) & ~shapely.is_empty(geometry)
    geometry = shapely.force_2d(geometry[present])
    tags = [t for t, p in zip(tags, present, strict=True) if p]
    invalid = ~shapely.is_valid(geometry)
    if invalid.any():
        geometry[invalid] = shapely.make_valid(geometry[invalid])
    return gpd.GeoDataFrame(
        {'tags': tags}, geometry=gpd.GeoSeries(geometry, crs=crs), crs=crs
    )


def _transform_boxes(
    boxes: np.ndarray, src: str, dst: str, densify: int = 21
) -> np.ndarray:
    """Boxes that cover ``(n, 4)`` boxes after reprojection (edges densified).

    Args:
        boxes: ``(xmin, ymin, xmax, ymax)`` rows in ``src``.
        src: Their CRS.
        dst: The target CRS.
        densify: Points per edge.

    Returns:
        ``(n, 4)`` covering boxes in ``dst``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if CRS.from_user_input(src) == CRS.from_user_input(dst):
        return boxes
    t = np.linspace(0.0, 1.0, densify)
    x0, y0, x1, y1 = (boxes[:, i : i + 1] for i in range(4))
    xs = np.concatenate(
        [
            x0 + t * (x1 - x0),
            x0 + t * (x1 - x0),
            np.repeat(x0, densify, 1),
            np.repeat(x1, densify, 1),
        ],
        1,
    )
    ys = np.concatenate(
        [
            np.repeat(y0, densify, 1),
            np.repeat(y1, densify, 1),
            y0 + t * (y1 - y0),
            y0 + t * (y1 - y0),
        ],
        1,
    )
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    tx, ty = transformer.transform(xs, ys)
    tx, ty = (
        np.where(np.isfinite(tx), tx, np.nan),
        np.where(np.isfinite(ty), ty, np.nan),
    )
    return np.column_stack(
        [np.nanmin(tx, 1), np.nanmin(ty, 1), np.nanmax(tx, 1), np.nanmax(ty, 1)]
    )


def _tile_boxes_in(plan: pd.DataFrame, crs: str) -> np.ndarray:
    """Boxes of all tiles transformed to ``crs`` (densified edges).

    Args:
        plan: The tile plan.
        crs: Target CRS.

    Returns:
        Shapely boxes, one per tile in plan order.
    """
    out = np.empty(len(plan), dtype=object)
    for tile_crs, rows in plan.groupby('crs').indices.items():
        sub = plan.iloc[rows][['xmin', 'ymin', 'xmax', 'ymax']].to_numpy()
        sub = _transform_boxes(sub, str(tile_crs), crs)
        out[rows] = shapely.box(*sub.T)
    return out


def _stage_source(
    path: Path, index: int, output: Path, plan: pd.DataFrame
) -> dict[str, Any]:
    """Stage one OSM source: the features meeting a tile, as sorted GeoParquet.

    Args:
        path: The source file.
        index: Its position in the run's source list.
        output: The run's output folder.
        plan: The tile plan.

    Returns:
        ``{'source': index, 'features': n}``.
    """
    done = output / 'osm' / f'{index:04d}.json'
    if done.exists():
        return json.loads(done.read_text('utf-8'))
    frame = _read_source(path)
    crs = frame.crs.to_string() if frame.crs is not None else 'EPSG:4326'
    boxes = _tile_boxes_in(plan, crs)
    tree = shapely.STRtree(frame.geometry.to_numpy())
    hit = np.unique(tree.query(boxes, predicate='intersects')[1])
    frame = frame.iloc[hit]
    rows = hit.astype(np.int64)
    if len(frame):
        order = np.argsort(
            frame.geometry.hilbert_distance(level=16).to_numpy(), kind='stable'
        )
        frame, rows = frame.iloc[order], rows[order]
    frame = frame.reset_index(drop=True)
    strings = sorted({s for t in frame['tags'] for s in tag_strings(t)})
    staged = gpd.GeoDataFrame(
        {
            'row': rows,
            'tags': [json.dumps(t, ensure_ascii=False) for t in frame['tags']],
        },
        geometry=frame.geometry,
        crs=frame.crs,
    )
    folder = output / 'osm'
    folder.mkdir(parents=True, exist_ok=True)
    stamp = uuid.uuid4().hex
    tmp = folder / f'.{index:04d}.{stamp}.parquet'
    staged.to_parquet(tmp, write_covering_bbox=True, row_group_size=_STAGED_ROW_GROUP)
    os.replace(tmp, folder / f'{index:04d}.parquet')
    tmp = folder / f'.{index:04d}.{stamp}.tags.parquet'
    pq.write_table(pa.table({'string': pa.array(strings, pa.string())}), tmp)
    os.replace(tmp, folder / f'{index:04d}.tags.parquet')
    result = {'source': index, 'path': str(path), 'crs': crs, 'features': len(staged)}
    _atomic_write_text(done, json.dumps(result))
    return result


def _fingerprint(path: Path) -> dict[str, Any]:
    """Identify a file by path, size and modification time (hashing would take minutes).

    Args:
        path: The file.

    Returns:
        ``{'path', 'size', 'mtime_ns'}``.
    """
    stat = path.stat()
    return {'path': str(path), 'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns}


def _shard_writer(folder: Path, shard: int, **kwargs: Any) -> Any:
    """A litdata ``BinaryWriter`` whose files are named after the shard, not the rank.

    Args:
        folder: The split's folder.
        shard: The shard number.
        **kwargs: Writer settings (``chunk_bytes``, ``compression``).

    Returns:
        The writer.
    """
    from litdata.streaming.writer import BinaryWriter

    class ShardWriter(BinaryWriter):
        """Writes ``chunk-<shard>-<k>.bin`` and ``<shard>.index.json``."""

        @property
        def rank(self) -> int:
            """The shard number."""
            return shard

    return ShardWriter(str(folder), **kwargs)


def _shard_config(output: Path) -> dict[str, Any]:
    """The settings every shard task needs, read from the run's manifest.

    Args:
        output: The run's output folder.

    Returns:
        The manifest.
    """
    return json.loads((output / 'manifest.json').read_text('utf-8'))


def _tile_groups(
    plan: pd.DataFrame, sparsity: float = 16.0
) -> list[tuple[str, pd.DataFrame]]:
    """Split a shard's tiles into compact groups of one CRS, to read their OSM at once.

    Tiles are taken in plan (Hilbert) order; a tile joins the current group while the
    group's union box stays within ``sparsity`` times the tiles' summed area (a shard of
    scattered tiles then reads several small boxes instead of one box spanning them
    all).

    Args:
        plan: The shard's rows of the plan.
        sparsity: Largest ratio of a group's union box area to its tiles' summed area.

    Returns:
        ``(crs, tiles)`` per group.
    """
    groups: list[tuple[str, pd.DataFrame]] = []
    for crs, rows in plan.groupby('crs', sort=True).indices.items():
        boxes = plan.iloc[rows][['xmin', 'ymin', 'xmax', 'ymax']].to_numpy()
        start = 0
        union = boxes[0].copy()
        area = 0.0
        for k, box in enumerate(boxes):
            grown = np.concatenate(
                [np.minimum(union[:2], box[:2]), np.maximum(union[2:], box[2:])]
            )
            tile_area = (box[2] - box[0]) * (box[3] - box[1])
            if k > start and (grown[2] - grown[0]) * (
                grown[3] - grown[1]
            ) > sparsity * (area + tile_area):
                groups.append((str(crs), plan.iloc[rows[start:k]]))
                start, union, area = k, box.copy(), tile_area
            else:
                union, area = grown, area + tile_area
        groups.append((str(crs), plan.iloc[rows[start:]]))
    return groups


@functools.lru_cache(maxsize=4)
def _cached_table(root: str, stamp: int) -> TagTable:
    """A run's tag table, opened once per process.

    Args:
        root: The table's folder.
        stamp: Modification time of its ``table.json``.

    Returns:
        The table.
    """
    return TagTable(root)


def _tag_rows(
    sample: dict[str, Tensor], tags: Sequence[dict[str, str]], output: Path
) -> dict[str, Tensor]:
    """Replace a sample's node embeddings by each node's rows in the tag table (CSR).

    Args:
        sample: The flattened graph; its ``osm_<type>_x`` keys are removed.
        tags: Tags of each row of the tile's clipped feature table (what
            ``osm_<type>_id`` points into).
        output: The run's output folder.

    Returns:
        ``tags_<type>_rows`` (int32, the table row of each tag string, node by node) and
        ``tags_<type>_ptr`` (int64 ``(N + 1,)`` offsets).
    """
    root = output / 'tags'
    table = _cached_table(str(root), (root / 'table.json').stat().st_mtime_ns)
    strings = [tag_strings(t) for t in tags]
    out: dict[str, Tensor] = {}
    for node_type in NODE_TYPES:
        del sample[f'osm_{node_type}_x']
        lists = [strings[i] for i in sample[f'osm_{node_type}_id'].tolist()]
        ptr = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(
            np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)), out=ptr[1:]
        )
        rows = table.rows([t for x in lists for t in x]).astype(np.int32)
        out[f'tags_{node_type}_rows'] = torch.from_numpy(rows)
        out[f'tags_{node_type}_ptr'] = torch.from_numpy(ptr)
    return out


def build_shard(
    shard: int, output: str | os.PathLike[str], builder: OSMGraphBuilder | None = None
) -> dict[str, Any]:
    """Build and write one shard of a planned, staged run (a Ray worker's task).

    Args:
        shard: The shard number.
        output: The run's output folder (with ``manifest.json``, ``plan.parquet``,
            staged sources and tag table).
        builder: Graph builder to use (default: one answering from the run's tag table,
            with the run's settings).

    Returns:
        The shard's marker: ``shard``, tiles per split, ``nodes``, ``edges`` and
        ``seconds`` (reading, building and writing the shard).

    Raises:
        PreparedDataError: If the folder is not a planned run or a tag string is missing
            from its table.

    .. versionadded:: 0.1
    """
    output = Path(output)
    marker = output / 'shards' / f'{shard:06d}.json'
    config = _shard_config(output)
    if builder is None:
        builder = _run_builder(output)
    start = (
        time.perf_counter()
    )  # the builder is made once per process: not part of the shard's time
    plan = pd.read_parquet(output / 'plan.parquet', filters=[('shard', '==', shard)])
    if plan.empty:
        msg = f'{output}: shard {shard} is not in the plan'
        raise PreparedDataError(msg)
    sources = [
        json.loads((output / 'osm' / f'{i:04d}.json').read_text('utf-8'))
        for i in range(len(config['sources']))
    ]
    samples: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    nodes = edges = 0
    for tile_crs, tiles in _tile_groups(plan):
        xmin, ymin = tiles['xmin'].min(), tiles['ymin'].min()
        xmax, ymax = tiles['xmax'].max(), tiles['ymax'].max()
        parts = []
        for source in sources:
            if source['features'] == 0:
                continue
            box = (xmin, ymin, xmax, ymax)
            same = CRS.from_user_input(source['crs']) == CRS.from_user_input(tile_crs)
            if not same:
                box = tuple(
                    _transform_boxes(np.array(box), str(tile_crs), source['crs'])[0]
                )
            frame = gpd.read_parquet(
                output / 'osm' / f'{source["source"]:04d}.parquet',
                columns=['row', 'tags', 'geometry'],
                bbox=box,
            )
            if not len(frame):
                continue
            # Back to the source's own feature order (node order within a type follows
            # it).
            frame = frame.sort_values('row', kind='stable').drop(columns='row')
            if not same:
                frame = frame.to_crs(tile_crs)
                invalid = ~shapely.is_valid(frame.geometry.to_numpy())
                if invalid.any():
                    fixed = frame.geometry.to_numpy().copy()
                    fixed[invalid] = shapely.make_valid(fixed[invalid])
                    frame = frame.set_geometry(
                        gpd.GeoSeries(fixed, index=frame.index, crs=frame.crs)
                    )
            parts.append(frame)
        features = (
            gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=tile_crs)
            if parts
            else gpd.GeoDataFrame(
                {'tags': []}, geometry=gpd.GeoSeries([], crs=tile_crs), crs=tile_crs
            )
        )
        features['tags'] = [json.loads(t) for t in features['tags']]
        tree = shapely.STRtree(features.geometry.to_numpy())
        for tile in tiles.itertuples(index=False):
            bounds = (tile.xmin, tile.ymin, tile.xmax, tile.ymax)
            clipped = clip_to_tile(features, bounds, tree)
            graph = builder(clipped[['tags', 'geometry']], bounds)
            sample = graph_to_sample(graph)
            if config['embeddings'] == 'float16':
                for key in [k for k in sample if k.endswith('_x')]:
                    sample[key] = sample[key].half()
            elif config['embeddings'] == 'table':
                sample.update(_tag_rows(sample, clipped['tags'].tolist(), output))
            nodes += sum(int(graph[t].num_nodes) for t in graph.node_types)
            edges += sum(int(graph[e].edge_index.shape[1]) for e in graph.edge_types)
            # Strings are stored as UTF-8 bytes: litdata would embed the content of a
            # string naming a file.
            item: dict[str, Any] = {
                'name': tile.name.encode(),
                'image': tile.image.encode(),
                'crs': tile.crs.encode(),
                'osm_bounds': torch.tensor(bounds, dtype=torch.float64),
            }
            item.update(sample)
            samples[tile.split].append(item)
    counts = {}
    for split, items in samples.items():
        counts[split] = len(items)
        folder = output / split
        if folder.is_dir():
            for stale in folder.glob(f'chunk-{shard}-*'):
                stale.unlink()
            (folder / f'{shard}.index.json').unlink(missing_ok=True)
        if not items:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        writer = _shard_writer(
            folder,
            shard,
            chunk_bytes=config['chunk_bytes'],
            compression=config['compression'],
        )
        for i, item in enumerate(items):
            writer.add_item(i, item)
        writer.done()
    result = {
        'shard': shard,
        'tiles': counts,
        'nodes': nodes,
        'edges': edges,
        'seconds': time.perf_counter() - start,
    }
    marker.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(marker, json.dumps(result))
    return result


@functools.lru_cache(maxsize=4)
def _cached_builder(output: str, table_stamp: int) -> OSMGraphBuilder:
    """The graph builder of a run, made once per worker process and run.

    Args:
        output: The run's output folder.
        table_stamp: Modification time of its tag table (a rewritten table gives a new
            builder).

    Returns:
        A builder answering from the run's tag table, with the run's settings.
    """
    config = _shard_config(Path(output))
    key_weights = (
        KeyWeights.from_json(config['key_frequency'])
        if config['key_frequency']
        else None
    )
    return OSMGraphBuilder(
        TagTable(Path(output) / 'tags').encoder(),
        key_weights=key_weights,
        cache=False,
        errors=config['errors'],
        equals_first=config['equals_first'],
    )


def _run_builder(output: Path) -> OSMGraphBuilder:
    """The graph builder of a run (cached per process).

    Args:
        output: The run's output folder.

    Returns:
        The builder.
    """
    stamp = (output / 'tags' / 'table.json').stat().st_mtime_ns
    return _cached_builder(str(output), stamp)


def _shard_row(row: dict[str, Any], output: str) -> dict[str, Any]:
    """Ray Data task: build one shard.

    Args:
        row: ``{'shard': number}``.
        output: The run's output folder.

    Returns:
        ``shard``, ``tiles`` and ``seconds``.
    """
    result = build_shard(int(row['shard']), output)
    return {
        'shard': result['shard'],
        'tiles': sum(result['tiles'].values()),
        'seconds': result['seconds'],
    }


def _stage_row(row: dict[str, Any], output: str) -> dict[str, Any]:
    """Ray Data task: stage one OSM source.

    Args:
        row: ``{'source': index, 'path': file}``.
        output: The run's output folder.

    Returns:
        The staging marker.
    """
    out = Path(output)
    plan = pd.read_parquet(
        out / 'plan.parquet', columns=['crs', 'xmin', 'ymin', 'xmax', 'ymax']
    )
    result = _stage_source(Path(row['path']), int(row['source']), out, plan)
    return {'source': result['source'], 'features': result['features']}


def _merge_indexes(output: Path, shards: int) -> dict[str, int]:
    """Merge the per-shard litdata indexes of each split into its ``index.json``.

    Args:
        output: The run's output folder.
        shards: Number of shards in the plan.

    Returns:
        Samples per split.

    Raises:
        PreparedDataError: If two shards wrote different sample layouts.
    """
    sizes = {}
    for split in SPLITS:
        folder = output / split
        if not folder.is_dir():
            continue
        chunks: list[dict[str, Any]] = []
        config: dict[str, Any] | None = None
        for shard in range(shards):
            path = folder / f'{shard}.index.json'
            if not path.exists():
                continue
            data = json.loads(path.read_text('utf-8'))
            body = {k: v for k, v in data['config'].items() if k not in ('types',)}
            if config is None:
                config = data['config']
            elif body != {k: v for k, v in config.items() if k not in ('types',)}:
                msg = f'{path}: shard {shard} was written with another sample layout than the shards before it'
                raise PreparedDataError(msg)
            chunks.extend(data['chunks'])
        if config is None:
            continue
        _atomic_write_text(
            folder / 'index.json',
            json.dumps(
                {'chunks': chunks, 'config': config, 'updated_at': str(time.time())},
                sort_keys=True,
            ),
        )
        sizes[split] = sum(int(c['chunk_size']) for c in chunks)
    return sizes


def _init_ray(address: str | None, num_workers: int) -> bool:
    """Connect to Ray: the cluster at ``address``/``RAY_ADDRESS``, or a local runtime.

    Args:
        address: Cluster address (``'auto'`` for the local node's cluster), or None.
        num_workers: CPUs of a local runtime.

    Returns:
        Whether this call started Ray (and should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {'include_dashboard': False, 'logging_level': 'warning'}
    if address is None and not os.environ.get('RAY_ADDRESS'):
        kwargs['num_cpus'] = num_workers
    ray.init(address=address, **kwargs)
    return True


def prepare(
    tiles: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    osm: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    tag_encoder: TagEncoder | None = None,
    tag_cache_dir: str | os.PathLike[str] | None = None,
    key_frequency: str | os.PathLike[str] | None = None,
    tiles_per_shard: int = 256,
    num_workers: int | None = None,
    address: str | None = None,
    crs: CRS | str | int | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.0,
    errors: Literal['raise', 'drop'] = 'drop',
    equals_first: bool = True,
    embeddings: Literal['float32', 'float16', 'table'] = 'float32',
    compression: str | None = None,
    chunk_bytes: str = '64MB',
    progress: bool = True,
) -> PrepareReport:
    """Prepare a tile corpus: plan, stage OSM, fill the tag table, build every shard.

    Steps 2 and 4 (staging, shards) run on Ray Data: on the cluster at ``address`` or
    ``RAY_ADDRESS`` when given (every node must see ``output``, the sources and the
    images at the same paths), otherwise on a local Ray runtime with ``num_workers``
    CPUs (started and stopped here unless Ray is already initialized). ``num_workers=0``
    builds everything in this process without Ray (for debugging and small corpora).

    A rerun into the same ``output`` with the same inputs and settings skips the
    finished sources and shards and rebuilds only the missing ones; other inputs or
    settings raise :class:`~torchgeo_geolink.errors.PreparedDataError`.

    Args:
        tiles: Tile index (see :func:`read_tile_index`).
        osm: OSM sources: ``.osm.pbf``, GeoParquet or any vector file GDAL reads, or
            folders of them (one or many regions; features of all sources are combined
            per tile).
        output: Output folder.
        tag_encoder: Tag encoder (default
            :class:`~torchgeo_geolink.osm.HashingTagEncoder`; use
            :class:`~torchgeo_geolink.osm.CLIPTagEncoder`, on a GPU, to reproduce the
            official features). It only runs in this process, once per distinct tag
            string.
        tag_cache_dir: :class:`~torchgeo_geolink.osm.CachedTagEncoder` folder kept
            across corpora.
        key_frequency: ``{key: count}`` JSON of tag-key frequencies (default: the
            shipped table).
        tiles_per_shard: Neighboring tiles per shard (one Ray task and one chunk series
            each).
        num_workers: Ray workers (default: the CPUs of the cluster, or of this machine).
        address: Ray cluster address (``'auto'``: the cluster this node belongs to).
        crs: CRS of tile tables that declare none.
        val_fraction: Share of validation tiles (hash of the name) for tiles without a
            ``split`` column.
        test_fraction: Share of test tiles, likewise.
        errors: A feature whose geometry cannot be used is dropped (``'drop'``) or stops
            the run (``'raise'``).
        equals_first: Label identical geometries ``equals`` (GeoLink's reference code
            does not).
        embeddings: How node embeddings are stored: ``'float32'`` (as built),
            ``'float16'`` (half the size, read back as float32) or ``'table'`` (each
            node's rows in the tag table; the reader recomputes the embeddings from the
            memory-mapped table, exactly; on the Helsinki extract the shards shrink
            8-fold, what remains is mostly the edge tables).
        compression: litdata chunk compression (``'zstd'``) or None.
        chunk_bytes: Target size of a litdata chunk.
        progress: Show progress (Ray Data's bars and a line per step).

    Returns:
        What the run did.

    Raises:
        TileError: If the tile index cannot be read.
        OSMFileError: If an OSM source cannot be read.
        PreparedDataError: If ``output`` holds a run with other inputs or settings.
        ValueError: If an argument is invalid.

    .. versionadded:: 0.1
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    if tiles_per_shard < 1:
        msg = f'tiles_per_shard must be positive, got {tiles_per_shard}'
        raise ValueError(msg)
    if errors not in ('raise', 'drop'):
        msg = f"errors must be 'raise' or 'drop', got {errors!r}"
        raise ValueError(msg)
    if embeddings not in ('float32', 'float16', 'table'):
        msg = f"embeddings must be 'float32', 'float16' or 'table', got {embeddings!r}"
        raise ValueError(msg)
    output = Path(output).resolve()
    encoder: TagEncoder = (
        tag_encoder if tag_encoder is not None else HashingTagEncoder()
    )
    try:
        sources = _expand(osm, OSM_SUFFIXES)
    except FileNotFoundError as error:
        raise OSMFileError(str(error)) from error
    if not sources:
        msg = f'no OSM source found in {osm!r}'
        raise OSMFileError(msg)

    def say(text: str) -> None:
        if progress:
            print(f'[geolink-prepare] {text}', file=sys.stderr, flush=True)

    index = read_tile_index(
        tiles, crs=crs, val_fraction=val_fraction, test_fraction=test_fraction
    )
    plan = _plan_shards(index, tiles_per_shard)
    num_shards = int(plan['shard'].max()) + 1
    plan_hash = hashlib.blake2b(
        plan.to_csv(index=False).encode(), digest_size=16
    ).hexdigest()
    manifest = {
        'format_version': FORMAT_VERSION,
        'plan': plan_hash,
        'tiles': len(plan),
        'shards': num_shards,
        'tiles_per_shard': tiles_per_shard,
        'sources': [_fingerprint(p) for p in sources],
        'tag_encoder': encoder.identity,
        'key_frequency': str(Path(key_frequency).resolve()) if key_frequency else None,
        'errors': errors,
        'equals_first': equals_first,
        'embeddings': embeddings,
        'compression': compression,
        'chunk_bytes': chunk_bytes,
    }
    output.mkdir(parents=True, exist_ok=True)
    manifest_path = output / 'manifest.json'
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text('utf-8'))
        changed = sorted(
            k
            for k in set(previous) | set(manifest)
            if previous.get(k) != manifest.get(k)
        )
        if changed:
            msg = (
                f'{output} holds a run prepared with other inputs or settings ({", ".join(changed)} differ); '
                'prepare into a new folder or delete this one'
            )
            raise PreparedDataError(msg)
    else:
        # Small row groups: each shard task reads only its own (the plan is sorted by
        # shard).
        plan.to_parquet(output / 'plan.parquet', index=False, row_group_size=4096)
        _atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    seconds['plan'] = time.perf_counter() - clock
    say(
        f'{len(plan)} tiles in {num_shards} shards, {len(sources)} OSM source(s) -> {output}'
    )

    use_ray = num_workers != 0
    started = False
    try:
        if use_ray:
            import ray.data

            started = _init_ray(address, num_workers or os.cpu_count() or 1)
            ray.data.DataContext.get_current().enable_progress_bars = progress
            if not progress:
                logging.getLogger('ray.data').setLevel(logging.WARNING)
            if num_workers is None:
                num_workers = max(1, int(ray.cluster_resources().get('CPU', 1)))
        # 2. Stage the OSM sources.
        clock = time.perf_counter()
        todo = [
            i
            for i in range(len(sources))
            if not (output / 'osm' / f'{i:04d}.json').exists()
        ]
        if todo and use_ray:
            rows = [{'source': i, 'path': str(sources[i])} for i in todo]
            ray.data.from_items(rows, override_num_blocks=len(rows)).map(
                functools.partial(_stage_row, output=str(output)), num_cpus=1
            ).materialize()
        else:
            for i in todo:
                _stage_source(sources[i], i, output, plan)
        staged = [
            json.loads((output / 'osm' / f'{i:04d}.json').read_text('utf-8'))
            for i in range(len(sources))
        ]
        features = sum(int(s['features']) for s in staged)
        seconds['stage'] = time.perf_counter() - clock
        say(
            f'staged {features} features meeting the tiles ({len(todo)} source(s) read)'
        )

        # 3. The tag table.
        clock = time.perf_counter()
        strings: set[str] = set()
        for i in range(len(sources)):
            strings.update(
                pq.read_table(output / 'osm' / f'{i:04d}.tags.parquet')
                .column('string')
                .to_pylist()
            )
        table, encoded = TagTable.write(
            output / 'tags', strings, encoder, tag_cache_dir
        )
        seconds['tags'] = time.perf_counter() - clock
        say(
            f'tag table: {len(table)} distinct strings ({encoded} encoded by {encoder.identity})'
        )

        # 4. The shards.
        clock = time.perf_counter()
        done = (
            {int(p.stem) for p in (output / 'shards').glob('*.json')}
            if (output / 'shards').is_dir()
            else set()
        )
        todo = [s for s in range(num_shards) if s not in done]
        if todo and use_ray:
            assert num_workers is not None
            items = [{'shard': s} for s in todo]
            ray.data.from_items(items, override_num_blocks=len(items)).map(
                functools.partial(_shard_row, output=str(output)),
                compute=ray.data.TaskPoolStrategy(size=min(num_workers, len(todo))),
                num_cpus=1,
            ).materialize()
        else:
            for s in todo:
                build_shard(s, output)
        seconds['shards'] = time.perf_counter() - clock
        say(f'built {len(todo)} shard(s), {num_shards - len(todo)} already finished')
    finally:
        if started:
            import ray

            ray.shutdown()

    clock = time.perf_counter()
    sizes = _merge_indexes(output, num_shards)
    seconds['index'] = time.perf_counter() - clock
    say(f'samples per split: {sizes}')
    return PrepareReport(
        output=output,
        tiles=len(plan),
        shards=num_shards,
        shards_built=len(todo),
        shards_skipped=num_shards - len(todo),
        split_sizes=sizes,
        features=features,
        tag_strings=len(table),
        tag_strings_encoded=encoded,
        seconds=seconds,
    )


def _encoder_from_args(args: argparse.Namespace) -> TagEncoder:
    """Build the tag encoder named on the command line.

    Args:
        args: Parsed arguments.

    Returns:
        The encoder.
    """
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.tag_encoder == 'clip':
        from .osm import CLIPTagEncoder

        return CLIPTagEncoder(
            args.tag_model or 'openai/clip-vit-base-patch16', device=device
        )
    if args.tag_encoder == 'sentence-transformers':
        from .osm import SentenceTransformerTagEncoder

        return SentenceTransformerTagEncoder(
            args.tag_model or 'sentence-transformers/all-MiniLM-L6-v2', device=device
        )
    return HashingTagEncoder()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m torchgeo_geolink.prepare`` (or ``geolink-prepare``).

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    .. versionadded:: 0.1
    """
    parser = argparse.ArgumentParser(
        prog='geolink-prepare',
        description='Build exact GeoLink graphs for a tile corpus on Ray Data and write them as litdata shards.',
    )
    parser.add_argument(
        '--tiles',
        nargs='+',
        required=True,
        help='tile index: rasters, folders or a tile table',
    )
    parser.add_argument(
        '--osm',
        nargs='+',
        required=True,
        help='OSM sources: .osm.pbf, GeoParquet, vector files',
    )
    parser.add_argument(
        '--output', required=True, help='output folder (a rerun resumes it)'
    )
    parser.add_argument('--tiles-per-shard', type=int, default=256)
    parser.add_argument(
        '--num-workers',
        type=int,
        default=None,
        help='Ray workers (0: no Ray, in process)',
    )
    parser.add_argument(
        '--address',
        default=None,
        help="Ray cluster address ('auto'); default RAY_ADDRESS",
    )
    parser.add_argument(
        '--crs', default=None, help='CRS of tile tables that declare none'
    )
    parser.add_argument('--val-fraction', type=float, default=0.05)
    parser.add_argument('--test-fraction', type=float, default=0.0)
    parser.add_argument(
        '--tag-encoder',
        choices=('hashing', 'clip', 'sentence-transformers'),
        default='hashing',
    )
    parser.add_argument(
        '--tag-model', default=None, help='model name or folder of the text encoder'
    )
    parser.add_argument(
        '--device',
        default='auto',
        help="device of the text encoder ('auto': a GPU if present)",
    )
    parser.add_argument(
        '--tag-cache-dir',
        default=None,
        help='CachedTagEncoder folder kept across corpora',
    )
    parser.add_argument(
        '--key-frequency',
        default=None,
        help='{key: count} JSON (default: the shipped table)',
    )
    parser.add_argument('--errors', choices=('drop', 'raise'), default='drop')
    parser.add_argument(
        '--reference-equals',
        action='store_true',
        help="no 'equals' label (as the reference)",
    )
    parser.add_argument(
        '--embeddings',
        choices=('float32', 'float16', 'table'),
        default='float32',
        help="node embeddings as built, as float16, or as rows of the tag table ('table': smallest)",
    )
    parser.add_argument(
        '--compression', default=None, help="litdata chunk compression, e.g. 'zstd'"
    )
    parser.add_argument('--chunk-bytes', default='64MB')
    parser.add_argument('--quiet', action='store_true')
    args = parser.parse_args(argv)
    report = prepare(
        args.tiles,
        args.osm,
        args.output,
        tag_encoder=_encoder_from_args(args),
        tag_cache_dir=args.tag_cache_dir,
        key_frequency=args.key_frequency,
        tiles_per_shard=args.tiles_per_shard,
        num_workers=args.num_workers,
        address=args.address,
        crs=args.crs,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        errors=args.errors,
        equals_first=not args.reference_equals,
        embeddings=args.embeddings,
        compression=args.compression,
        chunk_bytes=args.chunk_bytes,
        progress=not args.quiet,
    )
    print(
        json.dumps(
            {**dataclasses.asdict(report), 'output': str(report.output)}, indent=1
        )
    )
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
