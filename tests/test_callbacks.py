# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The KNNProbe callback in short real pretraining runs on the demo."""

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader

from tests.tasks.batch_testing import BatchList
from torchgeo_geolink.callbacks import KNNProbe
from torchgeo_geolink.datamodules import GeoLinkDataModule
from torchgeo_geolink.datasets import build_demo
from torchgeo_geolink.tasks import GeoLinkPretrain

TINY: dict[str, Any] = {
    'model': 'vit_tiny_patch16_224',
    'img_size': 32,
    'decoder_embed_dim': 32,
    'decoder_depth': 1,
    'decoder_num_heads': 2,
    'warmup_steps': 1,
    'lr': 1e-3,
}


class RecordProbe(Callback):
    """Record ``val_knn_top1`` after each non-sanity validation (NaN if not logged)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            value = trainer.callback_metrics.pop('val_knn_top1', None)
            self.values.append(math.nan if value is None else float(value))


@pytest.fixture(scope='module')
def datamodule(tmp_path_factory: pytest.TempPathFactory) -> GeoLinkDataModule:
    """The demo with land-use labels as each window's dominant class (built once)."""
    root = tmp_path_factory.getbasetemp() / 'geolink_demo'
    build_demo(root)
    return GeoLinkDataModule(
        root=str(root),
        demo_labels=True,
        target='dominant_class',
        patch_size=32,
        batch_size=4,
        length=8,
        val_fraction=0.25,
        test_fraction=0.25,
    )


def pretrain(
    datamodule: GeoLinkDataModule, tmp_path: Path, callbacks: list[Callback]
) -> dict[str, torch.Tensor]:
    """Two epochs of two augmented steps, validating on 2 batches; the final weights."""
    seed_everything(0)
    task = GeoLinkPretrain(**TINY)
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=2,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(task, datamodule)
    return {k: v.clone() for k, v in task.model.state_dict().items()}


@pytest.fixture(scope='module')
def runs(
    datamodule: GeoLinkDataModule, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RecordProbe, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The same seeded pretraining with and without the probe."""
    record = RecordProbe()
    probe = KNNProbe(k=5, max_train_windows=16)
    with_probe = pretrain(datamodule, tmp_path_factory.mktemp('probe'), [probe, record])
    without = pretrain(datamodule, tmp_path_factory.mktemp('plain'), [])
    return record, with_probe, without


def test_knn_probe_logs(
    runs: tuple[RecordProbe, dict[str, torch.Tensor], dict[str, torch.Tensor]],
) -> None:
    record, _, _ = runs
    # the baseline validation of the untrained model, then every epoch's
    assert len(record.values) == 3
    for value in record.values:
        assert 0.0 <= value <= 1.0


def test_knn_probe_leaves_training_unchanged(
    runs: tuple[RecordProbe, dict[str, torch.Tensor], dict[str, torch.Tensor]],
) -> None:
    _, with_probe, without = runs
    assert with_probe.keys() == without.keys()
    for k, v in with_probe.items():
        assert torch.equal(v, without[k]), k


def test_knn_probe_needs_labels(tmp_path: Path) -> None:
    seed_everything(0)
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=[KNNProbe()],
    )
    train = DataLoader(BatchList(1), batch_size=None)
    val = DataLoader(BatchList(1, seed=5), batch_size=None)
    with pytest.raises(ValueError, match="need a 'label'"):
        trainer.fit(GeoLinkPretrain(**TINY), train, val)


@pytest.mark.parametrize(
    'kwargs',
    [
        {'every_n_epochs': 0},
        {'k': 0},
        {'temperature': 0.0},
        {'embedding': 'osm'},
        {'max_train_windows': 0},
    ],
)
def test_knn_probe_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match='KNNProbe'):
        KNNProbe(**kwargs)
