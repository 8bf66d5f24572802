# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Helpers shared by the GeoLink tasks: optimizer parameter groups.

Loading and saving weights lives in :mod:`torchgeo_geolink.models.weights`.
"""

from typing import Any

from timm.optim import param_groups_weight_decay
from torch import nn

__all__ = ('param_groups',)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters into decayed and undecayed groups.

    :func:`timm.optim.param_groups_weight_decay` leaves biases and normalization weights
    (every parameter of one dimension) undecayed; learnable tokens and position tables
    are added to its exclusions, as in MAE and DINO.

    Args:
        model: The model to optimize.
        weight_decay: Weight decay of the decayed group.

    Returns:
        Two parameter groups for a :mod:`torch.optim` optimizer, the decayed one first.

    .. versionadded:: 0.1
    """
    # Parameters named *token or *pos_embed and the entries of a ParameterDict named
    # *token (one mask token per node type); not the weights of a module whose name ends
    # in "token" (cross_attn_image_to_token).
    token_dicts = {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.ParameterDict) and name.endswith('token')
    }
    tokens = [
        name
        for name, _ in model.named_parameters()
        if name.endswith(('token', 'pos_embed'))
        or name.rpartition('.')[0] in token_dicts
    ]
    groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=tokens)
    # timm puts the undecayed group first and leaves out empty groups: always return
    # both, decayed first, so that the optimizer's group layout does not depend on the
    # model.
    params = {bool(group['weight_decay']): group['params'] for group in groups}
    return [
        {'params': params.get(True, []), 'weight_decay': weight_decay},
        {'params': params.get(False, []), 'weight_decay': 0.0},
    ]
