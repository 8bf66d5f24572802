# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""A resumed run sees the training windows of the uninterrupted run, and ends the same.

Real Lightning Trainer and :class:`~torchgeo_geolink.datamodules.GeoLinkDataModule` on
the demo data (demo imagery and the shipped Helsinki OSM extract, random training
windows drawn by :class:`~torchgeo_geolink.samplers.OSMRandomPatchSampler`, augmented on
the device), with a tiny model that uses images and graphs, dropout, and the tasks'
resumable randomness.
"""

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torchgeo.datasets import GeoDataset

from torchgeo_geolink.datamodules import GeoLinkDataModule
from torchgeo_geolink.errors import CheckpointError
from torchgeo_geolink.samplers import OSMRandomPatchSampler
from torchgeo_geolink.tasks.mixins import ResumableRandomnessMixin

#: Training batches per epoch (length / batch size).
BATCHES = 4


class TinyModel(ResumableRandomnessMixin):
    """A few weights trained on the images and graph node features, with dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.nodes = nn.Linear(32, 4)
        self.dropout = nn.Dropout(0.5)

    def _loss(self, batch: dict[str, Any]) -> Tensor:
        image = self.dropout(self.conv(batch['image'])).mean(dim=(0, 2, 3))
        graph = batch['graph']
        x = torch.cat([graph[t].x for t in graph.node_types if graph[t].num_nodes])
        return ((image - self.nodes(self.dropout(x)).mean(dim=0)) ** 2).sum()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log('train_loss', loss, batch_size=len(batch['image']))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log('val_loss', self._loss(batch), batch_size=len(batch['image']))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


@pytest.fixture(scope='module')
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, GeoDataset]:
    """The demo's folder and joined dataset, built once for all the datamodules."""
    root = str(tmp_path_factory.mktemp('demo'))
    dm = GeoLinkDataModule(root=root, tag_dim=32)
    dm.prepare_data()
    dm.setup('validate')
    assert dm.geo_dataset is not None
    return root, dm.geo_dataset


def datamodule(demo: tuple[str, GeoDataset], **kwargs: Any) -> GeoLinkDataModule:
    root, dataset = demo
    options: dict[str, Any] = {
        'root': root,
        'patch_size': 32,
        'batch_size': 2,
        'length': 2 * BATCHES,
        'val_fraction': 0.2,
        'test_fraction': 0.1,
        'tag_dim': 32,
        'seed': 7,
    }
    options.update(kwargs)
    dm = GeoLinkDataModule(**options)
    dm.geo_dataset = dataset
    return dm


class WindowRecorder(Callback):
    """The windows (bounds) of every training batch, by global step."""

    def __init__(self) -> None:
        self.windows: dict[int, list[list[float]]] = {}

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step + 1
        assert step not in self.windows
        self.windows[step] = batch['bounds'][:, :6].tolist()


def fit(
    demo: tuple[str, GeoDataset],
    tmp_path: Path,
    callbacks: list[Callback],
    ckpt_path: Path | None = None,
    **kwargs: Any,
) -> tuple[Trainer, TinyModel]:
    seed_everything(0)
    task = TinyModel()
    options: dict[str, Any] = {
        'accelerator': 'cpu',
        'max_epochs': 2,
        'logger': False,
        'enable_progress_bar': False,
        'enable_model_summary': False,
        'default_root_dir': tmp_path,
        'limit_val_batches': 1,
        'num_sanity_val_steps': 1,
        'callbacks': callbacks,
    }
    options.update(kwargs)
    trainer = Trainer(**options)
    trainer.fit(
        task,
        datamodule=datamodule(demo),
        ckpt_path=None if ckpt_path is None else str(ckpt_path),
    )
    return trainer, task


def assert_same_weights(a: TinyModel, b: TinyModel) -> None:
    for (name, x), y in zip(
        a.state_dict().items(), b.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name


def test_resume_sees_the_windows_of_the_uninterrupted_run(
    demo: tuple[str, GeoDataset], tmp_path: Path
) -> None:
    # The uninterrupted run validates every 2 batches and keeps a checkpoint after each
    # validation (one in the middle of the first epoch, at step 2, and one at its end,
    # at step 4) and one after the training step 3.
    full = WindowRecorder()
    after_validation = ModelCheckpoint(dirpath=tmp_path / 'val', save_top_k=-1)
    after_step = ModelCheckpoint(
        dirpath=tmp_path / 'step', every_n_train_steps=3, save_top_k=-1
    )
    full_trainer, full_task = fit(
        demo,
        tmp_path / 'full',
        [full, after_validation, after_step],
        val_check_interval=2,
    )
    assert sorted(full.windows) == list(range(1, 2 * BATCHES + 1))
    # Epochs draw new windows (the sampler's state moves on).
    assert full.windows[1] != full.windows[BATCHES + 1]
    for ckpt, step in (
        (tmp_path / 'val' / 'epoch=0-step=2.ckpt', 2),
        (tmp_path / 'val' / 'epoch=0-step=4.ckpt', 4),
        (tmp_path / 'step' / 'epoch=0-step=3.ckpt', 3),
    ):
        resumed = WindowRecorder()
        trainer, task = fit(
            demo,
            tmp_path / f'resumed{step}',
            [resumed],
            ckpt_path=ckpt,
            val_check_interval=2,
        )
        # Lightning counts the batch of a checkpoint written at its end as done: the
        # resumed run goes on with the next batch's windows.
        expected = {s: w for s, w in full.windows.items() if s > step}
        assert resumed.windows == expected, step
        if step == 3:
            # The tasks reseed their randomness (augmentations, dropout) after each
            # validation, not after each step: from a checkpoint between validations
            # only the windows are those of the uninterrupted run.
            continue
        assert_same_weights(task, full_task)
        for name in ('train_loss', 'val_loss'):
            assert torch.equal(
                trainer.callback_metrics[name], full_trainer.callback_metrics[name]
            ), (step, name)


def test_sampler_state_must_fit(demo: tuple[str, GeoDataset]) -> None:
    dm = datamodule(demo)
    dm.setup('fit')
    assert dm.state_dict()['train_sampler']['consumed'] == 0
    other = datamodule(demo, length=4 * BATCHES)
    other.setup('fit')
    with pytest.raises(CheckpointError, match=r'train_sampler.*8 windows.*16'):
        other.load_state_dict(dm.state_dict())
    # Before setup, the state waits for the sampler.
    later = datamodule(demo)
    later.load_state_dict({'train_sampler': {'generator': {}, 'length': 8}})
    with pytest.raises(CheckpointError, match='malformed sampler state'):
        later.setup('fit')


def test_mid_epoch_state_needs_the_same_batch_size(
    demo: tuple[str, GeoDataset],
) -> None:
    dm = datamodule(demo)
    dm.setup('fit')
    sampler = dm.train_sampler
    assert isinstance(sampler, OSMRandomPatchSampler)
    list(sampler)
    state = {'train_sampler': sampler.state_dict(consumed=2), 'batch_size': 2}
    other = datamodule(demo, batch_size=4)
    other.setup('fit')
    with pytest.raises(
        CheckpointError, match='batch_size 2, this datamodule has batch_size 4'
    ):
        other.load_state_dict(state)
    # At an epoch end, another batch size is fine.
    other.load_state_dict({'train_sampler': sampler.state_dict(), 'batch_size': 2})
