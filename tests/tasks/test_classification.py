# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLinkClassification (probe, fine-tuning, kNN) and the dominant-class target."""

import csv
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader
from torchgeo.main import main

from tests.tasks.batch_testing import BatchList, make_batch
from torchgeo_geolink.datamodules import dominant_class
from torchgeo_geolink.datasets import build_demo
from torchgeo_geolink.tasks import GeoLinkClassification, GeoLinkPretrain, weighted_knn

CONF = Path(__file__).resolve().parents[1] / 'conf'
TINY: dict[str, Any] = {'model': 'vit_tiny_patch16_224', 'img_size': 32}
METRICS = (
    'OverallAccuracy',
    'AverageAccuracy',
    'OverallF1Score',
    'AverageF1Score',
    'OverallJaccardIndex',
    'AverageJaccardIndex',
)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo rasters, built once per session (build_demo returns if they exist)."""
    root = tmp_path_factory.getbasetemp() / 'geolink_demo'
    build_demo(root)
    return root


class LabeledBatches(BatchList):
    """Synthetic batches with a ``label`` per window."""

    def __init__(self, n: int, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__(n, batch_size=batch_size, seed=seed)
        g = torch.Generator().manual_seed(seed)
        for batch in self.batches:
            batch['label'] = torch.randint(0, 3, (batch_size,), generator=g)


class SeparableBatches(torch.utils.data.Dataset):
    """Windows whose class is their brightness (constant -1, 0 or +1, faint noise)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.batches = []
        for i in range(n):
            batch = make_batch(3, seed=seed + i)
            batch['label'] = torch.arange(3)
            level = batch['label'].float().sub(1.0).view(3, 1, 1, 1)
            batch['image'] = level + 0.01 * torch.randn(3, 3, 32, 32, generator=g)
            self.batches.append(batch)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.batches[index]


def fit(
    task: LightningModule, train: Any, val: Any, tmp_path: Path, **kwargs: Any
) -> Trainer:
    options: dict[str, Any] = {
        'accelerator': 'cpu',
        'max_epochs': 1,
        'logger': False,
        'enable_checkpointing': False,
        'enable_progress_bar': False,
        'enable_model_summary': False,
        'default_root_dir': tmp_path,
        **kwargs,
    }
    trainer = Trainer(**options)
    trainer.fit(
        task, DataLoader(train, batch_size=None), DataLoader(val, batch_size=None)
    )
    return trainer


def cli(
    command: str, mode: str, root: Path, tmp_path: Path, *extra: str
) -> dict[str, list[str]]:
    """Run ``torchgeo <command>`` on the demo; return the logged CSV columns."""
    main([
        command, '--config', str(CONF / f'geolink_classification_{mode}.yaml'),
        '--data.init_args.root', str(root),
        '--trainer.accelerator', 'cpu', '--trainer.max_epochs', '1',
        '--trainer.limit_train_batches', '2', '--trainer.limit_val_batches', '2',
        '--trainer.limit_test_batches', '2', '--trainer.num_sanity_val_steps', '1', '--trainer.log_every_n_steps', '1',
        '--trainer.enable_progress_bar', 'false', '--trainer.default_root_dir', str(tmp_path),
        '--trainer.logger', 'lightning.pytorch.loggers.CSVLogger',
        '--trainer.logger.save_dir', str(tmp_path), '--trainer.logger.version', command, *extra,
    ])  # fmt: skip
    with open(tmp_path / 'lightning_logs' / command / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    return {key: [r[key] for r in rows if r[key]] for key in rows[0]}


def checkpoint(tmp_path: Path) -> Path:
    return next((tmp_path / 'lightning_logs' / 'fit' / 'checkpoints').glob('*.ckpt'))


# ---------------------------------------------------------------------------- kNN maths


def test_weighted_knn_votes() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor(
        [[2.0, 0.1], [0.0, 3.0]]
    )  # the scale does not matter (cosine)
    p = weighted_knn(bank, labels, queries, num_classes=3, k=4, temperature=0.1)
    assert p.shape == (2, 3)
    assert torch.allclose(p.sum(1), torch.ones(2))
    assert p.argmax(1).tolist() == [0, 1]
    assert torch.equal(p[:, 2], torch.zeros(2))
    # k=1: the nearest neighbor alone decides, with probability 1
    p1 = weighted_knn(bank, labels, queries, num_classes=2, k=1)
    assert p1.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    # weights exp(s / T): a tiny temperature gives the nearest neighbor's class, without
    # overflow
    p_cold = weighted_knn(bank, labels, queries, num_classes=2, k=4, temperature=1e-4)
    assert torch.isfinite(p_cold).all() and p_cold.argmax(1).tolist() == [0, 1]
    with pytest.raises(ValueError, match='empty'):
        weighted_knn(bank[:0], labels[:0], queries, 2)
    with pytest.raises(ValueError, match='temperature'):
        weighted_knn(bank, labels, queries, 2, temperature=0)


def test_knn_perfect_on_separable_windows(tmp_path: Path) -> None:
    seed_everything(0)
    task = GeoLinkClassification(**TINY, mode='knn', num_classes=3, knn_k=3)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    trainer = fit(
        task, SeparableBatches(4, seed=0), SeparableBatches(2, seed=100), tmp_path
    )
    metrics = trainer.callback_metrics
    for name in METRICS:
        assert float(metrics[f'val_{name}']) == 1.0, name
    assert 'val_loss' in metrics and float(metrics['val_loss']) < 0.1
    assert not any(k.startswith('train_') for k in metrics)  # nothing is trained
    assert task.knn_bank is not None and task.knn_bank[0].shape == (
        12,
        task.model.embed_dim,
    )
    assert trainer.global_step == 4  # one (no-op) step per bank batch
    for k, v in task.model.state_dict().items():
        assert torch.equal(before[k], v), k
    # test from the same fitted task
    trainer.test(task, DataLoader(SeparableBatches(1, seed=200), batch_size=None))
    assert float(trainer.callback_metrics['test_OverallAccuracy']) == 1.0


def test_knn_without_bank_raises() -> None:
    task = GeoLinkClassification(**TINY, mode='knn', num_classes=3)
    with pytest.raises(RuntimeError, match='no bank'):
        task(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize(
    'kwargs',
    [
        {'mode': 'probe'},
        {'embedding': 'osm'},
        {'mode': 'knn', 'task': 'multilabel', 'num_labels': 3},
        {'mode': 'knn'},
        {'mode': 'knn', 'num_classes': 3, 'knn_k': 0},
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match='GeoLinkClassification'):
        GeoLinkClassification(**TINY, **kwargs)


# ------------------------------------------------------------------------- linear probe


class RecordModes(Callback):
    """Record the training flags of the GeoLink model's and head's modules per batch."""

    def __init__(self) -> None:
        self.model: list[bool] = []
        self.head: list[bool] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        assert isinstance(pl_module, GeoLinkClassification)
        self.model.extend(m.training for m in pl_module.model.modules())
        self.head.extend(m.training for m in pl_module.head.modules())


@pytest.mark.parametrize('embedding', ['image', 'fused'])
def test_linear_probe_frozen_in_eval_mode(
    embedding: Literal['image', 'fused'], tmp_path: Path
) -> None:
    seed_everything(0)
    task = GeoLinkClassification(**TINY, embedding=embedding, num_classes=3, lr=0.01)
    dim = task.model.embed_dim if embedding == 'image' else task.model.fusion_embed_dim
    assert task.head.in_features == dim
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    head_before = task.head.weight.clone()
    modes = RecordModes()
    trainer = fit(
        task,
        LabeledBatches(2),
        LabeledBatches(1, seed=50),
        tmp_path,
        max_epochs=2,
        callbacks=[modes],
    )
    assert modes.model and not any(modes.model)  # eval mode at every step, dropout off
    assert modes.head and all(modes.head)
    for k, v in task.model.state_dict().items():
        assert torch.equal(before[k], v), k
    assert not any(p.requires_grad for p in task.model.parameters())
    assert not torch.equal(head_before, task.head.weight)
    for name in (
        'train_loss',
        'val_loss',
        *(f'val_{m}' for m in METRICS),
        'train_OverallAccuracy',
    ):
        assert name in trainer.callback_metrics, name
    # the embeddings of training are those of evaluation
    task.train()
    images = make_batch(2)['image']
    with torch.no_grad():
        a = task.embed(images)
        task.eval()
        b = task.embed(images)
    assert torch.equal(a, b)


def test_finetune_trains_the_encoder(tmp_path: Path) -> None:
    seed_everything(0)
    task = GeoLinkClassification(**TINY, mode='finetune', num_classes=3, lr=0.01)
    block = task.model.img_encoder.blocks[0].attn.qkv.weight.clone()
    modes = RecordModes()
    fit(
        task, LabeledBatches(2), LabeledBatches(1, seed=50), tmp_path, callbacks=[modes]
    )
    assert all(modes.model) and all(modes.head)
    assert not torch.equal(block, task.model.img_encoder.blocks[0].attn.qkv.weight)


# ------------------------------------------------------------------------------ weights


@pytest.fixture(scope='module')
def pretrain_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short GeoLinkPretrain run on synthetic batches, with normalization stats."""
    root = tmp_path_factory.mktemp('pretrain')
    seed_everything(0)
    task = GeoLinkPretrain(
        **TINY, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, warmup_steps=1,
        mean=[10.0, 20.0, 30.0], std=[40.0, 50.0, 60.0], baseline_validation=False,
    )  # fmt: skip
    trainer = fit(task, BatchList(1), BatchList(1, seed=9), root)
    path = root / 'pretrain.ckpt'
    trainer.save_checkpoint(path)
    return path


def test_from_pretraining_checkpoint(pretrain_ckpt: Path, tmp_path: Path) -> None:
    pretrained = GeoLinkPretrain.load_from_checkpoint(pretrain_ckpt).model.state_dict()
    # the architecture comes from the checkpoint (not the task's vit_large / 224
    # defaults)
    task = GeoLinkClassification(weights=str(pretrain_ckpt), num_classes=3)
    assert (
        task.hparams['model'] == 'vit_tiny_patch16_224'
        and task.hparams['img_size'] == 32
    )
    state = task.model.state_dict()
    assert state.keys() == pretrained.keys()
    for k, v in pretrained.items():
        assert torch.equal(state[k], v), k
    assert task.hparams['mean'] == [10.0, 20.0, 30.0]
    assert task.hparams['std'] == [40.0, 50.0, 60.0]
    # and the classification checkpoint reloads on its own (kNN bank included)
    knn = GeoLinkClassification(weights=str(pretrain_ckpt), mode='knn', num_classes=3)
    trainer = fit(
        knn, SeparableBatches(2, seed=0), SeparableBatches(1, seed=100), tmp_path
    )
    trainer.save_checkpoint(tmp_path / 'knn.ckpt')
    reloaded = GeoLinkClassification.load_from_checkpoint(tmp_path / 'knn.ckpt').eval()
    images = SeparableBatches(1, seed=5)[0]['image']
    with torch.no_grad():
        assert torch.equal(reloaded(images), knn.eval()(images))
    assert reloaded.hparams['mean'] == [10.0, 20.0, 30.0]


# ------------------------------------------------------------------------------ targets


def test_dominant_class() -> None:
    mask = torch.zeros(3, 4, 4, dtype=torch.long)
    mask[0, :3] = 2  # 12 of 16 pixels
    mask[1, :2] = 1  # a tie 8/8: the lowest class
    mask[2] = 5
    assert dominant_class(mask).tolist() == [2, 0, 5]
    # the ignored value is not counted; a window made only of it keeps it
    assert dominant_class(mask, ignore_index=2).tolist() == [0, 0, 5]
    assert dominant_class(mask, ignore_index=5).tolist() == [2, 0, 5]
    with pytest.raises(ValueError, match='>= 0'):
        dominant_class(torch.full((1, 2, 2), -1))


def test_datamodule_dominant_class_needs_labels() -> None:
    from torchgeo_geolink.datamodules import GeoLinkDataModule

    with pytest.raises(ValueError, match='needs labels'):
        GeoLinkDataModule(target='dominant_class')
    with pytest.raises(ValueError, match='target'):
        GeoLinkDataModule(demo_labels=True, target='label')  # ty: ignore[invalid-argument-type]


# ------------------------------------------------------------------------- torchgeo fit


@pytest.mark.parametrize('mode', ['linear', 'finetune', 'knn'])
def test_torchgeo_fit(
    mode: str, demo_root: Path, pretrain_ckpt: Path, tmp_path: Path
) -> None:
    # the linear probe starts from the pretraining checkpoint; the others at random
    extra = (
        ['--model.init_args.weights', str(pretrain_ckpt)] if mode == 'linear' else []
    )
    logged = cli('fit', mode, demo_root, tmp_path, *extra)
    for name in ('val_loss', *(f'val_{m}' for m in METRICS)):
        assert logged.get(name), name
        assert all(0.0 <= float(v) for v in logged[name])
    assert any(k.startswith('val_ClasswiseAccuracy_') for k in logged)
    if mode == 'knn':
        assert not any(k.startswith('train_') and logged[k] for k in logged)
        assert 'knn_bank' in torch.load(checkpoint(tmp_path), weights_only=False)
        # testing from the fitted checkpoint classifies against its saved bank
        tested = cli(
            'test', mode, demo_root, tmp_path, '--ckpt_path', str(checkpoint(tmp_path))
        )
        assert tested.get('test_OverallAccuracy') and tested.get('test_loss')
    else:
        assert logged.get('train_loss') and logged.get('train_OverallAccuracy')
    hparams = torch.load(checkpoint(tmp_path), weights_only=False)['hyper_parameters']
    if (
        mode == 'linear'
    ):  # the pretraining's normalization is recorded and imposed on the demo datamodule
        assert hparams['mean'] == [10.0, 20.0, 30.0]
