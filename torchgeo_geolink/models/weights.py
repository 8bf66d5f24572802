# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Official GeoLink checkpoints: strict loading with key remapping, a WeightsEnum and model builders."""

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import timm
import torch
import torchvision.transforms.v2 as T
from torch import Tensor, nn
from torchvision.models._api import Weights, WeightsEnum

from ..errors import CheckpointError
from .geolink import GeoLink

__all__ = (
    'GeoLinkViTLarge16_Weights',
    'geolink_vit_large_patch16_224',
    'load_official_checkpoint',
    'load_official_vit',
    'official_state_dict',
    'save_official_checkpoint',
    'vit_large_patch16_224_geolink',
)

#: Keys of the official layout that carry no information and may be absent from a file.
_OPTIONAL_PREFIXES = (
    'patch_embed.',
    'img_encoder.cls_token',
    'img_encoder.pos_embed',
    'img_encoder.norm.',
)
#: Fixed sin-cos tables, recomputed by the model when a file lacks them.
_FIXED_TABLES = ('img_pos_embed', 'rec_img_pos_embed', 'fusion_img_pos_embed')


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read an official checkpoint file.

    Args:
        path: The ``.pth`` file.

    Returns:
        Its ``model_config`` and ``model_state_dict``.

    Raises:
        CheckpointError: If the file is missing, unreadable or not laid out as the official files.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:
        raise CheckpointError(f'{path}: cannot read the checkpoint ({err})') from err
    if (
        not isinstance(ckpt, dict)
        or 'model_state_dict' not in ckpt
        or 'model_config' not in ckpt
    ):
        found = sorted(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: expected {{'model_config': ..., 'model_state_dict': ...}} as in the official GeoLink files, "
            f'found {found}'
        )
    config, state = ckpt['model_config'], ckpt['model_state_dict']
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(
            f'{path}: model_config and model_state_dict must be dicts'
        )
    if not isinstance(config.get('architecture'), str):
        raise CheckpointError(
            f"{path}: model_config has no 'architecture' (a timm model name)"
        )
    return config, state


def _vit_geometry(
    path: Path, state: Mapping[str, Tensor], patch_key: str, pos_key: str
) -> tuple[int, int]:
    """Infer the bands and image size of a ViT from its patch projection and position table.

    Args:
        path: The file (for messages).
        state: The state dict.
        patch_key: Key of the patch projection weight ``(D, C, p, p)``.
        pos_key: Key of the position table ``(1, 1 + L, D)``.

    Returns:
        ``in_chans`` and ``img_size``.

    Raises:
        CheckpointError: If a key is missing or the table is not square.
    """
    for key in (patch_key, pos_key):
        if key not in state:
            raise CheckpointError(f'{path}: missing key {key!r}')
    weight, table = state[patch_key], state[pos_key]
    grid = math.isqrt(table.shape[1] - 1)
    if grid * grid != table.shape[1] - 1:
        raise CheckpointError(
            f'{path}: {pos_key} of shape {tuple(table.shape)} is not a square patch grid'
        )
    return int(weight.shape[1]), grid * int(weight.shape[-1])


def _remap_gat(
    state: Mapping[str, Tensor], expected: set[str], path: Path
) -> dict[str, Tensor]:
    """Convert the GAT projection keys between PyG namings (``lin_src``/``lin_dst`` of 2.4, ``lin`` of 2.5+).

    Args:
        state: Incoming state dict.
        expected: Keys of the model it goes into.
        path: The file (for messages).

    Returns:
        A state dict with the model's naming.

    Raises:
        CheckpointError: If ``lin_src`` and ``lin_dst`` hold different tensors (not a shared projection).
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith('.lin_dst.weight'):
            src = state.get(key.replace('.lin_dst.', '.lin_src.'))
            if src is not None and not torch.equal(src, value):
                raise CheckpointError(
                    f'{path}: {key} differs from lin_src: not a GeoLink GAT with a shared W'
                )
            if key in expected:
                out[key] = value
            continue
        if key.endswith('.lin_src.weight') and key not in expected:
            key = key.replace('.lin_src.', '.lin.')
        elif key.endswith('.lin.weight') and key not in expected:
            alt = key.replace('.lin.', '.lin_src.')
            if alt in expected:
                out[key.replace('.lin.', '.lin_dst.')] = value
                key = alt
        out[key] = value
    return out


def _check_keys(missing: list[str], unexpected: list[str], path: Path) -> None:
    """Raise on missing or unexpected keys, listing a few.

    Args:
        missing: Keys the model needs and the file lacks.
        unexpected: Keys of the file the model does not have.
        path: The file (for messages).

    Raises:
        CheckpointError: If either list is not empty.
    """
    if missing or unexpected:
        raise CheckpointError(
            f'{path}: state dict does not match the model: {len(missing)} missing keys '
            f'{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}'
        )


def load_official_checkpoint(
    path: str | os.PathLike[str], legacy: bool = True, **kwargs: Any
) -> GeoLink:
    """Build a :class:`GeoLink` from an official multimodal checkpoint and load it strictly.

    The file (e.g. ``geolink_mutimodal_vit_large_patch16_224.pth``) is
    ``{'model_config': {'architecture': ...}, 'model_state_dict': ...}``; the ViT named by ``architecture`` (any
    timm ViT) is built with the bands and image size of the stored tensors. GAT weights saved under either PyG
    naming are accepted; the ``patch_embed`` alias and the unused timm ``cls_token``/``pos_embed``/``norm`` may be
    absent; any other missing or extra key is an error.

    Args:
        path: The checkpoint file.
        legacy: Reproduce the reference numerics (recommended with the official weights).
        **kwargs: Further :class:`GeoLink` arguments (must match the checkpoint's shapes).

    Returns:
        The model, in eval mode.

    Raises:
        CheckpointError: If the file is missing, malformed or does not match a GeoLink model.
    """
    path = Path(path)
    config, state = _read(path)
    in_chans, img_size = _vit_geometry(
        path, state, 'img_encoder.patch_embed.proj.weight', 'img_pos_embed'
    )
    try:
        model = GeoLink(
            config['architecture'],
            in_chans=in_chans,
            img_size=img_size,
            legacy=legacy,
            **kwargs,
        )
    except Exception as err:
        raise CheckpointError(
            f'{path}: cannot build GeoLink({config["architecture"]!r}): {err}'
        ) from err
    expected = set(model.state_dict())
    state = _remap_gat(state, expected, path)
    missing = [
        k
        for k in expected - set(state)
        if not k.startswith(_OPTIONAL_PREFIXES) and k not in _FIXED_TABLES
    ]
    unexpected = sorted(set(state) - expected)
    _check_keys(sorted(missing), unexpected, path)
    own = model.state_dict()
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f'{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}'
            )
    model.load_state_dict(state, strict=False)
    alias = model.patch_embed.proj
    if 'patch_embed.proj.weight' in state and not torch.equal(
        state['patch_embed.proj.weight'], alias.weight
    ):
        raise CheckpointError(
            f'{path}: patch_embed.* differs from img_encoder.patch_embed.*'
        )
    return model.eval()


def load_official_vit(path: str | os.PathLike[str]) -> nn.Module:
    """Load the official unimodal checkpoint (``geolink_vit_large_patch16_224.pth``) into a timm ViT.

    Args:
        path: The checkpoint file.

    Returns:
        The timm ViT (``num_classes=0, global_pool=''``, fixed ``pos_embed``), in eval mode.

    Raises:
        CheckpointError: If the file is missing, malformed or does not match the named ViT.
    """
    path = Path(path)
    config, state = _read(path)
    in_chans, img_size = _vit_geometry(
        path, state, 'patch_embed.proj.weight', 'pos_embed'
    )
    try:
        vit = timm.create_model(
            config['architecture'],
            pretrained=False,
            num_classes=0,
            global_pool='',
            in_chans=in_chans,
            img_size=img_size,
        )
    except Exception as err:
        raise CheckpointError(
            f'{path}: cannot build timm model {config["architecture"]!r}: {err}'
        ) from err
    result = vit.load_state_dict(state, strict=False)
    _check_keys(sorted(result.missing_keys), sorted(result.unexpected_keys), path)
    if not config.get('pos_embed_requires_grad', False):
        vit.pos_embed.requires_grad_(False)
    return vit.eval()


def official_state_dict(
    model: GeoLink, gat_naming: Literal['lin', 'lin_src'] = 'lin'
) -> dict[str, Tensor]:
    """State dict of a model laid out exactly as the official files.

    Args:
        model: The model.
        gat_naming: ``'lin'`` (PyG >= 2.5) or ``'lin_src'`` (PyG 2.4: ``lin_src`` and ``lin_dst`` keys holding
            the same tensor).

    Returns:
        The state dict (tensors detached, on their device).
    """
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if gat_naming == 'lin':
        return state
    out = {}
    for key, value in state.items():
        if key.startswith('osm_encoder.') and key.endswith('.lin.weight'):
            out[key.replace('.lin.', '.lin_src.')] = value
            out[key.replace('.lin.', '.lin_dst.')] = value
        else:
            out[key] = value
    return out


def save_official_checkpoint(
    model: GeoLink,
    path: str | os.PathLike[str],
    architecture: str,
    gat_naming: Literal['lin', 'lin_src'] = 'lin',
) -> None:
    """Save a model in the official multimodal file layout.

    Args:
        model: The model.
        path: Output ``.pth`` file.
        architecture: The timm name of its ViT (stored as ``model_config['architecture']``).
        gat_naming: PyG naming of the GAT weights, see :func:`official_state_dict`.
    """
    torch.save(
        {
            'model_config': {'architecture': architecture},
            'model_state_dict': official_state_dict(model, gat_naming),
        },
        path,
    )


_imagenet_rgb = T.Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
_page = 'https://github.com/bailubin/GeoLink_NeurIPS2025'


#: Metadata shared by the two official GeoLink checkpoints (a ViT-L/16 on RGB, pretrained with GeoLink).
_OFFICIAL_META: dict[str, object] = {
    'dataset': 'SkyScript + OpenStreetMap',
    'in_chans': 3,
    'model': 'vit_large_patch16_224',
    'publication': 'https://arxiv.org/abs/2509.26016',
    'repo': _page,
    'ssl_method': 'geolink',
    'bands': ['R', 'G', 'B'],
}


class GeoLinkViTLarge16_Weights(WeightsEnum):
    """GeoLink weights of a ViT-L/16 (timm *vit_large_patch16_224*), RGB, ImageNet normalisation of 0-255 input.

    Pretrained on about 1.27 M SkyScript image-OSM pairs (Bai et al., NeurIPS 2025).

    The official files are shared through the pages linked from the authors' repository (Google Drive /
    Hugging Face), which cannot be fetched by a script. Download the file by hand, then::

        model = GeoLinkViTLarge16_Weights.RGB_GEOLINK_MULTIMODAL.from_file(
            'geolink_mutimodal_vit_large_patch16_224.pth'
        )
        vit = GeoLinkViTLarge16_Weights.RGB_GEOLINK.from_file(
            'geolink_vit_large_patch16_224.pth'
        )

    or pass ``path=`` to :func:`geolink_vit_large_patch16_224` / :func:`vit_large_patch16_224_geolink`.
    :meth:`get_state_dict` (the automatic download) raises a :class:`CheckpointError` saying so.
    """

    RGB_GEOLINK_MULTIMODAL = Weights(
        url=_page,
        transforms=_imagenet_rgb,
        meta={
            **_OFFICIAL_META,
            'filename': 'geolink_mutimodal_vit_large_patch16_224.pth',
            'multimodal': True,
        },
    )
    RGB_GEOLINK = Weights(
        url=_page,
        transforms=_imagenet_rgb,
        meta={
            **_OFFICIAL_META,
            'filename': 'geolink_vit_large_patch16_224.pth',
            'multimodal': False,
        },
    )

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Refuse the automatic download (the hosts serve web pages, not files).

        Args:
            *args: Ignored.
            **kwargs: Ignored.

        Returns:
            Never returns.

        Raises:
            CheckpointError: Always, explaining the manual download.
        """
        raise CheckpointError(
            f'{self!r}: the official GeoLink weights cannot be downloaded automatically; download '
            f'{self.meta["filename"]} from the links on {self.url} and load it with '
            f'{self!r}.from_file(path)'
        )

    def from_file(self, path: str | os.PathLike[str], **kwargs: Any) -> nn.Module:
        """Load a manually downloaded file of this entry.

        Args:
            path: The downloaded ``.pth`` file.
            **kwargs: Passed to :func:`load_official_checkpoint` (multimodal entry only).

        Returns:
            A :class:`GeoLink` (multimodal entry) or a timm ViT (unimodal entry).
        """
        if self.meta['multimodal']:
            return load_official_checkpoint(path, **kwargs)
        return load_official_vit(path)


def geolink_vit_large_patch16_224(
    weights: GeoLinkViTLarge16_Weights | None = None,
    path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> GeoLink:
    """GeoLink with a ViT-L/16 image encoder.

    Args:
        weights: ``GeoLinkViTLarge16_Weights.RGB_GEOLINK_MULTIMODAL`` for the official weights, or None.
        path: The manually downloaded file of *weights*.
        **kwargs: Further :class:`GeoLink` arguments (``legacy`` defaults to True with weights).

    Returns:
        The model (randomly initialised without weights).

    Raises:
        CheckpointError: If weights are asked for without a file, or do not fit.
    """
    if weights is None:
        return GeoLink('vit_large_patch16_224', **kwargs)
    if not weights.meta['multimodal']:
        raise CheckpointError(
            f'{weights!r} holds only the ViT; use vit_large_patch16_224_geolink'
        )
    if path is None:
        weights.get_state_dict()
    assert path is not None
    kwargs.setdefault('legacy', True)
    return load_official_checkpoint(path, **kwargs)


def vit_large_patch16_224_geolink(
    weights: GeoLinkViTLarge16_Weights | None = None,
    path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm ViT-L/16 (``num_classes=0, global_pool=''``), optionally with GeoLink's unimodal weights.

    Args:
        weights: ``GeoLinkViTLarge16_Weights.RGB_GEOLINK`` for the official weights, or None.
        path: The manually downloaded file of *weights*.
        **kwargs: Further :func:`timm.create_model` arguments (without weights only).

    Returns:
        The ViT.

    Raises:
        CheckpointError: If weights are asked for without a file, or do not fit.
    """
    if weights is None:
        return timm.create_model(
            'vit_large_patch16_224',
            pretrained=False,
            num_classes=0,
            global_pool='',
            **kwargs,
        )
    if weights.meta['multimodal']:
        raise CheckpointError(
            f'{weights!r} is the multimodal model; use geolink_vit_large_patch16_224'
        )
    if path is None:
        weights.get_state_dict()
    assert path is not None
    return load_official_vit(path)
