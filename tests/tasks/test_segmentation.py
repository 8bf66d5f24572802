# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader

from tests.tasks.batch_testing import BatchList, make_batch
from torchgeo_geolink.errors import CheckpointError
from torchgeo_geolink.tasks import GeoLinkPretrain, GeoLinkSegmentation

SEG: dict[str, Any] = {
    'model': 'vit_tiny_patch16_224',
    'img_size': 32,
    'num_classes': 4,
    'decoder_channels': 16,
    'output_layers': [2, 5, 8, 11],
}


def fit(task: GeoLinkSegmentation, tmp_path: Path) -> Trainer:
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    train = DataLoader(BatchList(2, batch_size=2), batch_size=None)
    val = DataLoader(BatchList(1, batch_size=2, seed=50), batch_size=None)
    trainer.fit(task, train, val)
    return trainer


def test_fit_metrics_and_frozen_encoder(tmp_path: Path) -> None:
    seed_everything(0)
    task = GeoLinkSegmentation(**SEG, freeze_backbone=True)
    before = {k: v.clone() for k, v in task.model.encoder.state_dict().items()}
    head_before = next(task.model.head.parameters()).clone()
    trainer = fit(task, tmp_path)
    for name in (
        'train_loss',
        'val_loss',
        'val_AverageJaccardIndex',
        'val_OverallAccuracy',
        'train_OverallAccuracy',
    ):
        assert name in trainer.callback_metrics, name
    for k, v in task.model.encoder.state_dict().items():
        assert torch.equal(before[k], v), k
    assert not torch.equal(head_before, next(task.model.head.parameters()))


class RecordModes(Callback):
    """Record the training flags of the encoder's and head's modules at every batch."""

    def __init__(self) -> None:
        self.encoder: list[bool] = []
        self.head: list[bool] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        assert isinstance(pl_module, GeoLinkSegmentation)
        model = pl_module.model
        self.encoder.extend(m.training for m in model.encoder.modules())
        self.head.extend(m.training for m in model.head.modules())


def test_frozen_encoder_stays_in_eval_mode(tmp_path: Path) -> None:
    seed_everything(0)
    task = GeoLinkSegmentation(**SEG, freeze_backbone=True)
    assert not any(m.training for m in task.model.encoder.modules())
    task.train()
    assert not any(m.training for m in task.model.encoder.modules())
    assert all(m.training for m in task.model.head.modules())
    assert not any(p.requires_grad for p in task.model.encoder.parameters())
    # a validation between the training batches: Lightning switches modes and back
    modes = RecordModes()
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        val_check_interval=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[modes],
    )
    train = DataLoader(BatchList(3, batch_size=2), batch_size=None)
    val = DataLoader(BatchList(1, batch_size=2, seed=50), batch_size=None)
    trainer.fit(task, train, val)
    assert modes.encoder and not any(modes.encoder)
    assert modes.head and all(modes.head)
    # not frozen: the encoder trains
    unfrozen = GeoLinkSegmentation(**SEG).train()
    assert all(m.training for m in unfrozen.model.encoder.modules())


def test_unimodal_ignores_graphs() -> None:
    task = GeoLinkSegmentation(**SEG, multimodal=False).eval()
    a, b = make_batch(2, seed=0), make_batch(2, seed=1)
    with torch.no_grad():
        assert torch.equal(task(a['image'], a['graph']), task(a['image'], b['graph']))
    multimodal = GeoLinkSegmentation(**SEG, multimodal=True).eval()
    with torch.no_grad():
        assert not torch.allclose(
            multimodal(a['image'], a['graph']), multimodal(a['image'], b['graph'])
        )


def test_predict_is_georeferenced() -> None:
    task = GeoLinkSegmentation(**SEG).eval()
    batch = make_batch(2) | {'bounds': torch.rand(2, 9), 'transform': torch.rand(2, 9)}
    with torch.no_grad():
        out = task.predict_step(batch, 0)
    assert out['probabilities'] is not None
    assert out['probabilities'].shape == (2, 4, 32, 32)
    assert torch.allclose(out['probabilities'].sum(dim=1), torch.ones(2, 32, 32))
    assert out['bounds'] is batch['bounds']
    assert out['transform'] is batch['transform']


def test_init_from_pretraining_checkpoint(tmp_path: Path) -> None:
    seed_everything(0)
    pretrain = GeoLinkPretrain(
        model='vit_tiny_patch16_224', img_size=32, osm_hidden_channels=64
    )
    trainer = Trainer(
        accelerator='cpu', max_epochs=0, logger=False, default_root_dir=tmp_path
    )
    trainer.strategy.connect(pretrain)
    path = tmp_path / 'pretrain.ckpt'
    trainer.save_checkpoint(path)
    # the architecture (ViT name, OSM width) comes from the checkpoint, not from the
    # (default) arguments
    task = GeoLinkSegmentation(
        weights=str(path), img_size=32, num_classes=3, decoder_channels=16
    )
    geolink = task.model.encoder.model
    assert geolink.embed_dim == 192
    for (name, a), b in zip(
        pretrain.model.state_dict().items(), geolink.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match='not found'):
        GeoLinkSegmentation(weights=str(tmp_path / 'nope.ckpt'), num_classes=3)


def test_plot_draws_image_mask_prediction() -> None:
    task = GeoLinkSegmentation(**SEG, ignore_index=255)
    batch = make_batch(1)
    mask = batch['mask'][0].clone()
    mask[:4] = 255
    prediction = (batch['mask'][0] + 1) % 4
    graph = batch['graph'].get_example(0)
    sample = {'image': batch['image'][0], 'mask': mask, 'prediction': prediction}
    fig = task.plot(sample | {'graph': graph}, suptitle='tile')
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ['Image and OSM graph', 'Mask', 'Prediction']
    shown_mask = fig.axes[1].images[0].get_array()
    assert shown_mask is not None
    shown_mask = np.ma.filled(shown_mask, -1)
    expected = mask.double().numpy()
    expected[mask.numpy() == 255] = np.nan
    assert np.array_equal(
        np.nan_to_num(shown_mask, nan=-1), np.nan_to_num(expected, nan=-1)
    )
    shown = fig.axes[2].images[0].get_array()
    assert shown is not None
    shown = np.ma.filled(shown, -1)
    assert np.array_equal(shown, prediction.double().numpy())
    assert [ax.get_title() for ax in task.plot(sample).axes[:1]] == ['Image']


def test_unfrozen_encoder_fine_tunes_in_train_mode(tmp_path: Path) -> None:
    # the weights load in eval mode; Lightning keeps the modes it finds, so the task
    # must set train mode
    seed_everything(0)
    task = GeoLinkSegmentation(**SEG)
    assert all(m.training for m in task.model.modules())
    modes = RecordModes()
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[modes],
    )
    train = DataLoader(BatchList(2, batch_size=2), batch_size=None)
    trainer.fit(task, train)
    assert modes.encoder and all(modes.encoder)
