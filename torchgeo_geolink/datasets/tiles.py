# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink's tile format: per tile an image PNG, a label PNG and a ``.pt`` graph.

The label is optional; the graph is an official pre-built one.
"""

import os
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch_geometric.data import HeteroData
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset
from torchgeo.datasets.utils import Sample

from ..errors import TileError
from ..osm import NODE_TYPES, TAG_EMBEDDING_DIM, empty_graph, from_official_graph
from ..visualization import plot_label_panels
from .utils import check_split_fractions, graph_to_sample

__all__ = ('UFZ_CLASSES', 'GeoLinkTiles', 'ufz_label_lut')

#: The nine official UFZ (urban functional zone) class names, in label order after
#: :func:`ufz_label_lut`.
UFZ_CLASSES = (
    'water',
    'green',
    'farmland',
    'undeveloped',
    'residential',
    'commercial',
    'institution',
    'industrial',
    'transportation',
)


def ufz_label_lut(ignore_index: int = 255) -> np.ndarray:
    """Lookup table from raw UFZ label values to training labels.

    The raw UFZ label PNGs hold 0..9 and 255 but there are nine class names; this
    package maps ``0 -> ignore``, ``k -> k - 1`` for ``k = 1..9`` (so 1 = water ... 9 =
    transportation, :data:`UFZ_CLASSES`) and every other value (255 included)
    ``-> ignore``.

    Args:
        ignore_index: label given to unlabeled pixels.

    Returns:
        ``(256,)`` int64 table.

    .. versionadded:: 0.1
    """
    lut = np.full(256, ignore_index, dtype=np.int64)
    lut[1:10] = np.arange(9)
    return lut


class GeoLinkTiles(NonGeoDataset):
    """Tiles in GeoLink's format: image, optional label and official pre-built graph.

    Dataset format::

        root/img/<name>.png      RGB (or any PIL-readable) image
        root/label/<name>.png    optional single-band class labels (e.g. UFZ)
        root/graph/<name>.pt     official graph: a pickled torch_geometric HeteroData whose node features are
                                 512 tag-embedding columns followed by the positions (polygon 8, line 6, point 2)

    Samples are
    ``{'image': float32 (C, H, W) raw values, 'mask': long (H, W), osm_* keys}``: the
    graph is converted with :func:`~torchgeo_geolink.osm.from_official_graph` and
    flattened with :func:`~torchgeo_geolink.datasets.graph_to_sample` into the same
    ``osm_*`` keys as :class:`~torchgeo_geolink.datasets.OSMDataset`, so
    :func:`~torchgeo_geolink.datasets.collate_geolink` batches both. ``osm_<type>_id``
    is the node's row in its tile's graph.

    Labels are mapped through ``label_lut``; the default is the UFZ mapping of
    :func:`ufz_label_lut` (``0 -> 255`` ignore, ``k -> k - 1`` for ``k = 1..9`` with
    :data:`UFZ_CLASSES`, ``255 -> 255``).

    Splits: ``root/<split>.txt`` (one tile name per line) when present, otherwise a
    deterministic assignment by a CRC-32 hash of the tile name
    (``val_fraction``/``test_fraction`` of the tiles; stable when tiles are added).
    ``split='all'`` takes every tile.

    If you use this format, please cite GeoLink (Bai et al., NeurIPS 2025).

    .. versionadded:: 0.1
    """

    #: Class names (index = label after ``label_lut``).
    classes: ClassVar[tuple[str, ...]] = UFZ_CLASSES
    #: Label of unlabeled pixels.
    ignore_index: ClassVar[int] = 255

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'val', 'test', 'all'] = 'train',
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        missing_graph: Literal['error', 'empty'] = 'error',
        label_lut: Sequence[int] | None = None,
        size: int | tuple[int, int] | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new GeoLinkTiles instance.

        Args:
            root: folder holding ``img/``, ``graph/`` and optionally ``label/``.
            split: ``'train'``, ``'val'``, ``'test'`` or ``'all'``.
            val_fraction: share of tiles in the validation split (hash split only).
            test_fraction: share of tiles in the test split (hash split only).
            missing_graph: a tile without ``.pt`` graph is an error (``'error'``) or
                gets an empty graph.
            label_lut: 256-entry table from raw label values to labels (default:
                :func:`ufz_label_lut`).
            size: resize every tile to this ``(H, W)`` (or side): image bilinear with
                antialiasing, mask nearest; node positions are normalized, so they do
                not change. None keeps the tiles' own size (they must then share one
                size to be batched).
            transforms: a function/transform that takes a sample and returns a
                transformed version.

        Raises:
            DatasetNotFoundError: if ``root/img`` holds no image.
            ValueError: if an argument is invalid.
            TileError: if a tile has no graph and *missing_graph* is ``'error'``.
        """
        if split not in ('train', 'val', 'test', 'all'):
            raise ValueError(
                f"split must be 'train', 'val', 'test' or 'all', got {split!r}"
            )
        check_split_fractions(val_fraction, test_fraction)
        if missing_graph not in ('error', 'empty'):
            raise ValueError(
                f"missing_graph must be 'error' or 'empty', got {missing_graph!r}"
            )
        self.root = Path(root)
        self.split = split
        self.missing_graph = missing_graph
        self.transforms = transforms
        lut = (
            ufz_label_lut(self.ignore_index)
            if label_lut is None
            else np.asarray(label_lut, dtype=np.int64)
        )
        if lut.shape != (256,):
            raise ValueError(f'label_lut must have 256 entries, got shape {lut.shape}')
        self.label_lut = lut
        self.size = (size, size) if isinstance(size, int) else size

        names = sorted(
            p.stem
            for p in (self.root / 'img').glob('*')
            if p.suffix.lower() in _IMAGE_SUFFIXES
        )
        if not names:
            raise DatasetNotFoundError(self)
        self._image_paths = {
            p.stem: p
            for p in (self.root / 'img').glob('*')
            if p.suffix.lower() in _IMAGE_SUFFIXES
        }
        #: Tile names of this split, sorted.
        self.names = self._split_names(names, val_fraction, test_fraction)
        missing = [n for n in self.names if not self._graph_path(n).exists()]
        if missing and missing_graph == 'error':
            msg = f'{self.root / "graph"}: no graph for {len(missing)} tile(s), e.g. {missing[0]}.pt'
            raise TileError(msg + " (pass missing_graph='empty' to use empty graphs)")
        if missing:
            msg = f'{self.root / "graph"}: {len(missing)} of {len(self.names)} {split} tile(s) have no graph; using empty graphs'
            warnings.warn(msg, UserWarning, stacklevel=2)
        #: Tiles of the split without a graph file (given empty graphs).
        self.missing_graphs = missing

    def _split_names(
        self, names: list[str], val_fraction: float, test_fraction: float
    ) -> list[str]:
        """The tile names of this dataset's split.

        Args:
            names: all tile names.
            val_fraction: share of tiles in the validation split.
            test_fraction: share of tiles in the test split.

        Returns:
            The names of the split, sorted.

        Raises:
            ValueError: if a split file lists an unknown tile.
        """
        if self.split == 'all':
            return names
        listed = self.root / f'{self.split}.txt'
        if listed.exists():
            wanted = [
                line.strip() for line in listed.read_text().splitlines() if line.strip()
            ]
            unknown = sorted(set(wanted) - set(names))
            if unknown:
                raise ValueError(f'{listed}: unknown tile(s) {unknown[:5]}')
            return sorted(wanted)
        out = []
        for name in names:
            u = zlib.crc32(name.encode()) / 2**32
            split = (
                'val'
                if u < val_fraction
                else 'test'
                if u < val_fraction + test_fraction
                else 'train'
            )
            if split == self.split:
                out.append(name)
        return out

    def _graph_path(self, name: str) -> Path:
        """Path of a tile's graph.

        Args:
            name: tile name.

        Returns:
            ``root/graph/<name>.pt``.
        """
        return self.root / 'graph' / f'{name}.pt'

    def __len__(self) -> int:
        """Number of tiles in the split.

        Returns:
            The length.
        """
        return len(self.names)

    def _load_image(self, path: Path, mode: str | None) -> np.ndarray:
        """Read an image file.

        Args:
            path: the file.
            mode: PIL mode to convert to (None: keep).

        Returns:
            The pixels, ``(H, W)`` or ``(H, W, C)``.

        Raises:
            TileError: if the file is missing or unreadable.
        """
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert(mode) if mode else img)
        except (
            OSError,
            UnidentifiedImageError,
            SyntaxError,
            ValueError,
            Image.DecompressionBombError,
        ) as err:  # PIL reports broken PNG chunks as SyntaxError
            raise TileError(f'{path}: cannot read image ({err})') from err

    def _load_graph(self, name: str) -> HeteroData:
        """Read, validate and convert a tile's official graph.

        The graph is checked before it is served: node features are finite floats of the
        official widths, every edge index points inside its node sets (after batching,
        an index one too large would silently point at the next tile's node) and every
        ``edge_attr`` has its edge type's width.

        Args:
            name: tile name.

        Returns:
            The graph in this package's format.

        Raises:
            TileError: if the file is missing (and *missing_graph* is ``'error'``),
                unreadable or malformed; the message names the file and the node or edge
                type.
        """
        path = self._graph_path(name)
        if not path.exists():
            if self.missing_graph == 'empty':
                return empty_graph(TAG_EMBEDDING_DIM)
            raise TileError(f'{path}: graph file not found')
        try:
            data = torch.load(path, weights_only=False, map_location='cpu')
        except Exception as err:  # unpickling a corrupt file raises almost any type
            raise TileError(
                f'{path}: cannot load graph ({type(err).__name__}: {err})'
            ) from err
        if not isinstance(data, HeteroData):
            raise TileError(
                f'{path}: expected a torch_geometric HeteroData, got {type(data).__name__}'
            )
        try:
            return from_official_graph(data)
        except ValueError as err:
            raise TileError(f'{path}: not a valid GeoLink graph: {err}') from err

    def __getitem__(self, index: int) -> Sample:
        """Return one tile.

        Args:
            index: index of the tile in the split.

        Returns:
            ``image``, ``mask`` (when labels exist) and the ``osm_*`` graph keys.

        Raises:
            TileError: if the image, label or graph cannot be read, their sizes differ
                or the graph is malformed.
        """
        name = self.names[index]
        pixels = self._load_image(self._image_paths[name], 'RGB')
        sample: Sample = {
            'image': torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32))
        }
        label_path = self.root / 'label' / f'{name}.png'
        if label_path.exists():
            raw = self._load_image(label_path, None)
            if raw.ndim != 2:
                msg = f'{label_path}: label must have a single band, got shape {raw.shape}'
                raise TileError(msg)
            if raw.shape != pixels.shape[:2]:
                msg = f'{label_path}: label of shape {raw.shape} does not match image of shape {pixels.shape[:2]}'
                raise TileError(msg)
            if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 255):
                msg = (
                    f'{label_path}: label values {int(raw.min())}..{int(raw.max())} are outside 0..255, '
                    'the range of label_lut'
                )
                raise TileError(msg)
            sample['mask'] = torch.from_numpy(self.label_lut[raw.astype(np.int64)])
        if self.size is not None and tuple(sample['image'].shape[-2:]) != tuple(
            self.size
        ):
            sample['image'] = F.interpolate(
                sample['image'][None],
                size=self.size,
                mode='bilinear',
                antialias=True,
                align_corners=False,
            )[0]
            if 'mask' in sample:
                sample['mask'] = F.interpolate(
                    sample['mask'][None, None].float(),
                    size=self.size,
                    mode='nearest-exact',
                )[0, 0].long()
        sample.update(graph_to_sample(self._load_graph(name)))
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self, sample: Sample, show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Plot a sample: image and graph node positions, label, prediction (if any).

        Args:
            sample: a sample returned by :meth:`__getitem__`.
            show_titles: flag indicating whether to show titles above each panel.
            suptitle: optional string to use as a suptitle.

        Returns:
            A matplotlib Figure.
        """
        panels = 1 + ('mask' in sample) + ('prediction' in sample)
        fig, axs = plt.subplots(1, panels, figsize=(5 * panels, 5), squeeze=False)
        image = sample['image'][:3].permute(1, 2, 0).double().numpy()
        low, high = np.percentile(image, (1, 99))
        image = np.clip((image - low) / max(high - low, 1e-9), 0, 1)
        height, width = image.shape[:2]
        ax = axs[0, 0]
        ax.imshow(image)
        colors = {'polygon': 'tab:orange', 'line': 'tab:blue', 'point': 'tab:red'}
        for node_type in NODE_TYPES:
            pos: Tensor | None = sample.get(f'osm_{node_type}_pos')
            if pos is None or len(pos) == 0:
                continue
            xy = pos.reshape(-1, 2).double().numpy() * [width, height]
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                s=6,
                c=colors[node_type],
                label=f'{node_type} ({len(pos)})',
            )
        if any(len(sample.get(f'osm_{t}_pos', ())) for t in NODE_TYPES):
            ax.legend(loc='upper right', fontsize='small')
        ax.set_axis_off()
        if show_titles:
            ax.set_title('Image and OSM nodes')
        plot_label_panels(
            list(axs[0, 1:]),
            sample,
            max(len(self.classes), 1),
            self.ignore_index,
            show_titles,
        )
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig


_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.tif', '.tiff')
