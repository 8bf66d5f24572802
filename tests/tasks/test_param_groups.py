# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Weight-decay parameter groups of the tasks' optimizers."""

import torch
from torch import nn

from torchgeo_geolink.models import TwoWayAttentionBlock
from torchgeo_geolink.tasks.utils import param_groups


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.img_pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.osm_mask_token = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(1, 8)) for t in ('polygon', 'line')}
        )
        self.linear = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.block = TwoWayAttentionBlock(8, 2)
        self.frozen = nn.Linear(8, 8).requires_grad_(False)


def test_tokens_norms_and_biases_are_not_decayed() -> None:
    model = _Model()
    decay, no_decay = param_groups(model, 0.05)
    assert decay['weight_decay'] == 0.05 and no_decay['weight_decay'] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay['params']}
    kept = {names[id(p)] for p in no_decay['params']}
    assert {'cls_token', 'img_pos_embed', 'osm_mask_token.polygon'} <= kept
    assert {'linear.bias', 'norm.weight', 'norm.bias'} <= kept
    assert 'linear.weight' in decayed
    # a module whose name ends in "token" is not a token: its weights decay
    image_to_token = [n for n in decayed if 'cross_attn_image_to_token' in n]
    assert image_to_token and all(n.endswith('weight') for n in image_to_token)
    assert not any(n.startswith('frozen') for n in decayed | kept)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(decayed) + len(kept) == len(trainable)


def test_no_weight_decay_keeps_both_groups() -> None:
    decay, no_decay = param_groups(_Model(), 0.0)
    assert decay['params'] == [] and len(no_decay['params']) > 0
    torch.optim.AdamW([decay, no_decay], lr=1e-3)
