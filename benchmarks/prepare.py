# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Throughput of ``prepare`` on Ray Data, and reading shards vs building on the fly.

Tiles of 224 x 224 m (3-band GeoTIFFs at 1 m, UTM 35N) on a grid over the shipped
Helsinki extract (a dense city center: a few hundred OSM nodes per tile) are prepared
twice, on a fresh local Ray runtime with 1 and with 2 workers (hashing tag encoder, so
the text model is not part of the time). Reported per run: the wall time of the shard
step and the tiles per second per core from the shard tasks' own times (graph build +
tag lookup + writing, without Ray's worker start-up), then the projection of that rate
to GeoLink's 1.27 M pretraining pairs. Last, one process reads the prepared training
split (graphs only, and with images) with litdata and, for comparison, builds the same
tiles' graphs on the fly (clip + :class:`~torchgeo_geolink.osm.OSMGraphBuilder` per
tile, as a data loader without a prepared corpus would); the corpus is also prepared
with ``embeddings='table'`` (node embeddings recomputed from the tag table on reading)
to compare its size and reading rate.

Usage: ``python benchmarks/prepare.py [--tiles 90] [--tiles-per-shard 8] [--quick]``
"""

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import shapely
import torch
from rasterio.transform import from_origin

from torchgeo_geolink.osm import HashingTagEncoder, OSMGraphBuilder, tags_from_frame
from torchgeo_geolink.prepare import clip_to_tile, prepare

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, print_table

PBF = (
    Path(__file__).resolve().parents[1]
    / 'torchgeo_geolink'
    / 'data'
    / 'helsinki.osm.pbf'
)
SIDE = 224
PAPER_TILES = 1_270_000


def write_tiles(root: Path, count: int) -> Path:
    """Write up to ``count`` half-overlapping GeoTIFF tiles; return their folder."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        frames = [
            pyogrio.read_dataframe(PBF, layer=layer, on_invalid='fix')
            for layer in ('points', 'lines', 'multipolygons')
        ]
    xmin, ymin, xmax, ymax = (
        gpd.GeoSeries(pd.concat([f.geometry for f in frames]), crs=4326)
        .to_crs(32635)
        .total_bounds
    )
    stride = SIDE / 2
    columns = int((xmax - xmin - SIDE) // stride) + 1
    count = min(count, columns * (int((ymax - ymin - SIDE) // stride) + 1))
    rng = np.random.default_rng(0)
    folder = root / 'img'
    folder.mkdir(parents=True)
    for k in range(count):
        left = xmin + (k % columns) * stride
        top = ymax - (k // columns) * stride
        data = rng.integers(0, 255, (3, SIDE, SIDE), dtype=np.uint8)
        profile = {
            'driver': 'GTiff',
            'width': SIDE,
            'height': SIDE,
            'count': 3,
            'dtype': 'uint8',
            'crs': 'EPSG:32635',
        }
        with rasterio.open(
            folder / f'tile_{k:05d}.tif',
            'w',
            transform=from_origin(left, top, 1, 1),
            **profile,
        ) as dst:
            dst.write(data)
    return folder


def per_core_rate(output: Path) -> float:
    """Tiles per second per core from the shard tasks' own times."""
    markers = [json.loads(p.read_text()) for p in (output / 'shards').glob('*.json')]
    tiles = sum(sum(m['tiles'].values()) for m in markers)
    return tiles / sum(m['seconds'] for m in markers)


def read_rate(output: Path, images: bool) -> tuple[int, float]:
    """Samples per second of one process streaming the training split."""
    from litdata import StreamingDataLoader

    from torchgeo_geolink.datasets import GeoLinkStreamingTiles

    ds = GeoLinkStreamingTiles(output, 'train', images=images)
    loader = StreamingDataLoader(ds, batch_size=1, collate_fn=lambda b: b)
    start = time.perf_counter()
    count = sum(len(batch) for batch in loader)
    return count, count / (time.perf_counter() - start)


def build_rate(tiles: Path, limit: int) -> float:
    """Tiles per second of clipping and building graphs in process."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        frames = [
            pyogrio.read_dataframe(PBF, layer=layer, on_invalid='fix')
            for layer in ('points', 'lines', 'multipolygons')
        ]
    tags = [t for f in frames for t in tags_from_frame(f)]
    geoms = np.concatenate([f.geometry.to_numpy() for f in frames])
    keep = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    features = gpd.GeoDataFrame(
        {'tags': [t for t, k in zip(tags, keep, strict=True) if k]},
        geometry=shapely.make_valid(shapely.force_2d(geoms[keep])),
        crs=4326,
    ).to_crs(32635)
    tree = shapely.STRtree(features.geometry.to_numpy())
    builder = OSMGraphBuilder(HashingTagEncoder(), errors='drop')
    boxes = []
    for path in sorted(tiles.glob('*.tif'))[:limit]:
        with rasterio.open(path) as src:
            boxes.append(tuple(src.bounds))
    builder(clip_to_tile(features, boxes[0], tree)[['tags', 'geometry']], boxes[0])
    start = time.perf_counter()
    for box in boxes:
        builder(clip_to_tile(features, box, tree)[['tags', 'geometry']], box)
    return len(boxes) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--tiles', type=int, default=90, help='at most 91 fit')
    parser.add_argument('--tiles-per-shard', type=int, default=8)
    parser.add_argument('--quick', action='store_true', help='16 tiles, 4 per shard')
    args = parser.parse_args()
    if args.quick:
        args.tiles, args.tiles_per_shard = 16, 4
    torch.set_num_threads(1)
    os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')
    header(
        'prepare: exact GeoLink graphs per tile on Ray Data; reading shards vs building on the fly'
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiles = write_tiles(root, args.tiles)
        outputs = {}
        for workers in (1, 2):
            out = root / f'corpus-{workers}'
            start = time.perf_counter()
            report = prepare(
                tiles,
                PBF,
                out,
                tiles_per_shard=args.tiles_per_shard,
                num_workers=workers,
                val_fraction=0.0,
                progress=False,
            )
            total = time.perf_counter() - start
            shards = report.seconds['shards']
            rate = per_core_rate(out)
            rows.append(
                (
                    workers,
                    report.tiles,
                    total,
                    report.seconds['stage'],
                    shards,
                    report.tiles / shards,
                    rate,
                    PAPER_TILES / rate / 3600,
                )
            )
            outputs[workers] = out
        graphs_count, graphs_rate = read_rate(outputs[2], images=False)
        _, images_rate = read_rate(outputs[2], images=True)
        # The same corpus with node embeddings stored as tag-table rows (built in
        # process, no Ray).
        compact = root / 'corpus-table'
        prepare(
            tiles,
            PBF,
            compact,
            tiles_per_shard=args.tiles_per_shard,
            num_workers=0,
            val_fraction=0.0,
            embeddings='table',
            progress=False,
        )
        _, table_rate = read_rate(compact, images=False)
        compact_size = sum(
            p.stat().st_size for p in (compact / 'train').glob('chunk-*')
        )
        built = build_rate(tiles, min(args.tiles, 32))
        nodes = []
        from torchgeo_geolink.datasets import GeoLinkStreamingTiles

        ds = GeoLinkStreamingTiles(outputs[2], 'train', images=False)
        for i in range(len(ds)):
            sample = ds[i]
            nodes.append(sum(len(v) for k, v in sample.items() if k.endswith('_id')))
        size = sum(p.stat().st_size for p in (outputs[2] / 'train').glob('chunk-*'))
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(
        f'{rows[0][1]} tiles of {SIDE} x {SIDE} m, {args.tiles_per_shard} per shard; mean OSM nodes per tile: '
        f'{np.mean(nodes):.0f}; shards: {size / len(nodes) / 1e3:.0f} kB per tile (float32 embeddings), '
        f'{compact_size / len(nodes) / 1e3:.0f} kB with embeddings=table; '
        f'1-min load average at the end: {load:.2f}'
    )
    print()
    print_table(
        rows,
        (
            'Ray workers',
            'tiles',
            'prepare wall s',
            'stage s',
            'shards wall s',
            'tiles/s (shards wall)',
            'tiles/s per core (task time)',
            'core-hours for 1.27 M tiles',
        ),
    )
    print()
    print_table(
        [
            ('stream prepared shards, graphs only', graphs_rate, graphs_rate / built),
            (
                'stream shards with embeddings=table, graphs only',
                table_rate,
                table_rate / built,
            ),
            (
                'stream prepared shards, graphs + GeoTIFF',
                images_rate,
                images_rate / built,
            ),
            ('build on the fly (clip + OSMGraphBuilder)', built, 1.0),
        ],
        ('one process', 'tiles/s', 'vs building'),
    )
    print()
    best = rows[-1][6]
    print(
        f'{graphs_count} training tiles read back. At {best:.1f} tiles/s per core, 1.27 M tiles take '
        f'{PAPER_TILES / best / 3600:.0f} core-hours: {PAPER_TILES / best / 3600 / 64:.1f} h on 64 cores.'
    )


if __name__ == '__main__':
    main()
