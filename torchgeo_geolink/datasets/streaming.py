# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Stream a prepared tile corpus to training, across workers and DDP ranks.

The corpus is prepared by ``python -m torchgeo_geolink.prepare``.
"""

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from litdata import StreamingDataset
from PIL import Image, UnidentifiedImageError
from torchgeo.datasets.utils import Sample

from ..errors import PreparedDataError, TileError
from ..osm import NodeEmbedder

__all__ = ('GeoLinkStreamingTiles', 'load_tile_image')

_RASTER_SUFFIXES = ('.tif', '.tiff', '.jp2', '.vrt', '.img')


def load_tile_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a tile image: all bands of a raster (rasterio) or a PNG/JPEG's RGB (PIL).

    Args:
        path: The image file.

    Returns:
        float32 ``(C, H, W)`` raw values.

    Raises:
        TileError: If the file is missing or unreadable.

    .. versionadded:: 0.1
    """
    path = Path(path)
    if path.name.lower().endswith(_RASTER_SUFFIXES):
        import rasterio

        try:
            with rasterio.open(path) as src:
                return torch.from_numpy(src.read().astype(np.float32))
        except rasterio.errors.RasterioIOError as error:
            msg = f'{path}: cannot read image ({error})'
            raise TileError(msg) from error
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert('RGB'))
    except (OSError, UnidentifiedImageError) as error:
        msg = f'{path}: cannot read image ({error})'
        raise TileError(msg) from error
    return torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32))


class GeoLinkStreamingTiles(StreamingDataset):
    """Tiles and their exact GeoLink graphs from a prepared corpus.

    The corpus is prepared by ``python -m torchgeo_geolink.prepare``.

    Dataset format (written by :func:`torchgeo_geolink.prepare.prepare`)::

        root/<split>/index.json + chunk-*.bin   litdata shards: per tile its name, image path, CRS, bounds and graph
        root/plan.parquet                       the tiles, their split and shard
        root/tags/                              the distinct tag strings and their embeddings

    A :class:`litdata.StreamingDataset`: it is iterable (use it with
    :class:`litdata.StreamingDataLoader`, which sets the epoch on each pass) and also
    indexable. Under ``torch.distributed`` every rank reads its own share of the chunks,
    so multi-node DDP needs no per-rank preprocessing; ``shuffle`` permutes the chunks
    and the samples in them from ``seed`` and the epoch, the same way on every rank
    (deterministic per epoch). In a distributed run litdata gives every rank the same
    number of samples (``drop_last``) so that collectives stay in step.

    Samples hold ``image`` (float32 ``(C, H, W)`` raw values read from the tile's image;
    absent with ``images=False``), the ``osm_*`` keys of
    :func:`~torchgeo_geolink.datasets.graph_to_sample` (float32 embeddings,
    ``osm_<type>_id`` the node's row in its tile's clipped feature table),
    ``osm_bounds`` (float64 tile box in its CRS) and, with ``metadata=True``, ``name``
    and ``crs``. A corpus prepared with ``embeddings='table'`` stores each node's rows
    of the tag table; the embeddings are then recomputed from the memory-mapped
    ``root/tags`` table (exactly as the graph builder computed them);
    :func:`~torchgeo_geolink.datasets.collate_geolink` batches them.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'val', 'test'] = 'train',
        shuffle: bool | None = None,
        seed: int = 0,
        size: int | tuple[int, int] | None = None,
        images: bool = True,
        metadata: bool = False,
        drop_last: bool | None = None,
        cache_dir: str | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new GeoLinkStreamingTiles instance.

        Args:
            root: Folder written by ``torchgeo_geolink.prepare`` (a local or shared
                path).
            split: ``'train'``, ``'val'`` or ``'test'``.
            shuffle: Shuffle per epoch (default: for the training split only).
            seed: Seed of the shuffle (the same on every rank).
            size: Resize every image to this ``(H, W)`` (or side), bilinear with
                antialiasing; node positions are normalized, so they do not change. None
                keeps the tiles' own size.
            images: Read the images (False: graphs only).
            metadata: Also return the tile's ``name`` and ``crs`` (strings, which
                :func:`~torchgeo_geolink.datasets.collate_geolink` does not batch).
            drop_last: Passed to litdata (default: True under ``torch.distributed``,
                else False).
            cache_dir: litdata's local cache folder for remote (``s3://``...) corpora.
            transforms: A function/transform that takes a sample and returns a
                transformed version.

        Raises:
            PreparedDataError: If ``root/split`` holds no merged index (the run is
                unfinished or the split empty).
            ValueError: If ``split`` is unknown.
        """
        if split not in ('train', 'val', 'test'):
            msg = f"split must be 'train', 'val' or 'test', got {split!r}"
            raise ValueError(msg)
        folder = Path(root) / split
        if '://' not in str(root) and not (folder / 'index.json').exists():
            msg = (
                f'{folder}: no index.json; the prepare run has not finished or put no tile in split {split!r} '
                '(rerun python -m torchgeo_geolink.prepare to complete it)'
            )
            raise PreparedDataError(msg)
        super().__init__(
            input_dir=str(root).rstrip('/') + f'/{split}'
            if '://' in str(root)
            else str(folder),
            cache_dir=cache_dir,
            shuffle=split == 'train' if shuffle is None else shuffle,
            drop_last=drop_last,
            seed=seed,
        )
        self.root = root
        self.split = split
        self.size = (size, size) if isinstance(size, int) else size
        self.images = images
        self.metadata = metadata
        manifest = Path(root) / 'manifest.json'
        #: How the corpus stores node embeddings (``'table'``: recomputed from the tag
        #: table on reading).
        self.embeddings = (
            json.loads(manifest.read_text('utf-8')).get('embeddings', 'float32')
            if manifest.exists()
            else 'float32'
        )
        self._key_frequency = (
            json.loads(manifest.read_text('utf-8')).get('key_frequency')
            if manifest.exists()
            else None
        )
        self._embedder: NodeEmbedder | None = None  # opened lazily, in each worker
        self._strings: list[str] = []
        self.transforms = transforms

    def __getitem__(self, index: Any) -> dict[str, Any]:
        """Return one tile.

        Args:
            index: A litdata chunked index (during iteration) or the tile's position in
                the split.

        Returns:
            ``image`` (unless ``images=False``), the ``osm_*`` keys, and ``name`` and
            ``crs`` with ``metadata``.

        Raises:
            TileError: If the image cannot be read.
        """
        item: dict[str, Any] = super().__getitem__(index)
        name = bytes(item['name']).decode()
        sample: dict[str, Any] = {}
        if self.images:
            path = bytes(item['image']).decode()
            if not path:
                msg = f'tile {name!r} of {self.root} has no image (prepare it with an image column)'
                raise TileError(msg)
            image = load_tile_image(path)
            if self.size is not None and tuple(image.shape[-2:]) != tuple(self.size):
                image = F.interpolate(
                    image[None],
                    size=self.size,
                    mode='bilinear',
                    antialias=True,
                    align_corners=False,
                )[0]
            sample['image'] = image
        if self.embeddings == 'table':
            item.update(self._embed(item))
        for key, value in item.items():
            if key.startswith('osm_'):
                if key.endswith('_x') and value.dtype != torch.float32:
                    value = value.float()
                sample[key] = value
        if self.metadata:
            sample['name'] = name
            sample['crs'] = bytes(item['crs']).decode()
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _embed(self, item: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Node embeddings of a sample stored as tag-table rows.

        They are computed as the graph builder computes them.

        Args:
            item: The stored sample, with ``tags_<type>_rows`` and ``tags_<type>_ptr``.

        Returns:
            ``osm_<type>_x`` per node type.
        """
        from ..osm import NODE_TYPES, KeyWeights
        from ..prepare import TagTable

        if self._embedder is None:
            weights = (
                KeyWeights.from_json(self._key_frequency)
                if self._key_frequency
                else None
            )
            table = TagTable(Path(self.root) / 'tags')
            self._embedder = NodeEmbedder(table.encoder(), weights)
            self._strings = table.strings
        out = {}
        for node_type in NODE_TYPES:
            rows = item.pop(f'tags_{node_type}_rows').tolist()
            ptr = item.pop(f'tags_{node_type}_ptr').tolist()
            strings = [
                [self._strings[r] for r in rows[a:b]]
                for a, b in itertools.pairwise(ptr)
            ]
            out[f'osm_{node_type}_x'] = self._embedder.embed_strings(strings)
        return out
