# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Helpers shared by the GeoLink tasks: optimizer parameter groups.

Loading and saving weights lives in :mod:`torchgeo_geolink.models.weights`.
"""

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..models.weights import GeoLink, geolink_from_weights, is_lightning_checkpoint

__all__ = ('build_geolink', 'is_lightning_checkpoint', 'param_groups')


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


def build_geolink(weights: Any, architecture: Mapping[str, Any]) -> GeoLink:
    """Build a GeoLink model from weights (or *architecture* without weights).

    Transitional alias of :func:`torchgeo_geolink.models.geolink_from_weights`, which also returns the
    weights' provenance; use that.

    Args:
        weights: Any weights accepted by :func:`~torchgeo_geolink.models.geolink_from_weights`, or None.
        architecture: Architecture hyperparameters (``legacy`` among them, default: the weights').

    Returns:
        The model.
    """
    legacy = architecture.get('legacy')
    model, _ = geolink_from_weights(weights, architecture, legacy=legacy)
    return model
