# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torchgeo.datasets import RasterDataset

from tests.conftest import CITY_CRS, CITY_ORIGIN
from torchgeo_geolink.datasets import OSMDataset, WindowedRasterDataset

X0, Y0 = CITY_ORIGIN
RES = 2.0


class Parent(RasterDataset):
    filename_glob = '*.tif'


class Windowed(WindowedRasterDataset):
    filename_glob = '*.tif'


def write(
    root: Path, name: str, dtype: str, nodata: float | None, x0: float = X0
) -> Path:
    data = np.random.default_rng(0).integers(1, 100, (2, 40, 50)).astype(dtype)
    data[:, :3, :3] = nodata if nodata is not None else 0
    root.mkdir(exist_ok=True)
    with rasterio.open(
        root / name,
        'w',
        driver='GTiff',
        width=50,
        height=40,
        count=2,
        dtype=dtype,
        crs=CITY_CRS,
        transform=from_origin(x0 + 0.3, Y0 + 80.7, RES, RES),
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return root


def windows(aligned: bool, n: int = 40) -> list[tuple[slice, slice]]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        col, row = rng.integers(-8, 50), rng.integers(-8, 40)
        dx, dy = (0.0, 0.0) if aligned else rng.uniform(0.01, 0.99, 2) * RES
        left = X0 + 0.3 + col * RES + dx
        top = Y0 + 80.7 - row * RES - dy
        out.append((slice(left, left + 16 * RES, RES), slice(top - 12 * RES, top, RES)))
    return out


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert value.dtype == b[key].dtype, key
        assert torch.equal(value, b[key]), key


@pytest.mark.parametrize(
    ('dtype', 'nodata'), [('uint8', None), ('int16', 7), ('float32', -9999.0)]
)
@pytest.mark.parametrize('aligned', [True, False])
def test_same_as_parent(
    tmp_path: Path, dtype: str, nodata: float | None, aligned: bool
) -> None:
    root = write(tmp_path / 'img', 'a.tif', dtype, nodata)
    parent, windowed = Parent(root), Windowed(root)
    direct = 0
    for window in windows(aligned):
        try:
            expected = parent[window]
        except IndexError:
            with pytest.raises(IndexError):
                windowed[window]
            continue
        assert_same(windowed[window], expected)
        direct += windowed._direct_read(window) is not None
    # Aligned windows (inside the file or crossing its edge) are read directly, the
    # others by the parent.
    assert direct > 20 if aligned else direct == 0


def test_fallbacks(tmp_path: Path) -> None:
    root = write(tmp_path / 'img', 'a.tif', 'uint8', None)
    write(root, 'b.tif', 'uint8', None, x0=X0 + 100)  # east neighbor
    windowed, parent = Windowed(root), Parent(root)
    across = (slice(X0 + 90.3, X0 + 122.3, RES), slice(Y0 + 40.7, Y0 + 64.7, RES))
    coarse = (slice(X0 + 0.3, X0 + 32.3, 4.0), slice(Y0 + 40.7, Y0 + 72.7, 4.0))
    for window in (across, coarse, (slice(X0 + 0.3, X0 + 32.3),)):
        assert windowed._direct_read(window) is None
        assert_same(windowed[window], parent[window])
    assert Windowed(root, cache=False)[coarse]['image'].shape == (2, 8, 8)


def test_image_and_osm(tmp_path: Path, city_gpkg: Path) -> None:
    root = write(tmp_path / 'img', 'a.tif', 'uint8', None)
    pair = Windowed(root) & OSMDataset(city_gpkg)
    reference = Parent(root) & OSMDataset(city_gpkg)
    window = (slice(X0 + 10.3, X0 + 42.3, RES), slice(Y0 + 20.7, Y0 + 44.7, RES))
    sample = pair[window]
    assert sample['image'].shape == (2, 12, 16)
    assert_same(sample, reference[window])


def test_pickle_after_reads(tmp_path: Path) -> None:
    root = write(tmp_path / 'img', 'a.tif', 'uint8', None)
    windowed = Windowed(root)
    window = windows(aligned=True)[3]
    before = windowed[window]  # opens and caches the file handle
    clone = pickle.loads(pickle.dumps(windowed))
    assert_same(clone[window], before)
