# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OpenStreetMap vector dataset: features read once, indexed, and served per window as GeoLink graphs."""

import os
import pathlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyogrio
import pyogrio.errors
import shapely
import torch
from geopandas import GeoDataFrame
from matplotlib.figure import Figure
from pyproj import CRS
from torch import Tensor
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice, Path, Sample

from ..errors import InvalidFeatureError, OSMFileError
from ..osm.constants import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS
from ..osm.encoders import TagEncoder
from ..osm.geometry import split_by_type
from ..osm.graph import OSMGraphBuilder
from ..osm.positions import polygon_sample_points
from ..osm.tags import normalize_key, tags_from_frame

__all__ = ('LoadReport', 'OSMDataset')

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

# Node kind (0 polygon, 1 line, 2 point) of each shapely geometry type id; -1 for the others (and missing: -1).
_KIND_OF_TYPE_ID = np.array([2, 1, 1, 0, -1, -1, -1, -1], dtype=np.int8)
_MULTI_TYPES = (
    int(shapely.GeometryType.MULTIPOINT),
    int(shapely.GeometryType.MULTILINESTRING),
    int(shapely.GeometryType.MULTIPOLYGON),
    int(shapely.GeometryType.GEOMETRYCOLLECTION),
)


@dataclass
class LoadReport:
    """What happened to the features of one file while it was loaded.

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
class _EdgeTable:
    """Relations between all (unclipped) features of the dataset, all nine edge types in one table.

    Edges are sorted by source feature row, so the edges leaving a row are one slice of the table.

    Attributes:
        indptr: ``(n_rows + 1,)`` start of each source row's edges.
        dst: destination feature row of each edge.
        edge_type: position of each edge's type in :data:`~torchgeo_geolink.osm.EDGE_TYPES`.
        attr_row: row of each edge's attributes in ``attrs[edge_type]``.
        attrs: one-hot attributes ``(E_t, C_t)`` of each edge type.
    """

    indptr: np.ndarray
    dst: np.ndarray
    edge_type: np.ndarray
    attr_row: np.ndarray
    attrs: tuple[np.ndarray, ...]


def _read_vector_file(path: str, layers: Sequence[str] | None) -> list[GeoDataFrame]:
    """Read the feature layers of one vector file.

    Args:
        path: the file (GeoJSON, GeoPackage, Shapefile, GeoParquet, ``.osm.pbf`` or anything GDAL reads).
        layers: layers to read (default: every layer; the four feature layers for OSM files).

    Returns:
        One frame per layer read.

    Raises:
        OSMFileError: if the file cannot be read or a requested layer is missing.
    """
    name = path.lower()
    try:
        if name.endswith(('.parquet', '.geoparquet')):
            return [gpd.read_parquet(path)]
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
                    pyogrio.read_dataframe(path, layer=layer, on_invalid='fix')
                )
        return frames
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


def _resolve_files(paths: Path | Iterable[Path], filename_glob: str) -> list[str]:
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


class OSMDataset(GeoDataset):
    """OpenStreetMap features served per window as clipped features and a GeoLink graph.

    Each file is read once, when the dataset is created: its features are reprojected to the dataset
    :term:`coordinate reference system (CRS)`, their tags normalised (whatever the source: a ``tags`` dict column,
    the ``other_tags`` hstore of GDAL's OSM driver, one column per key, or GeoLink's ``label``), multipart
    geometries and collections exploded, invalid geometries repaired with :func:`shapely.make_valid`, empty ones
    dropped and 3-D ones flattened (see ``reports``). All features live in one in-memory table with a
    :class:`shapely.STRtree`; each feature's tag embedding is computed once.

    Indexing with ``ds[xmin:xmax:xres, ymin:ymax:yres]`` returns the window's features clipped to it, as a
    GeoLink heterogeneous graph flattened into tensor keys that survive ``image & osm``:

    * ``osm_<type>_x`` (float32 ``(N, D)``), ``osm_<type>_pos`` (float32 ``(N, K, 2)``, normalised to the window,
      x right, y down) and ``osm_<type>_id`` (long ``(N,)``, the feature's row in the dataset's feature table), for
      ``<type>`` in ``polygon``, ``line``, ``point``;
    * ``osm_<src>_to_<dst>_edge_index`` (long ``(2, E)``) and ``osm_<src>_to_<dst>_edge_attr``
      (float32 one-hot ``(E, C)``) for the nine edge types;
    * ``osm_bounds`` (float64 ``[xmin, ymin, xmax, ymax]`` of the window in the dataset CRS).

    :func:`~torchgeo_geolink.datasets.collate_geolink` turns a list of such samples into a batch holding one
    :class:`torch_geometric.data.Batch`; :func:`~torchgeo_geolink.datasets.sample_to_graph` rebuilds one graph.

    Two graph modes:

    * ``'induced'`` (default, fast): relations are computed once, over the unclipped features, and each window
      takes the subgraph induced by its features. A feature cut into several parts by the window gives one node
      per part; the parts share their feature's relations.
    * ``'exact'``: relations are computed per window from the clipped geometries with
      :class:`~torchgeo_geolink.osm.OSMGraphBuilder`, exactly as GeoLink builds a tile's graph.

    Both modes give the same nodes with the same positions; only edges may differ (e.g. two polygons that
    overlap outside the window but only touch inside it, or point Delaunay edges, which are global in induced
    mode).
    """

    filename_glob = '*'

    def __init__(
        self,
        paths: Path | Iterable[Path] = 'data',
        crs: CRS | None = None,
        res: float | tuple[float, float] | None = None,
        *,
        layers: Sequence[str] | None = None,
        tag_encoder: TagEncoder | None = None,
        graph_mode: Literal['induced', 'exact'] = 'induced',
        drop_keys: Sequence[str] = (),
        source_crs: CRS | str | int | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new OSMDataset instance.

        Args:
            paths: vector files, or directories searched recursively for them (GeoJSON, GeoPackage, Shapefile,
                GeoParquet, ``.osm.pbf`` and other formats GDAL reads).
            crs: :term:`coordinate reference system (CRS)` to reproject the features to (defaults to the CRS of
                the first file).
            res: resolution in units of the CRS (defaults to 1e-5 degrees, about 1 m, for a geographic CRS and
                1 unit otherwise); ``image & osm`` replaces it with the image's.
            layers: layers to read from each file (default: all layers; for ``.osm.pbf`` files the ``points``,
                ``lines``, ``multilinestrings`` and ``multipolygons`` layers).
            tag_encoder: text encoder of the tags (default:
                :class:`~torchgeo_geolink.osm.HashingTagEncoder`, offline).
            graph_mode: ``'induced'`` (relations computed once, fast) or ``'exact'`` (per window).
            drop_keys: features carrying any of these tag keys are left out (e.g. ``'landuse'`` when land use is
                the label of a downstream task).
            source_crs: CRS assumed for files that declare none (default: such files are an error).
            transforms: a function/transform that takes a sample and returns a transformed version.

        Raises:
            OSMFileError: if a file is missing, unreadable, corrupt, lacks a CRS, or no file holds a feature.
            ValueError: if *graph_mode* is unknown.
        """
        if graph_mode not in ('induced', 'exact'):
            raise ValueError(
                f"graph_mode must be 'induced' or 'exact', got {graph_mode!r}"
            )
        self.paths = paths
        self.transforms = transforms
        self.graph_mode = graph_mode
        self.drop_keys = tuple(normalize_key(k) for k in drop_keys)
        #: Graph builder that computes tag embeddings (each distinct tag string encoded once) and, in exact
        #: mode, relations.
        self.builder = OSMGraphBuilder(tag_encoder=tag_encoder)
        self.reports: list[LoadReport] = []

        assumed = CRS.from_user_input(source_crs) if source_crs is not None else None
        geoms, kind_list, file_ids, tags, file_crs, filepaths = [], [], [], [], [], []
        for path in _resolve_files(paths, self.filename_glob):
            report = LoadReport(path)
            kept_before = sum(len(g) for g in geoms)
            frames = _read_vector_file(path, layers)
            frame_crs = self._file_crs(path, frames, assumed)
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
                if self.drop_keys:
                    keep = np.array(
                        [not any(k in t for k in self.drop_keys) for t in part_tags],
                        dtype=bool,
                    )
                    report.dropped_keys += len(np.unique(owner[~keep]))
                    part_geoms, part_kinds = part_geoms[keep], part_kinds[keep]
                    part_tags = [t for t, k in zip(part_tags, keep, strict=True) if k]
                geoms.append(part_geoms)
                kind_list.append(part_kinds)
                tags.extend(part_tags)
                file_ids.append(
                    np.full(len(part_geoms), len(filepaths), dtype=np.int64)
                )
            report.kept = sum(len(g) for g in geoms) - kept_before
            self.reports.append(report)
            if report.kept == 0:
                warnings.warn(
                    f'{path}: no usable feature (read {report.read}); file skipped',
                    UserWarning,
                )
                continue
            filepaths.append(path)
            file_crs.append(frame_crs)
        if not filepaths:
            raise OSMFileError(f'no file in {paths!r} holds a usable feature')

        #: Source geometries (cleaned, single part) in their file's CRS, one per feature row.
        self._source_geoms = np.concatenate(geoms)
        #: File (position in ``filepaths``) of each feature row.
        self.file_ids = np.concatenate(file_ids)
        #: Normalised tags (key -> value) of each feature row.
        self.tags: list[dict[str, str]] = tags
        self.filepaths = filepaths
        self._file_crs_list = file_crs
        #: Node type (0 polygon, 1 line, 2 point) of each feature row.
        self.kinds = np.concatenate(kind_list)
        #: Node embedding of each feature row (the tag encoder runs once per distinct tag string).
        self.embeddings: Tensor = self.builder.node_features(self.tags).float()

        target = CRS.from_user_input(crs) if crs is not None else file_crs[0]
        if res is None:
            res = 1e-5 if target.is_geographic else 1.0
        self._res = (
            (float(res), float(res))
            if isinstance(res, int | float)
            else (float(res[0]), float(res[1]))
        )
        self._crs = target
        self._project(target)

    @staticmethod
    def _file_crs(path: str, frames: list[GeoDataFrame], assumed: CRS | None) -> CRS:
        """CRS of a file's features.

        Args:
            path: the file.
            frames: its layers.
            assumed: CRS to assume when the file declares none.

        Returns:
            The CRS.

        Raises:
            OSMFileError: if the file declares no CRS and none is assumed, or its layers disagree.
        """
        crss = {CRS.from_user_input(f.crs) for f in frames if f.crs is not None}
        if len(crss) > 1:
            raise OSMFileError(
                f'{path}: layers have different CRSs {sorted(c.to_string() for c in crss)}'
            )
        if crss:
            crs = crss.pop()
            if crs.is_geographic:
                bounds = np.array([f.total_bounds for f in frames if len(f)]).reshape(
                    -1, 4
                )
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

    def _project(self, crs: CRS) -> None:
        """Reproject the features to *crs* and rebuild the index, spatial tree, positions and relations.

        Args:
            crs: the new dataset CRS.

        Raises:
            InvalidFeatureError: if a feature cannot be reprojected (e.g. outside the CRS's area of use).
        """
        geoms = np.empty(len(self._source_geoms), dtype=object)
        for i, file_crs in enumerate(self._file_crs_list):
            rows = np.flatnonzero(self.file_ids == i)
            src = gpd.GeoSeries(self._source_geoms[rows], crs=file_crs)
            geoms[rows] = src.to_crs(crs).values if file_crs != crs else src.values
            bad = ~np.isfinite(shapely.bounds(geoms[rows])).all(axis=1)
            if bad.any():
                row = int(rows[np.flatnonzero(bad)[0]])
                msg = f'{self.filepaths[i]}: feature {row} ({self.tags[row]}) cannot be reprojected to {crs.to_string()}'
                raise InvalidFeatureError(msg)
        invalid = np.flatnonzero(~shapely.is_valid(geoms))
        for row in invalid:  # reprojection rarely breaks validity: keep the largest valid part of the same type
            parts = shapely.get_parts(shapely.make_valid(geoms[row]))
            parts = parts[
                _KIND_OF_TYPE_ID[shapely.get_type_id(parts)] == self.kinds[row]
            ]
            if len(parts) == 0:
                raise InvalidFeatureError(
                    f'{self.filepaths[self.file_ids[row]]}: feature {row} is invalid after reprojection'
                )
            geoms[row] = parts[np.argmax(shapely.area(parts) + shapely.length(parts))]
        self._crs = crs
        #: Feature geometries in the dataset CRS, one per row.
        self.geometries = geoms
        self._bounds = shapely.bounds(geoms)
        self.tree = shapely.STRtree(geoms)
        self._abs_pos = _absolute_positions(geoms, self.kinds)
        self._edges = self._edge_table() if self.graph_mode == 'induced' else None

        file_bounds = np.empty((len(self.filepaths), 4))
        for i in range(len(self.filepaths)):
            b = self._bounds[self.file_ids == i]
            file_bounds[i] = (
                b[:, :2].min(axis=0).tolist() + b[:, 2:].max(axis=0).tolist()
            )
        #: ``(xmin, ymin, xmax, ymax)`` footprint of each file, the geometry of :attr:`index`.
        self._file_bounds = file_bounds
        footprints = shapely.box(*file_bounds.T)
        interval = (pd.Timestamp.min, pd.Timestamp.max)
        index = pd.IntervalIndex.from_tuples(
            [interval] * len(footprints), closed='both', name='datetime'
        )
        self.index = GeoDataFrame(
            {'filepath': self.filepaths}, index=index, geometry=footprints, crs=crs
        )

    def _edge_table(self) -> _EdgeTable:
        """Relations between all (unclipped) features, computed once, as one table sorted by source row.

        Returns:
            The edge table.
        """
        rows_of = {t: np.flatnonzero(self.kinds == k) for k, t in enumerate(NODE_TYPES)}
        edges = self.builder.build_edges(
            self.geometries[rows_of['polygon']],
            self.geometries[rows_of['line']],
            self.geometries[rows_of['point']],
        )
        src, dst, edge_type, attr_row, attrs = [], [], [], [], []
        for t, key in enumerate(EDGE_TYPES):
            edge_index, edge_attr = edges[key]
            edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
            n_edges = edge_index.shape[1]
            src.append(rows_of[key[0]][edge_index[0]])
            dst.append(rows_of[key[2]][edge_index[1]])
            edge_type.append(np.full(n_edges, t, dtype=np.int8))
            attr_row.append(np.arange(n_edges))
            attrs.append(
                np.ascontiguousarray(edge_attr, dtype=np.float32).reshape(
                    n_edges, EDGE_ATTR_DIMS[key]
                )
            )
        all_src = np.concatenate(src)
        order = np.argsort(all_src, kind='stable')
        indptr = np.zeros(len(self.geometries) + 1, dtype=np.int64)
        np.cumsum(np.bincount(all_src, minlength=len(self.geometries)), out=indptr[1:])
        return _EdgeTable(
            indptr,
            np.concatenate(dst)[order],
            np.concatenate(edge_type)[order],
            np.concatenate(attr_row)[order],
            tuple(attrs),
        )

    @property
    def crs(self) -> CRS:
        """:term:`coordinate reference system (CRS)` of the dataset.

        Returns:
            The CRS.
        """
        return self._crs

    @crs.setter
    def crs(self, new_crs: CRS) -> None:
        """Reproject the in-memory features (no file is re-read) and rebuild the index and caches.

        Args:
            new_crs: the new CRS.
        """
        new_crs = CRS.from_user_input(new_crs)
        if new_crs == self._crs:
            return
        self._project(new_crs)

    @property
    def res(self) -> tuple[float, float]:
        """Resolution of the dataset in units of its CRS (the default step of a query).

        Returns:
            The ``(xres, yres)`` resolution.
        """
        return self._res

    @res.setter
    def res(self, new_res: float | tuple[float, float]) -> None:
        """Change the resolution (features are vectors: nothing is resampled).

        Args:
            new_res: new ``(xres, yres)`` resolution, or one value for both.
        """
        if isinstance(new_res, int | float):
            new_res = (new_res, new_res)
        self._res = (float(new_res[0]), float(new_res[1]))

    def _window(self, index: GeoSlice) -> tuple[float, float, float, float]:
        """Resolve a query to a window and check it meets the dataset.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to index.

        Returns:
            ``(xmin, ymin, xmax, ymax)`` of the window in the dataset CRS.

        Raises:
            IndexError: if the window is empty or does not meet any file's footprint.
        """
        if (
            isinstance(index, tuple)
            and len(index) >= 2
            and isinstance(index[0], slice)
            and isinstance(index[1], slice)
            and None
            not in (index[0].start, index[0].stop, index[1].start, index[1].stop)
        ):
            x, y = (
                index[0],
                index[1],
            )  # fully specified (as samplers give): no pandas work
        else:
            x, y, _ = self._disambiguate_slice(index)
        xmin, xmax, ymin, ymax = (
            float(x.start),
            float(x.stop),
            float(y.start),
            float(y.stop),
        )
        fb = self._file_bounds
        if (
            not (xmax > xmin and ymax > ymin)
            or not (
                (fb[:, 0] <= xmax)
                & (fb[:, 2] >= xmin)
                & (fb[:, 1] <= ymax)
                & (fb[:, 3] >= ymin)
            ).any()
        ):
            raise IndexError(
                f'index: {index} not found in dataset with bounds: {self.bounds}'
            )
        return xmin, ymin, xmax, ymax

    def _clip(
        self, window: tuple[float, float, float, float]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features of a window, clipped to it and split into single parts.

        Features whose bounding box lies in the window are taken whole; only the others are clipped (those the
        window misses, or meets only on its edge, clip to nothing or to a lower dimension and are dropped).

        Args:
            window: ``(xmin, ymin, xmax, ymax)`` in the dataset CRS.

        Returns:
            Feature row, geometry and whether it was cut, for each node, sorted by node type then row (the parts
            of a feature are adjacent).
        """
        xmin, ymin, xmax, ymax = window
        rows = self.tree.query(shapely.box(*window))
        b = self._bounds[rows]
        inside = (
            (b[:, 0] >= xmin)
            & (b[:, 1] >= ymin)
            & (b[:, 2] <= xmax)
            & (b[:, 3] <= ymax)
        )
        cut_rows = rows[~inside]
        if len(cut_rows):
            clipped = shapely.clip_by_rect(
                self.geometries[cut_rows], xmin, ymin, xmax, ymax
            )
            parts, part_of = shapely.get_parts(clipped, return_index=True)
            part_rows = cut_rows[part_of]
            keep = (
                _KIND_OF_TYPE_ID[shapely.get_type_id(parts)] == self.kinds[part_rows]
            ) & ~shapely.is_empty(parts)
            whole_rows = rows[inside]
            rows = np.concatenate([whole_rows, part_rows[keep]])
            geoms = np.concatenate([self.geometries[whole_rows], parts[keep]])
            cut = np.arange(len(rows)) >= len(whole_rows)
        else:
            geoms = self.geometries[rows]
            cut = np.zeros(len(rows), dtype=bool)
        order = np.argsort(
            self.kinds[rows].astype(np.int64) * len(self.geometries) + rows,
            kind='stable',
        )
        return rows[order], geoms[order], cut[order]

    def features(self, index: GeoSlice) -> GeoDataFrame:
        """The features of a window, clipped to it, with their tags.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to index.

        Returns:
            One row per node (a feature cut into several parts by the window gives several rows) with columns
            ``row`` (the feature's row in the dataset), ``type`` (``polygon``, ``line`` or ``point``), ``tags``
            (dict) and ``geometry`` (in the dataset CRS), sorted by type then row.

        Raises:
            IndexError: if the window does not meet the dataset.
        """
        rows, geoms, _ = self._clip(self._window(index))
        kinds = self.kinds[rows]
        order = np.argsort(kinds, kind='stable')
        rows, geoms, kinds = rows[order], geoms[order], kinds[order]
        data = {
            'row': rows,
            'type': np.asarray(NODE_TYPES, dtype=object)[kinds],
            'tags': [self.tags[r] for r in rows],
        }
        return GeoDataFrame(
            data, geometry=gpd.GeoSeries(geoms, crs=self.crs), crs=self.crs
        )

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Retrieve the GeoLink graph of the features in a window.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to index.

        Returns:
            The ``osm_*`` tensor keys described in the class docstring.

        Raises:
            IndexError: if the window does not meet the dataset.
        """
        window = self._window(index)
        rows, geoms, cut = self._clip(window)
        sample = (
            self._exact_sample(window, rows, geoms)
            if self.graph_mode == 'exact'
            else self._induced_sample(window, rows, geoms, cut)
        )
        sample['osm_bounds'] = torch.tensor(window, dtype=torch.float64)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _induced_sample(
        self,
        window: tuple[float, float, float, float],
        rows: np.ndarray,
        geoms: np.ndarray,
        cut: np.ndarray,
    ) -> Sample:
        """Graph of a window as the subgraph induced by its features in the precomputed relations.

        Positions of whole features come from the per-feature cache and are only recomputed for the features
        cut by the window; the nine edge types are taken in one vectorised pass over :attr:`_edges`.

        Args:
            window: ``(xmin, ymin, xmax, ymax)`` in the dataset CRS.
            rows: feature row of each node, sorted by node type then row.
            geoms: clipped geometry of each node.
            cut: whether each node was cut by the window.

        Returns:
            The flattened graph (``osm_*`` keys).
        """
        assert self._edges is not None
        xmin, ymin, xmax, ymax = window
        kinds = self.kinds[rows]
        offsets = np.zeros(len(NODE_TYPES) + 1, dtype=np.int64)
        np.cumsum(np.bincount(kinds, minlength=len(NODE_TYPES)), out=offsets[1:])

        xy = self._abs_pos[rows]
        if cut.any():
            xy[cut] = _absolute_positions(geoms[cut], kinds[cut])
        pos = np.empty(xy.shape, dtype=np.float32)
        pos[..., 0] = (xy[..., 0] - xmin) / (xmax - xmin)
        pos[..., 1] = 1.0 - (xy[..., 1] - ymin) / (ymax - ymin)

        sample: Sample = {}
        for k, node_type in enumerate(NODE_TYPES):
            a, b = offsets[k], offsets[k + 1]
            ids = torch.from_numpy(rows[a:b])
            sample[f'osm_{node_type}_x'] = self.embeddings.index_select(0, ids)
            sample[f'osm_{node_type}_pos'] = torch.from_numpy(
                np.ascontiguousarray(pos[a:b, : POS_POINTS[node_type]])
            )
            sample[f'osm_{node_type}_id'] = ids

        # Feature row -> node index (within its type) of its first part, -1 outside the window.
        local = np.full(len(self.geometries), -1, dtype=np.int64)
        node_local = np.arange(len(rows)) - offsets[kinds]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = rows[1:] != rows[:-1]
        multipart = not first.all()
        feature_rows = rows[first] if multipart else rows
        local[feature_rows] = node_local[first] if multipart else node_local

        table = self._edges
        starts = table.indptr[feature_rows]
        lengths = table.indptr[feature_rows + 1] - starts
        edge_ids = np.arange(int(lengths.sum())) + np.repeat(
            starts - (np.cumsum(lengths) - lengths), lengths
        )
        src_rows = np.repeat(feature_rows, lengths)
        dst_local = local[table.dst[edge_ids]]
        keep = dst_local >= 0
        edge_ids, src_rows, dst_local = edge_ids[keep], src_rows[keep], dst_local[keep]
        src_local = local[src_rows]
        if multipart:
            parts = np.zeros(len(self.geometries), dtype=np.int64)
            parts[feature_rows] = np.diff(np.append(np.flatnonzero(first), len(rows)))
            dst_rows = table.dst[edge_ids]
            src_local, dst_local, take = _expand_parts(
                src_local,
                dst_local,
                parts[src_rows],
                parts[dst_rows],
                src_rows == dst_rows,
            )
            edge_ids = edge_ids[take]
        edge_type = table.edge_type[edge_ids]
        order = np.argsort(edge_type, kind='stable')
        splits = np.searchsorted(edge_type[order], np.arange(len(EDGE_TYPES) + 1))
        for t, (src_type, _, dst_type) in enumerate(EDGE_TYPES):
            sel = order[splits[t] : splits[t + 1]]
            name = f'osm_{src_type}_to_{dst_type}'
            sample[f'{name}_edge_index'] = torch.from_numpy(
                np.stack([src_local[sel], dst_local[sel]])
            )
            sample[f'{name}_edge_attr'] = torch.from_numpy(
                table.attrs[t][table.attr_row[edge_ids[sel]]]
            )
        return sample

    def _exact_sample(
        self,
        window: tuple[float, float, float, float],
        rows: np.ndarray,
        geoms: np.ndarray,
    ) -> Sample:
        """Graph of a window built from its clipped features with :class:`~torchgeo_geolink.osm.OSMGraphBuilder`.

        Args:
            window: ``(xmin, ymin, xmax, ymax)`` in the dataset CRS.
            rows: feature row of each node, sorted.
            geoms: clipped geometry of each node.

        Returns:
            The flattened graph (``osm_*`` keys).
        """
        from .utils import graph_to_sample

        frame = GeoDataFrame(
            {'tags': [self.tags[r] for r in rows]},
            geometry=gpd.GeoSeries(geoms, crs=self.crs),
            crs=self.crs,
        )
        sample = graph_to_sample(self.builder(frame, window))
        for node_type in NODE_TYPES:
            key = f'osm_{node_type}_id'
            sample[key] = torch.from_numpy(rows[sample[key].numpy()])
        return sample

    def plot(
        self, sample: Sample, show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Plot a sample: the image (if any) with the OSM features overlaid by type in the window's pixel frame.

        Polygons and lines are drawn from the features' clipped geometries when the sample still holds
        ``osm_bounds`` and ``osm_*_id`` of this dataset, and their node positions are marked on top (positions
        follow joint image-graph augmentations, geometries do not).

        Args:
            sample: a sample returned by :meth:`__getitem__` or by ``(image & osm)[...]``.
            show_titles: flag indicating whether to show titles above each panel.
            suptitle: optional string to use as a suptitle.

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        fig, ax = plt.subplots(figsize=(6, 6))
        width = height = 1.0
        if 'image' in sample:
            image = sample['image']
            image = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
            array = image.permute(1, 2, 0).double().numpy()
            low, high = np.nanpercentile(array, (2, 98), axis=(0, 1))
            array = np.clip((array - low) / np.where(high > low, high - low, 1.0), 0, 1)
            height, width = array.shape[:2]
            ax.imshow(array)
        else:
            ax.set_facecolor('whitesmoke')
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        colours = {'polygon': 'tab:orange', 'line': 'tab:blue', 'point': 'tab:red'}
        if 'osm_bounds' in sample:
            xmin, ymin, xmax, ymax = sample['osm_bounds'].tolist()

            def to_pixels(xy: np.ndarray) -> np.ndarray:
                """Map CRS coordinates to the window's pixel frame."""
                return np.stack(
                    [
                        (xy[:, 0] - xmin) / (xmax - xmin) * width,
                        (ymax - xy[:, 1]) / (ymax - ymin) * height,
                    ],
                    axis=1,
                )

            for node_type in ('polygon', 'line'):
                ids = sample.get(f'osm_{node_type}_id')
                if (
                    ids is None
                    or len(ids) == 0
                    or int(ids.max()) >= len(self.geometries)
                ):
                    continue
                clipped = shapely.clip_by_rect(
                    self.geometries[ids.numpy()], xmin, ymin, xmax, ymax
                )
                for geom in shapely.get_parts(clipped):
                    rings = (
                        [geom.exterior, *geom.interiors]
                        if isinstance(geom, shapely.Polygon)
                        else [geom]
                    )
                    for ring in rings:
                        xy = to_pixels(shapely.get_coordinates(ring))
                        ax.plot(
                            xy[:, 0], xy[:, 1], color=colours[node_type], linewidth=1
                        )
        for node_type in NODE_TYPES:
            pos = sample.get(f'osm_{node_type}_pos')
            if pos is None or len(pos) == 0:
                continue
            xy = pos.reshape(-1, 2).double().numpy() * [width, height]
            marker = {'polygon': 's', 'line': '^', 'point': 'o'}[node_type]
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                s=8,
                c=colours[node_type],
                marker=marker,
                label=f'{node_type} ({len(pos)})',
            )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc='upper right', fontsize='small')
        ax.set_axis_off()
        if show_titles:
            ax.set_title('Image and OSM graph nodes')
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig


def _absolute_positions(geoms: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Node positions of features in their CRS (not normalised), as :mod:`torchgeo_geolink.osm.positions`.

    Args:
        geoms: single-part geometries.
        kinds: node type of each (0 polygon, 1 line, 2 point).

    Returns:
        float64 ``(len(geoms), 4, 2)`` positions (polygon: three interior samples then the centroid; line:
        centroid, start, end; point: itself), unused slots NaN.
    """
    out = np.full((len(geoms), 4, 2), np.nan)
    for k, node_type in enumerate(NODE_TYPES):
        sel = np.flatnonzero(kinds == k)
        if len(sel) == 0:
            continue
        type_geoms = geoms[sel]
        match node_type:
            case 'polygon':
                out[sel] = polygon_sample_points(type_geoms)
            case 'line':
                out[sel, 0] = shapely.get_coordinates(shapely.centroid(type_geoms))
                out[sel, 1] = shapely.get_coordinates(shapely.get_point(type_geoms, 0))
                out[sel, 2] = shapely.get_coordinates(shapely.get_point(type_geoms, -1))
            case _:
                out[sel, 0] = shapely.get_coordinates(type_geoms)
    return out


def _expand_parts(
    src: np.ndarray,
    dst: np.ndarray,
    src_parts: np.ndarray,
    dst_parts: np.ndarray,
    is_self: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn feature-level edges into node-level edges (a feature cut into parts has one node per part).

    Every part of the source is linked to every part of the destination, except self loops, which link each
    part to itself only. The parts of a feature are consecutive nodes.

    Args:
        src: node index of each edge's source feature's first part.
        dst: node index of each edge's destination feature's first part.
        src_parts: number of parts of each edge's source feature.
        dst_parts: number of parts of each edge's destination feature.
        is_self: whether each edge is a self loop.

    Returns:
        Source nodes, destination nodes and, for each node-level edge, the feature-level edge it comes from.
    """
    pairs = np.where(is_self, src_parts, src_parts * dst_parts)
    take = np.repeat(np.arange(len(pairs)), pairs)
    k = np.arange(int(pairs.sum())) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    width = np.where(is_self, 1, dst_parts)[take]
    self_take = is_self[take]
    i = np.where(self_take, k, k // width)
    j = np.where(self_take, k, k % width)
    return src[take] + i, dst[take] + j, take
