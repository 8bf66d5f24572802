# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""A TorchGeo RasterDataset that reads pixel-grid windows straight from the file."""

import math

import numpy as np
import rasterio.errors
import rasterio.transform
import torch
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from torchgeo.datasets import RasterDataset
from torchgeo.datasets.utils import GeoSlice, Sample, array_to_tensor

from ..errors import RasterFileError

__all__ = ('WindowedRasterDataset',)

#: Largest distance (in pixels) from the grid at which a window's corner counts as on
#: the grid.
_ALIGN_TOLERANCE = 1e-6


class WindowedRasterDataset(RasterDataset):
    """A :class:`~torchgeo.datasets.RasterDataset` with fast windowed reads.

    It reads a window of one file with one windowed read.

    :meth:`torchgeo.datasets.RasterDataset.__getitem__` queries the pandas index and
    mosaics the files of every window with :func:`rasterio.merge.merge`. When a window
    meets a single file that is already in the dataset's CRS and resolution (no warp, no
    ``nodata`` override, one band data type) and the query's step is the file's pixel
    size, this subclass reads the window directly from the cached file handle: pixels
    outside the file are filled as the mosaic fills them (the file's nodata value, else
    0). Only windows whose corner lies on the file's pixel grid (as TorchGeo's samplers
    draw them when the raster sets the dataset bounds) are read this way; every other
    query (off the grid, several files, a warp, a time range, separate band files, time
    series, another resolution) falls back to the parent, so samples are always
    identical.

    Subclass it exactly as :class:`~torchgeo.datasets.RasterDataset` (``filename_glob``,
    ``is_image``, ...).

    .. versionadded:: 0.1
    """

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Retrieve the image or mask of a window.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to
                index.

        Returns:
            The sample, as :meth:`torchgeo.datasets.RasterDataset.__getitem__` returns
            it.

        Raises:
            IndexError: if *index* is not found in the dataset or is an inverted window.
            RasterFileError: if a file of the window cannot be read (names the files and
                the window).
        """
        if isinstance(index, tuple) and all(isinstance(s, slice) for s in index[:2]):
            for axis, s in zip('xy', index[:2], strict=False):
                if s.start is not None and s.stop is not None and s.stop < s.start:
                    msg = (
                        f'index: {index} is an inverted window ({axis} from {s.start} down to {s.stop}); '
                        'slices go from the minimum to the maximum'
                    )
                    raise IndexError(msg)
        try:
            sample = self._direct_read(index)
            if sample is None:
                return super().__getitem__(index)
        except rasterio.errors.RasterioIOError as err:
            files = ', '.join(self._files_of(index))
            msg = f'{files}: cannot read the window {index} ({err} {err.__cause__ or err.__context__})'
            raise RasterFileError(msg) from err
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _files_of(self, index: GeoSlice) -> list[str]:
        """The files whose footprint meets a window.

        All files are returned when the window is not given by two slices.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to
                index.

        Returns:
            The file paths.
        """
        bounds, filepaths, _ = self._file_bounds()
        if not (isinstance(index, tuple) and len(index) >= 2):
            return filepaths
        x, y = index[0], index[1]
        if not isinstance(x, slice) or not isinstance(y, slice):
            return filepaths
        meets = np.ones(len(filepaths), dtype=bool)
        if x.start is not None:
            meets &= bounds[:, 2] >= x.start
        if x.stop is not None:
            meets &= bounds[:, 0] <= x.stop
        if y.start is not None:
            meets &= bounds[:, 3] >= y.start
        if y.stop is not None:
            meets &= bounds[:, 1] <= y.stop
        return [f for f, m in zip(filepaths, meets, strict=True) if m]

    def __getstate__(self) -> dict[str, object]:
        """State to pickle (for DataLoader workers): all but the cached file handles.

        Returns:
            The instance's attributes without the per-index cache.
        """
        state = self.__dict__.copy()
        state.pop('_bounds_cache', None)
        return state

    def _file_bounds(self) -> tuple[np.ndarray, list[str], tuple[float, float]]:
        """Footprint bounds and path of every file, and the time bounds.

        They are cached until :attr:`index` is replaced.

        Returns:
            ``(n_files, 4)`` ``(xmin, ymin, xmax, ymax)``, the file paths and the
            dataset's time bounds as timestamps.
        """
        cache = getattr(self, '_bounds_cache', None)
        if cache is None or cache[0] is not self.index:
            bounds = np.asarray(self.index.geometry.bounds, dtype=np.float64)
            _, _, t = self.bounds
            cache = (
                self.index,
                bounds,
                [str(p) for p in self.index.filepath],
                (t.start.timestamp(), t.stop.timestamp()),
                {},
            )
            self._bounds_cache = cache
        return cache[1], cache[2], cache[3]

    def _direct_read(self, index: GeoSlice) -> Sample | None:
        """Read a window with one windowed read when that gives the parent's result.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates to
                index.

        Returns:
            The sample (before transforms), or None when the parent must read it.
        """
        if (
            self.separate_files
            or self.time_series
            or not isinstance(index, tuple)
            or len(index) not in (2, 3)
            or not all(isinstance(s, slice) for s in index)
            or (len(index) == 3 and index[2] != slice(None))
        ):
            return None
        x, y = index[0], index[1]  # ty: ignore[index-out-of-bounds]  (len(index) >= 2 checked above)
        if None in (x.start, x.stop, y.start, y.stop):
            return None
        x_step = x.step if x.step is not None else self.res[0]
        y_step = y.step if y.step is not None else self.res[1]
        xres, yres = float(x_step), float(y_step)
        xmin, xmax, ymin, ymax = (
            float(x.start),
            float(x.stop),
            float(y.start),
            float(y.stop),
        )
        bounds, filepaths, (tmin, tmax) = self._file_bounds()
        hits = np.flatnonzero(
            (bounds[:, 0] <= xmax)
            & (bounds[:, 2] >= xmin)
            & (bounds[:, 1] <= ymax)
            & (bounds[:, 3] >= ymin)
        )
        if len(hits) != 1 or not (xmax > xmin and ymax > ymin):
            return None
        if self.cache:
            # The parent's lru_cache hashes the CRS (its WKT) on every call: keep the
            # handles per index.
            handles = self._bounds_cache[4]
            src = handles.get(filepaths[hits[0]])
            if src is None:
                src = self._open_file(filepaths[hits[0]])
                handles[filepaths[hits[0]]] = src
        else:
            src = self._open_file(filepaths[hits[0]])
        try:
            data = self._read_window(src, xmin, ymax, xmax, ymin, xres, yres)
        finally:
            if not self.cache:
                src.close()
        if data is None:
            return None
        sample: Sample = {
            # As RasterDataset._slice_to_tensor builds it (same values and dtype).
            'bounds': torch.tensor(
                [x.start, x.stop, x_step, y.start, y.stop, y_step, tmin, tmax, 1]
            ),
            'transform': torch.tensor(
                rasterio.transform.from_origin(x.start, y.stop, x_step, y_step)
            ),
        }
        tensor = array_to_tensor(data).to(self.dtype)
        if self.is_image:
            sample['image'] = tensor
        else:
            sample['mask'] = tensor.squeeze(-3)
        return sample

    def _open_file(self, filepath: str) -> DatasetReader | WarpedVRT:
        """Open a dataset file as the parent's reads do (warped to the dataset CRS).

        The one use of :class:`~torchgeo.datasets.RasterDataset`'s private loaders
        (``_cached_load_warp_file`` and ``_load_warp_file``, as of TorchGeo 0.10):
        TorchGeo has no public way to open a file the way its reads do, and opening it
        with them keeps the direct read identical to the parent's (same warping, same
        handling of GCP-only files, same handle cache when ``cache`` is set).

        Args:
            filepath: path of one of the dataset's files.

        Returns:
            The open file handle.
        """
        if self.cache:
            return self._cached_load_warp_file(filepath, self.crs)
        return self._load_warp_file(filepath, self.crs)

    def _read_window(
        self,
        src: object,
        left: float,
        top: float,
        right: float,
        bottom: float,
        xres: float,
        yres: float,
    ) -> np.ndarray | None:
        """Read the pixels of a window from one file on the query's grid.

        Args:
            src: the file handle (a :class:`rasterio.io.DatasetReader` when no warp is
                needed).
            left: west edge of the window.
            top: north edge of the window.
            right: east edge of the window.
            bottom: south edge of the window.
            xres: pixel width of the query.
            yres: pixel height of the query.

        Returns:
            ``(bands, height, width)`` array as :func:`rasterio.merge.merge` gives it,
            or None when a direct read would not.
        """
        if not isinstance(src, DatasetReader) or len(set(src.dtypes)) != 1:
            return None
        t = src.transform
        if (
            t.b != 0
            or t.d != 0
            or not math.isclose(t.a, xres, rel_tol=1e-9)
            or not math.isclose(-t.e, yres, rel_tol=1e-9)
        ):
            return None
        width = round((right - left) / xres)
        height = round((top - bottom) / yres)
        col = (left - t.c) / t.a
        row = (top - t.f) / t.e
        col0, row0 = round(col), round(row)
        if abs(col - col0) > _ALIGN_TOLERANCE or abs(row - row0) > _ALIGN_TOLERANCE:
            # Off the grid the mosaic resamples (GDAL's nearest neighbor on a fractional
            # window, whose rounding differs between rows and columns): leave it to the
            # parent.
            return None
        dtype = np.dtype(src.dtypes[0])
        nodata = src.nodata
        fill = 0 if nodata is None else nodata
        if nodata is not None and np.issubdtype(dtype, np.integer):
            info = np.iinfo(str(src.dtypes[0]))
            if not info.min <= nodata <= info.max:
                return None
        indexes = self.band_indexes or list(range(1, src.count + 1))
        out = np.full((len(indexes), height, width), fill, dtype=dtype)
        c0, r0 = max(col0, 0), max(row0, 0)
        c1, r1 = min(col0 + width, src.width), min(row0 + height, src.height)
        if c1 > c0 and r1 > r0:
            out[:, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = src.read(
                indexes, window=Window.from_slices((r0, r1), (c0, c1))
            )
        return out
