# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import cast

import pytest
import torch
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import nn

from tests.models.geolink_testing import batch_of, make_graph, tiny_geolink
from torchgeo_geolink.models import (
    GeoLinkFusionEncoder,
    GeoLinkSegmentationModel,
    UPerNetHead,
)

#: Official-format graphs committed with the tests (see tests/data/official).
FIXTURES = Path(__file__).resolve().parents[1] / 'data' / 'official' / 'ufz' / 'graph'
#: The official release's own UFZ graphs, when its example data sits next to the
#: repository.
UFZ = (
    Path(__file__).resolve().parents[2]
    / '..'
    / 'shared'
    / 'data'
    / 'geolink_examples'
    / 'ufz'
    / 'graph'
)


def _encoder(legacy: bool = False) -> GeoLinkFusionEncoder:
    return GeoLinkFusionEncoder(
        tiny_geolink(legacy=legacy).eval(), output_layers=(1, 2, 3)
    )


def test_shapes_and_unimodal_path() -> None:
    encoder = _encoder()
    assert encoder.out_channels == [64, 64, 32]
    images = torch.randn(2, 3, 64, 64)
    graphs = batch_of(make_graph((5, 3, 2), seed=1), make_graph((0, 0, 0)))
    with torch.no_grad():
        maps, attention = encoder.forward_with_attention(images, graphs)
        plain = encoder(images)
    assert [tuple(m.shape) for m in maps] == [
        (2, 64, 4, 4),
        (2, 64, 4, 4),
        (2, 32, 4, 4),
    ]
    assert attention is not None and attention.shape == (2, 10, 16)
    assert torch.allclose(attention[0].sum(dim=-1), torch.ones(10), atol=1e-5)
    assert [tuple(m.shape) for m in plain] == [tuple(m.shape) for m in maps]
    # the raw maps do not depend on OSM; the hybrid map does, except for the OSM-empty
    # sample
    assert torch.allclose(plain[0], maps[0])
    assert not torch.allclose(plain[2][0], maps[2][0], atol=1e-4)
    assert torch.allclose(plain[2][1], maps[2][1], atol=1e-5)


def test_raw_maps_are_block_outputs() -> None:
    encoder = _encoder()
    model = encoder.model
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        tokens = model.run_blocks(model.embed_patches(images)[:, :])
        maps = encoder(images)
        x = model.embed_patches(images)
        x = torch.cat([(model.cls_token + model.img_pos_embed[:, :1]), x], dim=1)
        for block in list(cast(nn.Sequential, model.img_encoder.blocks))[:2]:
            x = block(x)
    assert torch.allclose(
        maps[0], x[:, 1:].transpose(1, 2).reshape(1, 64, 4, 4), atol=1e-5
    )
    assert tokens.shape == (1, 17, 64)


def test_eval_is_deterministic() -> None:
    encoder = _encoder(legacy=True)
    graphs = batch_of(make_graph((40, 20, 10), seed=1))  # more than 50 nodes
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = encoder(images, graphs), encoder(images, graphs)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_batch_independence_and_legacy_dependence() -> None:
    graphs = [
        make_graph((6, 4, 3), seed=1),
        make_graph((12, 2, 7), seed=2),
        make_graph((0, 0, 0)),
    ]
    images = torch.randn(3, 3, 64, 64)
    for legacy in (False, True):
        encoder = _encoder(legacy)
        with torch.no_grad():
            alone = encoder(images[:1], batch_of(graphs[0]))[-1]
            together = encoder(images, batch_of(*graphs))[-1][:1]
        assert torch.allclose(alone, together, atol=1e-5) != legacy  # B9 in legacy mode


def test_legacy_caps_the_fusion_at_50_nodes() -> None:
    encoder = _encoder(legacy=True)
    model = encoder.model
    graphs = batch_of(make_graph((45, 10, 0), seed=1), make_graph((2, 0, 1), seed=2))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _, attention = encoder.forward_with_attention(images, graphs)
        inputs = model.osm_inputs(graphs, 2)
        dense = model.dense_osm_tokens(
            model.encode_osm(inputs.x, inputs), inputs, None, 50
        )
        model.legacy = False
        _, attention_all = encoder.forward_with_attention(images, graphs)
    assert attention is not None and attention.shape == (2, 50, 16)
    assert attention_all is not None and attention_all.shape == (2, 55, 16)
    # without a sort key the first 50 nodes in type order are kept: 45 polygons, then
    # lines 0..4; then graph 1's 3 nodes (the legacy fusion passes random keys, see
    # test_node_cap.py)
    assert dense.node_type[0].tolist() == [0] * 45 + [1] * 5
    assert dense.node_index[0].tolist() == list(range(45)) + list(range(5))
    assert dense.valid.sum(dim=1).tolist() == [50, 3]


def test_bad_layers() -> None:
    with pytest.raises(ValueError, match='output_layers'):
        GeoLinkFusionEncoder(tiny_geolink(), output_layers=(1, 4))


def test_segmentation_model() -> None:
    encoder = GeoLinkFusionEncoder(tiny_geolink(), output_layers=(0, 1, 2, 3))
    seg = GeoLinkSegmentationModel(
        encoder, num_classes=5, channels=16, freeze_encoder=True
    ).train()
    images = torch.randn(2, 3, 64, 64)
    graphs = batch_of(make_graph((3, 2, 1)), make_graph((0, 1, 0)))
    logits = seg(images, graphs)
    assert logits.shape == (2, 5, 64, 64)
    logits.logsumexp(dim=1).mean().backward()
    assert not encoder.training
    assert all(p.grad is None for p in encoder.parameters())
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for p in seg.head.parameters()
    )
    trainable = GeoLinkSegmentationModel(
        encoder.requires_grad_(True), num_classes=5, channels=16
    )
    trainable(images, graphs).mean().backward()
    assert encoder.model.img_fusion_mlp.weight.grad is not None


def test_upernet_head_is_smps_decoder() -> None:
    head = UPerNetHead([8, 12, 16], num_classes=4, channels=16).eval()
    assert isinstance(head.decoder, UPerNetDecoder)
    features = [
        torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate((8, 12, 16))
    ]
    with torch.no_grad():
        logits = head(features)
        assert logits.shape == (2, 4, 16, 16)
        # the fused map is smp's decoder output, classified by a 1x1 convolution
        decoded = head.decoder([features[0], features[0], *features])
        torch.testing.assert_close(logits, head.classifier(decoded))
    with pytest.raises(ValueError, match='at least two pyramid levels'):
        UPerNetHead([8], num_classes=4)


@pytest.mark.parametrize(
    'folder',
    [pytest.param(FIXTURES, id='fixtures')]
    + ([pytest.param(UFZ, id='ufz')] if UFZ.is_dir() else []),
)
def test_official_ufz_graphs(folder: Path) -> None:
    osm = pytest.importorskip('torchgeo_geolink.osm')
    paths = sorted(folder.glob('*.pt'))[:3]
    graphs = [osm.from_official_graph(torch.load(p, weights_only=False)) for p in paths]
    torch.manual_seed(0)
    from tests.models.geolink_testing import tiny_vit
    from torchgeo_geolink.models import GeoLink

    model = GeoLink(tiny_vit(img_size=224), legacy=True, img_decoder_depth=1).eval()
    encoder = GeoLinkFusionEncoder(model, output_layers=(1, 3))
    with torch.no_grad():
        maps, attention = encoder.forward_with_attention(
            torch.randn(3, 3, 224, 224), batch_of(*graphs)
        )
    assert maps[-1].shape == (3, 256, 14, 14) and torch.isfinite(maps[-1]).all()
    # legacy mode: 50 node tokens per graph (a random 50, or all nodes padded to 50)
    assert attention is not None and attention.shape == (3, 50, 196)
    assert torch.isfinite(attention).all()
