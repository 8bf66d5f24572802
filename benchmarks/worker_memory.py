# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Memory of paired image + OSM samples with 1 and 2 DataLoader workers.

The shipped Helsinki extract is tiled ``--copies`` times as in ``osm_store.py`` (about
13k features a copy) and paired with a random 1 m, 3-band GeoTIFF over the first copy
in UTM 35N: ``image & OSMDataset(..., cache_dir=...)``, batches of 8 random 224 px
windows collated with ``collate_geolink``. For 0, 1 and 2 workers a fresh process builds
(or, from the second run on, maps) the prepared store from the cache, iterates
``--batches`` batches, and samples the proportional set size (PSS: each shared page
counted once over the processes that share it) of itself and its workers after every
batch. The peak of that sum is what the machine gives the loader.

Target (issue "Scale"): 2 workers use < 1.2x the memory of 1 worker.

Usage: ``python benchmarks/worker_memory.py [--copies 40] [--batches 40] [--quick]``
(quick: 2 copies, 10 batches). Linux only (reads ``/proc/<pid>/smaps_rollup``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import shapely
import torch
from rasterio.transform import from_origin
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, print_table
from osm_store import UTM, tiled_file

BATCH = 8
SIZE = 224


def pss(pid: int) -> int:
    """Proportional set size of one process, in bytes.

    Args:
        pid: the process.

    Returns:
        Its PSS (0 if it has gone).
    """
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct child processes of *pid*.

    Args:
        pid: the parent.

    Returns:
        Their pids.
    """
    out = []
    for task in Path(f'/proc/{pid}/task').iterdir():
        text = (task / 'children').read_text().split()
        out += [int(p) for p in text]
    return out


def write_image(osm_path: Path, root: Path) -> Path:
    """Write a random GeoTIFF over the first copy of the tiled extract, in UTM.

    Args:
        osm_path: the tiled GeoParquet.
        root: folder for the image.

    Returns:
        The image folder.
    """
    import geopandas as gpd

    bounds = gpd.read_parquet(osm_path, columns=['geometry']).total_bounds
    width = (bounds[2] - bounds[0]) / max(1, round((bounds[2] - bounds[0]) / 0.2))
    first = shapely.box(bounds[0], bounds[1], bounds[0] + width, bounds[3])
    xmin, ymin, xmax, ymax = gpd.GeoSeries([first], crs=4326).to_crs(UTM).total_bounds
    w, h = int(xmax - xmin), int(ymax - ymin)
    folder = root / 'img'
    folder.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).integers(0, 255, (3, h, w), dtype=np.uint8)
    profile = {'driver': 'GTiff', 'width': w, 'height': h, 'count': 3}
    with rasterio.open(
        folder / 'image.tif',
        'w',
        transform=from_origin(xmin, ymax, 1, 1),
        tiled=True,
        dtype='uint8',
        crs=UTM,
        **profile,
    ) as dst:
        dst.write(data)
    return folder


def measure(
    osm_path: Path, image_dir: Path, cache: Path, workers: int, batches: int
) -> dict[str, float]:
    """Iterate the loader in this process and return its peak memory.

    Args:
        osm_path: the tiled GeoParquet.
        image_dir: the image folder.
        cache: the OSM store cache folder.
        workers: DataLoader workers.
        batches: batches iterated.

    Returns:
        The measurements.
    """
    from torchgeo_geolink.datasets import (
        OSMDataset,
        WindowedRasterDataset,
        collate_geolink,
    )
    from torchgeo_geolink.samplers import OSMRandomPatchSampler

    class Image(WindowedRasterDataset):
        filename_glob = '*.tif'

    torch.set_num_threads(1)
    warnings.simplefilter('ignore')
    start = time.perf_counter()
    dataset = Image(image_dir) & OSMDataset(osm_path, cache_dir=cache, progress=False)
    setup = time.perf_counter() - start
    sampler = OSMRandomPatchSampler(
        dataset, size=SIZE, length=BATCH * batches, generator=0
    )
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_geolink,
        persistent_workers=False,
    )
    me = os.getpid()
    peak_total = peak_main = 0
    nodes = 0
    start = time.perf_counter()
    for batch in loader:
        graph = batch['graph']
        nodes += sum(int(graph[t].num_nodes) for t in graph.node_types)
        main = pss(me)
        total = main + sum(pss(c) for c in children(me))
        peak_total, peak_main = max(peak_total, total), max(peak_main, main)
    rate = BATCH * batches / (time.perf_counter() - start)
    return {
        'setup_s': setup,
        'peak_pss': peak_total,
        'peak_main_pss': peak_main,
        'samples_per_s': rate,
        'nodes_per_sample': nodes / (BATCH * batches),
    }


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--copies', type=int, default=40)
    parser.add_argument('--batches', type=int, default=40)
    parser.add_argument('--quick', action='store_true', help='2 copies, 10 batches')
    parser.add_argument('--measure', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        osm_path, image_dir, cache, workers = args.measure
        result = measure(
            Path(osm_path), Path(image_dir), Path(cache), int(workers), args.batches
        )
        print(json.dumps(result))
        return
    if args.quick:
        args.copies, args.batches = 2, 10
    header('Paired samples: memory with 0, 1 and 2 DataLoader workers')
    workdir = Path(tempfile.gettempdir()) / 'geolink_osm_store_bench'
    osm_path = tiled_file(args.copies, workdir)
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = write_image(osm_path, Path(tmp))
        cache = Path(tmp) / 'cache'
        results = {}
        # The first run builds the cache; every measured run then maps it, as the
        # processes of a training job do after the first.
        for workers in ('build', 0, 1, 2):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    '--batches',
                    str(args.batches),
                    '--measure',
                    str(osm_path),
                    str(image_dir),
                    str(cache),
                    '0' if workers == 'build' else str(workers),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results[workers] = json.loads(out.stdout.strip().splitlines()[-1])
    one = results[1]['peak_pss']
    rows = []
    for workers in (0, 1, 2):
        r = results[workers]
        rows.append(
            [
                workers,
                r['setup_s'],
                r['peak_pss'] / 2**30,
                r['peak_main_pss'] / 2**30,
                r['peak_pss'] / one,
                r['samples_per_s'],
                r['nodes_per_sample'],
            ]
        )
    print_table(
        rows,
        [
            'workers',
            'setup s (cache mapped)',
            'peak PSS GiB (all processes)',
            'peak PSS GiB (main)',
            'vs 1 worker',
            'samples/s',
            'OSM nodes/sample',
        ],
    )
    print(
        f'{args.copies} copies of the extract; {args.batches} batches of {BATCH}; '
        f'building the cache took {results["build"]["setup_s"]:.1f} s'
    )


if __name__ == '__main__':
    main()
