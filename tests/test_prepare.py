# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""torchgeo_geolink.prepare: exact tile graphs on a local Ray, shards, resume."""

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
import torch
from pyproj import CRS, Transformer
from torch import Tensor

from tests.conftest import HELSINKI_PBF, write_geotiff
from torchgeo_geolink.datasets.utils import graph_to_sample
from torchgeo_geolink.errors import PreparedDataError, TileError
from torchgeo_geolink.osm import HashingTagEncoder, OSMGraphBuilder, tags_from_frame
from torchgeo_geolink.prepare import (
    TagTable,
    clip_to_tile,
    main,
    prepare,
    read_tile_index,
)

ray = pytest.importorskip('ray')
pytest.importorskip('litdata')

from torchgeo_geolink.datasets.streaming import GeoLinkStreamingTiles

UTM = CRS.from_epsg(32635)
#: Tiles of the Helsinki extract: six 100 m GeoTIFFs in UTM 35N and two lon/lat boxes
#: (SkyScript-like).
SIDE = 100.0


@pytest.fixture(scope='module')
def ray_runtime() -> Iterator[None]:
    """A small local Ray runtime for the module (2 CPUs, no dashboard, small store)."""
    saved = dict(os.environ)
    os.environ.update(
        {
            'RAY_USAGE_STATS_ENABLED': '0',
            'RAY_DEDUP_LOGS': '0',
            'RAY_DATA_DISABLE_PROGRESS_BARS': '1',
        }
    )
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        logging_level='warning',
        log_to_driver=False,
    )
    yield
    ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope='module')
def tile_index(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp('tiles')
    to_utm = Transformer.from_crs('EPSG:4326', UTM, always_xy=True)
    x0, y0 = to_utm.transform(24.9405, 60.1675)
    for i in range(3):
        for j in range(2):
            box = (
                x0 + i * SIDE,
                y0 + j * SIDE,
                x0 + (i + 1) * SIDE,
                y0 + (j + 1) * SIDE,
            )
            write_geotiff(root / 'img' / f'utm_{i}{j}.tif', box, UTM, res=10.0)
    boxes = [
        shapely.box(24.9440, 60.1700, 24.9458, 60.1709),
        shapely.box(24.9480, 60.1720, 24.9498, 60.1729),
    ]
    sky = gpd.GeoDataFrame(
        {'name': ['sky_0', 'sky_1'], 'split': ['train', 'val']},
        geometry=boxes,
        crs='EPSG:4326',
    )
    sky.to_parquet(root / 'sky.parquet')
    return [root / 'img', root / 'sky.parquet']


@pytest.fixture(scope='module')
def prepared(
    ray_runtime: None, tile_index: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp('corpus') / 'run'
    report = prepare(
        tile_index,
        HELSINKI_PBF,
        out,
        tiles_per_shard=3,
        num_workers=2,
        val_fraction=0.0,
        progress=False,
    )
    assert report.tiles == 8
    assert report.shards == 3
    assert report.shards_built == 3
    assert report.split_sizes == {'train': 7, 'val': 1}
    assert report.tag_strings == report.tag_strings_encoded > 100
    return out


def reference_features() -> gpd.GeoDataFrame:
    """The extract's features, read with pyogrio (no staging, no partitioning)."""
    frames = [
        pyogrio.read_dataframe(HELSINKI_PBF, layer=layer, on_invalid='fix')
        for layer in ('points', 'lines', 'multipolygons')
    ]
    tags = [t for f in frames for t in tags_from_frame(f)]
    geoms = np.concatenate([f.geometry.to_numpy() for f in frames])
    keep = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    geoms = shapely.force_2d(geoms[keep])
    bad = ~shapely.is_valid(geoms)
    geoms[bad] = shapely.make_valid(geoms[bad])
    tags = [t for t, k in zip(tags, keep, strict=True) if k]
    return gpd.GeoDataFrame({'tags': tags}, geometry=geoms, crs='EPSG:4326')


def in_crs(features: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    if CRS.from_user_input(crs) == features.crs:
        return features
    out = features.to_crs(crs)
    geoms = out.geometry.to_numpy().copy()
    bad = ~shapely.is_valid(geoms)
    geoms[bad] = shapely.make_valid(geoms[bad])
    return gpd.GeoDataFrame(
        {'tags': out['tags']},
        geometry=gpd.GeoSeries(geoms, index=out.index, crs=out.crs),
        crs=out.crs,
    )


def stored(root: Path) -> dict[str, dict[str, Tensor]]:
    samples = {}
    for split in ('train', 'val'):
        ds = GeoLinkStreamingTiles(root, split, images=False, metadata=True)
        for i in range(len(ds)):
            sample = ds[i]
            samples[str(sample.pop('name'))] = sample
    return samples


def assert_same(
    a: dict[str, Tensor], b: dict[str, Tensor], keys: Sequence[str]
) -> None:
    for key in keys:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def test_prepare_gives_builder_graphs(prepared: Path, tile_index: list[Path]) -> None:
    plan = read_tile_index(tile_index, val_fraction=0.0)
    samples = stored(prepared)
    assert sorted(samples) == sorted(plan['name'])
    features = reference_features()
    builder = OSMGraphBuilder(HashingTagEncoder(), errors='drop')
    nodes = edges = 0
    for tile in plan.itertuples(index=False):
        bounds = (tile.xmin, tile.ymin, tile.xmax, tile.ymax)
        frame = clip_to_tile(in_crs(features, tile.crs), bounds)
        expected = graph_to_sample(builder(frame[['tags', 'geometry']], bounds))
        got = samples[tile.name]
        assert got['crs'] == tile.crs
        assert torch.equal(got['osm_bounds'], torch.tensor(bounds, dtype=torch.float64))
        assert_same(got, expected, list(expected))
        nodes += sum(len(expected[f'osm_{t}_x']) for t in ('polygon', 'line', 'point'))
        edges += sum(
            v.shape[1] for k, v in expected.items() if k.endswith('edge_index')
        )
    assert nodes > 200
    assert edges > 500
    # The lon/lat tiles are built in degrees, the GeoTIFF tiles in meters.
    assert set(plan['crs']) == {'EPSG:4326', 'EPSG:32635'}


def test_resume_builds_only_missing_shards(
    prepared: Path, tile_index: list[Path], tmp_path: Path
) -> None:
    run = tmp_path / 'run'
    shutil.copytree(prepared, run)
    before = stored(run)
    # Simulate a run interrupted before shard 1 finished: no marker, no chunks, no
    # merged index.
    (run / 'shards' / '000001.json').unlink()
    for split in ('train', 'val'):
        for path in (run / split).glob('chunk-1-*'):
            path.unlink()
        (run / split / '1.index.json').unlink(missing_ok=True)
        (run / split / 'index.json').unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (run / 'shards').glob('*.json')}
    report = prepare(
        tile_index,
        HELSINKI_PBF,
        run,
        tiles_per_shard=3,
        num_workers=2,
        val_fraction=0.0,
        progress=False,
    )
    assert (report.shards_built, report.shards_skipped) == (1, 2)
    assert report.tag_strings_encoded == 0
    assert {
        p.name: p.stat().st_mtime_ns
        for p in (run / 'shards').glob('*.json')
        if p.name in kept
    } == kept
    after = stored(run)
    assert sorted(after) == sorted(before)
    for name, sample in before.items():
        assert_same(after[name], sample, [k for k in sample if k.startswith('osm_')])


def test_table_embeddings_read_back_exactly(
    prepared: Path, tile_index: list[Path], tmp_path: Path
) -> None:
    report = prepare(
        tile_index,
        HELSINKI_PBF,
        tmp_path / 'run',
        tiles_per_shard=3,
        num_workers=2,
        val_fraction=0.0,
        embeddings='table',
        progress=False,
    )
    assert report.shards_built == 3
    full, compact = stored(prepared), stored(tmp_path / 'run')
    assert sorted(full) == sorted(compact)
    for name, sample in full.items():
        assert_same(compact[name], sample, [k for k in sample if k.startswith('osm_')])
    size = {
        root: sum(p.stat().st_size for p in (root / 'train').glob('chunk-*'))
        for root in (prepared, tmp_path / 'run')
    }
    assert size[tmp_path / 'run'] * 5 < size[prepared]  # the edge tables remain


def test_changed_settings_are_refused(prepared: Path, tile_index: list[Path]) -> None:
    with pytest.raises(PreparedDataError, match='tiles_per_shard'):
        prepare(
            tile_index,
            HELSINKI_PBF,
            prepared,
            tiles_per_shard=4,
            num_workers=0,
            val_fraction=0.0,
        )


def test_clip_to_tile_official_semantics() -> None:
    features = gpd.GeoDataFrame(
        {
            'tags': [
                {'building': 'yes'},  # inside: kept whole
                {'landuse': 'grass'},  # crosses the right edge: clipped
                {'landuse': 'forest'},  # only touches the left edge: no node
                {'highway': 'service'},  # crosses the box twice: two parts
                {'amenity': 'bench'},  # outside
            ]
        },
        geometry=[
            shapely.box(1, 1, 2, 2),
            shapely.box(8, 4, 12, 6),
            shapely.box(-3, 0, 0, 3),
            shapely.LineString([(2, -1), (2, 3), (3, 3), (3, -1), (5, -1), (5, 3)]),
            shapely.Point(20, 20),
        ],
        crs='EPSG:32635',
    )
    out = clip_to_tile(features, (0, 0, 10, 10))
    assert out['feature'].tolist() == [0, 1, 3, 3]
    assert out.geometry.iloc[0].equals(shapely.box(1, 1, 2, 2))
    assert out.geometry.iloc[1].equals(shapely.box(8, 4, 10, 6))
    assert [g.geom_type for g in out.geometry] == [
        'Polygon',
        'Polygon',
        'LineString',
        'LineString',
    ]
    assert out['tags'].tolist()[2] == {'highway': 'service'}
    assert out.crs == features.crs


class CountingEncoder(HashingTagEncoder):
    """The hashing encoder, counting the strings it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> Tensor:
        self.calls.append(len(texts))
        return super().encode(texts)


def test_tag_table_encodes_each_string_once(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    table, encoded = TagTable.write(
        tmp_path / 't', ['a:1', 'b:2', 'a:1'], encoder, tmp_path / 'cache'
    )
    assert (len(table), encoded, encoder.calls) == (2, 2, [2])
    table, encoded = TagTable.write(
        tmp_path / 't', ['b:2', 'c:3'], encoder, tmp_path / 'cache'
    )
    assert (len(table), encoded, encoder.calls) == (3, 1, [2, 1])
    # A new table for the same encoder is filled from the persistent cache, without
    # encoding.
    table, encoded = TagTable.write(
        tmp_path / 'u', ['a:1', 'c:3'], encoder, tmp_path / 'cache'
    )
    assert (encoded, encoder.calls) == (0, [2, 1])
    got = table.encoder().encode(['c:3', 'a:1'])
    assert torch.equal(got, HashingTagEncoder().encode(['c:3', 'a:1']))
    with pytest.raises(PreparedDataError, match="'z:9' is not in the tag table"):
        table.encoder().encode(['z:9'])
    with pytest.raises(PreparedDataError, match='was made by'):
        TagTable.write(tmp_path / 'u', ['a:1'], HashingTagEncoder(dim=64))


def test_tile_index_errors(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {'name': ['a', 'a']}, geometry=[shapely.box(0, 0, 1, 1)] * 2, crs='EPSG:32635'
    )
    frame.to_parquet(tmp_path / 'dup.parquet')
    with pytest.raises(TileError, match="'a' is used by more than one tile"):
        read_tile_index(tmp_path / 'dup.parquet')
    frame = gpd.pd.DataFrame(
        {'name': ['a'], 'xmin': [2.0], 'ymin': [0.0], 'xmax': [1.0], 'ymax': [1.0]}
    )
    frame.to_parquet(tmp_path / 'bad.parquet')
    with pytest.raises(TileError, match='declares no CRS'):
        read_tile_index(tmp_path / 'bad.parquet')
    with pytest.raises(TileError, match="tile 'a': invalid box"):
        read_tile_index(tmp_path / 'bad.parquet', crs='EPSG:4326')
    with pytest.raises(TileError, match='no such file'):
        read_tile_index(tmp_path / 'missing.parquet')


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd = gpd.pd
    x0, y0 = Transformer.from_crs('EPSG:4326', UTM, always_xy=True).transform(
        24.9405, 60.1675
    )
    pd.DataFrame(
        {'name': ['t0'], 'crs': ['EPSG:32635'], 'bbox': [[x0, y0, x0 + 50, y0 + 50]]}
    ).to_parquet(tmp_path / 'tiles.parquet')
    args = ['--tiles', str(tmp_path / 'tiles.parquet'), '--osm', str(HELSINKI_PBF),
            '--output', str(tmp_path / 'out'), '--num-workers', '0', '--val-fraction', '0', '--quiet']  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['tiles'], report['shards_built'], report['split_sizes']) == (
        1,
        1,
        {'train': 1},
    )
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)['shards_skipped'] == 1
