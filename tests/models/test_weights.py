# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import json
from pathlib import Path
from typing import Literal

import pytest
import torch
from geolink_testing import batch_of, make_graph, tiny_geolink, tiny_vit

from torchgeo_geolink.errors import CheckpointError
from torchgeo_geolink.models import (
    GeoLink,
    GeoLinkFusionEncoder,
    GeoLinkViTLarge16_Weights,
    geolink_vit_large_patch16_224,
    load_official_checkpoint,
    load_official_vit,
    official_state_dict,
    save_official_checkpoint,
)

REFERENCE = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'reference'


def _tiny_official() -> None:
    # 'architecture' names a registered timm model: register the tiny test ViT under a name
    import timm.models._registry as registry

    if 'geolink_test_vit' not in registry._model_entrypoints:
        registry.register_model(_geolink_test_vit)


def _geolink_test_vit(
    pretrained: bool = False, in_chans: int = 3, img_size: int = 64, **kwargs: object
) -> torch.nn.Module:
    assert not pretrained
    return tiny_vit(img_size=img_size, in_chans=in_chans)


_geolink_test_vit.__name__ = 'geolink_test_vit'


@pytest.mark.parametrize('naming', ['lin', 'lin_src'])
def test_roundtrip_reproduces_outputs(
    tmp_path: Path, naming: Literal['lin', 'lin_src']
) -> None:
    _tiny_official()
    model = tiny_geolink(legacy=True).eval()
    state = official_state_dict(model, naming)
    gat = [k for k in state if k.startswith('osm_encoder.') and k.endswith('weight')]
    assert len(gat) == 9 * (2 if naming == 'lin_src' else 1)
    assert 'patch_embed.proj.weight' in state and 'img_encoder.pos_embed' in state
    path = tmp_path / 'geolink.pth'
    save_official_checkpoint(model, path, 'geolink_test_vit', naming)
    loaded = load_official_checkpoint(
        path,
        osm_in_chans=32,
        osm_out_embed_dim=16,
        graph_aggr_embed_dim=16,
        fusion_embed_dim=32,
        img_decoder_embed_dim=32,
        img_decoder_depth=1,
        img_decoder_num_heads=4,
        osm_cross_modal_encoder_num_heads=4,
        consistency_embed_dim=8,
    )
    assert loaded.legacy and not loaded.training
    images = torch.randn(2, 3, 64, 64)
    graphs = batch_of(make_graph((5, 3, 2), seed=1), make_graph((0, 2, 0)))
    with torch.no_grad():
        a = GeoLinkFusionEncoder(model, (1, 3))(images, graphs)
        b = GeoLinkFusionEncoder(loaded, (1, 3))(images, graphs)
        gen_a, gen_b = (
            torch.Generator().manual_seed(0),
            torch.Generator().manual_seed(0),
        )
        out_a, out_b = (
            model(images, graphs, generator=gen_a),
            loaded(images, graphs, generator=gen_b),
        )
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.equal(out_a.loss, out_b.loss)


def test_checkpoint_errors(tmp_path: Path) -> None:
    _tiny_official()
    with pytest.raises(CheckpointError, match='not found'):
        load_official_checkpoint(tmp_path / 'missing.pth')
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {}}, bad)
    with pytest.raises(CheckpointError, match='model_state_dict'):
        load_official_checkpoint(bad)
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='cannot read'):
        load_official_checkpoint(bad)
    model = tiny_geolink()
    state = official_state_dict(model)
    state['extra.weight'] = torch.zeros(1)
    del state['img_norm.weight']
    torch.save(
        {
            'model_config': {'architecture': 'geolink_test_vit'},
            'model_state_dict': state,
        },
        bad,
    )
    with pytest.raises(
        CheckpointError, match=r"1 missing keys \['img_norm.weight'\].*extra.weight"
    ):
        load_official_checkpoint(
            bad,
            osm_in_chans=32,
            osm_out_embed_dim=16,
            graph_aggr_embed_dim=16,
            fusion_embed_dim=32,
            img_decoder_embed_dim=32,
            img_decoder_depth=1,
            img_decoder_num_heads=4,
            osm_cross_modal_encoder_num_heads=4,
            consistency_embed_dim=8,
        )


def test_unimodal_vit(tmp_path: Path) -> None:
    _tiny_official()
    vit = tiny_vit().eval()
    path = tmp_path / 'vit.pth'
    torch.save(
        {
            'model_config': {'architecture': 'geolink_test_vit'},
            'model_state_dict': vit.state_dict(),
        },
        path,
    )
    loaded = load_official_vit(path)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(vit(images), loaded(images))
    assert not loaded.pos_embed.requires_grad
    state = vit.state_dict()
    del state['norm.weight']
    torch.save(
        {
            'model_config': {'architecture': 'geolink_test_vit'},
            'model_state_dict': state,
        },
        path,
    )
    with pytest.raises(CheckpointError, match=r'norm\.weight'):
        load_official_vit(path)


def test_weights_enum() -> None:
    entry = GeoLinkViTLarge16_Weights.RGB_GEOLINK_MULTIMODAL
    assert entry.meta['ssl_method'] == 'geolink' and entry.meta['in_chans'] == 3
    assert (
        entry.meta['bands'] == ['R', 'G', 'B']
        and entry.meta['model'] == 'vit_large_patch16_224'
    )
    with pytest.raises(CheckpointError, match='from_file'):
        entry.get_state_dict()
    with pytest.raises(CheckpointError, match=r'from_file'):
        geolink_vit_large_patch16_224(entry)
    with pytest.raises(CheckpointError, match='only the ViT'):
        geolink_vit_large_patch16_224(GeoLinkViTLarge16_Weights.RGB_GEOLINK)


@pytest.mark.parametrize('naming', ['lin', 'lin_src'])
def test_official_vitb_layout(
    tmp_path: Path, naming: Literal['lin', 'lin_src']
) -> None:
    ref = REFERENCE / 'official_state_dict_vitb16.json'
    if not ref.is_file():
        pytest.skip('shared reference key lists absent')
    info = json.loads(ref.read_text())
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
    torch.save(
        {
            'model_config': {'architecture': 'vit_base_patch16_224'},
            'model_state_dict': state,
        },
        path,
    )
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
