# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import itertools
import pickle

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from torchgeo_geolink.tasks.schedules import (
    WarmupCosine,
    adamw_warmup_cosine,
    warmup_cosine_scheduler,
)


def test_warmup_then_cosine() -> None:
    schedule = WarmupCosine(warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    values = [schedule(i) for i in range(16)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4] == pytest.approx(1.0)
    assert values[9] == pytest.approx(0.1 + 0.9 * 0.5)
    assert values[14] == pytest.approx(0.1)
    assert values[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))


def test_no_decay_when_warmup_covers_run() -> None:
    schedule = WarmupCosine(warmup_steps=3, total_steps=2)
    assert schedule(5) == 1.0


def test_invalid() -> None:
    with pytest.raises(ValueError, match='must be >= 0'):
        WarmupCosine(-1, 3)
    with pytest.raises(ValueError, match='min_lr_ratio'):
        WarmupCosine(1, 3, min_lr_ratio=2.0)


def test_scheduler_state_roundtrip() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = warmup_cosine_scheduler(opt, 2, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    lr = opt.param_groups[0]['lr']
    pickle.dumps(sched.lr_lambdas[0])
    opt2 = torch.optim.AdamW([param], lr=1.0)
    sched2 = warmup_cosine_scheduler(opt2, 2, 10)
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]['lr'] == pytest.approx(lr)


def test_matches_torch_sequential_lr_within_the_run_and_holds_after() -> None:
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    warmup, total, floor = 4, 14, 0.1
    param = torch.nn.Parameter(torch.zeros(1))
    ours_opt = torch.optim.SGD([param], lr=2.0)
    lib_opt = torch.optim.SGD([param], lr=2.0)
    ours = warmup_cosine_scheduler(ours_opt, warmup, total, floor)
    lib = SequentialLR(
        lib_opt,
        [
            LinearLR(lib_opt, 1 / warmup, 1.0, total_iters=warmup - 1),
            CosineAnnealingLR(lib_opt, T_max=total - warmup, eta_min=floor * 2.0),
        ],
        milestones=[warmup],
    )
    for step in range(total + 5):
        a, b = ours_opt.param_groups[0]['lr'], lib_opt.param_groups[0]['lr']
        if step <= total:
            assert a == pytest.approx(b, abs=1e-12)
        else:
            # torch's cosine restarts after T_max; ours holds the floor
            assert a == pytest.approx(0.2) and b > a + 1e-3
        ours_opt.step()
        lib_opt.step()
        ours.step()
        lib.step()


class _Linear(LightningModule):
    def __init__(self, warmup_steps: int | None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.warmup_steps = warmup_steps
        self.lrs: list[float] = []

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]['lr'])
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self) -> OptimizerLRScheduler:
        return adamw_warmup_cosine(
            self.layer,
            self.trainer,
            lr=1.0,
            weight_decay=0.05,
            min_lr_ratio=0.1,
            warmup_epochs=1.0,
            warmup_steps=self.warmup_steps,
        )


def _fit(warmup_steps: int | None) -> _Linear:
    module = _Linear(warmup_steps)
    loader = DataLoader(TensorDataset(torch.randn(8, 3)), batch_size=2)
    Trainer(
        max_epochs=3,
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, loader)
    return module


@pytest.mark.parametrize(('warmup_steps', 'expected_warmup'), [(None, 4), (2, 2)])
def test_adamw_warmup_cosine_spans_the_trainers_steps(
    warmup_steps: int | None, expected_warmup: int
) -> None:
    # 3 epochs of 4 steps; warmup_epochs=1 is 4 steps unless warmup_steps overrides
    module = _fit(warmup_steps)
    expected = WarmupCosine(expected_warmup, 12, 0.1)
    assert module.lrs == pytest.approx([expected(step) for step in range(12)])
    optimizer = module.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    decays = [group['weight_decay'] for group in optimizer.param_groups]
    assert decays == [0.05, 0.0]
    # the bias (one dimension) is not decayed
    assert module.layer.bias is optimizer.param_groups[1]['params'][0]
