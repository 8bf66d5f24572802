# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Official GeoLink files written here, Lightning checkpoints, provenance, the enum."""

import inspect
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import pytest
import timm
import torch
from torch import Tensor
from torchgeo.tasks import Classification
from torchvision.models._api import Weights

from tests.models.geolink_testing import batch_of, make_graph
from torchgeo_geolink.errors import CheckpointError
from torchgeo_geolink.models import (
    ARCHITECTURE_DEFAULTS,
    IMAGENET_MEAN,
    OFFICIAL_TAG_ENCODER,
    WEIGHTS_DIR_ENV,
    GeoLink,
    GeoLinkFusionEncoder,
    GeoLinkViTLarge16_Weights,
    GeoLinkWeightsEnum,
    export_vit,
    geolink_from_weights,
    geolink_vit_large_patch16_224,
    load_official_checkpoint,
    load_official_vit,
    official_state_dict,
    save_official_checkpoint,
    tag_encoders_compatible,
)
from torchgeo_geolink.tasks import GeoLinkPretrain

#: Parameter names and shapes of the official ViT-B/16 checkpoint (see
#: tests/data/official).
REFERENCE = (
    Path(__file__).resolve().parents[1] / 'data' / 'official' / 'state_dict_vitb16.json'
)
VIT = 'vit_tiny_patch16_224'  #: a real timm ViT, built at 32 px (2 x 2 patches) to stay small
SIZE = 32


def official_model(seed: int = 0) -> GeoLink:
    """An official-default GeoLink (CLIP-width OSM branch), tiny ViT, legacy mode."""
    torch.manual_seed(seed)
    return GeoLink(VIT, img_size=SIZE, legacy=True).eval()


def graphs_and_images() -> tuple[Tensor, Any]:
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, SIZE, SIZE, generator=gen)
    graphs = batch_of(
        make_graph((5, 3, 2), dim=512, seed=1), make_graph((0, 2, 0), dim=512)
    )
    return images, graphs


def write(path: Path, state: dict[str, Any], config: Any = None) -> Path:
    torch.save(
        {
            'model_config': {'architecture': VIT} if config is None else config,
            'model_state_dict': state,
        },
        path,
    )
    return path


def multimodal_file(
    tmp_path: Path, naming: Literal['lin', 'lin_src'] = 'lin_src'
) -> tuple[Path, GeoLink]:
    """The released multimodal layout (PyG 2.4 keeps lin_src and lin_dst, equal)."""
    model = official_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if naming == 'lin_src':
        for key in [k for k in state if k.endswith('.lin.weight')]:
            value = state.pop(key)
            state[key.replace('.lin.', '.lin_src.')] = value
            state[key.replace('.lin.', '.lin_dst.')] = value
    return write(tmp_path / f'multimodal_{naming}.pth', state), model


def vit_file(tmp_path: Path) -> tuple[Path, GeoLink]:
    """Image-only layout: a timm ViT state dict of GeoLink's cls token, table, norm."""
    model = official_model(seed=1)
    torch.nn.init.normal_(model.img_norm.weight, 1.0, 0.1)
    vit = timm.create_model(
        VIT, pretrained=False, num_classes=0, global_pool='', img_size=SIZE
    )
    state = {k: v.clone() for k, v in model.img_encoder.state_dict().items()}
    state['cls_token'] = model.cls_token.detach().clone()
    state['pos_embed'] = model.img_pos_embed.detach().clone()
    state['norm.weight'] = model.img_norm.weight.detach().clone()
    state['norm.bias'] = model.img_norm.bias.detach().clone()
    assert set(state) == set(vit.state_dict())
    config = {
        'architecture': VIT,
        'num_classes': 0,
        'global_pool': '',
        'pos_embed_requires_grad': False,
    }
    return write(tmp_path / 'vit.pth', state, config), model


@pytest.mark.parametrize('naming', ['lin', 'lin_src'])
def test_multimodal_file_official_defaults(
    tmp_path: Path, naming: Literal['lin', 'lin_src']
) -> None:
    path, model = multimodal_file(tmp_path, naming)
    saved = torch.load(path, weights_only=True)['model_state_dict']
    gat = [k for k in saved if k.startswith('osm_encoder.') and '.lin' in k]
    assert len(gat) == 9 * (2 if naming == 'lin_src' else 1)
    loaded, provenance = geolink_from_weights(path)
    # what the file implies, without asking
    assert loaded.legacy and provenance.legacy
    assert provenance.tag_encoder == OFFICIAL_TAG_ENCODER
    assert provenance.mean == list(IMAGENET_MEAN) and provenance.bands == [
        'R',
        'G',
        'B',
    ]
    assert provenance.source == 'official-multimodal' and provenance.osm_trained
    assert provenance.architecture['model'] == VIT
    assert provenance.architecture['img_size'] == SIZE
    images, graphs = graphs_and_images()
    with torch.no_grad():
        a = GeoLinkFusionEncoder(model, (5, 11))(images, graphs)
        b = GeoLinkFusionEncoder(loaded, (5, 11))(images, graphs)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_explicit_legacy_wins_with_warning(tmp_path: Path) -> None:
    path, _ = multimodal_file(tmp_path)
    with pytest.warns(UserWarning, match='trained with legacy=True'):
        model, provenance = geolink_from_weights(path, legacy=False)
    assert not model.legacy and not provenance.legacy
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert geolink_from_weights(path, legacy=True)[0].legacy


def test_alias_mismatch_refused(tmp_path: Path) -> None:
    path, model = multimodal_file(tmp_path)
    state = torch.load(path, weights_only=True)['model_state_dict']
    state['patch_embed.proj.weight'] = torch.zeros_like(
        state['patch_embed.proj.weight']
    )
    write(path, state)
    with pytest.raises(
        CheckpointError, match=r"'patch_embed.proj.weight' differs from"
    ):
        load_official_checkpoint(path)
    del state['patch_embed.proj.weight'], state['patch_embed.proj.bias']
    write(path, state)  # the alias may be absent
    loaded = load_official_checkpoint(path)
    assert torch.equal(
        loaded.patch_embed.proj.weight,
        model.img_encoder.get_parameter('patch_embed.proj.weight'),
    )


def _bad(name: str, tmp_path: Path) -> tuple[Path, str]:
    """A malformed file and the message it must give."""
    path = tmp_path / f'{name}.pth'
    state = official_state_dict(official_model())
    match name:
        case 'not_a_tensor':
            state['img_norm.weight'] = 'abc'  # ty: ignore[invalid-assignment]
            return write(path, state), r"'img_norm.weight' holds a str, not a tensor"
        case 'nan':
            state['img_norm.bias'] = torch.full_like(
                state['img_norm.bias'], float('nan')
            )
            return write(path, state), r"'img_norm.bias' holds NaN"
        case 'missing_key':
            del state['img_norm.weight']
            return write(path, state), r"1 missing keys \['img_norm.weight'\]"
        case 'extra_key':
            state['extra.weight'] = torch.zeros(1)
            return write(path, state), r"unexpected keys \['extra.weight'\]"
        case 'shape':
            state['img_norm.weight'] = torch.ones(7)
            return write(path, state), r"'img_norm.weight' has shape \(7,\)"
        case 'lin_dst_differs':
            key = next(k for k in state if k.endswith('.lin.weight'))
            del state[key]
            state[key.replace('.lin.', '.lin_src.')] = torch.zeros(128, 512)
            state[key.replace('.lin.', '.lin_dst.')] = torch.ones(128, 512)
            return write(path, state), 'differs from its lin_src'
        case 'no_architecture':
            return write(path, state, {}), r"model_config\['architecture'\]"
        case 'config_not_dict':
            return write(path, state, ['x']), 'model_config must be a dict'
        case 'state_not_dict':
            return write(path, [1, 2]), 'model_state_dict must be a dict'  # ty: ignore[invalid-argument-type]
        case 'not_square':
            state['img_pos_embed'] = torch.zeros(1, 6, 192)
            return write(path, state), 'not a square patch grid'
        case 'garbage':
            path.write_bytes(b'not a checkpoint')
            return path, 'cannot read'
        case 'wrong_layout':
            torch.save({'state_dict': {}}, path)
            return path, 'model_state_dict'
        case 'missing':
            return tmp_path / 'absent.pth', 'not found'
    raise AssertionError(name)


@pytest.mark.parametrize(
    'name',
    [
        'not_a_tensor',
        'nan',
        'missing_key',
        'extra_key',
        'shape',
        'lin_dst_differs',
        'no_architecture',
        'config_not_dict',
        'state_not_dict',
        'not_square',
        'garbage',
        'wrong_layout',
        'missing',
    ],
)
def test_malformed_official_file(name: str, tmp_path: Path) -> None:
    path, match = _bad(name, tmp_path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_official_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match=match):
        geolink_from_weights(path)


def test_lightning_checkpoint_where_official_expected(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    task = GeoLinkPretrain(model=VIT, img_size=SIZE, osm_hidden_channels=16)
    trainer = Trainer(
        accelerator='cpu', max_epochs=0, logger=False, default_root_dir=tmp_path
    )
    trainer.strategy.connect(task)
    path = tmp_path / 'pretrain.ckpt'
    trainer.save_checkpoint(path)
    for load in (load_official_checkpoint, load_official_vit):
        with pytest.raises(
            CheckpointError, match=r'Lightning checkpoint.*load_from_checkpoint'
        ):
            load(path)
    # the generic loader takes it, with its recorded architecture
    model, provenance = geolink_from_weights(path)
    assert model.embed_dim == 192 and provenance.source == 'lightning'
    assert provenance.architecture['osm_hidden_channels'] == 16


def test_wrong_file_for_loader(tmp_path: Path) -> None:
    multimodal, _ = multimodal_file(tmp_path)
    vit, _ = vit_file(tmp_path)
    with pytest.raises(CheckpointError, match='image-only'):
        load_official_checkpoint(vit)
    with pytest.raises(CheckpointError, match='multimodal'):
        load_official_vit(multimodal)


def test_image_only_file_into_geolink(tmp_path: Path) -> None:
    path, model = vit_file(tmp_path)
    loaded, provenance = geolink_from_weights(path)
    assert loaded.legacy and provenance.source == 'official-vit'
    assert not provenance.osm_trained and provenance.tag_encoder == OFFICIAL_TAG_ENCODER
    images, _ = graphs_and_images()
    with torch.no_grad():
        assert torch.equal(loaded.patch_tokens(images), model.patch_tokens(images))
    vit = load_official_vit(path)
    assert isinstance(vit, timm.models.VisionTransformer)
    assert vit.pos_embed is not None and not vit.pos_embed.requires_grad
    with torch.no_grad():
        tokens = vit.forward_features(images)[:, 1:]
    # the same network; only the final norm's epsilon differs (timm 1e-6, GeoLink 1e-5)
    assert torch.allclose(tokens, model.patch_tokens(images), atol=1e-3)


def test_export_vit_round_trip(tmp_path: Path) -> None:
    model = official_model(seed=2)
    torch.nn.init.normal_(model.cls_token, std=0.5)
    path = tmp_path / 'exported.pth'
    checkpoint = export_vit(model, path)
    assert checkpoint['model_config']['architecture'] == VIT
    state = checkpoint['model_state_dict']
    assert torch.equal(
        state['cls_token'], model.cls_token
    )  # GeoLink's, not timm's unused copy
    assert not torch.equal(
        state['cls_token'], model.img_encoder.get_parameter('cls_token')
    )
    back, provenance = geolink_from_weights(path)
    assert provenance.source == 'official-vit'
    own = model.state_dict()
    image_keys = [
        k
        for k in own
        if k.startswith(('img_encoder.blocks', 'patch_embed', 'cls_token', 'img_norm'))
    ]
    assert image_keys
    for key in image_keys:
        assert torch.equal(back.state_dict()[key], own[key]), key
    images, _ = graphs_and_images()
    with torch.no_grad():
        assert torch.equal(back.patch_tokens(images), model.patch_tokens(images))
    # and the multimodal export of the same model round-trips too
    save_official_checkpoint(model, tmp_path / 'multimodal.pth', gat_naming='lin_src')
    again = load_official_checkpoint(tmp_path / 'multimodal.pth')
    for key, value in own.items():
        assert torch.equal(again.state_dict()[key], value), key


def test_architecture_defaults_one_source() -> None:
    signature = inspect.signature(GeoLinkPretrain.__init__).parameters
    shared = [
        k
        for k in ARCHITECTURE_DEFAULTS
        if k in signature and k not in ('img_size', 'legacy')
    ]
    assert len(shared) == len(ARCHITECTURE_DEFAULTS) - 2
    assert signature['legacy'].default is None  # None: the weights' numerics
    for key in shared:
        assert signature[key].default == ARCHITECTURE_DEFAULTS[key], key


def test_tag_encoders_compatible() -> None:
    assert tag_encoders_compatible(OFFICIAL_TAG_ENCODER, None)
    assert tag_encoders_compatible(None, 'hashing-v1:dim512')
    local = 'clip-text-meanafterbos:/data/models/clip-vit-base-patch16:dim512'
    assert tag_encoders_compatible(OFFICIAL_TAG_ENCODER, local)
    assert not tag_encoders_compatible(
        OFFICIAL_TAG_ENCODER,
        'clip-text-meanafterbos:openai/clip-vit-large-patch14:dim768',
    )
    assert not tag_encoders_compatible(OFFICIAL_TAG_ENCODER, 'hashing-v1:dim512:h2:s1')


class _TinyWeights(GeoLinkWeightsEnum):
    """The enum machinery on a small image-only file (a ViT-Ti/16 at 224 px)."""

    RGB_TINY = Weights(
        url='https://example.invalid/geolink',
        transforms=torch.nn.Identity(),
        meta={'filename': 'tiny_geolink_vit.pth', 'multimodal': False, 'model': VIT},
    )


def test_weights_enum_manual_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / 'weights'))
    entry = GeoLinkViTLarge16_Weights.RGB_GEOLINK_MULTIMODAL
    assert entry.meta['tag_encoder'] == OFFICIAL_TAG_ENCODER and entry.meta['legacy']
    with pytest.raises(CheckpointError) as info:
        entry.get_state_dict()
    message = str(info.value)
    assert 'geolink_mutimodal_vit_large_patch16_224.pth' in message
    assert WEIGHTS_DIR_ENV in message and str(tmp_path / 'weights') in message
    with pytest.raises(CheckpointError, match='only the ViT'):
        geolink_vit_large_patch16_224(GeoLinkViTLarge16_Weights.RGB_GEOLINK)
    # a downloaded file in the folder: TorchGeo's own Classification task takes the
    # image-only entry
    vit = timm.create_model(VIT, pretrained=False, num_classes=0, global_pool='')
    (tmp_path / 'weights').mkdir()
    file = tmp_path / 'weights' / 'tiny_geolink_vit.pth'
    write(file, vit.state_dict())
    assert _TinyWeights.RGB_TINY.path() == file
    task = Classification(model=VIT, weights=_TinyWeights.RGB_TINY, num_classes=3)
    for key, value in vit.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key
    # the variable may name the file itself
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(file))
    assert _TinyWeights.RGB_TINY.path() == file
    assert isinstance(_TinyWeights.RGB_TINY.from_file(), torch.nn.Module)


@pytest.mark.parametrize('naming', ['lin', 'lin_src'])
def test_official_vitb_layout(
    tmp_path: Path, naming: Literal['lin', 'lin_src']
) -> None:
    info = json.loads(REFERENCE.read_text())
    shapes = dict(info['state_dict'])
    if naming == 'lin_src':
        shapes = {
            k: v
            for k, v in shapes.items()
            if k not in info['pyg_2_4_0_variant']['keys_only_in_pyg281']
        }
        shapes.update(info['pyg_2_4_0_variant']['keys_only_in_pyg240'])
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v, generator=gen) * 0.02 for k, v in shapes.items()}
    for key in [k for k in state if k.endswith('lin_dst.weight')]:
        state[key] = state[key.replace('lin_dst', 'lin_src')]
    state['patch_embed.proj.weight'] = state['img_encoder.patch_embed.proj.weight']
    state['patch_embed.proj.bias'] = state['img_encoder.patch_embed.proj.bias']
    path = tmp_path / 'official.pth'
    write(path, state, {'architecture': 'vit_base_patch16_224'})
    model = load_official_checkpoint(path)
    assert isinstance(model, GeoLink) and model.embed_dim == 768
    own = model.state_dict()
    assert torch.equal(own['img_norm.weight'], state['img_norm.weight'])
    src = (
        'osm_encoder.convs.0.convs.<line___to___polygon>.lin'
        + ('_src' if naming == 'lin_src' else '')
        + '.weight'
    )
    assert torch.equal(
        own['osm_encoder.convs.0.convs.<line___to___polygon>.lin.weight'], state[src]
    )


def test_legacy_torch_file_format(tmp_path: Path) -> None:
    model = official_model()
    path = tmp_path / 'old_format.pth'
    torch.save(
        {
            'model_config': {'architecture': VIT},
            'model_state_dict': official_state_dict(model, 'lin_src'),
        },
        path,
        _use_new_zipfile_serialization=False,  # cannot be memory-mapped
    )
    loaded, provenance = geolink_from_weights(path)
    assert provenance.source == 'official-multimodal'
    assert torch.equal(loaded.img_norm.weight, model.img_norm.weight)
