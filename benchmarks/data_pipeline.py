# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Per-core throughput of paired image + OSM graph samples: ours (induced, exact) vs TorchGeo raster & vector.

Writes the shipped Helsinki extract (EPSG:4326) to one GeoPackage layer and a 1 m, 3-band GeoTIFF over the same
area in UTM 35N, then times the same random 224 x 224 px windows, single process, one torch thread.

Usage: ``python benchmarks/data_pipeline.py [--windows 200] [--quick]``
"""

import argparse
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import torch
from rasterio.transform import from_origin
from torchgeo.datasets import RasterDataset, VectorDataset

from torchgeo_geolink.datasets import OSMDataset

PBF = (
    Path(__file__).resolve().parents[1]
    / 'torchgeo_geolink'
    / 'data'
    / 'helsinki.osm.pbf'
)
SIZE = 224


class Image(RasterDataset):
    filename_glob = '*.tif'


def write_data(root: Path) -> tuple[Path, Path]:
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for layer in ('points', 'lines', 'multipolygons'):
            frames.append(pyogrio.read_dataframe(PBF, layer=layer, on_invalid='fix'))
    osm = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    osm = osm[osm.geometry.notna()]
    vector = root / 'osm' / 'helsinki.gpkg'
    vector.parent.mkdir()
    osm.to_file(vector, driver='GPKG')
    xmin, ymin, xmax, ymax = osm.to_crs(32635).total_bounds
    width, height = int(xmax - xmin), int(ymax - ymin)
    data = np.random.default_rng(0).integers(0, 255, (3, height, width), dtype=np.uint8)
    image = root / 'img' / 'image.tif'
    image.parent.mkdir()
    profile = {
        'driver': 'GTiff',
        'width': width,
        'height': height,
        'count': 3,
        'dtype': 'uint8',
        'crs': 'EPSG:32635',
    }
    with rasterio.open(
        image, 'w', transform=from_origin(xmin, ymax, 1, 1), tiled=True, **profile
    ) as dst:
        dst.write(data)
    return image.parent, vector


def rate(
    dataset: Callable[[tuple[slice, slice]], dict], windows: list[tuple[slice, slice]]
) -> float:
    dataset(windows[0])  # warm caches
    start = time.perf_counter()
    for window in windows:
        dataset(window)
    return len(windows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--windows', type=int, default=200)
    parser.add_argument('--quick', action='store_true', help='50 windows')
    args = parser.parse_args()
    if args.quick:
        args.windows = 50
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        image_dir, vector = write_data(Path(tmp))
        image = Image(image_dir)
        start = time.perf_counter()
        induced = image & OSMDataset(vector)
        init_induced = time.perf_counter() - start
        exact = Image(image_dir) & OSMDataset(vector, graph_mode='exact')
        baseline = Image(image_dir) & VectorDataset(vector)
        xmin, ymin, xmax, ymax = induced.index.total_bounds
        rng = np.random.default_rng(0)
        x = xmin + np.floor(rng.uniform(0, xmax - xmin - SIZE, args.windows))
        y = ymin + np.floor(rng.uniform(0, ymax - ymin - SIZE, args.windows))
        windows = [
            (slice(a, a + SIZE), slice(b, b + SIZE)) for a, b in zip(x, y, strict=True)
        ]
        few = windows[: max(args.windows // 10, 5)]
        osm = induced.datasets[1]
        nodes = [
            sum(len(v) for k, v in osm[w].items() if k.endswith('_id')) for w in windows
        ]
        rows = [
            ('raster alone', rate(image.__getitem__, windows)),
            ('ours: image & osm (induced)', rate(induced.__getitem__, windows)),
            ('ours: image & osm (exact)', rate(exact.__getitem__, few)),
            ('TorchGeo: raster & vector', rate(baseline.__getitem__, few)),
        ]
    reference = rows[-1][1]
    print(
        f'{len(windows)} windows of {SIZE} x {SIZE} px at 1 m; mean OSM nodes per window: {np.mean(nodes):.0f}'
    )
    print(f'OSMDataset init (read, clean, embed, relations): {init_induced:.1f} s')
    print(f'{"pipeline":32s} {"samples/s":>10s} {"vs TorchGeo":>12s}')
    for name, value in rows:
        print(f'{name:32s} {value:10.1f} {value / reference:11.1f}x')


if __name__ == '__main__':
    main()
