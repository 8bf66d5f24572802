# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Short real pretraining runs: baseline row, same-seed reruns, saved normalization."""

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from pyproj import CRS
from torch import nn

from torchgeo_geolink.datamodules import GeoLinkDataModule
from torchgeo_geolink.tasks import GeoLinkPretrain

CRS_ = CRS.from_epsg(32635)
ORIGIN = (385_000.0, 6_672_000.0)
MEAN, STD = [20.0, 21.0, 22.0], [50.0, 51.0, 52.0]
TINY: dict[str, Any] = {
    'model': 'vit_tiny_patch16_224',
    'img_size': 32,
    'warmup_steps': 1,
    'decoder_embed_dim': 32,
    'decoder_depth': 1,
    'decoder_num_heads': 2,
    'osm_hidden_channels': 32,
}


@pytest.fixture
def city(tmp_path: Path, write_raster: Any, make_city: Any) -> dict[str, str]:
    x0, y0 = ORIGIN
    frame = make_city(origin=ORIGIN, crs=CRS_)
    buildings = [(g, 1) for g in frame.geometry[frame['building'].notna()]]
    image = write_raster(
        tmp_path / 'image.tif', (x0, y0, x0 + 200, y0 + 200), CRS_, burn=buildings
    )
    osm = tmp_path / 'city.gpkg'
    frame.to_file(osm, driver='GPKG')
    return {'image_paths': str(image), 'osm_paths': str(osm)}


def datamodule(city: dict[str, str], **kwargs: Any) -> GeoLinkDataModule:
    args: dict[str, Any] = {
        'patch_size': 32,
        'batch_size': 2,
        'length': 4,
        'val_fraction': 0.3,
        'test_fraction': 0.0,
        **city,
    }
    return GeoLinkDataModule(**{**args, **kwargs})


def fit(city: dict[str, str], root: Path, epochs: int = 2) -> tuple[pd.DataFrame, Path]:
    seed_everything(0)
    task = GeoLinkPretrain(**TINY)
    checkpoint = ModelCheckpoint(dirpath=root / 'ckpt', save_last=True)
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=epochs,
        logger=CSVLogger(root, name='run'),
        callbacks=[checkpoint],
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        limit_val_batches=2,
    )
    trainer.fit(task, datamodule=datamodule(city, mean=MEAN, std=STD))
    assert trainer.logger is not None and trainer.logger.log_dir is not None
    metrics = pd.read_csv(Path(trainer.logger.log_dir) / 'metrics.csv')
    return metrics, root / 'ckpt' / 'last.ckpt'


@pytest.fixture
def runs(
    city: dict[str, str], tmp_path: Path
) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    first, last = fit(city, tmp_path / 'a')
    second, _ = fit(city, tmp_path / 'b')
    return first, second, last


def test_baseline_row_and_same_seed_rerun(
    runs: tuple[pd.DataFrame, pd.DataFrame, Path],
) -> None:
    first, second, _ = runs
    val = first.dropna(subset=['val_loss'])
    # one validation before training (step 0) and one per epoch
    assert len(val) == 3
    assert val['step'].iloc[0] == 0
    train = first.dropna(subset=['train_loss_step'])
    assert train['step'].min() >= 0 and val.index[0] < train.index[0]
    assert {'val_retrieval_top1', 'val_retrieval_chance'} <= set(val.columns)
    # training changes the validation loss, so the baseline row is not a copy of a later
    # one
    assert val['val_loss'].iloc[0] != val['val_loss'].iloc[-1]
    pd.testing.assert_frame_equal(first, second)


def test_no_baseline_when_disabled(city: dict[str, str], tmp_path: Path) -> None:
    seed_everything(0)
    task = GeoLinkPretrain(**TINY, baseline_validation=False)
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        logger=CSVLogger(tmp_path, name='run'),
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=2,
    )
    trainer.fit(task, datamodule=datamodule(city))
    assert trainer.logger is not None and trainer.logger.log_dir is not None
    metrics = pd.read_csv(Path(trainer.logger.log_dir) / 'metrics.csv')
    assert len(metrics.dropna(subset=['val_loss'])) == 1


def test_normalization_round_trips_through_checkpoint(
    city: dict[str, str], tmp_path: Path
) -> None:
    _, last = fit(city, tmp_path, epochs=1)
    saved = torch.load(last, map_location='cpu', weights_only=False)
    assert saved['hyper_parameters']['mean'] == pytest.approx(MEAN)
    assert saved['hyper_parameters']['std'] == pytest.approx(STD)

    task = GeoLinkPretrain.load_from_checkpoint(last)
    dm = datamodule(
        city
    )  # left at its defaults: the checkpoint's statistics are imposed
    Trainer(accelerator='cpu', logger=False, enable_progress_bar=False).validate(
        task, datamodule=dm
    )
    assert dm.mean.tolist() == pytest.approx(MEAN)
    assert dm.std.tolist() == pytest.approx(STD)

    explicit = datamodule(city, mean=[0.0] * 3, std=[1.0] * 3)
    with pytest.warns(UserWarning, match='trained with mean'):
        Trainer(accelerator='cpu', logger=False, enable_progress_bar=False).validate(
            task, datamodule=explicit
        )
    assert explicit.mean.tolist() == [0.0] * 3


class _Mark(nn.Module):
    """A training augmentation that is easy to recognize: every pixel becomes 7."""

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch['image'] = torch.full_like(batch['image'], 7.0)
        return batch


class _ValImages(Callback):
    def __init__(self) -> None:
        self.marked: list[bool] = []

    def on_validation_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.marked.append(bool((batch['image'] == 7.0).all()))


def test_baseline_validation_uses_validation_transforms(
    city: dict[str, str], tmp_path: Path
) -> None:
    seed_everything(0)
    dm = datamodule(city)
    dm.train_aug = _Mark()
    seen = _ValImages()
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        callbacks=[seen],
    )
    trainer.fit(GeoLinkPretrain(**TINY), datamodule=dm)
    # the baseline validation and the end-of-epoch one, both with plain images
    assert seen.marked == [False, False]
