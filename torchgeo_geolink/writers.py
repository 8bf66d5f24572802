# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Prediction writers: window embeddings as GeoParquet, feature maps as GeoTIFF.

.. versionadded:: 0.1
"""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from pyproj import CRS
from rasterio.transform import from_bounds
from torch import Tensor

from .errors import PredictionError

__all__ = ('EMBEDDING_NAMES', 'EmbeddingWriter', 'window_bounds')

#: Pooled embeddings returned by
#: :meth:`~torchgeo_geolink.tasks.GeoLinkPretrain.predict_step`.
EMBEDDING_NAMES: tuple[str, ...] = (
    'image',
    'osm',
    'fused',
    'image_projected',
    'osm_projected',
)

#: GeoParquet specification version of the ``geo`` metadata written.
_GEOPARQUET_VERSION = '1.1.0'


def window_bounds(batch: Mapping[str, Any]) -> Tensor:
    """The bounds of every window of a collated batch, in the dataset CRS.

    The OSM graphs' ``bounds`` (float64, from
    :class:`~torchgeo_geolink.datasets.OSMDataset`) are used when present; otherwise the
    raster ``bounds`` of TorchGeo (``(B, 9)``:
    ``x.start, x.stop, x.step, y.start, y.stop, y.step, t...``, or ``(B, 4)``), which
    TorchGeo stores as float32 and so are rounded at large coordinates.

    Args:
        batch: a batch of :func:`~torchgeo_geolink.datasets.collate_geolink`.

    Returns:
        ``(B, 4)`` float64 ``[xmin, ymin, xmax, ymax]``.

    Raises:
        PredictionError: if the batch holds no bounds, or bounds of an unknown shape.

    .. versionadded:: 0.1
    """
    graph = batch.get('graph')
    if graph is not None and 'bounds' in graph:
        bounds = torch.as_tensor(graph.bounds).reshape(-1, 4)
        if 'image' not in batch or len(bounds) == len(batch['image']):
            return bounds.double()
    if 'bounds' not in batch:
        raise PredictionError(
            'the batch has no window bounds: neither graph.bounds nor bounds (ungeoreferenced data)'
        )
    bounds = torch.as_tensor(batch['bounds']).double()
    if bounds.ndim == 2 and bounds.shape[1] >= 6:
        return bounds[:, [0, 3, 1, 4]]
    if bounds.ndim == 2 and bounds.shape[1] == 4:
        return bounds
    raise PredictionError(
        f'batch bounds have shape {tuple(bounds.shape)}; expected (B, 4) or (B, 9)'
    )


class _ParquetStream:
    """One GeoParquet file written row group by row group (one per batch)."""

    def __init__(self, path: Path, crs: CRS) -> None:
        self.path = path
        self.partial = path.with_name(path.name + '.partial')
        self.crs = crs
        self.writer: pq.ParquetWriter | None = None
        self.bbox = np.array([np.inf, np.inf, -np.inf, -np.inf])
        self.rows = 0

    def write(self, table: pa.Table, bounds: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.partial, table.schema)
        self.writer.write_table(table)
        self.bbox[:2] = np.minimum(self.bbox[:2], bounds[:, :2].min(axis=0))
        self.bbox[2:] = np.maximum(self.bbox[2:], bounds[:, 2:].max(axis=0))
        self.rows += len(table)

    def close(self) -> None:
        if self.writer is None:
            return
        geo = {
            'version': _GEOPARQUET_VERSION,
            'primary_column': 'geometry',
            'columns': {
                'geometry': {
                    'encoding': 'WKB',
                    'geometry_types': ['Polygon'],
                    'crs': self.crs.to_json_dict(),
                    'bbox': [float(v) for v in self.bbox],
                }
            },
        }
        self.writer.add_key_value_metadata({'geo': json.dumps(geo)})
        self.writer.close()
        self.writer = None
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.partial.unlink(missing_ok=True)


class EmbeddingWriter(BasePredictionWriter):
    """Write every predicted window's embeddings as GeoParquet and feature maps.

    Consumes the predictions of
    :meth:`~torchgeo_geolink.tasks.GeoLinkPretrain.predict_step` batch by batch
    (constant memory) under ``torchgeo predict``. The file ``<output_dir>/<filename>``
    holds, per window in prediction order:

    * ``window``: the window's index (0, 1, ... in prediction order);
    * ``geometry``: the window as a box polygon in the dataset CRS (recorded in the
      GeoParquet metadata, so :func:`geopandas.read_parquet` returns it);
    * ``has_osm``: whether the window has OSM nodes (without, the OSM embeddings come
      from an empty graph);
    * one fixed-size list column (``pa.list_(pa.float32(), D)``) per name in
      *embeddings*: ``image`` (mean patch token), ``osm`` (OSM region readout),
      ``fused`` (mean hybrid image-OSM token), ``image_projected`` and ``osm_projected``
      (the L2-normalized contrastive embeddings);
    * with *patch_features*, ``patch_features``: the path (relative to the Parquet file)
      of the window's GeoTIFF.

    With *patch_features*, every window's patch tokens are also written as a float32
    GeoTIFF ``<output_dir>/<patch_dir>/<window>.tif``: one band per channel, one pixel
    per ViT patch (row 0 at the top), georeferenced by the window bounds, in the dataset
    CRS.

    The file is written as ``<filename>.partial`` and renamed when prediction ends, so
    an interrupted run leaves no truncated file under the final name. Under several
    processes each writes its own ``<stem>.rank<k>.parquet`` (and its own patch folder);
    with several prediction dataloaders, dataloader ``i > 0`` writes
    ``<stem>.<i>.parquet``. Existing files of the same names are replaced.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        output_dir: str = 'lightning_logs/embeddings',
        filename: str = 'embeddings.parquet',
        embeddings: Sequence[str] = EMBEDDING_NAMES,
        patch_features: bool = False,
        patch_dir: str = 'patch_features',
        crs: str | None = None,
    ) -> None:
        """Initialize a new EmbeddingWriter.

        Args:
            output_dir: folder of the output files (created if needed).
            filename: name of the GeoParquet file.
            embeddings: pooled embeddings to write, a subset of :data:`EMBEDDING_NAMES`.
            patch_features: also write each window's patch feature map as a GeoTIFF.
            patch_dir: folder of the GeoTIFFs, relative to *output_dir*.
            crs: CRS of the window bounds (any form :class:`pyproj.CRS` reads); default:
                the CRS of the prediction dataset.

        Raises:
            ValueError: if an embedding name is unknown or *filename* does not end in
                ``.parquet``.
        """
        super().__init__(write_interval='batch')
        unknown = sorted(set(embeddings) - set(EMBEDDING_NAMES))
        if unknown:
            msg = f'EmbeddingWriter: unknown embeddings {unknown}; choose from {list(EMBEDDING_NAMES)}'
            raise ValueError(msg)
        if not filename.endswith('.parquet'):
            msg = f'EmbeddingWriter: filename must end in .parquet, got {filename!r}'
            raise ValueError(msg)
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.embeddings = tuple(embeddings)
        self.patch_features = patch_features
        self.patch_dir = patch_dir
        self.crs = CRS.from_user_input(crs) if crs is not None else None
        self._streams: dict[int, _ParquetStream] = {}

    def _suffix(self, trainer: pl.Trainer, dataloader_idx: int) -> str:
        """File name suffix of a process and dataloader.

        Args:
            trainer: the trainer.
            dataloader_idx: index of the prediction dataloader.

        Returns:
            ``''``, ``'.<i>'``, ``'.rank<k>'`` or ``'.<i>.rank<k>'``.
        """
        suffix = f'.{dataloader_idx}' if dataloader_idx > 0 else ''
        if trainer.world_size > 1:
            suffix += f'.rank{trainer.global_rank}'
        return suffix

    def output_path(self, trainer: pl.Trainer, dataloader_idx: int = 0) -> Path:
        """The GeoParquet file a process writes for a dataloader.

        Args:
            trainer: the trainer.
            dataloader_idx: index of the prediction dataloader.

        Returns:
            The path.
        """
        stem = self.filename.removesuffix('.parquet')
        return (
            self.output_dir / f'{stem}{self._suffix(trainer, dataloader_idx)}.parquet'
        )

    def _dataset_crs(self, trainer: pl.Trainer, dataloader_idx: int) -> CRS:
        """The CRS of the window bounds: the writer's own, else the dataset's.

        Args:
            trainer: the trainer.
            dataloader_idx: index of the prediction dataloader.

        Returns:
            The CRS.

        Raises:
            PredictionError: if neither is known.
        """
        if self.crs is not None:
            return self.crs
        loaders = trainer.predict_dataloaders
        if loaders is not None and not isinstance(loaders, Sequence | Mapping):
            loaders = [loaders]
        if isinstance(loaders, Mapping):
            loaders = list(loaders.values())
        dataset = (
            getattr(loaders[dataloader_idx], 'dataset', None)
            if loaders is not None and dataloader_idx < len(loaders)
            else None
        )
        crs = getattr(dataset, 'crs', None)
        if crs is None:
            msg = f'EmbeddingWriter: the prediction dataset ({type(dataset).__name__}) has no CRS; pass crs='
            raise PredictionError(msg)
        return CRS.from_user_input(crs)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append the windows of a batch to the GeoParquet file.

        Args:
            trainer: the trainer.
            pl_module: the task.
            prediction: the output of ``predict_step``: ``bounds`` ``(B, 4)``,
                ``has_osm`` ``(B,)``, the pooled embeddings ``(B, D)`` and, with
                *patch_features*, ``patch_features`` ``(B, D, rows, cols)``.
            batch_indices: indices of the batch's samples (unused: windows are numbered
                in prediction order).
            batch: the batch.
            batch_idx: index of the batch.
            dataloader_idx: index of the prediction dataloader.

        Raises:
            PredictionError: if the prediction lacks a key or its parts disagree on the
                number of windows.
        """
        needed = ['bounds', 'has_osm', *self.embeddings]
        if self.patch_features:
            needed.append('patch_features')
        missing = [
            k
            for k in needed
            if not isinstance(prediction, Mapping) or k not in prediction
        ]
        if missing:
            msg = (
                f'EmbeddingWriter: the prediction of batch {batch_idx} lacks {missing}'
            )
            raise PredictionError(msg)
        bounds = prediction['bounds'].detach().double().cpu().numpy().reshape(-1, 4)
        n = len(bounds)
        for key in needed:
            if len(prediction[key]) != n:
                msg = (
                    f'EmbeddingWriter: prediction {key!r} of batch {batch_idx} has {len(prediction[key])} rows '
                    f'for {n} windows'
                )
                raise PredictionError(msg)

        stream = self._streams.get(dataloader_idx)
        if stream is None:
            crs = self._dataset_crs(trainer, dataloader_idx)
            stream = _ParquetStream(self.output_path(trainer, dataloader_idx), crs)
            self._streams[dataloader_idx] = stream
        index = np.arange(stream.rows, stream.rows + n, dtype=np.int64)

        geometry = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
        columns: dict[str, pa.Array] = {
            'window': pa.array(index, pa.int64()),
            'geometry': pa.array(shapely.to_wkb(geometry), pa.binary()),
            'has_osm': pa.array(prediction['has_osm'].detach().bool().cpu().numpy()),
        }
        for name in self.embeddings:
            values = prediction[name].detach().float().cpu().numpy().reshape(n, -1)
            columns[name] = pa.FixedSizeListArray.from_arrays(
                pa.array(values.reshape(-1), pa.float32()), values.shape[1]
            )
        if self.patch_features:
            paths = self._write_patch_features(
                prediction['patch_features'],
                bounds,
                index,
                stream,
                trainer,
                dataloader_idx,
            )
            columns['patch_features'] = pa.array(paths, pa.string())
        stream.write(pa.table(columns), bounds)

    def _write_patch_features(
        self,
        features: Tensor,
        bounds: np.ndarray,
        index: np.ndarray,
        stream: _ParquetStream,
        trainer: pl.Trainer,
        dataloader_idx: int,
    ) -> list[str]:
        """Write one georeferenced GeoTIFF per window.

        Args:
            features: ``(B, D, rows, cols)`` patch feature maps.
            bounds: ``(B, 4)`` window bounds.
            index: window indices.
            stream: the window's GeoParquet stream (for its CRS and folder).
            trainer: the trainer.
            dataloader_idx: index of the prediction dataloader.

        Returns:
            The files' paths relative to the GeoParquet file's folder.

        Raises:
            PredictionError: if *features* is not 4-dimensional.
        """
        if features.ndim != 4:
            msg = f'EmbeddingWriter: patch_features must be (B, D, rows, cols), got {tuple(features.shape)}'
            raise PredictionError(msg)
        folder = (
            self.output_dir / f'{self.patch_dir}{self._suffix(trainer, dataloader_idx)}'
        )
        folder.mkdir(parents=True, exist_ok=True)
        arrays = features.detach().float().cpu().numpy()
        _, channels, rows, cols = arrays.shape
        crs = rasterio.crs.CRS.from_wkt(stream.crs.to_wkt())
        paths = []
        for array, box, i in zip(arrays, bounds, index, strict=True):
            path = folder / f'{i:06d}.tif'
            with rasterio.open(
                path,
                'w',
                driver='GTiff',
                width=cols,
                height=rows,
                count=channels,
                dtype='float32',
                crs=crs,
                transform=from_bounds(*box, width=cols, height=rows),
                compress='deflate',
            ) as dst:
                dst.write(array)
                dst.update_tags(window=int(i))
            paths.append(path.relative_to(stream.path.parent).as_posix())
        return paths

    def on_predict_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Finish the GeoParquet files (metadata, final names).

        Args:
            trainer: the trainer.
            pl_module: the task.
        """
        for stream in self._streams.values():
            stream.close()
        self._streams = {}

    def on_exception(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        exception: BaseException,
    ) -> None:
        """Remove the unfinished files of an interrupted prediction.

        Args:
            trainer: the trainer.
            pl_module: the task.
            exception: the exception raised.
        """
        for stream in self._streams.values():
            stream.abort()
        self._streams = {}
