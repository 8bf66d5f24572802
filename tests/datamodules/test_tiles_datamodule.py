# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLinkTilesDataModule on tiles written by the test and a real Lightning Trainer."""

from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
from lightning import LightningModule, Trainer
from torch import Tensor, nn
from torch_geometric.data import Batch, HeteroData

from tests.conftest import save_tile
from torchgeo_geolink.datamodules import GeoLinkTilesDataModule

SIZE = 24
POS_COLS = {'polygon': 8, 'line': 6, 'point': 2}


def write_tiles(root: Path, count: int) -> None:
    """Dark tiles with a bright square labeled 2 (raw; class 1)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        x0, y0 = (int(v) for v in rng.integers(2, SIZE - 10, 2))
        pixels = np.full((SIZE, SIZE, 3), 20, np.uint8)
        pixels[y0 : y0 + 8, x0 : x0 + 8] = 230
        label = np.ones((SIZE, SIZE), np.uint8)
        label[y0 : y0 + 8, x0 : x0 + 8] = 2
        graph = HeteroData()
        cx, cy = (x0 + 4) / SIZE, (y0 + 4) / SIZE
        pos = torch.tensor(
            [cx + 0.05, cy, cx - 0.05, cy + 0.05, cx - 0.05, cy - 0.05, cx, cy]
        )
        graph['polygon'].x = torch.cat([torch.randn(1, 512), pos[None]], dim=1)
        graph['polygon', 'to', 'polygon'].edge_index = torch.tensor([[0], [0]])
        graph['polygon', 'to', 'polygon'].edge_attr = torch.eye(6)[:1]
        save_tile(root, f'tile{i}', pixels, graph, label)


class Recorder(LightningModule):
    """Records the batches it receives after on_after_batch_transfer."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.train_batches: list[dict[str, Any]] = []
        self.val_batches: list[dict[str, Any]] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        self.train_batches.append(batch)
        return self.layer(batch['image'].mean().reshape(1, 1)).sum()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.val_batches.append(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_tiles_datamodule_with_trainer(tmp_path: Path) -> None:
    write_tiles(tmp_path, 12)
    lightning.seed_everything(0)
    dm = GeoLinkTilesDataModule(
        root=str(tmp_path), batch_size=4, val_fraction=0.3, color_jitter=False
    )
    module = Recorder()
    trainer = Trainer(
        max_epochs=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
    )
    trainer.fit(module, datamodule=dm)
    assert dm.train_dataset is not None and dm.val_dataset is not None
    train_names, val_names = dm.train_dataset.names, dm.val_dataset.names
    assert not set(train_names) & set(val_names)
    assert len(module.train_batches) > 0 and len(module.val_batches) > 0
    for batch in module.val_batches:
        # validation batches are only normalized to [0, 1]
        values = batch['image'].unique()
        expected = torch.tensor([20.0, 230.0]) / 255
        assert torch.isclose(values[:, None], expected[None]).any(dim=1).all()
    for batch in module.train_batches:
        graph = batch['graph']
        assert isinstance(graph, Batch)
        image, mask = batch['image'], batch['mask']
        assert image.shape[-2:] == (SIZE, SIZE) and mask.shape[-2:] == (SIZE, SIZE)
        # the label still covers the bright square after the joint augmentation
        # (bilinear image vs nearest mask: only pixels on the square's edge may
        # disagree)
        bright = image.mean(1) > 0.5
        assert ((mask == 1) == bright).float().mean() > 0.9
        # every kept polygon centroid sits on its square
        for i, sample in enumerate(graph.to_data_list()):
            for cx, cy in sample['polygon'].pos[:, -1].tolist():
                col, row = min(int(cx * SIZE), SIZE - 1), min(int(cy * SIZE), SIZE - 1)
                if 0.05 < cx < 0.95 and 0.05 < cy < 0.95:
                    assert mask[i, row, col] == 1
