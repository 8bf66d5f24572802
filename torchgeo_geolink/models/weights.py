# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Loading and saving GeoLink weights: official files, checkpoints, WeightsEnum.

The two released GeoLink files are
``{'model_config': {...}, 'model_state_dict': {...}}`` dicts: the multimodal model
(``geolink_mutimodal_vit_large_patch16_224.pth``, every GeoLink tensor under its
:class:`GeoLink` name) and the image-only ViT (``geolink_vit_large_patch16_224.pth``, a
plain timm ViT state dict). Both were trained on RGB images normalized with the ImageNet
statistics, OSM tags embedded with CLIP ViT-B/16's text tower, and the reference
numerics that :class:`GeoLink` reproduces with ``legacy=True``.
:func:`geolink_from_weights` loads either file (or a Lightning checkpoint of a GeoLink
task) into a :class:`GeoLink` and returns what the weights imply
(:class:`WeightsProvenance`), which the tasks record in every checkpoint they write.
"""

import dataclasses
import inspect
import math
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import timm
import torch
import torchvision.transforms.v2 as T
from torch import Tensor, nn
from torchvision.models._api import Weights, WeightsEnum

from ..errors import CheckpointError
from ..osm.constants import EDGE_ATTR_DIMS
from .geolink import GeoLink
from .osm_encoder import OSMHeteroGAT

__all__ = (
    'ARCHITECTURE_DEFAULTS',
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'OFFICIAL_TAG_ENCODER',
    'WEIGHTS_DIR_ENV',
    'GeoLinkViTLarge16_Weights',
    'GeoLinkWeightsEnum',
    'WeightsProvenance',
    'export_vit',
    'geolink_from_architecture',
    'geolink_from_weights',
    'geolink_vit_large_patch16_224',
    'is_lightning_checkpoint',
    'lightning_state_dict',
    'load_geolink_weights',
    'load_official_checkpoint',
    'load_official_vit',
    'official_state_dict',
    'save_official_checkpoint',
    'tag_encoders_compatible',
    'vit_large_patch16_224_geolink',
)

#: Identity (:attr:`~torchgeo_geolink.osm.TagEncoder.identity`) of the tag encoder the
#: official weights expect: :class:`~torchgeo_geolink.osm.CLIPTagEncoder` with CLIP
#: ViT-B/16's text tower.  .. versionadded:: 0.1
OFFICIAL_TAG_ENCODER = 'clip-text-meanafterbos:openai/clip-vit-base-patch16:dim512'
#: ImageNet channel means of 0-255 RGB images, the normalization of the official
#: weights.  .. versionadded:: 0.1
IMAGENET_MEAN = (123.675, 116.28, 103.53)
#: ImageNet channel standard deviations of 0-255 RGB images.
#:
#: .. versionadded:: 0.1
IMAGENET_STD = (58.395, 57.12, 57.375)
#: Environment variable naming the folder that holds manually downloaded GeoLink weight
#: files.  .. versionadded:: 0.1
WEIGHTS_DIR_ENV = 'GEOLINK_WEIGHTS_DIR'

#: GeoLink architecture hyperparameter (task name) -> :class:`GeoLink` keyword argument.
_GEOLINK_ARGUMENTS = {
    'model': 'img_encoder',
    'in_channels': 'in_chans',
    'img_size': 'img_size',
    'osm_in_channels': 'osm_in_chans',
    'osm_hidden_channels': 'osm_out_embed_dim',
    'osm_node_positions': 'osm_node_positions',
    'contrastive_readout': 'contrastive_readout',
    'decoder_embed_dim': 'img_decoder_embed_dim',
    'decoder_depth': 'img_decoder_depth',
    'decoder_num_heads': 'img_decoder_num_heads',
    'img_mask_ratio': 'img_mask_ratio',
    'osm_mask_ratio': 'osm_mask_ratio',
    'temperature': 'temperature',
    'norm_pix_loss': 'norm_pix_loss',
    'legacy': 'legacy',
    'gather_distributed': 'gather_distributed',
}
_LOSS_WEIGHTS = ('rec_weight', 'cont_weight', 'node_weight')


def _architecture_defaults() -> dict[str, Any]:
    """Read the architecture defaults from the signatures of the model classes.

    Returns:
        Task-style hyperparameter name -> default.
    """
    geolink = inspect.signature(GeoLink.__init__).parameters
    gat = inspect.signature(OSMHeteroGAT.__init__).parameters
    defaults = {name: geolink[arg].default for name, arg in _GEOLINK_ARGUMENTS.items()}
    defaults['osm_in_channels'] = gat['in_channels'].default
    defaults['osm_hidden_channels'] = gat['out_channels'].default
    defaults['osm_num_layers'] = gat['num_layers'].default
    defaults['osm_edge_features'] = gat['edge_dims'].default is not None
    weights = geolink['loss_weights'].default
    defaults.update(zip(_LOSS_WEIGHTS, weights, strict=True))
    return defaults


#: Defaults of the hyperparameters that shape a :class:`GeoLink` (as the tasks name
#: them), read from the signatures of :class:`GeoLink` and :class:`OSMHeteroGAT`: the
#: one source of these values. ``img_size`` None means the ViT's own size.  ..
#: versionadded:: 0.1
ARCHITECTURE_DEFAULTS: dict[str, Any] = _architecture_defaults()


def geolink_from_architecture(architecture: Mapping[str, Any]) -> GeoLink:
    """Build a random :class:`GeoLink` from task-style architecture arguments.

    Args:
        architecture: Entries of :data:`ARCHITECTURE_DEFAULTS` (``model``,
            ``in_channels``, ``img_size``, ``osm_hidden_channels``, ...); missing ones
            take the defaults, other entries are ignored.

    Returns:
        The model.

    .. versionadded:: 0.1
    """
    hp = {
        **ARCHITECTURE_DEFAULTS,
        **{k: v for k, v in architecture.items() if k in ARCHITECTURE_DEFAULTS},
    }
    edge_dims = dict(EDGE_ATTR_DIMS) if hp['osm_edge_features'] else None
    osm_encoder = OSMHeteroGAT(
        hp['osm_in_channels'],
        hp['osm_hidden_channels'],
        num_layers=hp['osm_num_layers'],
        edge_dims=edge_dims,
    )
    kwargs = {arg: hp[name] for name, arg in _GEOLINK_ARGUMENTS.items()}
    img_encoder = kwargs.pop('img_encoder')
    if kwargs['img_size'] is None:
        del kwargs['img_size']
    return GeoLink(
        img_encoder,
        osm_encoder,
        loss_weights=tuple(hp[k] for k in _LOSS_WEIGHTS),
        **kwargs,
    )


@dataclasses.dataclass
class WeightsProvenance:
    """What a set of GeoLink weights was trained with, and so what its inputs must be.

    Recorded in every checkpoint the GeoLink tasks write (under
    ``'geolink_provenance'``) and read back by :func:`geolink_from_weights`.

    .. versionadded:: 0.1
    """

    #: Architecture hyperparameters (the keys of :data:`ARCHITECTURE_DEFAULTS`,
    #: ``legacy`` included).
    architecture: dict[str, Any]
    #: Whether the weights expect the reference numerics (``GeoLink(legacy=True)``).
    legacy: bool
    #: Identity of the tag encoder whose embeddings the OSM branch was trained on (None
    #: if unknown or any).
    tag_encoder: str | None = None
    #: Per-band means subtracted from the images (None if unknown).
    mean: list[float] | None = None
    #: Per-band divisors of the images (None if unknown).
    std: list[float] | None = None
    #: Band names of the images (None if unknown).
    bands: list[str] | None = None
    #: Where the weights come from, one of ``'random'``, ``'official-multimodal'``,
    #: ``'official-vit'`` and ``'lightning'``.
    source: str = 'random'
    #: Whether the OSM branch and the fusion block hold trained weights (False for the
    #: image-only file).
    osm_trained: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-type copy for a checkpoint.

        Returns:
            The fields as a dict.
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'WeightsProvenance':
        """Rebuild from :meth:`to_dict` output (unknown keys ignored).

        Args:
            data: The dict.

        Returns:
            The provenance.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _official_provenance(
    architecture: dict[str, Any], legacy: bool, source: str, osm_trained: bool
) -> WeightsProvenance:
    """Provenance of an official file.

    Args:
        architecture: The architecture built from the file.
        legacy: The numerics chosen.
        source: ``'official-multimodal'`` or ``'official-vit'``.
        osm_trained: Whether the file holds the OSM branch.

    Returns:
        The provenance.
    """
    return WeightsProvenance(
        architecture={**architecture, 'legacy': legacy},
        legacy=legacy,
        tag_encoder=OFFICIAL_TAG_ENCODER,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        bands=['R', 'G', 'B'],
        source=source,
        osm_trained=osm_trained,
    )


def tag_encoders_compatible(expected: str | None, actual: str | None) -> bool:
    """Tell whether graphs from the tag encoder *actual* suit *expected*'s weights.

    Identities are ``kind:model:settings`` strings
    (:attr:`~torchgeo_geolink.osm.TagEncoder.identity`). The kind and settings must be
    equal; a model given as a local folder matches the Hugging Face name with the same
    last path component (``/data/clip-vit-base-patch16`` matches
    ``openai/clip-vit-base-patch16``).

    Args:
        expected: Identity the weights were trained with (None: anything goes).
        actual: Identity of the encoder that made the graphs (None: unknown, accepted).

    Returns:
        True when compatible.

    .. versionadded:: 0.1
    """
    if expected is None or actual is None or expected == actual:
        return True
    a, b = expected.split(':'), actual.split(':')
    if len(a) != len(b) or len(a) < 3:
        return False
    if a[0] != b[0] or a[2:] != b[2:]:
        return False
    return Path(a[1]).name.lower() == Path(b[1]).name.lower()


# ---------------------------------------------------------------------------------------------- Lightning files


def is_lightning_checkpoint(checkpoint: Any) -> bool:
    """Tell whether a loaded checkpoint was written by Lightning.

    Args:
        checkpoint: The object returned by :func:`torch.load`.

    Returns:
        True when it is a dict with Lightning's ``state_dict`` and
        ``pytorch-lightning_version`` entries.

    .. versionadded:: 0.1
    """
    return (
        isinstance(checkpoint, Mapping)
        and 'state_dict' in checkpoint
        and 'pytorch-lightning_version' in checkpoint
    )


def _torch_load(path: Path, weights_only: bool | None = None, mmap: bool = True) -> Any:
    """Read a checkpoint file on the CPU (memory-mapped when the file format allows).

    Args:
        path: The file.
        weights_only: Refuse pickled objects other than tensors and plain containers;
            None tries that first and falls back to full unpickling (Lightning
            checkpoints hold other objects).
        mmap: Memory-map the file (files in torch's legacy, non-zip format are read
            whole instead).

    Returns:
        The loaded object.

    Raises:
        CheckpointError: If the file is missing or unreadable.
    """
    if not path.is_file():
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        return torch.load(
            path, map_location='cpu', weights_only=weights_only is not False, mmap=mmap
        )
    except Exception as err:  # torch raises many types for corrupt files
        if weights_only is None and isinstance(err, pickle.UnpicklingError):
            return _torch_load(path, weights_only=False, mmap=mmap)
        if mmap and 'mmap' in str(err):
            return _torch_load(path, weights_only, mmap=False)
        raise CheckpointError(
            f'{path}: cannot read the checkpoint: {str(err)[:300]}'
        ) from err


#: Prefixes of the GeoLink weights in the state dicts of the GeoLink tasks.
_TASK_PREFIXES = ('model.encoder.model.', 'model.')


def lightning_state_dict(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any] | None]:
    """Read a Lightning checkpoint of a GeoLink task.

    Args:
        path: Path to the ``.ckpt`` file.

    Returns:
        The task's hyperparameters, the state dict of its :class:`GeoLink` (the task
        prefix removed) and the recorded provenance (None for checkpoints written before
        it was recorded).

    Raises:
        CheckpointError: If the file is missing, unreadable or not a Lightning
            checkpoint of a GeoLink task.

    .. versionadded:: 0.1
    """
    path = Path(path)
    return _lightning_parts(path, _torch_load(path))


def _lightning_parts(
    path: Path, checkpoint: Any
) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any] | None]:
    """Split a loaded Lightning checkpoint of a GeoLink task.

    Args:
        path: The file (for messages).
        checkpoint: The loaded checkpoint.

    Returns:
        Hyperparameters, GeoLink state dict and provenance.

    Raises:
        CheckpointError: If it is not a Lightning checkpoint of a GeoLink task.
    """
    if not is_lightning_checkpoint(checkpoint):
        raise CheckpointError(
            f'{path}: not a Lightning checkpoint (no state_dict / pytorch-lightning_version)'
        )
    full = checkpoint['state_dict']
    for prefix in _TASK_PREFIXES:
        state = {
            k.removeprefix(prefix): v for k, v in full.items() if k.startswith(prefix)
        }
        if any(k.startswith('img_encoder.') for k in state):
            provenance = checkpoint.get('geolink_provenance')
            hparams = dict(checkpoint.get('hyper_parameters', {}))
            return hparams, state, provenance
    raise CheckpointError(
        f'{path}: holds no GeoLink weights (no model.img_encoder.* or model.encoder.model.img_encoder.* keys): '
        'not a checkpoint of a GeoLink task'
    )


def _load_strict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load a state dict strictly, turning a mismatch into a clear error.

    Args:
        model: The model.
        state: The weights.
        source: Where the weights come from (for the message).

    Raises:
        CheckpointError: If keys are missing or unexpected or a shape differs.
    """
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f'{source}: weights do not fit the model (architecture arguments differ?): {str(error)[:600]}'
        ) from error


# ---------------------------------------------------------------------------------------------- official files


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read an official checkpoint file and check its layout.

    Args:
        path: The ``.pth`` file.

    Returns:
        Its ``model_config`` and ``model_state_dict``.

    Raises:
        CheckpointError: If the file is missing, unreadable, a Lightning checkpoint, or
            not laid out as the official files (naming the offending key).
    """
    path = Path(path)
    return _official_parts(path, _torch_load(path))


def _official_parts(path: Path, ckpt: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Check a loaded official checkpoint, see :func:`_read`.

    Args:
        path: The file (for messages).
        ckpt: The loaded object.

    Returns:
        Its ``model_config`` and ``model_state_dict``.

    Raises:
        CheckpointError: If it is not laid out as the official files.
    """
    if is_lightning_checkpoint(ckpt):
        raise CheckpointError(
            f'{path}: this is a Lightning checkpoint, not an official GeoLink file: pass it as `weights` to a '
            'GeoLink task (GeoLinkSegmentation(weights=path)), reload the task with '
            '<Task>.load_from_checkpoint(path), or use geolink_from_weights(path)'
        )
    if (
        not isinstance(ckpt, dict)
        or 'model_state_dict' not in ckpt
        or 'model_config' not in ckpt
    ):
        found = (
            sorted(map(str, ckpt))[:5]
            if isinstance(ckpt, dict)
            else type(ckpt).__name__
        )
        raise CheckpointError(
            f"{path}: expected {{'model_config': ..., 'model_state_dict': ...}} as in the official GeoLink files, "
            f'found {found}'
        )
    config, state = ckpt['model_config'], ckpt['model_state_dict']
    if not isinstance(config, dict):
        raise CheckpointError(
            f'{path}: model_config must be a dict, got {type(config).__name__}'
        )
    if not isinstance(state, dict):
        raise CheckpointError(
            f'{path}: model_state_dict must be a dict, got {type(state).__name__}'
        )
    if not isinstance(config.get('architecture'), str):
        raise CheckpointError(
            f"{path}: model_config['architecture'] must be a timm model name, got {config.get('architecture')!r}"
        )
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f'{path}: state dict key {key!r} is not a string')
        if not isinstance(value, Tensor):
            raise CheckpointError(
                f'{path}: {key!r} holds a {type(value).__name__}, not a tensor'
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f'{path}: {key!r} holds NaN or infinite values')
    return config, state


def _is_image_only(state: Mapping[str, Tensor]) -> bool:
    """Tell the image-only file from the multimodal one.

    Args:
        state: The state dict.

    Returns:
        True for a plain timm ViT state dict.
    """
    return 'img_encoder.patch_embed.proj.weight' not in state and 'pos_embed' in state


def _vit_geometry(
    path: Path, state: Mapping[str, Tensor], patch_key: str, pos_key: str
) -> tuple[int, int]:
    """Infer the bands and image size of a ViT from its weights.

    Args:
        path: The file (for messages).
        state: The state dict.
        patch_key: Key of the patch projection weight ``(D, C, p, p)``.
        pos_key: Key of the position table ``(1, 1 + L, D)``.

    Returns:
        ``in_chans`` and ``img_size``.

    Raises:
        CheckpointError: If a key is missing, has the wrong rank, or the table is not a
            square grid.
    """
    for key in (patch_key, pos_key):
        if key not in state:
            raise CheckpointError(f'{path}: missing key {key!r}')
    weight, table = state[patch_key], state[pos_key]
    if weight.dim() != 4 or weight.shape[-1] != weight.shape[-2]:
        raise CheckpointError(
            f'{path}: {patch_key!r} has shape {tuple(weight.shape)}, expected (D, C, p, p)'
        )
    if table.dim() != 3 or table.shape[0] != 1 or table.shape[1] < 2:
        raise CheckpointError(
            f'{path}: {pos_key!r} has shape {tuple(table.shape)}, expected (1, 1 + L, D)'
        )
    grid = math.isqrt(table.shape[1] - 1)
    if grid * grid != table.shape[1] - 1:
        raise CheckpointError(
            f'{path}: {pos_key!r} of shape {tuple(table.shape)} is not a square patch grid'
        )
    return int(weight.shape[1]), grid * int(weight.shape[-1])


def _remap_gat(
    state: Mapping[str, Tensor], expected: set[str], path: Path
) -> dict[str, Tensor]:
    """Convert the GAT projection keys between PyG namings.

    Args:
        state: Incoming state dict.
        expected: Keys of the model it goes into.
        path: The file (for messages).

    Returns:
        A state dict with the model's naming.

    Raises:
        CheckpointError: If ``lin_src`` and ``lin_dst`` hold different tensors (not a
            shared projection).
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith('.lin_dst.weight'):
            src = state.get(key.replace('.lin_dst.', '.lin_src.'))
            if src is not None and not torch.equal(src, value):
                raise CheckpointError(
                    f'{path}: {key!r} differs from its lin_src: not a GeoLink GAT with a shared W'
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


def _check_shapes(
    own: Mapping[str, Tensor], state: Mapping[str, Tensor], path: Path
) -> None:
    """Raise when a tensor's shape differs from the model's.

    Args:
        own: The model's state dict.
        state: The incoming state dict (keys of the model).
        path: The file (for messages).

    Raises:
        CheckpointError: Naming the first key whose shape differs.
    """
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f'{path}: {key!r} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}'
            )


def _build(path: Path, architecture: str, **kwargs: Any) -> GeoLink:
    """Build the :class:`GeoLink` an official file describes.

    Args:
        path: The file (for messages).
        architecture: The timm name.
        **kwargs: :class:`GeoLink` arguments.

    Returns:
        The model.

    Raises:
        CheckpointError: If it cannot be built.
    """
    try:
        return GeoLink(architecture, **kwargs)
    except Exception as err:
        raise CheckpointError(
            f'{path}: cannot build GeoLink({architecture!r}): {err}'
        ) from err


#: Keys of the multimodal layout that carry no information and may be absent from a
#: file.
_OPTIONAL_PREFIXES = (
    'patch_embed.',
    'img_encoder.cls_token',
    'img_encoder.pos_embed',
    'img_encoder.norm.',
)
#: Fixed sin-cos tables, recomputed by the model when a file lacks them.
_FIXED_TABLES = ('img_pos_embed', 'rec_img_pos_embed', 'fusion_img_pos_embed')
#: The ``patch_embed`` alias of the multimodal layout and the tensors it duplicates.
_ALIASES = {
    'patch_embed.proj.weight': 'img_encoder.patch_embed.proj.weight',
    'patch_embed.proj.bias': 'img_encoder.patch_embed.proj.bias',
}


def load_official_checkpoint(
    path: str | os.PathLike[str], legacy: bool = True, **kwargs: Any
) -> GeoLink:
    """Build a :class:`GeoLink` from an official multimodal checkpoint.

    The file (e.g. ``geolink_mutimodal_vit_large_patch16_224.pth``) is
    ``{'model_config': {'architecture': ...}, 'model_state_dict': ...}``; the ViT named
    by ``architecture`` (any timm ViT) is built with the bands and image size of the
    stored tensors. GAT weights saved under either PyG naming are accepted; the
    ``patch_embed`` alias must equal ``img_encoder.patch_embed`` (it is the same tensor
    in the model) and may be absent, as may the unused timm
    ``cls_token``/``pos_embed``/``norm``; any other missing or extra key is an error.

    Args:
        path: The checkpoint file.
        legacy: Reproduce the reference numerics (as the official weights were trained).
        **kwargs: Further :class:`GeoLink` arguments (must match the checkpoint's
            shapes).

    Returns:
        The model, in eval mode.

    Raises:
        CheckpointError: If the file is missing, malformed, the image-only file, or does
            not match a GeoLink model; the message names the file and the key.

    .. versionadded:: 0.1
    """
    path = Path(path)
    config, state = _read(path)
    return _load_multimodal(path, config, state, legacy, **kwargs)


def _load_multimodal(
    path: Path,
    config: Mapping[str, Any],
    state: Mapping[str, Tensor],
    legacy: bool,
    **kwargs: Any,
) -> GeoLink:
    """Load a checked multimodal file, see :func:`load_official_checkpoint`.

    Args:
        path: The file (for messages).
        config: Its ``model_config``.
        state: Its ``model_state_dict``.
        legacy: The numerics.
        **kwargs: Further :class:`GeoLink` arguments.

    Returns:
        The model, in eval mode.

    Raises:
        CheckpointError: If the state dict does not match a GeoLink model.
    """
    if _is_image_only(state):
        raise CheckpointError(
            f'{path}: this is the image-only GeoLink ViT (no img_encoder.* keys); load it with '
            'load_official_vit(path) (a timm ViT) or geolink_from_weights(path) (a GeoLink model)'
        )
    in_chans, img_size = _vit_geometry(
        path, state, 'img_encoder.patch_embed.proj.weight', 'img_pos_embed'
    )
    for alias, key in _ALIASES.items():
        if alias in state and (
            key not in state
            or state[alias].shape != state[key].shape
            or not torch.equal(state[alias], state[key])
        ):
            raise CheckpointError(
                f'{path}: {alias!r} differs from {key!r}; the official files store the same tensor twice, so '
                'the file is corrupt or was edited'
            )
    state = {k: v for k, v in state.items() if k not in _ALIASES}
    model = _build(
        path,
        config['architecture'],
        in_chans=in_chans,
        img_size=img_size,
        legacy=legacy,
        **kwargs,
    )
    own = model.state_dict()
    expected = set(own)
    state = _remap_gat(state, expected, path)
    missing = [
        k
        for k in expected - set(state)
        if not k.startswith(_OPTIONAL_PREFIXES) and k not in _FIXED_TABLES
    ]
    _check_keys(sorted(missing), sorted(set(state) - expected), path)
    _check_shapes(own, state, path)
    model.load_state_dict(state, strict=False)
    return model.eval()


def _vit_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Timm arguments of the image-only file.

    Args:
        config: Its ``model_config``.

    Returns:
        ``num_classes`` and ``global_pool`` (as stored, default 0 and '').
    """
    return {
        'num_classes': config.get('num_classes', 0),
        'global_pool': config.get('global_pool', ''),
    }


def load_official_vit(path: str | os.PathLike[str]) -> nn.Module:
    """Load the official image-only checkpoint into a timm ViT.

    Args:
        path: The checkpoint file.

    Returns:
        The timm ViT (``num_classes=0, global_pool=''``, fixed ``pos_embed``), in eval
        mode.

    Raises:
        CheckpointError: If the file is missing, malformed, the multimodal file, or does
            not match the named ViT.

    .. versionadded:: 0.1
    """
    path = Path(path)
    config, state = _read(path)
    if not _is_image_only(state):
        raise CheckpointError(
            f'{path}: this is the multimodal GeoLink file (img_encoder.* keys); load it with '
            'load_official_checkpoint(path), or take its ViT with export_vit(load_official_checkpoint(path))'
        )
    in_chans, img_size = _vit_geometry(
        path, state, 'patch_embed.proj.weight', 'pos_embed'
    )
    try:
        vit = timm.create_model(
            config['architecture'],
            pretrained=False,
            in_chans=in_chans,
            img_size=img_size,
            **_vit_config(config),
        )
    except Exception as err:
        raise CheckpointError(
            f'{path}: cannot build timm model {config["architecture"]!r}: {err}'
        ) from err
    own = vit.state_dict()
    _check_keys(sorted(set(own) - set(state)), sorted(set(state) - set(own)), path)
    _check_shapes(own, state, path)
    vit.load_state_dict(state)
    if not config.get('pos_embed_requires_grad', False):
        vit.pos_embed.requires_grad_(False)
    return vit.eval()


def _geolink_from_vit_file(
    path: Path, config: Mapping[str, Any], state: Mapping[str, Tensor], legacy: bool
) -> tuple[GeoLink, dict[str, Any]]:
    """Build a :class:`GeoLink` whose image branch holds the image-only file.

    The file's ``cls_token``, ``pos_embed`` and ``norm`` are GeoLink's own
    ``cls_token``, ``img_pos_embed`` and ``img_norm`` (what the exporter copied there);
    they also fill the unused timm copies.

    Args:
        path: The image-only file (for messages).
        config: Its ``model_config``.
        state: Its ``model_state_dict``.
        legacy: The numerics of the model.

    Returns:
        The model (eval mode) and its architecture.

    Raises:
        CheckpointError: If the file does not match the named ViT.
    """
    in_chans, img_size = _vit_geometry(
        path, state, 'patch_embed.proj.weight', 'pos_embed'
    )
    model = _build(
        path,
        config['architecture'],
        in_chans=in_chans,
        img_size=img_size,
        legacy=legacy,
    )
    vit_keys = set(model.img_encoder.state_dict())
    _check_keys(sorted(vit_keys - set(state)), sorted(set(state) - vit_keys), path)
    mapped = {f'img_encoder.{k}': v for k, v in state.items()}
    mapped |= {
        f'patch_embed.{k.removeprefix("patch_embed.")}': v
        for k, v in state.items()
        if k.startswith('patch_embed.')
    }
    mapped['cls_token'] = state['cls_token']
    mapped['img_pos_embed'] = state['pos_embed']
    mapped['img_norm.weight'] = state['norm.weight']
    mapped['img_norm.bias'] = state['norm.bias']
    own = model.state_dict()
    _check_shapes(own, mapped, path)
    model.load_state_dict(mapped, strict=False)
    architecture = {
        'model': config['architecture'],
        'in_channels': in_chans,
        'img_size': img_size,
    }
    return model.eval(), architecture


def _vit_name(model: GeoLink) -> str:
    """The timm name of a GeoLink model's ViT.

    Args:
        model: The model.

    Returns:
        The name.

    Raises:
        CheckpointError: If the ViT was not created by timm under a name.
    """
    cfg = getattr(model.img_encoder, 'pretrained_cfg', None) or {}
    name = cfg.get('architecture') if isinstance(cfg, Mapping) else None
    if not isinstance(name, str):
        raise CheckpointError(
            'the model\'s ViT has no timm name (pretrained_cfg["architecture"]); pass architecture='
        )
    return name


def export_vit(
    model: GeoLink,
    path: str | os.PathLike[str] | None = None,
    architecture: str | None = None,
) -> dict[str, Any]:
    """Export the image branch of a GeoLink model in the official image-only layout.

    GeoLink's own ``cls_token``, position table and final norm go to timm's
    ``cls_token``, ``pos_embed`` and ``norm`` (timm's own copies inside :class:`GeoLink`
    are never used), so
    ``timm.create_model(architecture, num_classes=0, global_pool='')`` loaded with the
    state dict computes GeoLink's patch tokens (up to the final norm's epsilon, 1e-6 in
    timm and 1e-5 in GeoLink).

    Args:
        model: Any GeoLink model.
        path: Also save the checkpoint to this ``.pth`` file.
        architecture: timm name of the ViT (default: the name the ViT was created
            under).

    Returns:
        ``{'model_config': {'architecture', 'num_classes', 'global_pool', 'pos_embed_requires_grad'}, 'model_state_dict': ...}``.

    Raises:
        CheckpointError: If *architecture* is not given and the ViT has no timm name.

    .. versionadded:: 0.1
    """
    name = architecture or _vit_name(model)
    state = {k: v.detach().clone() for k, v in model.img_encoder.state_dict().items()}
    state['cls_token'] = model.cls_token.detach().clone()
    state['pos_embed'] = model.img_pos_embed.detach().clone()
    state['norm.weight'] = model.img_norm.weight.detach().clone()
    state['norm.bias'] = model.img_norm.bias.detach().clone()
    checkpoint = {
        'model_config': {
            'architecture': name,
            'num_classes': 0,
            'global_pool': '',
            'pos_embed_requires_grad': False,
        },
        'model_state_dict': state,
    }
    if path is not None:
        torch.save(checkpoint, path)
    return checkpoint


def official_state_dict(
    model: GeoLink, gat_naming: Literal['lin', 'lin_src'] = 'lin'
) -> dict[str, Tensor]:
    """State dict of a model laid out exactly as the official multimodal file.

    Args:
        model: The model.
        gat_naming: ``'lin'`` (PyG >= 2.5) or ``'lin_src'`` (PyG 2.4: ``lin_src`` and
            ``lin_dst`` keys holding the same tensor).

    Returns:
        The state dict (tensors detached, on their device).

    .. versionadded:: 0.1
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
    architecture: str | None = None,
    gat_naming: Literal['lin', 'lin_src'] = 'lin',
) -> None:
    """Save a model in the official multimodal file layout.

    Args:
        model: The model.
        path: Output ``.pth`` file.
        architecture: The timm name of its ViT (stored as
            ``model_config['architecture']``; default: the name the ViT was created
            under).
        gat_naming: PyG naming of the GAT weights, see :func:`official_state_dict`.

    .. versionadded:: 0.1
    """
    torch.save(
        {
            'model_config': {'architecture': architecture or _vit_name(model)},
            'model_state_dict': official_state_dict(model, gat_naming),
        },
        path,
    )


# ---------------------------------------------------------------------------------------------- any weights


def _choose_legacy(
    legacy: bool | None, implied: bool, source: str, quiet: bool = False
) -> bool:
    """Pick the numerics: an explicit choice wins (warned when it contradicts).

    Args:
        legacy: The user's choice (None: take the weights').
        implied: What the weights were trained with.
        source: The weights (for the message).
        quiet: Do not warn.

    Returns:
        The numerics to use.
    """
    if legacy is None:
        return implied
    if legacy != implied and not quiet:
        warnings.warn(
            f'{source}: the weights were trained with legacy={implied}, running them with legacy={legacy} '
            'changes their outputs (OSM LayerNorm statistics, type attention, node positions, node cap)',
            UserWarning,
            stacklevel=3,
        )
    return legacy


def _resolve(weights: 'str | os.PathLike[str] | WeightsEnum') -> Path:
    """The file of a path or a weights enum member.

    Args:
        weights: A path or a :class:`GeoLinkWeightsEnum` member.

    Returns:
        The file.

    Raises:
        CheckpointError: If an enum member's file cannot be found, or the member is not
            a GeoLink one.
    """
    if isinstance(weights, GeoLinkWeightsEnum):
        return weights.path()
    if isinstance(weights, WeightsEnum):
        raise CheckpointError(
            f'{weights!r} is not a GeoLink weights entry; pass a GeoLinkWeightsEnum member or a file path'
        )
    return Path(weights)


def geolink_from_weights(
    weights: 'str | os.PathLike[str] | WeightsEnum | None',
    architecture: Mapping[str, Any] | None = None,
    *,
    legacy: bool | None = None,
) -> tuple[GeoLink, WeightsProvenance]:
    """Build a :class:`GeoLink` from any GeoLink weights; tell what they imply.

    Accepts, and recognizes by content:

    * the official multimodal file (every GeoLink tensor; ``legacy`` defaults to True);
    * the official image-only ViT file (the image branch; the OSM branch and fusion
      block stay randomly initialized, ``osm_trained`` is False; ``legacy`` defaults to
      True);
    * a Lightning checkpoint of a GeoLink task (pretraining, segmentation, ...): the
      architecture comes from its recorded provenance or hyperparameters, ``legacy``
      defaults to what it was trained with;
    * a :class:`GeoLinkWeightsEnum` member (its manually downloaded file, see
      :meth:`GeoLinkWeightsEnum.path`);
    * None: a random model of *architecture* (``legacy`` defaults to False).

    An explicit *legacy* always wins; a warning says when it contradicts the weights.

    Args:
        weights: The weights.
        architecture: Architecture hyperparameters for ``weights=None`` (keys of
            :data:`ARCHITECTURE_DEFAULTS`); ignored for files, which carry their own.
        legacy: The numerics (None: what the weights were trained with).

    Returns:
        The model (eval mode, weights loaded) and the weights' provenance.

    Raises:
        CheckpointError: If the file is missing, unreadable or malformed, or its weights
            do not fit.

    .. versionadded:: 0.1
    """
    if weights is None:
        arch = {**ARCHITECTURE_DEFAULTS, **dict(architecture or {})}
        arch['legacy'] = bool(arch['legacy'] if legacy is None else legacy)
        arch = {k: arch[k] for k in ARCHITECTURE_DEFAULTS}
        model = geolink_from_architecture(arch).eval()
        return model, WeightsProvenance(arch, arch['legacy'])
    path = _resolve(weights)
    checkpoint = _torch_load(path)
    if is_lightning_checkpoint(checkpoint):
        return _from_lightning(path, checkpoint, legacy)
    config, state = _official_parts(path, checkpoint)
    chosen = _choose_legacy(legacy, True, str(path))
    if _is_image_only(state):
        model, arch = _geolink_from_vit_file(path, config, state, chosen)
        source, osm_trained = 'official-vit', False
    else:
        model = _load_multimodal(path, config, state, chosen)
        arch = {
            'model': config['architecture'],
            'in_channels': model.in_chans,
            'img_size': model.img_size[0],
        }
        source, osm_trained = 'official-multimodal', True
    provenance = _official_provenance(
        {**ARCHITECTURE_DEFAULTS, **arch}, chosen, source, osm_trained
    )
    return model.eval(), provenance


def load_geolink_weights(
    model: GeoLink,
    weights: 'str | os.PathLike[str] | WeightsEnum',
    follow_legacy: bool = False,
) -> WeightsProvenance:
    """Load any GeoLink weights into an existing model of their architecture.

    The image-only file fills the image branch only; every other file must fit the model
    strictly.

    Args:
        model: The model; its ``legacy`` is kept (a warning says when the weights were
            trained otherwise) unless *follow_legacy*.
        weights: A file path or a :class:`GeoLinkWeightsEnum` member.
        follow_legacy: Set the model's ``legacy`` to what the weights were trained with.

    Returns:
        The weights' provenance.

    Raises:
        CheckpointError: If the weights cannot be read or do not fit the model.

    .. versionadded:: 0.1
    """
    loaded, provenance = geolink_from_weights(
        weights, legacy=None if follow_legacy else model.legacy
    )
    model.legacy = loaded.legacy
    state = loaded.state_dict()
    source = str(weights)
    if provenance.source != 'official-vit':
        _load_strict(model, state, source)
    else:
        prefixes = (
            'img_encoder.',
            'patch_embed.',
            'cls_token',
            'img_pos_embed',
            'img_norm.',
        )
        image = {k: v for k, v in state.items() if k.startswith(prefixes)}
        own = model.state_dict()
        missing = sorted(k for k in own if k.startswith(prefixes) and k not in image)
        _check_keys(missing, sorted(set(image) - set(own)), Path(source))
        _check_shapes(own, image, Path(source))
        model.load_state_dict(image, strict=False)
    arch = {
        k: provenance.architecture.get(k) for k in ('model', 'in_channels', 'img_size')
    }
    return dataclasses.replace(
        provenance,
        architecture={**provenance.architecture, **arch},
        legacy=model.legacy,
    )


def _from_lightning(
    path: Path, checkpoint: Any, legacy: bool | None
) -> tuple[GeoLink, WeightsProvenance]:
    """Build a GeoLink from a Lightning checkpoint of a GeoLink task.

    Args:
        path: The ``.ckpt`` file (for messages).
        checkpoint: Its loaded content.
        legacy: The numerics (None: the checkpoint's).

    Returns:
        The model and its provenance.

    Raises:
        CheckpointError: If the weights do not fit the recorded architecture.
    """
    hparams, state, recorded = _lightning_parts(path, checkpoint)
    if recorded is not None:
        provenance = WeightsProvenance.from_dict(recorded)
        arch = dict(provenance.architecture)
    else:  # checkpoints written before provenance was recorded: the pretraining task's hyperparameters
        arch = dict(hparams.get('architecture') or hparams)
        arch = {k: arch[k] for k in ARCHITECTURE_DEFAULTS if k in arch}
        provenance = WeightsProvenance(
            {**ARCHITECTURE_DEFAULTS, **arch},
            bool(arch.get('legacy', False)),
            source='lightning',
            osm_trained=True,
        )
    chosen = _choose_legacy(legacy, provenance.legacy, str(path))
    arch = {**ARCHITECTURE_DEFAULTS, **arch, 'legacy': chosen}
    model = geolink_from_architecture(arch)
    _load_strict(model, state, str(path))
    provenance = dataclasses.replace(
        provenance, architecture=arch, legacy=chosen, source='lightning'
    )
    return model.eval(), provenance


# ---------------------------------------------------------------------------------------------- weights enum


_imagenet_rgb = T.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
_page = 'https://github.com/bailubin/GeoLink_NeurIPS2025'


class GeoLinkWeightsEnum(WeightsEnum):
    """A ``WeightsEnum`` whose files are downloaded by hand.

    The GeoLink files are linked from the official repository's README, on pages that a
    script cannot fetch. Download the file named by ``meta['filename']`` and put it in
    the folder named by the environment variable ``GEOLINK_WEIGHTS_DIR``
    (:data:`WEIGHTS_DIR_ENV`), or in ``$TORCH_HOME/hub/checkpoints`` (where TorchGeo's
    own weights are cached); :meth:`get_state_dict` then works as for any TorchGeo
    weights. The environment variable may also name the file itself.

    .. versionadded:: 0.1
    """

    def search_paths(self) -> list[Path]:
        """Where the file is looked for, in order.

        Returns:
            Candidate file paths.
        """
        name = str(self.meta['filename'])
        out: list[Path] = []
        env = os.environ.get(WEIGHTS_DIR_ENV)
        if env:
            given = Path(env).expanduser()
            out.append(given if given.suffix in ('.pth', '.pt') else given / name)
        out.append(Path(torch.hub.get_dir()) / 'checkpoints' / name)
        return out

    def path(self) -> Path:
        """The manually downloaded file of this entry.

        Returns:
            The first existing candidate of :meth:`search_paths`.

        Raises:
            CheckpointError: If the file is in none of them, saying where to download it
                and where to put it.
        """
        candidates = self.search_paths()
        for candidate in candidates:
            if candidate.is_file():
                size = self.meta.get('file_size')
                if size is not None and candidate.stat().st_size != size:
                    raise CheckpointError(
                        f'{candidate}: {candidate.stat().st_size} bytes, {self!r} is {size} bytes: download '
                        'it again (incomplete download?)'
                    )
                return candidate
        where = ', '.join(str(c) for c in candidates)
        raise CheckpointError(
            f'{self!r}: {self.meta["filename"]} not found (looked in {where}). The GeoLink weights cannot be '
            f'downloaded by a script: download {self.meta["filename"]} from the links on {self.url}, then put '
            f'it in a folder named by the environment variable {WEIGHTS_DIR_ENV} (or in '
            f'{Path(torch.hub.get_dir()) / "checkpoints"}), or pass the file path as `weights`'
        )

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The weights of the manually downloaded file, as a state dict.

        For a multimodal entry, the state dict of :class:`GeoLink` (``legacy`` does not
        change its keys); for an image-only entry, that of
        ``timm.create_model(meta['model'], num_classes=0, global_pool='')``, so
        TorchGeo's tasks and :func:`torchgeo.models.get_weight`-style code can use it.

        Args:
            *args: Ignored (TorchGeo passes download options).
            **kwargs: Ignored.

        Returns:
            The state dict.

        Raises:
            CheckpointError: If the file is missing or malformed.
        """
        path = self.path()
        if self.meta.get('multimodal'):
            return load_official_checkpoint(path).state_dict()
        return load_official_vit(path).state_dict()

    def from_file(
        self, path: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> nn.Module:
        """Load this entry's file.

        Args:
            path: The downloaded ``.pth`` file (default: :meth:`path`).
            **kwargs: Passed to :func:`load_official_checkpoint` (multimodal entry
                only).

        Returns:
            A :class:`GeoLink` (multimodal entry) or a timm ViT (image-only entry).
        """
        path = self.path() if path is None else Path(path)
        if self.meta['multimodal']:
            return load_official_checkpoint(path, **kwargs)
        return load_official_vit(path)


#: Metadata shared by the two official GeoLink checkpoints (a ViT-L/16 on RGB,
#: pretrained with GeoLink).
_OFFICIAL_META: dict[str, object] = {
    'dataset': 'SkyScript + OpenStreetMap',
    'in_chans': 3,
    'model': 'vit_large_patch16_224',
    'publication': 'https://arxiv.org/abs/2509.26016',
    'repo': _page,
    'ssl_method': 'geolink',
    'bands': ['R', 'G', 'B'],
    'mean': list(IMAGENET_MEAN),
    'std': list(IMAGENET_STD),
    'tag_encoder': OFFICIAL_TAG_ENCODER,
    'legacy': True,
}


class GeoLinkViTLarge16_Weights(GeoLinkWeightsEnum):  # type: ignore[misc]
    """GeoLink weights of a ViT-L/16, RGB, ImageNet normalization of 0-255 input.

    Pretrained on about 1.27 M SkyScript image-OSM pairs (Bai et al., NeurIPS 2025), OSM
    tags embedded with CLIP ViT-B/16's text tower. Download the file by hand (see
    :class:`GeoLinkWeightsEnum`), then::

        export GEOLINK_WEIGHTS_DIR=/data/geolink   # holds the downloaded .pth files
        model, provenance = geolink_from_weights(GeoLinkViTLarge16_Weights.RGB_GEOLINK_MULTIMODAL)
        vit = GeoLinkViTLarge16_Weights.RGB_GEOLINK.from_file()

    .. versionadded:: 0.1
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


def geolink_vit_large_patch16_224(
    weights: GeoLinkViTLarge16_Weights | None = None,
    path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> GeoLink:
    """GeoLink with a ViT-L/16 image encoder.

    Args:
        weights: ``GeoLinkViTLarge16_Weights.RGB_GEOLINK_MULTIMODAL`` for the official
            weights, or None.
        path: The manually downloaded file of *weights* (default:
            :meth:`GeoLinkWeightsEnum.path`).
        **kwargs: Further :class:`GeoLink` arguments (``legacy`` defaults to True with
            weights).

    Returns:
        The model (randomly initialized without weights).

    Raises:
        CheckpointError: If the file is missing or does not fit.

    .. versionadded:: 0.1
    """
    if weights is None:
        return GeoLink('vit_large_patch16_224', **kwargs)
    if not weights.meta['multimodal']:
        raise CheckpointError(
            f'{weights!r} holds only the ViT; use vit_large_patch16_224_geolink or geolink_from_weights'
        )
    kwargs.setdefault('legacy', True)
    return load_official_checkpoint(weights.path() if path is None else path, **kwargs)


def vit_large_patch16_224_geolink(
    weights: GeoLinkViTLarge16_Weights | None = None,
    path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm ViT-L/16, optionally with GeoLink's image-only weights.

    Args:
        weights: ``GeoLinkViTLarge16_Weights.RGB_GEOLINK`` for the official weights, or
            None.
        path: The manually downloaded file of *weights* (default:
            :meth:`GeoLinkWeightsEnum.path`).
        **kwargs: Further :func:`timm.create_model` arguments (without weights only).

    Returns:
        The ViT.

    Raises:
        CheckpointError: If the file is missing or does not fit.

    .. versionadded:: 0.1
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
    return load_official_vit(weights.path() if path is None else path)
