# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The image normalization a task was trained with, shared with its data."""

import warnings
from collections.abc import Sequence

import torch
from lightning.pytorch import LightningModule

__all__ = ('sync_normalization',)


def _as_list(value: object) -> list[float] | None:
    """Turn a mean/std given as a number, sequence or tensor into a list of floats.

    Args:
        value: The statistic, or None.

    Returns:
        The values as floats, or None.
    """
    if value is None:
        return None
    return [float(v) for v in torch.as_tensor(value, dtype=torch.float64).flatten()]


def sync_normalization(task: LightningModule) -> None:
    """Make the task's ``mean``/``std`` and its datamodule's normalization agree.

    A task without statistics (a new run) records the datamodule's, so that they are
    saved with every checkpoint. A task that carries statistics (loaded from a
    checkpoint, or given in the YAML) imposes them on a datamodule that was left at its
    defaults, and warns when the datamodule was given other values (the datamodule's
    then win, as an explicit choice).

    Args:
        task: A task with ``mean`` and ``std`` hyperparameters, attached to a trainer.

    .. versionadded:: 0.1
    """
    trainer = task._trainer
    datamodule = getattr(trainer, 'datamodule', None) if trainer is not None else None
    hp = task.hparams
    mean, std = _as_list(hp.get('mean')), _as_list(hp.get('std'))
    if datamodule is None or not hasattr(datamodule, 'set_normalization'):
        return
    dm_mean, dm_std = _as_list(datamodule.mean), _as_list(datamodule.std)
    if mean is None or std is None:
        hp['mean'], hp['std'] = dm_mean, dm_std
        return
    if getattr(datamodule, 'normalization_is_default', False):
        datamodule.set_normalization(mean, std)
        return
    if _differs(mean, dm_mean) or _differs(std, dm_std):
        warnings.warn(
            f'{type(task).__name__} was trained with mean={mean}, std={std} but the datamodule normalizes with '
            f'mean={dm_mean}, std={dm_std}: the datamodule is used as given',
            UserWarning,
            stacklevel=2,
        )


def _differs(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Tell whether two statistics differ (broadcasting one value over bands).

    Args:
        a: First statistic.
        b: Second statistic.

    Returns:
        True when they are not equal to within 1e-6.
    """
    if a is None or b is None:
        return a is not b
    ta, tb = torch.tensor(a), torch.tensor(b)
    try:
        return not torch.allclose(*torch.broadcast_tensors(ta, tb), atol=1e-6)
    except RuntimeError:
        return True
