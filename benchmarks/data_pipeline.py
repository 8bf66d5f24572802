# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Per-core rate of paired image + OSM graph samples: ours vs TorchGeo raster & vector.

Writes the shipped Helsinki extract (EPSG:4326) to one GeoPackage layer and a 1 m,
3-band GeoTIFF over the same area in UTM 35N, then times the same random 224 x 224 px
windows on the image's pixel grid (as TorchGeo's samplers draw them), single process,
one torch thread. Each pipeline is timed ``--repeat`` times and the best run is kept
(the machine may be shared); ratios are against TorchGeo's ``raster & vector`` of the
same run. Issue 2's target: ours (induced) >= 250 paired samples/s per core.

Usage: ``python benchmarks/data_pipeline.py [--windows 400] [--repeat 3] [--quick]``
"""

import argparse
import os
import sys
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

from torchgeo_geolink.datasets import OSMDataset, WindowedRasterDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, print_table

PBF = (
    Path(__file__).resolve().parents[1]
    / 'torchgeo_geolink'
    / 'data'
    / 'helsinki.osm.pbf'
)
SIZE = 224


class Image(RasterDataset):
    filename_glob = '*.tif'


class WindowedImage(WindowedRasterDataset):
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
    dataset: Callable[[tuple[slice, slice]], dict],
    windows: list[tuple[slice, slice]],
    repeat: int,
) -> float:
    dataset(windows[0])  # warm caches
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for window in windows:
            dataset(window)
        best = max(best, len(windows) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--windows', type=int, default=400)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--quick', action='store_true', help='50 windows, 1 run')
    args = parser.parse_args()
    if args.quick:
        args.windows, args.repeat = 50, 1
    torch.set_num_threads(1)
    header('Paired image + OSM graph samples per second, one core')
    with tempfile.TemporaryDirectory() as tmp:
        image_dir, vector = write_data(Path(tmp))
        image = Image(image_dir)
        windowed = WindowedImage(image_dir)
        start = time.perf_counter()
        induced = WindowedImage(image_dir) & OSMDataset(vector)
        init_induced = time.perf_counter() - start
        exact = WindowedImage(image_dir) & OSMDataset(vector, graph_mode='exact')
        baseline = Image(image_dir) & VectorDataset(vector)
        # Windows on the image's pixel grid, inside both datasets.
        with rasterio.open(next(image_dir.glob('*.tif'))) as src:
            left, top = src.transform.c, src.transform.f
        xmin, ymin, xmax, ymax = induced.index.total_bounds
        rng = np.random.default_rng(0)
        cols = rng.integers(
            np.ceil(xmin - left), np.floor(xmax - left - SIZE), args.windows
        )
        rows = rng.integers(
            np.ceil(top - ymax) + SIZE, np.floor(top - ymin), args.windows
        )
        windows = [
            (slice(left + c, left + c + SIZE, 1.0), slice(top - r, top - r + SIZE, 1.0))
            for c, r in zip(cols.tolist(), rows.tolist(), strict=True)
        ]
        few = windows[: max(args.windows // 10, 5)]
        osm = induced.datasets[1]
        nodes = [
            sum(len(v) for k, v in osm[w].items() if k.endswith('_id')) for w in windows
        ]
        results = {
            'TorchGeo: raster alone': rate(image.__getitem__, windows, args.repeat),
            'ours: raster alone (windowed)': rate(
                windowed.__getitem__, windows, args.repeat
            ),
            'ours: osm alone (induced)': rate(osm.__getitem__, windows, args.repeat),
            'ours: image & osm (induced)': rate(
                induced.__getitem__, windows, args.repeat
            ),
            'ours: image & osm (exact)': rate(exact.__getitem__, few, args.repeat),
            'TorchGeo: raster & vector': rate(baseline.__getitem__, few, args.repeat),
        }
    reference = results['TorchGeo: raster & vector']
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(
        f'{len(windows)} windows of {SIZE} x {SIZE} px at 1 m (exact mode and TorchGeo: {len(few)}); '
        f'mean OSM nodes per window: {np.mean(nodes):.0f}; best of {args.repeat} runs; '
        f'1-min load average at the end: {load:.2f}'
    )
    print(f'OSMDataset init (read, clean, embed, relations): {init_induced:.1f} s')
    print()
    print_table(
        [(name, value, value / reference) for name, value in results.items()],
        ('pipeline', 'samples/s per core', 'vs TorchGeo raster & vector'),
    )
    ours = results['ours: image & osm (induced)']
    print()
    print(
        f'ours (induced) {ours:.0f} paired samples/s per core = '
        f"{ours / results['TorchGeo: raster alone']:.2f}x TorchGeo's raster read alone "
        f'({results["TorchGeo: raster alone"]:.0f}/s), '
        f'{ours / results["ours: raster alone (windowed)"]:.2f}x our windowed raster read alone; '
        f'target >= 250/s: {"met" if ours >= 250 else "NOT met"}'
    )


if __name__ == '__main__':
    main()
