# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Writing GeoTIFFs."""

import os
import tempfile
from pathlib import Path
from typing import Any

import rasterio
from numpy.typing import NDArray
from pyproj import CRS
from rasterio.transform import Affine

__all__ = ('write_geotiff',)


def write_geotiff(
    path: Path,
    data: NDArray[Any],
    transform: Affine,
    crs: CRS,
    description: str | None = None,
) -> None:
    """Write a deterministic, compressed, tiled GeoTIFF atomically (temp file + rename).

    Args:
        path: destination.
        data: ``(bands, H, W)`` array.
        transform: affine transform.
        crs: coordinate reference system.
        description: text stored in the ``TIFFTAG_IMAGEDESCRIPTION`` tag (none when
            None).

    .. versionadded:: 0.1
    """
    profile = {
        'driver': 'GTiff',
        'dtype': data.dtype.name,
        'count': data.shape[0],
        'height': data.shape[1],
        'width': data.shape[2],
        'crs': crs,
        'transform': transform,
        'compress': 'deflate',
        'tiled': True,
        'blockxsize': 256,
        'blockysize': 256,
    }
    if data.shape[0] == 3:
        profile['photometric'] = 'RGB'
    fd, tmp = tempfile.mkstemp(suffix='.tif', dir=path.parent)
    os.close(fd)
    try:
        with rasterio.open(tmp, 'w', **profile) as dst:
            dst.write(data)
            if description is not None:
                dst.update_tags(TIFFTAG_IMAGEDESCRIPTION=description)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
