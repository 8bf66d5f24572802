# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The OSM feature store: every feature of a dataset in columns, reprojected, indexed and clipped per window."""

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from torch import Tensor

from ..errors import InvalidFeatureError
from ..osm.geometry import NODE_KIND_OF_TYPE_ID
from ..osm.graph import OSMGraphBuilder
from ..osm.positions import node_sample_points
from .osm_reader import FileFeatures
from .osm_subgraph import EdgeTable, build_edge_table

__all__ = ('OSMStore',)


class OSMStore:
    """All features of an :class:`~torchgeo_geolink.datasets.OSMDataset`, in the dataset CRS.

    One row per single-part feature: its geometry, node kind, file, tags and embedding; the spatial tree,
    node positions and (in induced mode) the global edge table are derived from the geometries whenever the
    CRS changes.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        files: Sequence[FileFeatures],
        builder: OSMGraphBuilder,
        crs: CRS,
        graph_mode: str = 'induced',
    ) -> None:
        """Build the store.

        Args:
            files: the cleaned features of each file (at least one feature in all).
            builder: graph builder that computes the tag embeddings and relations.
            crs: the dataset CRS.
            graph_mode: ``'induced'`` (the global edge table is built) or ``'exact'``.
        """
        self.builder = builder
        self.graph_mode = graph_mode
        #: Path of each file.
        self.filepaths = [f.path for f in files]
        self._file_crs_list = [f.crs for f in files]
        #: Source geometries (cleaned, single part) in their file's CRS, one per feature row.
        self._source_geoms = np.concatenate([f.geometries for f in files])
        #: File (position in ``filepaths``) of each feature row.
        self.file_ids = np.concatenate(
            [np.full(len(f.geometries), i, dtype=np.int64) for i, f in enumerate(files)]
        )
        #: Normalised tags (key -> value) of each feature row.
        self.tags: list[dict[str, str]] = [t for f in files for t in f.tags]
        #: Node type (0 polygon, 1 line, 2 point) of each feature row.
        self.kinds = np.concatenate([f.kinds for f in files])
        #: Node embedding of each feature row (the tag encoder runs once per distinct tag string).
        self.embeddings: Tensor = builder.node_features(self.tags).float()
        self.project(crs)

    def __len__(self) -> int:
        """Return the number of feature rows.

        Returns:
            The number of rows.
        """
        return len(self.kinds)

    def project(self, crs: CRS) -> None:
        """Reproject the features to *crs* and rebuild the spatial tree, positions and relations.

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
                NODE_KIND_OF_TYPE_ID[shapely.get_type_id(parts)] == self.kinds[row]
            ]
            if len(parts) == 0:
                raise InvalidFeatureError(
                    f'{self.filepaths[self.file_ids[row]]}: feature {row} is invalid after reprojection'
                )
            geoms[row] = parts[np.argmax(shapely.area(parts) + shapely.length(parts))]
        self.crs = crs
        #: Feature geometries in the dataset CRS, one per row.
        self.geometries = geoms
        #: ``(n, 4)`` bounds of each feature.
        self.bounds = shapely.bounds(geoms)
        #: Spatial index of :attr:`geometries`.
        self.tree = shapely.STRtree(geoms)
        #: ``(n, 4, 2)`` node positions of each whole feature in the dataset CRS (unused slots NaN).
        self.positions = node_sample_points(geoms, self.kinds)
        #: Relations between all features (induced mode only).
        self.edges: EdgeTable | None = (
            build_edge_table(self.builder, geoms, self.kinds)
            if self.graph_mode == 'induced'
            else None
        )
        file_bounds = np.empty((len(self.filepaths), 4))
        for i in range(len(self.filepaths)):
            b = self.bounds[self.file_ids == i]
            file_bounds[i] = (
                b[:, :2].min(axis=0).tolist() + b[:, 2:].max(axis=0).tolist()
            )
        #: ``(xmin, ymin, xmax, ymax)`` footprint of each file.
        self.file_bounds = file_bounds

    def clip(
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
