# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLinkStreamingTiles: prepared shards, streamed per epoch over two DDP ranks."""

import json
import socket
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pyproj import CRS, Transformer
from torch_geometric.data import Batch

from tests.conftest import HELSINKI_PBF, write_geotiff
from torchgeo_geolink.errors import PreparedDataError
from torchgeo_geolink.osm import HashingTagEncoder

litdata = pytest.importorskip('litdata')

from torchgeo_geolink.datamodules import GeoLinkStreamingTilesDataModule
from torchgeo_geolink.datasets import GeoLinkStreamingTiles
from torchgeo_geolink.prepare import prepare

SIDE = 60.0
TRAIN = 8


@pytest.fixture(scope='module')
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten Helsinki GeoTIFFs in a GeoParquet index (8 train, 2 val), one per shard."""
    root = tmp_path_factory.mktemp('streaming')
    x0, y0 = Transformer.from_crs('EPSG:4326', 'EPSG:32635', always_xy=True).transform(
        24.9420, 60.1690
    )
    names, images, splits, boxes = [], [], [], []
    for k in range(TRAIN + 2):
        box = (x0 + k * SIDE, y0, x0 + (k + 1) * SIDE, y0 + SIDE)
        path = write_geotiff(
            root / 'img' / f'tile_{k}.tif', box, CRS.from_epsg(32635), res=2.0
        )
        names.append(f'tile_{k}')
        images.append(f'img/{path.name}')
        splits.append('train' if k < TRAIN else 'val')
        boxes.append(shapely.box(*box))
    gpd.GeoDataFrame(
        {'name': names, 'image': images, 'split': splits},
        geometry=boxes,
        crs='EPSG:32635',
    ).to_parquet(root / 'tiles.parquet')
    out = root / 'corpus'
    report = prepare(
        root / 'tiles.parquet',
        HELSINKI_PBF,
        out,
        tiles_per_shard=1,
        num_workers=0,
        progress=False,
    )
    assert report.split_sizes == {'train': TRAIN, 'val': 2}
    return out


def names_of(batch: list[dict[str, object]]) -> list[str]:
    return [str(sample['name']) for sample in batch]


def epochs(root: Path, count: int, workers: int = 0, **kwargs: Any) -> list[list[str]]:
    ds = GeoLinkStreamingTiles(root, 'train', images=False, metadata=True, **kwargs)
    loader = litdata.StreamingDataLoader(
        ds, batch_size=2, num_workers=workers, collate_fn=names_of
    )
    return [[n for batch in loader for n in batch] for _ in range(count)]


def test_every_sample_once_per_epoch_deterministic_shuffle(corpus: Path) -> None:
    first = epochs(corpus, 3, seed=7)
    everything = sorted(f'tile_{k}' for k in range(TRAIN))
    for order in first:
        assert sorted(order) == everything
    assert len({tuple(order) for order in first}) > 1  # reshuffled per epoch
    assert epochs(corpus, 3, seed=7) == first  # the same seed gives the same epochs
    assert (
        epochs(corpus, 1, seed=8)[0] != first[0]
        or epochs(corpus, 2, seed=8)[1] != first[1]
    )
    unshuffled = epochs(corpus, 2, shuffle=False)
    assert unshuffled[0] == unshuffled[1] == everything
    # DataLoader workers share the chunks out too: each sample still comes once per
    # epoch.
    for order in epochs(corpus, 2, workers=2, seed=7):
        assert sorted(order) == everything


def _rank(rank: int, port: int, root: str, out: str) -> None:
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2
    )
    try:
        ds = GeoLinkStreamingTiles(root, 'train', images=False, metadata=True, seed=3)
        loader = litdata.StreamingDataLoader(ds, batch_size=1, collate_fn=names_of)
        seen = [[n for batch in loader for n in batch] for _ in range(2)]
        Path(out, f'{rank}.json').write_text(json.dumps(seen))
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_each_epoch(corpus: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    # Forked ranks (a real gloo process group) start without re-importing the test's
    # modules.
    mp.start_processes(
        _rank,
        args=(port, str(corpus), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method='fork',
    )
    ranks = [json.loads((tmp_path / f'{r}.json').read_text()) for r in range(2)]
    everything = sorted(f'tile_{k}' for k in range(TRAIN))
    for epoch in range(2):
        a, b = ranks[0][epoch], ranks[1][epoch]
        assert len(a) == len(b) == TRAIN // 2
        assert not set(a) & set(b)
        assert sorted(a + b) == everything
    assert (
        ranks[0][0] + ranks[1][0] != ranks[0][1] + ranks[1][1]
    )  # reshuffled per epoch


def test_samples_and_datamodule(corpus: Path) -> None:
    ds = GeoLinkStreamingTiles(corpus, 'val', size=16)
    assert len(ds) == 2
    sample = ds[0]
    assert sample['image'].shape == (3, 16, 16)
    assert sample['image'].dtype == torch.float32
    assert sample['osm_bounds'].dtype == torch.float64
    assert 'name' not in sample
    dm = GeoLinkStreamingTilesDataModule(str(corpus), batch_size=4, seed=1)
    assert dm.tag_encoder_identity == HashingTagEncoder().identity
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert batch['image'].shape == (4, 3, 30, 30)
    assert isinstance(batch['graph'], Batch)
    assert batch['graph'].num_graphs == 4
    assert batch['graph']['polygon'].x.shape[1] == 512
    val = list(dm.val_dataloader())
    assert sum(b['image'].shape[0] for b in val) == 2


def test_unfinished_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PreparedDataError, match=r'no index\.json'):
        GeoLinkStreamingTiles(tmp_path, 'train')


@pytest.mark.slow
def test_pretraining_fits_on_the_streamed_corpus(corpus: Path, tmp_path: Path) -> None:
    from lightning.pytorch import Trainer, seed_everything

    from torchgeo_geolink.tasks import GeoLinkPretrain

    seed_everything(0)
    dm = GeoLinkStreamingTilesDataModule(str(corpus), batch_size=4, size=32, seed=0)
    task = GeoLinkPretrain(
        model='vit_tiny_patch16_224',
        img_size=32,
        warmup_steps=1,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2,
    )
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == TRAIN // 4
    assert torch.isfinite(trainer.callback_metrics['train_loss'])
