# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Helpers shared by the GeoLink tasks: OSM presence per sample, optimiser groups, checkpoint loading."""

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models._api import WeightsEnum

from .. import models
from ..errors import CheckpointError
from ..models import GeoLink, OSMHeteroGAT
from ..osm import EDGE_ATTR_DIMS

__all__ = ('is_lightning_checkpoint', 'lightning_state_dict', 'param_groups')


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed group and a group without weight decay.

    Biases, normalisation weights (every parameter of one dimension) and learnable tokens are not decayed, as in
    MAE and DINO.

    Args:
        model: The model to optimise.
        weight_decay: Weight decay of the decayed group.

    Returns:
        Two parameter groups for a :mod:`torch.optim` optimiser.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(('token', 'pos_embed')) or 'token.' in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {'params': decay, 'weight_decay': weight_decay},
        {'params': no_decay, 'weight_decay': 0.0},
    ]


def is_lightning_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Tell whether a loaded checkpoint was written by Lightning.

    Args:
        checkpoint: The object returned by :func:`torch.load`.

    Returns:
        True when it has Lightning's ``state_dict`` and ``pytorch-lightning_version`` entries.
    """
    return 'state_dict' in checkpoint and 'pytorch-lightning_version' in checkpoint


def lightning_state_dict(
    path: str | os.PathLike[str], prefix: str = 'model.'
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read the hyperparameters and the model state dict of a Lightning checkpoint of a GeoLink task.

    Args:
        path: Path to the ``.ckpt`` file.
        prefix: Prefix of the model's keys in the task's state dict (removed).

    Returns:
        The task's hyperparameters and the model's state dict.

    Raises:
        CheckpointError: If the file is missing, unreadable or not a Lightning checkpoint of a GeoLink task.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint {path!r} does not exist')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:  # torch raises many types for corrupt files
        raise CheckpointError(f'checkpoint {path!r} cannot be read: {error}') from error
    if not isinstance(checkpoint, Mapping) or not is_lightning_checkpoint(checkpoint):
        raise CheckpointError(
            f'{path!r} is not a Lightning checkpoint (no state_dict / pytorch-lightning_version)'
        )
    state = {
        k.removeprefix(prefix): v
        for k, v in checkpoint['state_dict'].items()
        if k.startswith(prefix)
    }
    if not state:
        raise CheckpointError(
            f'checkpoint {path!r} holds no {prefix!r} weights: not a GeoLink task checkpoint'
        )
    return dict(checkpoint.get('hyper_parameters', {})), state


def geolink_from_hparams(hparams: Mapping[str, Any]) -> GeoLink:
    """Build a :class:`~torchgeo_geolink.models.GeoLink` from the hyperparameters of a GeoLinkPretrain task.

    Args:
        hparams: The task's hyperparameters (missing entries take the task's defaults).

    Returns:
        A randomly initialised model.
    """
    hp = {**PRETRAIN_ARCHITECTURE_DEFAULTS, **dict(hparams)}
    edge_dims = dict(EDGE_ATTR_DIMS) if hp['osm_edge_features'] else None
    osm_encoder = OSMHeteroGAT(
        hp['osm_in_channels'],
        hp['osm_hidden_channels'],
        num_layers=hp['osm_num_layers'],
        edge_dims=edge_dims,
    )
    return GeoLink(
        hp['model'],
        osm_encoder,
        in_chans=hp['in_channels'],
        img_size=hp['img_size'],
        osm_in_chans=hp['osm_in_channels'],
        osm_out_embed_dim=hp['osm_hidden_channels'],
        img_decoder_embed_dim=hp['decoder_embed_dim'],
        img_decoder_depth=hp['decoder_depth'],
        img_decoder_num_heads=hp['decoder_num_heads'],
        norm_pix_loss=hp['norm_pix_loss'],
        img_mask_ratio=hp['img_mask_ratio'],
        osm_mask_ratio=hp['osm_mask_ratio'],
        temperature=hp['temperature'],
        loss_weights=(hp['rec_weight'], hp['cont_weight'], hp['node_weight']),
        gather_distributed=hp['gather_distributed'],
        legacy=hp['legacy'],
        osm_node_positions=hp['osm_node_positions'],
    )


#: Defaults of the GeoLinkPretrain hyperparameters that shape the model (kept in sync with its signature).
PRETRAIN_ARCHITECTURE_DEFAULTS: dict[str, Any] = {
    'model': 'vit_large_patch16_224',
    'in_channels': 3,
    'img_size': 224,
    'osm_in_channels': 512,
    'osm_hidden_channels': 128,
    'osm_num_layers': 1,
    'osm_edge_features': False,
    'osm_node_positions': False,
    'decoder_embed_dim': 512,
    'decoder_depth': 2,
    'decoder_num_heads': 16,
    'img_mask_ratio': 0.75,
    'osm_mask_ratio': 0.2,
    'rec_weight': 1.0,
    'cont_weight': 0.01,
    'node_weight': 0.01,
    'temperature': 0.2,
    'norm_pix_loss': True,
    'legacy': False,
    'gather_distributed': False,
}


def _load_state(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: str
) -> None:
    """Load a state dict strictly, turning a mismatch into a clear error.

    Args:
        model: The model.
        state_dict: The weights.
        source: Where the weights come from (for the message).

    Raises:
        CheckpointError: If keys are missing or unexpected or a shape differs.
    """
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        msg = f'weights of {source} do not fit the model (architecture arguments differ?): {str(error)[:600]}'
        raise CheckpointError(msg) from error


def load_geolink_weights(
    model: GeoLink, weights: WeightsEnum | str | os.PathLike[str]
) -> None:
    """Load initial weights into a GeoLink model.

    Args:
        model: The model, built with the architecture of the weights.
        weights: A Lightning checkpoint of GeoLinkPretrain (``.ckpt``), an official GeoLink checkpoint file, or a
            :class:`~torchvision.models._api.WeightsEnum` member describing one.

    Raises:
        CheckpointError: If the file is missing or unreadable or its weights do not fit the model.
    """
    if isinstance(weights, WeightsEnum):
        state = weights.get_state_dict(
            progress=True, check_hash=True, weights_only=True
        )
        _load_state(model, state, str(weights))
        return
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file {path!r} does not exist')
    if _looks_like_lightning(path):
        _, state = lightning_state_dict(path)
        _load_state(model, state, repr(path))
    else:
        official = models.load_official_checkpoint(path, legacy=model.legacy)
        _load_state(model, official.state_dict(), repr(path))


def _looks_like_lightning(path: str) -> bool:
    """Tell whether a checkpoint file was written by Lightning (reads it).

    Args:
        path: The file.

    Returns:
        True for a Lightning checkpoint.

    Raises:
        CheckpointError: If the file cannot be read.
    """
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False, mmap=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise CheckpointError(f'checkpoint {path!r} cannot be read: {error}') from error
    return isinstance(checkpoint, Mapping) and is_lightning_checkpoint(checkpoint)


def build_geolink(
    weights: WeightsEnum | str | os.PathLike[str] | None,
    architecture: Mapping[str, Any],
) -> GeoLink:
    """Build a GeoLink model for a downstream task, taking the architecture from the weights when they have one.

    Args:
        weights: ``None`` (random, from *architecture*), a Lightning checkpoint of GeoLinkPretrain (its
            architecture hyperparameters win over *architecture*), an official checkpoint file or a
            :class:`~torchvision.models._api.WeightsEnum` member (their own architecture).
        architecture: GeoLinkPretrain-style architecture hyperparameters (``model``, ``in_channels``,
            ``img_size``, ``legacy``, ...).

    Returns:
        The model with its weights loaded.

    Raises:
        CheckpointError: If the weights cannot be read or do not fit.
    """
    if weights is None:
        return geolink_from_hparams(architecture)
    if isinstance(weights, WeightsEnum):
        return weights_enum_model(weights, architecture)
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file {path!r} does not exist')
    if _looks_like_lightning(path):
        hparams, state = lightning_state_dict(path)
        keep = {k: hparams[k] for k in PRETRAIN_ARCHITECTURE_DEFAULTS if k in hparams}
        if 'legacy' in architecture:
            keep['legacy'] = architecture['legacy']
        model = geolink_from_hparams({**architecture, **keep})
        _load_state(model, state, repr(path))
        return model
    return models.load_official_checkpoint(
        path, legacy=bool(architecture.get('legacy', True))
    )


def weights_enum_model(
    weights: WeightsEnum, architecture: Mapping[str, Any]
) -> GeoLink:
    """Build the GeoLink model that a weights enum member describes and load its weights.

    The official GeoLink entries cannot be downloaded by a script: their ``get_state_dict`` raises a
    :class:`~torchgeo_geolink.errors.CheckpointError` that explains the manual download (then pass the file's
    path as ``weights``).

    Args:
        weights: A member of a GeoLink :class:`~torchvision.models._api.WeightsEnum`.
        architecture: Architecture hyperparameters; ``model`` and ``in_channels`` come from the enum's meta.

    Returns:
        The model with the weights loaded.
    """
    state = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    meta = weights.meta
    arch = {
        **architecture,
        'model': meta.get('model', architecture.get('model')),
        'in_channels': meta.get('in_chans', 3),
    }
    model = geolink_from_hparams(arch)
    _load_state(model, state, str(weights))
    return model


def reseed(step: int) -> None:
    """Reseed torch, numpy and ``random`` from the run's seed, a step count and the process rank.

    Called at fixed points of training (after each validation) so that what follows is a function of the step,
    not of the history: a run resumed from a checkpoint then draws the same masks, dropout and data as the
    uninterrupted run.

    Args:
        step: The global step.
    """
    base = int(os.environ.get('PL_GLOBAL_SEED', '0'))
    rank = int(os.environ.get('RANK', os.environ.get('LOCAL_RANK', '0')))
    seed = (base * 1_000_003 + step * 7_919 + rank * 104_729) % (2**32)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
