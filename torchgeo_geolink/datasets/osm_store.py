# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The columnar OSM feature store: every feature of a dataset in flat arrays.

One row per single-part feature. Geometries are a shapely array (WKB on disk); tags are
interned ``(key, value)`` pairs in CSR form; node embeddings are gathered per window
from the table of distinct tag strings (each encoded once; a sparse matrix when the
encoder's embeddings are sparse, as the hashing encoder's, and the table large), so no
per-feature dict or embedding is held; positions and the global edge table are flat
numpy arrays, derived lazily in the current CRS (a change of CRS only reprojects the
geometries; relations are computed once, when the first window needs them). Every
array can be saved to and memory-mapped from an on-disk cache entry (see
:mod:`torchgeo_geolink.datasets.osm_cache`).
"""

import itertools
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import geopandas as gpd
import numpy as np
import scipy.sparse
import shapely
import torch
from pyproj import CRS
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import InvalidFeatureError
from ..osm.encoders import CachedTagEncoder
from ..osm.geometry import NODE_KIND_OF_TYPE_ID
from ..osm.graph import OSMGraphBuilder
from ..osm.positions import node_sample_points
from ..osm.tags import tag_strings
from .osm_reader import FileFeatures, LoadReport, TagInterner
from .osm_subgraph import EdgeTable, build_edge_table

__all__ = ('OSMStore', 'TagTable', 'TagView')

#: The table of distinct tag-string embeddings: dense, or CSR when the encoder's
#: embeddings are sparse.
TagTable = np.ndarray | scipy.sparse.csr_array

#: Strings encoded per call of the tag encoder while the store is built.
ENCODE_BATCH = 4096
#: Format version of the arrays written to the cache.
STORE_VERSION = 2
#: A tag-string table whose first batch has at most this share of nonzero entries is
#: kept sparse (the hashing encoder writes a few columns per string) ...
SPARSE_TABLE_MAX_DENSITY = 0.25
#: ... when it would take at least this many bytes dense: gathering a window's rows from
#: a sparse table costs 0.5 ms more per window (about a tenth of the window rate),
#: worth it for a region's table (a city's 73k strings at 512 dimensions: 143 MiB), not
#: for a district's (13k features, 8.7k strings: 17 MiB).
SPARSE_TABLE_MIN_BYTES = 32 * 2**20


def _pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pack strings into one UTF-8 buffer and offsets.

    Args:
        strings: the strings.

    Returns:
        ``uint8`` buffer and ``(n + 1,)`` int64 offsets.
    """
    encoded = [s.encode('utf-8') for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b''.join(encoded), dtype=np.uint8).copy(), offsets


def _unpack_strings(buffer: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Inverse of :func:`_pack_strings`.

    Args:
        buffer: the UTF-8 buffer.
        offsets: ``(n + 1,)`` offsets.

    Returns:
        The strings.
    """
    data = buffer.tobytes()
    bounds = offsets.tolist()
    return [data[a:b].decode('utf-8') for a, b in itertools.pairwise(bounds)]


def _dense_rows(table: scipy.sparse.csr_array, rows: np.ndarray) -> np.ndarray:
    """Some rows of a CSR matrix as a dense array (faster than indexing the matrix).

    Args:
        table: the matrix.
        rows: the rows wanted.

    Returns:
        ``(len(rows), table.shape[1])`` array of the matrix's dtype.
    """
    starts = table.indptr[rows]
    lengths = table.indptr[rows + 1] - starts
    entries = _ragged(starts, lengths)
    out = np.zeros((len(rows), table.shape[1]), dtype=table.dtype)
    out[np.repeat(np.arange(len(rows)), lengths), table.indices[entries]] = table.data[
        entries
    ]
    return out


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ranges ``starts[i] .. starts[i] + lengths[i]``.

    Args:
        starts: start of each range.
        lengths: length of each range.

    Returns:
        The indices, int64.
    """
    total = int(lengths.sum())
    return np.arange(total, dtype=np.int64) + np.repeat(
        starts - (np.cumsum(lengths) - lengths), lengths
    )


class TagView(Sequence[dict[str, str]]):
    """The tags of the store's features as a read-only sequence of dicts.

    .. versionadded:: 0.1
    """

    def __init__(self, store: 'OSMStore') -> None:
        """Wrap a store.

        Args:
            store: the store.
        """
        self._store = store

    def __len__(self) -> int:
        """Return the number of features.

        Returns:
            The number of features.
        """
        return len(self._store)

    @overload
    def __getitem__(self, index: int) -> dict[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, str]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, str] | list[dict[str, str]]:
        """Return the tags of one feature (or a list for a slice).

        Args:
            index: feature row or slice of rows.

        Returns:
            The tag mapping(s).
        """
        if isinstance(index, slice):
            return [self._store.tags_of(i) for i in range(len(self))[index]]
        return self._store.tags_of(range(len(self))[index])

    def __iter__(self) -> Iterator[dict[str, str]]:
        """Iterate over the features' tags.

        Yields:
            One tag mapping per feature.
        """
        for row in range(len(self)):
            yield self._store.tags_of(row)

    def __eq__(self, other: object) -> bool:
        """Compare with another sequence of mappings.

        Args:
            other: a sequence.

        Returns:
            Whether both hold the same tags in the same order.
        """
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(other) == len(self) and all(
            a == b for a, b in zip(self, other, strict=True)
        )

    __hash__ = None

    def __repr__(self) -> str:
        """Return a short description.

        Returns:
            The representation.
        """
        return f'TagView({len(self)} features)'


class OSMStore:
    """All features of an ``OSMDataset``, in columns, in the dataset CRS.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        files: Sequence[FileFeatures],
        builder: OSMGraphBuilder,
        crs: CRS,
        graph_mode: str = 'induced',
        *,
        strict: bool = False,
        progress: bool = True,
    ) -> None:
        """Build the store from cleaned files.

        Args:
            files: the cleaned features of each file (at least one feature in all).
            builder: graph builder whose tag encoder, key weights and relations are
                used.
            crs: the dataset CRS.
            graph_mode: ``'induced'`` (the global edge table is built when first needed)
                or ``'exact'``.
            strict: raise instead of dropping a feature that cannot be reprojected.
            progress: show progress bars on long steps.

        Raises:
            InvalidFeatureError: if *strict* and a feature cannot be reprojected.
        """
        self.builder = builder
        self.graph_mode = graph_mode
        self.strict = strict
        self.progress = progress
        self.entry: Path | None = None
        #: Path of each file.
        self.filepaths = [f.path for f in files]
        self._file_crs_list = [f.crs for f in files]
        self.reports: list[LoadReport] = [f.report for f in files]
        self._intern_tags(files)
        self.kinds = np.concatenate([f.kinds for f in files])
        self.file_ids = np.concatenate(
            [np.full(len(f.geometries), i, dtype=np.int32) for i, f in enumerate(files)]
        )
        geoms = np.empty(len(self.kinds), dtype=object)
        start = 0
        for f in self._bar(files, 'Reprojecting OSM files', len(files) > 1):
            rows = slice(start, start + len(f.geometries))
            geoms[rows] = self._transform(f.geometries, f.crs, crs)
            start = rows.stop
        self._set_geometries(geoms, crs)

    # ------------------------------------------------------------------ building

    def _bar(
        self, iterable: Any, desc: str, enabled: bool = True, **kwargs: Any
    ) -> Any:
        """Wrap an iterable in a progress bar shown when a step lasts over two seconds.

        Args:
            iterable: the iterable.
            desc: the bar's label.
            enabled: whether the bar may be shown at all.
            **kwargs: other arguments of :class:`tqdm.tqdm`.

        Returns:
            The wrapped iterable.
        """
        return tqdm(
            iterable,
            desc=desc,
            delay=2.0,
            disable=not (self.progress and enabled),
            **kwargs,
        )

    def _intern_tags(self, files: Sequence[FileFeatures]) -> None:
        """Merge the files' interned tags and precompute each feature's embedding mix.

        Args:
            files: the cleaned files.
        """
        merged = TagInterner()
        for f in files:
            merged.add(f.tags.as_rows())
        keys, values = merged.keys, merged.values
        self.pair_keys, self.pair_values = keys, values
        self.tag_indptr = merged.indptr
        self.tag_pairs = merged.pairs
        # Distinct GeoLink tag strings, sorted (as the node embedder orders them), and
        # each pair's string.
        texts = [tag_strings({k: v})[0] for k, v in zip(keys, values, strict=True)]
        order = sorted(range(len(texts)), key=texts.__getitem__)
        string_of_pair = np.empty(len(texts), dtype=np.int32)
        strings: list[str] = []
        for i in order:
            if not strings or strings[-1] != texts[i]:
                strings.append(texts[i])
            string_of_pair[i] = len(strings) - 1
        self.string_of_pair = string_of_pair
        self.strings = strings
        # Each feature's tags in the order of their strings: the order the embedding
        # sums them in.
        segment = np.repeat(
            np.arange(len(self.tag_indptr) - 1), np.diff(self.tag_indptr)
        )
        order = np.lexsort((string_of_pair[self.tag_pairs], segment))
        self.tag_pairs = self.tag_pairs[order]
        self._mix_weights()
        self.table = self._encode_strings(strings)

    def _encode_strings(self, strings: Sequence[str]) -> TagTable:
        """Embed each distinct tag string once, into a dense or a sparse table.

        The table is kept as a CSR matrix when the first batch shows the encoder's
        embeddings to be sparse (the hashing encoder's have a few nonzero columns in
        512) and the table is large (``SPARSE_TABLE_MIN_BYTES`` dense): the same values,
        and the same sums per window, at a fraction of the memory.

        Args:
            strings: the distinct tag strings.

        Returns:
            float32 ``(len(strings), dim)`` table.
        """
        dim = self.builder.dim
        encoder = self.builder.embedder.encoder
        if isinstance(encoder, CachedTagEncoder) and encoder.cache_dir is None:
            # The table below is the cache: an in-memory cache would hold a second copy.
            encoder = encoder.encoder
        dense: np.ndarray | None = None
        blocks: list[scipy.sparse.csr_array] = []
        starts = range(0, len(strings), ENCODE_BATCH)
        for a in self._bar(starts, 'Encoding OSM tags', unit='batch'):
            batch = strings[a : a + ENCODE_BATCH]
            block = encoder.encode(batch).detach().to('cpu', torch.float32).numpy()
            if a == 0 and (
                len(strings) * dim * 4 < SPARSE_TABLE_MIN_BYTES
                or np.count_nonzero(block) > SPARSE_TABLE_MAX_DENSITY * block.size
            ):
                dense = np.zeros((len(strings), dim), dtype=np.float32)
            if dense is not None:
                dense[a : a + len(batch)] = block
            else:
                blocks.append(scipy.sparse.csr_array(block))
        if dense is not None:
            return dense
        if not blocks:
            return np.zeros((0, dim), dtype=np.float32)
        return scipy.sparse.vstack(blocks, format='csr', dtype=np.float32)

    def _mix_weights(self) -> None:
        """Normalized key weight of each tag of each feature."""
        n = len(self.tag_indptr) - 1
        lengths = np.diff(self.tag_indptr)
        segment = np.repeat(np.arange(n), lengths)
        string_weights = self.builder.embedder.key_weights.for_strings(self.strings)
        weights = string_weights[self.string_of_pair[self.tag_pairs]]
        weight_sum = np.bincount(segment, weights=weights, minlength=n)
        # Features whose weights are all 0 fall back to the plain mean: give each of
        # their tags weight 1.
        weights = np.where(weight_sum[segment] == 0, 1.0, weights)
        weights /= np.bincount(segment, weights=weights, minlength=n)[segment]
        self.tag_weights = weights.astype(np.float32)

    def _transform(self, geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
        """Reproject geometries, marking those that cannot be reprojected as ``None``.

        Args:
            geoms: the geometries.
            src: their CRS.
            dst: the wanted CRS.

        Returns:
            The reprojected geometries (``None`` where reprojection failed).
        """
        if src == dst:
            return geoms
        out = gpd.GeoSeries(geoms, crs=src).to_crs(dst).values
        out = np.asarray(out, dtype=object)
        bad = ~np.isfinite(shapely.bounds(out)).all(axis=1)
        invalid = np.flatnonzero(~bad & ~shapely.is_valid(out))
        for k in invalid:  # reprojection rarely breaks validity: keep the largest valid part of the same type
            kind = NODE_KIND_OF_TYPE_ID[shapely.get_type_id(geoms[k])]
            parts = shapely.get_parts(shapely.make_valid(out[k]))
            parts = parts[NODE_KIND_OF_TYPE_ID[shapely.get_type_id(parts)] == kind]
            if len(parts) == 0:
                bad[k] = True
            else:
                out[k] = parts[np.argmax(shapely.area(parts) + shapely.length(parts))]
        out[bad] = None
        return out

    def _drop_unprojectable(self, geoms: np.ndarray, crs: CRS) -> np.ndarray:
        """Drop (or, if strict, refuse) the rows whose geometry cannot be reprojected.

        Args:
            geoms: reprojected geometries, ``None`` where reprojection failed.
            crs: the CRS they were reprojected to.

        Returns:
            The geometries of the rows kept.

        Raises:
            InvalidFeatureError: if *strict* and a row could not be reprojected.
        """
        bad = shapely.is_missing(geoms)
        if not bad.any():
            return geoms
        for i in np.unique(self.file_ids[bad]):
            rows = np.flatnonzero(bad & (self.file_ids == i))
            row = int(rows[0])
            more = f' (and {len(rows) - 1} more)' if len(rows) > 1 else ''
            msg = (
                f'{self.filepaths[i]}: feature {row} ({self.tags_of(row)}) cannot be reprojected to '
                f'{crs.to_string()}{more}'
            )
            if self.strict:
                raise InvalidFeatureError(msg)
            report = self.reports[i]
            report.dropped_reprojection += len(rows)
            report.kept -= len(rows)
            warnings.warn(f'{msg}: dropped', UserWarning, stacklevel=4)
        self._keep_rows(~bad)
        return geoms[~bad]

    def _keep_rows(self, keep: np.ndarray) -> None:
        """Keep only some rows of every per-feature column.

        Args:
            keep: bool mask of the rows kept.
        """
        lengths = np.diff(self.tag_indptr)[keep]
        entries = _ragged(self.tag_indptr[:-1][keep], lengths)
        self.tag_pairs = self.tag_pairs[entries]
        self.tag_weights = self.tag_weights[entries]
        self.tag_indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.tag_indptr[1:])
        self.kinds = self.kinds[keep]
        self.file_ids = self.file_ids[keep]

    def _set_geometries(self, geoms: np.ndarray, crs: CRS) -> None:
        """Install geometries in *crs*; forget what was derived from the previous ones.

        Args:
            geoms: reprojected geometries (``None`` where reprojection failed).
            crs: their CRS.
        """
        geoms = self._drop_unprojectable(geoms, crs)
        self.crs = crs
        #: Feature geometries in the dataset CRS, one per row.
        self.geometries = geoms
        #: ``(n, 4)`` bounds of each feature.
        self.bounds = shapely.bounds(geoms)
        # Rows are grouped by file, in file order: one reduction per file.
        counts = np.bincount(self.file_ids, minlength=len(self.filepaths))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
        file_bounds = np.full((len(self.filepaths), 4), np.nan)
        if len(starts):
            file_bounds[counts > 0, :2] = np.minimum.reduceat(
                self.bounds[:, :2], starts
            )
            file_bounds[counts > 0, 2:] = np.maximum.reduceat(
                self.bounds[:, 2:], starts
            )
        #: ``(xmin, ymin, xmax, ymax)`` footprint of each file.
        self.file_bounds = file_bounds
        self._tree: shapely.STRtree | None = None
        self._positions: np.ndarray | None = None
        self._edges: EdgeTable | None = None

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        """Return the number of feature rows.

        Returns:
            The number of rows.
        """
        return len(self.kinds)

    def tags_of(self, row: int) -> dict[str, str]:
        """The tags of one feature.

        Args:
            row: the feature row.

        Returns:
            Its tag mapping.
        """
        a, b = int(self.tag_indptr[row]), int(self.tag_indptr[row + 1])
        return {
            self.pair_keys[p]: self.pair_values[p] for p in self.tag_pairs[a:b].tolist()
        }

    @property
    def tags(self) -> TagView:
        """Tags of each feature row (dicts built on access)."""
        return TagView(self)

    def embed(self, rows: np.ndarray) -> Tensor:
        """Node embeddings of some features, from the table of distinct tag strings.

        Each is the key-weighted mean of its tag strings' embeddings (a zero vector
        without tags).

        Args:
            rows: feature rows.

        Returns:
            float32 ``(len(rows), dim)``.
        """
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.tag_indptr[rows]
        lengths = self.tag_indptr[rows + 1] - starts
        entries = _ragged(starts, lengths)
        # Sorted within each feature (see _intern_tags): summed in the order of the
        # distinct strings.
        columns = self.string_of_pair[self.tag_pairs[entries]]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        table = self.table
        if isinstance(table, scipy.sparse.csr_array):
            # Only the window's strings, made dense: the same rows, summed in the same
            # order as from the dense table.
            order = np.argsort(columns, kind='stable')
            new = np.ones(len(columns), dtype=bool)
            new[1:] = columns[order[1:]] != columns[order[:-1]]
            strings = columns[order[new]]
            columns = np.empty_like(columns)
            columns[order] = np.cumsum(new) - 1
            table = _dense_rows(table, strings)
        mixing = scipy.sparse.csr_array(
            (self.tag_weights[entries], columns, indptr),
            shape=(len(rows), table.shape[0]),
        )
        return torch.from_numpy(np.ascontiguousarray(mixing @ table))

    @property
    def tree(self) -> shapely.STRtree:
        """Spatial index of ``geometries`` (built when first used)."""
        if self._tree is None:
            self._tree = shapely.STRtree(self.geometries)
        return self._tree

    @property
    def positions(self) -> np.ndarray:
        """``(n, 4, 2)`` node positions of each whole feature (unused slots NaN)."""
        if self._positions is None:
            self._positions = self._cached('positions')
            if self._positions is None:
                self._positions = node_sample_points(self.geometries, self.kinds)
                self._save_derived({'positions': self._positions})
        return self._positions

    @property
    def edges(self) -> EdgeTable | None:
        """Relations between all features (induced mode; built when first used)."""
        if self.graph_mode != 'induced':
            return None
        if self._edges is None:
            indptr, dst, etype, attr = (
                self._cached(f'edges_{name}')
                for name in ('indptr', 'dst', 'type', 'attr')
            )
            if (
                indptr is not None
                and dst is not None
                and etype is not None
                and attr is not None
            ):
                self._edges = EdgeTable(indptr, dst, etype, attr)
            else:
                with tqdm(
                    total=1,
                    desc='Computing OSM relations',
                    delay=2.0,
                    disable=not self.progress,
                ) as bar:
                    self._edges = build_edge_table(
                        self.builder, self.geometries, self.kinds
                    )
                    bar.update()
                self._save_derived(
                    {
                        'edges_indptr': self._edges.indptr,
                        'edges_dst': self._edges.dst,
                        'edges_type': self._edges.edge_type,
                        'edges_attr': self._edges.attr,
                    }
                )
        return self._edges

    def prepare(self) -> None:
        """Derive now what windows need (tree, positions, induced-mode relations).

        Call it in the process that creates DataLoader workers once the CRS is final, so
        that forked workers share the arrays instead of each deriving them; a
        cache-backed store saves them in its entry.
        """
        _ = self.tree, self.positions, self.edges

    def project(self, crs: CRS) -> None:
        """Reproject the features to *crs*; what derives from them follows lazily.

        Args:
            crs: the new dataset CRS.

        Raises:
            InvalidFeatureError: if *strict* and a feature cannot be reprojected.
        """
        with tqdm(
            total=1, desc='Reprojecting OSM', delay=2.0, disable=not self.progress
        ) as bar:
            geoms = self._transform(self.geometries, self.crs, crs)
            bar.update()
        self.entry = None
        self._set_geometries(geoms, crs)

    def clip(
        self, window: tuple[float, float, float, float]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features of a window, clipped to it and split into single parts.

        Features whose bounding box lies in the window are taken whole; only the others
        are clipped (those the window misses, or meets only on its edge, clip to nothing
        or to a lower dimension and are dropped).

        Args:
            window: ``(xmin, ymin, xmax, ymax)`` in the dataset CRS.

        Returns:
            Feature row, geometry and whether it was cut, for each node, sorted by node
            type then row (the parts of a feature are adjacent).
        """
        xmin, ymin, xmax, ymax = window
        rows = self.tree.query(shapely.box(*window))
        b = self.bounds[rows]
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
                NODE_KIND_OF_TYPE_ID[shapely.get_type_id(parts)]
                == self.kinds[part_rows]
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

    # ------------------------------------------------------------------ cache entries

    def arrays(self) -> dict[str, np.ndarray]:
        """The store's base (non-derived) columns as numpy arrays.

        Returns:
            Name -> array.
        """
        wkb = shapely.to_wkb(self.geometries, byte_order=1)
        wkb_offsets = np.zeros(len(wkb) + 1, dtype=np.int64)
        np.cumsum([len(w) for w in wkb], out=wkb_offsets[1:])
        wkb_buffer = np.frombuffer(b''.join(wkb), dtype=np.uint8)
        keys, key_offsets = _pack_strings(self.pair_keys)
        values, value_offsets = _pack_strings(self.pair_values)
        strings, string_offsets = _pack_strings(self.strings)
        table: dict[str, np.ndarray]
        if isinstance(self.table, scipy.sparse.csr_array):
            table = {
                'table_data': self.table.data,
                'table_indices': self.table.indices,
                'table_indptr': self.table.indptr,
                'table_shape': np.asarray(self.table.shape, dtype=np.int64),
            }
        else:
            table = {'table': self.table}
        return {
            'wkb': wkb_buffer,
            'wkb_offsets': wkb_offsets,
            'kinds': self.kinds,
            'file_ids': self.file_ids,
            'tag_indptr': self.tag_indptr,
            'tag_pairs': self.tag_pairs,
            'tag_weights': self.tag_weights,
            'pair_keys': keys,
            'pair_key_offsets': key_offsets,
            'pair_values': values,
            'pair_value_offsets': value_offsets,
            'string_of_pair': self.string_of_pair,
            'strings': strings,
            'string_offsets': string_offsets,
            **table,
        }

    def meta(self) -> dict[str, Any]:
        """The store's metadata (JSON-serializable).

        Returns:
            The metadata.
        """
        return {
            'version': STORE_VERSION,
            'crs': self.crs.to_wkt(),
            'filepaths': self.filepaths,
            'file_crs': [c.to_wkt() for c in self._file_crs_list],
            'graph_mode': self.graph_mode,
            'reports': [vars(r) for r in self.reports],
        }

    def save(self, entry: Path) -> None:
        """Write the store's columns into a new cache entry folder.

        The derived arrays (positions, relations) are written too when they were already
        computed, so that the processes waiting for the entry map them rather than
        derive them.

        Args:
            entry: the folder, written atomically (a temporary sibling renamed into
                place).
        """
        tmp = entry.with_name(f'.{entry.name}.{os.getpid()}.tmp')
        tmp.mkdir(parents=True)
        for name, array in {**self.arrays(), **self._derived()}.items():
            np.save(tmp / f'{name}.npy', np.ascontiguousarray(array))
        (tmp / 'meta.json').write_text(json.dumps(self.meta()))
        try:
            os.rename(tmp, entry)
        except OSError:  # another process wrote the same entry first: use it
            for child in tmp.iterdir():
                child.unlink()
            tmp.rmdir()
        self.entry = entry

    @classmethod
    def load(
        cls,
        entry: Path,
        builder: OSMGraphBuilder,
        *,
        strict: bool = False,
        progress: bool = True,
    ) -> 'OSMStore':
        """Open a cache entry, memory-mapping its arrays read-only (copy on write).

        Args:
            entry: the entry folder.
            builder: graph builder of the dataset.
            strict: see :meth:`__init__`.
            progress: see :meth:`__init__`.

        Returns:
            The store.
        """
        store = cls.__new__(cls)
        store.builder = builder
        store.strict = strict
        store.progress = progress
        store._open(entry)
        return store

    def _open(self, entry: Path) -> None:
        """Map the arrays of a cache entry into this store.

        Args:
            entry: the entry folder.
        """
        meta = json.loads((entry / 'meta.json').read_text())
        a: Mapping[str, np.ndarray] = {
            p.stem: np.load(p, mmap_mode='c') for p in entry.glob('*.npy')
        }
        self.entry = entry
        self.graph_mode = meta['graph_mode']
        self.filepaths = list(meta['filepaths'])
        self._file_crs_list = [CRS.from_wkt(c) for c in meta['file_crs']]
        self.reports = [LoadReport(**r) for r in meta['reports']]
        self.kinds = a['kinds']
        self.file_ids = a['file_ids']
        self.tag_indptr = a['tag_indptr']
        self.tag_pairs = a['tag_pairs']
        self.tag_weights = a['tag_weights']
        self.pair_keys = _unpack_strings(a['pair_keys'], a['pair_key_offsets'])
        self.pair_values = _unpack_strings(a['pair_values'], a['pair_value_offsets'])
        self.string_of_pair = a['string_of_pair']
        self.strings = _unpack_strings(a['strings'], a['string_offsets'])
        if 'table' in a:
            self.table = a['table']
        else:
            shape = tuple(int(d) for d in a['table_shape'])
            self.table = scipy.sparse.csr_array(
                (a['table_data'], a['table_indices'], a['table_indptr']), shape=shape
            )
        offsets = a['wkb_offsets']
        data = a['wkb'].tobytes()
        bounds = offsets.tolist()
        wkb = np.array([data[i:j] for i, j in itertools.pairwise(bounds)], dtype=object)
        crs = CRS.from_wkt(meta['crs'])
        self.crs = crs
        self._set_geometries(shapely.from_wkb(wkb), crs)
        self.entry = entry

    def _cached(self, name: str) -> np.ndarray | None:
        """A derived array of the current cache entry, if it was saved.

        Args:
            name: the array's name.

        Returns:
            The memory-mapped array, or None.
        """
        if self.entry is None or not (self.entry / f'{name}.npy').is_file():
            return None
        return np.load(self.entry / f'{name}.npy', mmap_mode='c')

    def _derived(self) -> dict[str, np.ndarray]:
        """The derived arrays computed so far.

        Returns:
            Name -> array.
        """
        out: dict[str, np.ndarray] = {}
        if self._positions is not None:
            out['positions'] = self._positions
        if self._edges is not None:
            out['edges_indptr'] = self._edges.indptr
            out['edges_dst'] = self._edges.dst
            out['edges_type'] = self._edges.edge_type
            out['edges_attr'] = self._edges.attr
        return out

    def _save_derived(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Add derived arrays to the current cache entry (atomic per file; none: no-op).

        Args:
            arrays: name -> array.
        """
        if self.entry is None:
            return
        for name, array in arrays.items():
            tmp = self.entry / f'.{name}.{os.getpid()}.tmp.npy'
            try:
                np.save(tmp, np.ascontiguousarray(array))
                os.replace(tmp, self.entry / f'{name}.npy')
            except OSError:  # a read-only cache: the arrays stay in memory only
                tmp.unlink(missing_ok=True)
                return

    def __getstate__(self) -> dict[str, Any]:
        """Pickle a cache-backed store as its entry only (workers map the same files).

        Returns:
            The state.
        """
        self.prepare()  # derived once here rather than in every worker
        if self.entry is not None:
            return {
                'entry': self.entry,
                'builder': self.builder,
                'strict': self.strict,
                'progress': self.progress,
            }
        state = self.__dict__.copy()
        state['_tree'] = None  # rebuilt on first use
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled store.

        Args:
            state: what :meth:`__getstate__` returned.
        """
        if 'entry' in state and len(state) == 4:
            self.builder = state['builder']
            self.strict = state['strict']
            self.progress = state['progress']
            self._open(state['entry'])
        else:
            self.__dict__.update(state)
