# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from tests.tasks.batch_testing import BatchList, make_batch
from torchgeo_geolink.errors import CheckpointError
from torchgeo_geolink.tasks import GeoLinkPretrain

TINY: dict[str, Any] = {
    'model': 'vit_tiny_patch16_224',
    'img_size': 32,
    'warmup_steps': 1,
    'lr': 1e-3,
    'decoder_embed_dim': 32,
    'decoder_depth': 1,
    'decoder_num_heads': 2,
}

WARMUP2: dict[str, Any] = {**TINY, 'warmup_steps': 2}
NARROW: dict[str, Any] = {**TINY, 'osm_hidden_channels': 64}


class StopAfterFirstEpoch(Callback):
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.should_stop = True


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        assert isinstance(outputs, dict)
        self.losses.append((trainer.global_step, float(outputs['loss'])))


def loaders(shuffle: bool = True) -> tuple[DataLoader, DataLoader]:
    train = DataLoader(BatchList(2, seed=0), batch_size=None, shuffle=shuffle)
    val = DataLoader(BatchList(1, seed=100), batch_size=None)
    return train, val


def trainer(tmp_path: Path, epochs: int, **kwargs: object) -> Trainer:
    return Trainer(
        accelerator='cpu',
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,  # ty: ignore[invalid-argument-type]
    )


def test_fit_logs_everything(tmp_path: Path) -> None:
    seed_everything(0)
    task = GeoLinkPretrain(**TINY)
    t = trainer(tmp_path, 1, enable_checkpointing=False)
    t.fit(task, *loaders())
    metrics = t.callback_metrics
    for name in (
        'train_loss',
        'train_loss_rec',
        'train_loss_cont',
        'train_loss_node',
        'train_psnr',
        'train_ssl_std',
        'val_loss',
        'val_loss_rec',
        'val_psnr',
        'val_retrieval_top1',
        'val_retrieval_chance',
    ):
        assert name in metrics, name
        assert torch.isfinite(metrics[name]), name
    # every batch holds one window without OSM: 2 batches, and a val pool of 3 windows
    # with OSM
    assert metrics['train_windows_without_osm'] == 2
    assert metrics['val_retrieval_chance'] == pytest.approx(1 / 3)
    total = (
        metrics['train_loss_rec']
        + 0.01 * metrics['train_loss_cont']
        + 0.01 * metrics['train_loss_node']
    )
    assert metrics['train_loss'] == pytest.approx(float(total), rel=1e-4)


def test_schedule_warmup_then_decay(tmp_path: Path) -> None:
    task = GeoLinkPretrain(**WARMUP2)
    lrs: list[float] = []

    class LR(Callback):
        def on_train_batch_start(
            self,
            trainer: Trainer,
            pl_module: LightningModule,
            batch: Any,
            batch_idx: int,
        ) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]['lr'])

    t = trainer(
        tmp_path, 2, enable_checkpointing=False, callbacks=[LR()], limit_val_batches=0
    )
    t.fit(task, loaders()[0])
    # 4 steps: linear warmup over 2, then half a cosine over the remaining 2
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 5e-4])
    groups = t.optimizers[0].param_groups
    assert groups[0]['weight_decay'] == 0.05
    assert groups[1]['weight_decay'] == 0
    assert t.optimizers[0].defaults['betas'] == (0.9, 0.95)


@pytest.mark.slow
def test_resume_continues_identically(tmp_path: Path) -> None:
    seed_everything(0)
    full = LossRecorder()
    trainer(tmp_path / 'full', 2, enable_checkpointing=False, callbacks=[full]).fit(
        GeoLinkPretrain(**TINY), *loaders()
    )

    seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / 'ckpt', save_last=True)
    first = LossRecorder()
    trainer(tmp_path / 'a', 2, callbacks=[first, ckpt, StopAfterFirstEpoch()]).fit(
        GeoLinkPretrain(**TINY), *loaders()
    )
    assert first.losses == full.losses[:2]

    seed_everything(0)
    resumed = LossRecorder()
    trainer(tmp_path / 'b', 2, callbacks=[resumed]).fit(
        GeoLinkPretrain(**TINY),
        *loaders(),
        ckpt_path=str(tmp_path / 'ckpt' / 'last.ckpt'),
    )
    assert [s for s, _ in resumed.losses] == [s for s, _ in full.losses[2:]]
    assert [v for _, v in resumed.losses] == pytest.approx(
        [v for _, v in full.losses[2:]], rel=1e-5
    )


def test_weights_from_lightning_checkpoint(tmp_path: Path) -> None:
    seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    task = GeoLinkPretrain(**TINY)
    trainer(tmp_path, 1, callbacks=[ckpt], limit_val_batches=0).fit(task, loaders()[0])
    path = tmp_path / 'last.ckpt'
    seed_everything(1)
    loaded = GeoLinkPretrain(**TINY, weights=str(path))
    for (name, a), b in zip(
        task.model.state_dict().items(), loaded.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert 'weights' not in loaded.hparams


def test_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match='not found'):
        GeoLinkPretrain(**TINY, weights=str(tmp_path / 'missing.ckpt'))
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='cannot read'):
        GeoLinkPretrain(**TINY, weights=str(bad))


def test_wrong_architecture(tmp_path: Path) -> None:
    seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer(
        tmp_path, 1, callbacks=[ckpt], limit_val_batches=0, limit_train_batches=1
    ).fit(GeoLinkPretrain(**TINY), loaders()[0])
    with pytest.raises(CheckpointError, match='do not fit'):
        GeoLinkPretrain(**NARROW, weights=str(tmp_path / 'last.ckpt'))


def test_batch_without_osm() -> None:
    task = GeoLinkPretrain(**TINY)
    batch = make_batch(3, empty=(0, 1, 2))
    out = task.model(batch['image'], batch['graph'])
    assert torch.isfinite(out.loss)
    assert not out.has_osm.any()


class FigureSink:
    """The part of a TensorBoard SummaryWriter the tasks use: it keeps the figures."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {}

    def add_figure(self, tag: str, figure: Any, global_step: int | None = None) -> None:
        self.figures[tag] = figure


class FigureLogger(Logger):
    """A Lightning logger whose experiment accepts figures, like TensorBoard's."""

    def __init__(self) -> None:
        super().__init__()
        self.sink = FigureSink()

    @property
    def name(self) -> str:
        return 'figures'

    @property
    def version(self) -> int:
        return 0

    @property
    def experiment(self) -> FigureSink:
        return self.sink

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass


def test_validation_figures_logged(tmp_path: Path) -> None:
    seed_everything(0)
    task = GeoLinkPretrain(**TINY)
    logger = FigureLogger()
    t = Trainer(
        accelerator='cpu',
        max_epochs=1,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    t.fit(task, *loaders())
    assert set(logger.sink.figures) == {'image/0'}
    fig = logger.sink.figures['image/0']
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ['Image and OSM graph', 'MAE reconstruction']
    # the graph panel draws the first window's nodes, the reconstruction panel an image
    # of the input's size
    assert fig.axes[0].collections
    size = TINY['img_size']
    assert fig.axes[1].images[0].get_array().shape[:2] == (size, size)
