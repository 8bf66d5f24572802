# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OpenStreetMap vector dataset: features served per window as GeoLink graphs."""

import hashlib
import json
import os
import pathlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, get_args

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import shapely
import torch
from geopandas import GeoDataFrame
from matplotlib.figure import Figure
from pyproj import CRS
from torch import Tensor
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice, Path, Sample
from tqdm.auto import tqdm

from ..errors import OSMFileError
from ..osm.constants import NODE_TYPES, POS_POINTS
from ..osm.encoders import TagEncoder
from ..osm.graph import OSMGraphBuilder
from ..osm.positions import node_sample_points, normalize_xy
from ..osm.tags import normalize_key
from ..visualization import plot_label_panels
from .osm_cache import cache_key, open_or_build
from .osm_reader import (
    FileFeatures,
    LoadReport,
    PBFReader,
    read_features,
    resolve_files,
)
from .osm_store import OSMStore, TagView
from .osm_subgraph import induced_edges
from .utils import graph_to_sample

__all__ = ('LoadReport', 'OSMDataset')


class OSMDataset(GeoDataset):
    """OpenStreetMap features served per window as clipped features and a GeoLink graph.

    Each file is read once, when the dataset is created: its features are reprojected to
    the dataset :term:`coordinate reference system (CRS)`, their tags normalized
    (whatever the source: a ``tags`` dict column, the ``other_tags`` hstore of GDAL's
    OSM driver, one column per key, or GeoLink's ``label``), multipart geometries and
    collections exploded, invalid geometries repaired with :func:`shapely.make_valid`,
    empty ones dropped and 3-D ones flattened (see ``reports``). ``roi=`` reads only the
    features that meet a region (GDAL's spatial filter) and ``keys=`` keeps only the
    features carrying one of some tag keys.

    All features live in one columnar store
    (:class:`~torchgeo_geolink.datasets.osm_store.OSMStore`): shapely geometries and a
    :class:`shapely.STRtree`, tags interned in CSR form, the embedding of each distinct
    tag string computed once (node embeddings are gathered per window), node positions
    and the global edge table as flat arrays, derived in the current CRS when first
    needed (setting :attr:`crs`, as ``image & osm`` does, only reprojects the
    geometries). With ``cache_dir`` the prepared store is saved there, keyed by the
    files' content, the options, the CRS, the tag encoder and the graph mode, and later
    datasets, DataLoader workers and DDP ranks memory-map it instead of reading the
    files again.

    Indexing with ``ds[xmin:xmax:xres, ymin:ymax:yres]`` returns the window's features
    clipped to it, as a GeoLink heterogeneous graph flattened into tensor keys that
    survive ``image & osm``:

    * ``osm_<type>_x`` (float32 ``(N, D)``), ``osm_<type>_pos`` (float32 ``(N, K, 2)``,
      normalized to the window, x right, y down) and ``osm_<type>_id`` (long ``(N,)``,
      the feature's row in the dataset's feature table), for ``<type>`` in ``polygon``,
      ``line``, ``point``;
    * ``osm_<src>_to_<dst>_edge_index`` (long ``(2, E)``) and
      ``osm_<src>_to_<dst>_edge_attr`` (float32 one-hot ``(E, C)``) for the nine edge
      types;
    * ``osm_bounds`` (float64 ``[xmin, ymin, xmax, ymax]`` of the window in the dataset
      CRS).

    :func:`~torchgeo_geolink.datasets.collate_geolink` turns a list of such samples into
    a batch holding one :class:`torch_geometric.data.Batch`;
    :func:`~torchgeo_geolink.datasets.sample_to_graph` rebuilds one graph.

    Two graph modes:

    * ``'induced'`` (default, fast): relations are computed once, over the unclipped
      features, and each window takes the subgraph induced by its features. A feature
      cut into several parts by the window gives one node per part; the parts share
      their feature's relations.
    * ``'exact'``: relations are computed per window from the clipped geometries with
      :class:`~torchgeo_geolink.osm.OSMGraphBuilder`, exactly as GeoLink builds a tile's
      graph.

    Both modes give the same nodes with the same positions; only edges may differ (e.g.
    two polygons that overlap outside the window but only touch inside it, or point
    Delaunay edges, which are global in induced mode).

    .. versionadded:: 0.1
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
        keys: Sequence[str] | None = None,
        tag_keys: Sequence[str] | None = None,
        roi: shapely.Geometry | Sequence[float] | None = None,
        source_crs: CRS | str | int | None = None,
        strict: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        pbf_reader: PBFReader = 'gdal',
        progress: bool = True,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new OSMDataset instance.

        Args:
            paths: vector files, or directories searched recursively for them (GeoJSON,
                GeoPackage, Shapefile, GeoParquet, ``.osm.pbf`` and other formats GDAL
                reads).
            crs: :term:`coordinate reference system (CRS)` to reproject the features to
                (defaults to the CRS of the first file).
            res: resolution in units of the CRS (defaults to 1e-5 degrees, about 1 m,
                for a geographic CRS and 1 unit otherwise); ``image & osm`` replaces it
                with the image's.
            layers: layers to read from each file (default: all layers; for ``.osm.pbf``
                files the ``points``, ``lines`` and ``multipolygons`` layers).
            tag_encoder: text encoder of the tags (default:
                :class:`~torchgeo_geolink.osm.HashingTagEncoder`, offline).
            graph_mode: ``'induced'`` (relations computed once, fast) or ``'exact'``
                (per window).
            drop_keys: features carrying any of these tag keys are left out (e.g.
                ``'landuse'`` when land use is the label of a downstream task).
            keys: when given, only features carrying at least one of these tag keys are
                read (with all their tags).
            tag_keys: when given, only the tags with these keys are read and embedded,
                the features are all kept (e.g. keys that describe what a feature is,
                leaving out names, addresses and references, whose values identify
                places rather than describe them).
            roi: read only the features that intersect this region (a shapely geometry
                or ``(xmin, ymin, xmax, ymax)``), in *crs* (in each file's CRS when
                *crs* is None).
            source_crs: CRS assumed for files that declare none (default: such files are
                an error).
            strict: raise an :class:`~torchgeo_geolink.errors.InvalidFeatureError` for a
                feature that cannot be reprojected to the dataset CRS, instead of
                dropping it with a warning (counted in ``reports``).
            cache_dir: folder of the on-disk cache of prepared stores (None: no cache).
            pbf_reader: what reads ``.osm.pbf`` files: ``'gdal'`` (GDAL's OSM driver,
                faster, the default) or ``'quackosm'`` (QuackOSM on DuckDB, an optional
                extra: 4-20x slower in our benchmark, with a lower peak in this
                process but about 950 MiB in its own child process).
            progress: show progress bars on long steps (reading, encoding tags,
                relations).
            transforms: a function/transform that takes a sample and returns a
                transformed version.

        Raises:
            OSMFileError: if a file is missing, unreadable, corrupt, lacks a CRS, or no
                file holds a feature.
            InvalidFeatureError: if the tags of a feature cannot be parsed, or *strict*
                and a feature cannot be reprojected.
            ValueError: if *graph_mode* or *pbf_reader* is unknown.
        """
        if graph_mode not in ('induced', 'exact'):
            raise ValueError(
                f"graph_mode must be 'induced' or 'exact', got {graph_mode!r}"
            )
        if pbf_reader not in get_args(PBFReader):
            raise ValueError(
                f"pbf_reader must be 'gdal' or 'quackosm', got {pbf_reader!r}"
            )
        self.pbf_reader = pbf_reader
        self.paths = paths
        self.transforms = transforms
        self.graph_mode = graph_mode
        self.drop_keys = tuple(normalize_key(k) for k in drop_keys)
        #: Graph builder that computes tag embeddings (each distinct tag string encoded
        #: once) and, in exact mode, relations.
        self.builder = OSMGraphBuilder(tag_encoder=tag_encoder)
        self.reports: list[LoadReport] = []
        self.keys = None if keys is None else tuple(normalize_key(k) for k in keys)
        self.tag_keys = (
            None if tag_keys is None else tuple(normalize_key(k) for k in tag_keys)
        )
        if roi is not None and not isinstance(roi, shapely.Geometry):
            roi = shapely.box(*roi)
        self.roi = roi
        self.strict = strict
        self.progress = progress
        self.cache_dir = cache_dir
        self._layers = None if layers is None else tuple(layers)
        self._assumed = (
            CRS.from_user_input(source_crs) if source_crs is not None else None
        )
        target = CRS.from_user_input(crs) if crs is not None else None
        self._files = resolve_files(paths, self.filename_glob)
        if cache_dir is None:
            store = self._build(target)
        else:
            store, built = open_or_build(
                cache_dir,
                self._cache_key(target),
                lambda: self._build(target, prepare=target is not None),
                self._load,
            )
            if not built:
                self.reports = store.reports
        #: The columnar feature store.
        self.store = store
        if res is None:
            res = 1e-5 if store.crs.is_geographic else 1.0
        self._res = (
            (float(res), float(res))
            if isinstance(res, int | float)
            else (float(res[0]), float(res[1]))
        )
        self._update_index()
        if target is not None:
            # The CRS is final (image & osm with the image's CRS keeps it): derive the
            # rest now, once.
            self.prepare()

    def prepare(self) -> None:
        """Derive now what windows need: tree, positions and (induced) relations.

        Done when first needed otherwise, in the dataset's CRS at that time, so that
        ``image & osm`` (which sets :attr:`crs`) computes the relations once, in the
        image's CRS. It is done at creation when *crs* is given, and before the dataset
        is pickled for spawned DataLoader workers; call it before forking workers of a
        dataset created without *crs* (e.g. after ``image & osm``), so that they share
        the arrays rather than each derive them. A cache-backed dataset saves them in
        its cache entry.

        .. versionadded:: 0.1
        """
        self.store.prepare()

    def _build(self, target: CRS | None, prepare: bool = False) -> OSMStore:
        """Read the files and build the store.

        Args:
            target: the dataset CRS (None: the first file's).
            prepare: also derive the tree, positions and relations (see
                :meth:`prepare`).

        Returns:
            The store.

        Raises:
            OSMFileError: if a file cannot be read or no file holds a usable feature.
        """
        files: list[FileFeatures] = []
        self.reports = []
        bar = tqdm(
            self._files,
            desc='Reading OSM files',
            unit='file',
            delay=2.0,
            disable=not self.progress,
        )
        for path in bar:
            features = read_features(
                path,
                self._layers,
                self.drop_keys,
                self._assumed,
                keys=self.keys,
                tag_keys=self.tag_keys,
                roi=self.roi,
                roi_crs=target,
                pbf_reader=self.pbf_reader,
            )
            self.reports.append(features.report)
            if features.report.kept == 0:
                warnings.warn(
                    f'{path}: no usable feature (read {features.report.read}); file skipped',
                    UserWarning,
                )
                continue
            files.append(features)
        if not files:
            raise OSMFileError(f'no file in {self.paths!r} holds a usable feature')
        store = OSMStore(
            files,
            self.builder,
            target if target is not None else files[0].crs,
            self.graph_mode,
            strict=self.strict,
            progress=self.progress,
        )
        if prepare:
            store.prepare()
        return store

    def _load(self, entry: pathlib.Path) -> OSMStore:
        """Open a cache entry.

        Args:
            entry: the entry folder.

        Returns:
            The store.
        """
        return OSMStore.load(
            entry, self.builder, strict=self.strict, progress=self.progress
        )

    def _cache_key(self, crs: CRS | None) -> str:
        """Key of the cache entry of this dataset's store in *crs*.

        Args:
            crs: the dataset CRS (None: the first file's).

        Returns:
            The key.
        """
        weights = getattr(self.builder.embedder.key_weights, '_weights', {})
        options = {
            'layers': self._layers,
            'pbf_reader': self.pbf_reader,
            'drop_keys': self.drop_keys,
            'keys': self.keys,
            'tag_keys': self.tag_keys,
            'roi': None if self.roi is None else shapely.to_wkt(self.roi),
            'source_crs': None if self._assumed is None else self._assumed.to_wkt(),
            'crs': None if crs is None else crs.to_wkt(),
            'encoder': self.builder.tag_encoder.identity,
            'dim': self.builder.dim,
            'key_weights': hashlib.blake2b(
                json.dumps(sorted(weights.items())).encode(), digest_size=16
            ).hexdigest(),
            'graph_mode': self.graph_mode,
            'equals_first': self.builder.equals_first,
            'strict': self.strict,
        }
        return cache_key(self._files, options)

    @property
    def geometries(self) -> np.ndarray:
        """Feature geometries in the dataset CRS, one per feature row."""
        return self.store.geometries

    @property
    def kinds(self) -> np.ndarray:
        """Node type (0 polygon, 1 line, 2 point) of each feature row."""
        return self.store.kinds

    @property
    def tags(self) -> TagView:
        """Normalized tags (key -> value) of each feature, as dicts built on access."""
        return self.store.tags

    @property
    def embeddings(self) -> Tensor:
        """Node embedding of every feature row, ``(n, dim)``, computed on access.

        The store keeps one embedding per distinct tag string, not one per feature.
        """
        return self.store.embed(np.arange(len(self.store)))

    @property
    def tree(self) -> shapely.STRtree:
        """Spatial index of :attr:`geometries`."""
        return self.store.tree

    @property
    def file_ids(self) -> np.ndarray:
        """File (position in :attr:`filepaths`) of each feature row."""
        return self.store.file_ids

    @property
    def filepaths(self) -> list[str]:
        """Files holding at least one usable feature."""
        return self.store.filepaths

    def _update_index(self) -> None:
        """Rebuild :attr:`index` (one footprint per file) from the store."""
        footprints = shapely.box(*self.store.file_bounds.T)
        interval = (pd.Timestamp.min, pd.Timestamp.max)
        index = pd.IntervalIndex.from_tuples(
            [interval] * len(footprints), closed='both', name='datetime'
        )
        self.index = GeoDataFrame(
            {'filepath': self.filepaths},
            index=index,
            geometry=footprints,
            crs=self.store.crs,
        )

    @property
    def crs(self) -> CRS:
        """:term:`coordinate reference system (CRS)` of the dataset.

        Returns:
            The CRS.
        """
        return self.store.crs

    @crs.setter
    def crs(self, new_crs: CRS) -> None:
        """Reproject the in-memory features and rebuild the index (no file is re-read).

        Args:
            new_crs: the new CRS.
        """
        new_crs = CRS.from_user_input(new_crs)
        if new_crs == self.store.crs:
            return
        store = self.store
        if self.cache_dir is None:
            store.project(new_crs)
        else:

            def reproject() -> OSMStore:
                store.project(new_crs)
                store.prepare()  # saved with the entry: the ranks waiting for it map it all
                return store

            def reopen(entry: pathlib.Path) -> OSMStore:
                store._open(entry)
                return store

            open_or_build(self.cache_dir, self._cache_key(new_crs), reproject, reopen)
        self._update_index()

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
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to
                index.

        Returns:
            ``(xmin, ymin, xmax, ymax)`` of the window in the dataset CRS.

        Raises:
            IndexError: if the window is empty (zero width or height), inverted (a slice
                from its maximum to its minimum), not finite, or does not meet any
                file's footprint.
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
        if not np.isfinite([xmin, xmax, ymin, ymax]).all():
            raise IndexError(f'index: {index} is not a finite window')
        for axis, low, high in (('x', xmin, xmax), ('y', ymin, ymax)):
            if high < low:
                msg = (
                    f'index: {index} is an inverted window ({axis} from {low} down to {high}); '
                    f'slices go from the minimum to the maximum'
                )
                raise IndexError(msg)
            if high == low:
                msg = f'index: {index} is an empty window (zero {"width" if axis == "x" else "height"})'
                raise IndexError(msg)
        fb = self.store.file_bounds
        if not (
            (fb[:, 0] <= xmax)
            & (fb[:, 2] >= xmin)
            & (fb[:, 1] <= ymax)
            & (fb[:, 3] >= ymin)
        ).any():
            raise IndexError(
                f'index: {index} not found in dataset with bounds: {self.bounds}'
            )
        return xmin, ymin, xmax, ymax

    def features(self, index: GeoSlice) -> GeoDataFrame:
        """The features of a window, clipped to it, with their tags.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to
                index.

        Returns:
            One row per node (a feature cut into several parts by the window gives
            several rows) with columns ``row`` (the feature's row in the dataset),
            ``type`` (``polygon``, ``line`` or ``point``), ``tags`` (dict) and
            ``geometry`` (in the dataset CRS), sorted by type then row.

        Raises:
            IndexError: if the window does not meet the dataset.
        """
        rows, geoms, _ = self.store.clip(self._window(index))
        kinds = self.kinds[rows]
        order = np.argsort(kinds, kind='stable')
        rows, geoms, kinds = rows[order], geoms[order], kinds[order]
        data = {
            'row': rows,
            'type': np.asarray(NODE_TYPES, dtype=object)[kinds],
            'tags': [self.store.tags_of(r) for r in rows.tolist()],
        }
        return GeoDataFrame(
            data, geometry=gpd.GeoSeries(geoms, crs=self.crs), crs=self.crs
        )

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Retrieve the GeoLink graph of the features in a window.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to
                index.

        Returns:
            The ``osm_*`` tensor keys described in the class docstring.

        Raises:
            IndexError: if the window does not meet the dataset.
        """
        window = self._window(index)
        rows, geoms, cut = self.store.clip(window)
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
        """Graph of a window: the subgraph its features induce in the global relations.

        Positions of whole features come from the store and are only recomputed for the
        features cut by the window; the nine edge types are taken in one vectorized pass
        over the store's edge table.

        Args:
            window: ``(xmin, ymin, xmax, ymax)`` in the dataset CRS.
            rows: feature row of each node, sorted by node type then row.
            geoms: clipped geometry of each node.
            cut: whether each node was cut by the window.

        Returns:
            The flattened graph (``osm_*`` keys).
        """
        store = self.store
        assert store.edges is not None
        kinds = store.kinds[rows]
        offsets = np.zeros(len(NODE_TYPES) + 1, dtype=np.int64)
        np.cumsum(np.bincount(kinds, minlength=len(NODE_TYPES)), out=offsets[1:])
        xy = store.positions[rows]
        if cut.any():
            xy[cut] = node_sample_points(geoms[cut], kinds[cut])
        pos = normalize_xy(xy, window)
        x = store.embed(rows)
        sample: Sample = {}
        for k, node_type in enumerate(NODE_TYPES):
            a, b = offsets[k], offsets[k + 1]
            ids = torch.from_numpy(rows[a:b])
            sample[f'osm_{node_type}_x'] = x[a:b]
            sample[f'osm_{node_type}_pos'] = torch.from_numpy(
                np.ascontiguousarray(pos[a:b, : POS_POINTS[node_type]])
            )
            sample[f'osm_{node_type}_id'] = ids
        sample.update(induced_edges(store.edges, rows, kinds))
        return sample

    def _exact_sample(
        self,
        window: tuple[float, float, float, float],
        rows: np.ndarray,
        geoms: np.ndarray,
    ) -> Sample:
        """Graph of a window built from its clipped features by ``OSMGraphBuilder``.

        Args:
            window: ``(xmin, ymin, xmax, ymax)`` in the dataset CRS.
            rows: feature row of each node, sorted.
            geoms: clipped geometry of each node.

        Returns:
            The flattened graph (``osm_*`` keys).
        """
        frame = GeoDataFrame(
            {'tags': [self.store.tags_of(r) for r in rows.tolist()]},
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
        """Plot a sample: image with OSM overlaid, then mask and prediction.

        Polygons and lines are drawn from the features' clipped geometries when the
        sample still holds ``osm_bounds`` and ``osm_*_id`` of this dataset, and their
        node positions are marked on top (positions follow joint image-graph
        augmentations, geometries do not).

        Args:
            sample: a sample returned by :meth:`__getitem__` or by
                ``(image & osm)[...]``.
            show_titles: flag indicating whether to show titles above each panel.
            suptitle: optional string to use as a suptitle.

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        maps = [k for k in ('mask', 'prediction') if k in sample]
        fig, axs = plt.subplots(
            1, 1 + len(maps), figsize=(6 * (1 + len(maps)), 6), squeeze=False
        )
        ax = axs[0, 0]
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
        colors = {'polygon': 'tab:orange', 'line': 'tab:blue', 'point': 'tab:red'}
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
                            xy[:, 0], xy[:, 1], color=colors[node_type], linewidth=1
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
                c=colors[node_type],
                marker=marker,
                label=f'{node_type} ({len(pos)})',
            )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc='upper right', fontsize='small')
        ax.set_axis_off()
        if show_titles:
            ax.set_title('Image and OSM graph nodes')
        if maps:
            values = torch.cat([torch.as_tensor(sample[k]).flatten() for k in maps])
            plot_label_panels(
                list(axs[0, 1:]), sample, int(values.max()) + 1, show_titles=show_titles
            )
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig
