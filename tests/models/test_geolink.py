# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch
from torch_geometric.data import HeteroData

from tests.models.geolink_testing import batch_of, make_graph, tiny_geolink
from torchgeo_geolink.models import GeoLink, GeoLinkOutput, OSMHeteroGAT
from torchgeo_geolink.osm import EDGE_ATTR_DIMS


def _grads_finite(model: GeoLink) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(grads) and all(torch.isfinite(g).all() for g in grads)


def test_shapes(model: GeoLink) -> None:
    graphs = batch_of(make_graph((5, 3, 2), seed=1), make_graph((30, 12, 9), seed=2))
    out = model(torch.randn(2, 3, 64, 64), graphs)
    assert isinstance(out, GeoLinkOutput)
    assert out.pred_img.shape == (2, 16, 16 * 16 * 3)
    assert out.mask_img.shape == (2, 16)
    assert out.mask_img.sum(dim=1).tolist() == [12, 12]  # int(16 * 0.25) = 4 kept
    assert out.pred_osm.shape == out.target_osm.shape == (2, 10, 32)
    # graph 0: round(0.2 n) clamped to >= 1 per type -> 1 + 1 + 1; graph 1: 6 + 2 + 2 =
    # 10 (cap 10)
    assert out.mask_osm.sum(dim=1).tolist() == [3, 10]
    assert out.img_embedding.shape == out.osm_embedding.shape == (2, 8)
    assert torch.allclose(out.img_embedding.norm(dim=1), torch.ones(2))
    assert out.has_osm.tolist() == [True, True]
    for loss in (out.loss, out.loss_rec, out.loss_cont, out.loss_node):
        assert loss.dim() == 0 and torch.isfinite(loss)
    expected = out.loss_rec + 0.01 * out.loss_cont + 0.01 * out.loss_node
    assert torch.allclose(out.loss, expected)


def test_targets_are_the_masked_nodes_features(model: GeoLink) -> None:
    graph = make_graph((10, 0, 0), seed=3)
    out = model(torch.randn(1, 3, 64, 64), batch_of(graph))
    assert out.mask_osm.sum() == 2
    targets = out.target_osm[out.mask_osm]
    # every target is one of the graph's original polygon features (not a mask token)
    dist = torch.cdist(targets, graph['polygon'].x)
    assert torch.allclose(dist.min(dim=1).values, torch.zeros(2), atol=1e-5)


@pytest.mark.parametrize('empty_at', [0, 1, 2])
def test_osm_empty_sample_anywhere(model: GeoLink, empty_at: int) -> None:
    graphs = [make_graph((4, 3, 2), seed=s) for s in range(3)]
    graphs[empty_at] = make_graph((0, 0, 0))
    out = model(torch.randn(3, 3, 64, 64), batch_of(*graphs))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert out.has_osm.tolist() == [i != empty_at for i in range(3)]
    assert not out.mask_osm[empty_at].any()
    assert _grads_finite(model)


def test_osm_empty_batch(model: GeoLink) -> None:
    out = model(
        torch.randn(2, 3, 64, 64),
        batch_of(make_graph((0, 0, 0)), make_graph((0, 0, 0))),
    )
    out.loss.backward()
    assert out.loss_cont == 0 and out.loss_node == 0
    assert torch.allclose(out.loss, out.loss_rec)
    assert _grads_finite(model)


def test_node_type_absent_from_whole_batch(model: GeoLink) -> None:
    graphs = batch_of(
        make_graph((4, 0, 3), seed=1, drop=('line',)),
        make_graph((2, 0, 0), drop=('line',)),
    )
    out = model(torch.randn(2, 3, 64, 64), graphs)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.loss_node > 0
    assert _grads_finite(model)


def test_image_only_step(model: GeoLink) -> None:
    out = model(torch.randn(2, 3, 64, 64), None)
    assert out.loss_cont == 0 and not out.has_osm.any()
    assert torch.allclose(out.loss, out.loss_rec)


def test_generator_makes_step_reproducible(model: GeoLink) -> None:
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    graphs = batch_of(make_graph((20, 10, 5), seed=1), make_graph((3, 2, 1), seed=2))
    a = model(images, graphs, generator=torch.Generator().manual_seed(7))
    b = model(images, graphs, generator=torch.Generator().manual_seed(7))
    c = model(images, graphs, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.mask_img, b.mask_img) and torch.equal(a.loss, b.loss)
    assert not torch.equal(a.mask_img, c.mask_img)


def test_input_graph_is_not_modified(model: GeoLink) -> None:
    graphs = batch_of(make_graph((4, 3, 2), seed=1))
    x = graphs['polygon'].x.clone()
    model(torch.randn(1, 3, 64, 64), graphs)
    model(
        torch.randn(1, 3, 64, 64), graphs
    )  # B16: a second call on the same batch works
    assert torch.equal(graphs['polygon'].x, x)


def test_type_attention_legacy_is_sum() -> None:
    model = tiny_geolink(legacy=True)
    h = {
        t: torch.randn(n, 16)
        for t, n in zip(('polygon', 'line', 'point'), (3, 2, 1), strict=True)
    }
    graphs = batch_of(make_graph((3, 2, 1)))
    inputs = model.osm_inputs(graphs, 1)
    present = model.node_counts(inputs) > 0
    emb_legacy = model.graph_embedding(h, inputs, present)
    model.legacy = False
    emb_new = model.graph_embedding(h, inputs, present)
    slots = torch.stack(
        [
            model.osm_aggr_mlp[t](
                model.osm_read_out[t](h[t], inputs.batch[t], dim_size=1)
            )
            for t in ('polygon', 'line', 'point')
        ],
        dim=1,
    )
    assert torch.allclose(emb_legacy, slots.sum(dim=1), atol=1e-6)
    weights = model.type_attention(slots).squeeze(-1).softmax(dim=-1)
    assert torch.allclose(
        emb_new, (slots * weights.unsqueeze(-1)).sum(dim=1), atol=1e-6
    )


def test_type_attention_ignores_absent_types(model: GeoLink) -> None:
    graphs = batch_of(make_graph((3, 0, 0)))
    inputs = model.osm_inputs(graphs, 1)
    present = model.node_counts(inputs) > 0
    h = model.encode_osm(inputs.x, inputs)
    emb = model.graph_embedding(h, inputs, present)
    polygon = model.osm_aggr_mlp['polygon'](
        model.osm_read_out['polygon'](h['polygon'], inputs.batch['polygon'], dim_size=1)
    )
    assert torch.allclose(
        emb, polygon, atol=1e-6
    )  # the only present type gets weight 1


def test_legacy_norm_is_batch_dependent() -> None:
    graphs = [make_graph((6, 4, 3), seed=1), make_graph((9, 2, 5), seed=2)]
    for legacy, dependent in ((False, False), (True, True)):
        model = tiny_geolink(legacy=legacy)
        alone = model.osm_inputs(batch_of(graphs[0]), 1)
        both = model.osm_inputs(batch_of(*graphs), 2)
        h_alone = model.encode_osm(alone.x, alone)['polygon']
        h_both = model.encode_osm(both.x, both)['polygon'][:6]
        assert torch.allclose(h_alone, h_both, atol=1e-5) != dependent


@torch.no_grad()
def test_node_positions_reach_the_graph_embedding() -> None:
    graph = make_graph((5, 4, 3), seed=3)
    moved = graph.clone()
    for t in ('polygon', 'line', 'point'):
        moved[t].pos = 1 - moved[t].pos
    for enabled in (False, True):
        model = tiny_geolink(osm_node_positions=enabled).eval()
        assert ('osm_pos_embed.weight' in model.state_dict()) == enabled
        embeddings = []
        for g in (graph, moved):
            inputs = model.osm_inputs(batch_of(g), 1)
            h = model.encode_osm(inputs.x, inputs)
            present = model.node_counts(inputs) > 0
            embeddings.append(model.graph_embedding(h, inputs, present))
        assert torch.allclose(embeddings[0], embeddings[1]) != enabled


def test_node_positions_train_with_empty_samples() -> None:
    model = tiny_geolink(osm_node_positions=True)
    out = model(
        torch.randn(3, 3, 64, 64),
        batch_of(
            make_graph((4, 3, 2), seed=1), make_graph((0, 0, 0)), make_graph((2, 0, 1))
        ),
    )
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert _grads_finite(model)
    assert model.osm_pos_embed is not None
    grad = model.osm_pos_embed.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_edge_aware_encoder() -> None:
    encoder = OSMHeteroGAT(32, 16, num_layers=2, edge_dims=EDGE_ATTR_DIMS)
    model = tiny_geolink(osm_encoder=encoder)
    out = model(
        torch.randn(2, 3, 64, 64),
        batch_of(make_graph((4, 3, 2), seed=1), make_graph((0, 0, 0))),
    )
    out.loss.backward()
    conv = dict(encoder.convs[1].named_modules())['convs.<polygon___to___polygon>']
    lin_edge = conv.lin_edge
    assert lin_edge is not None and lin_edge.weight.grad is not None
    assert (
        torch.isfinite(lin_edge.weight.grad).all()
        and lin_edge.weight.grad.abs().sum() > 0
    )


def test_block_masking() -> None:
    model = tiny_geolink(mask_block_size=2, img_mask_ratio=0.5)
    out = model(torch.randn(3, 3, 64, 64), None)
    grid = out.mask_img.reshape(3, 2, 2, 2, 2)  # 2 x 2 blocks of 2 x 2 patches
    assert (grid.amin(dim=(2, 4)) == grid.amax(dim=(2, 4))).all()
    assert out.mask_img.sum(dim=1).tolist() == [8, 8, 8]


def test_multispectral_and_other_vit() -> None:
    torch.manual_seed(0)
    model = GeoLink(
        'vit_small_patch16_224',
        in_chans=5,
        img_size=32,
        img_decoder_embed_dim=32,
        img_decoder_num_heads=4,
        img_decoder_depth=1,
        osm_in_chans=32,
    )
    out = model(
        torch.randn(2, 5, 32, 32),
        batch_of(make_graph((2, 1, 1)), make_graph((1, 1, 0))),
    )
    assert out.pred_img.shape == (2, 4, 16 * 16 * 5)
    assert model.img_pos_embed.shape == (1, 5, 384)


def test_bad_inputs(model: GeoLink) -> None:
    graphs = batch_of(make_graph((2, 1, 1)))
    with pytest.raises(ValueError, match=r'images \(B, 3, 64, 64\)'):
        model(torch.randn(1, 3, 32, 32), graphs)
    with pytest.raises(ValueError, match='2 images but 1 OSM graphs'):
        model(torch.randn(2, 3, 64, 64), graphs)
    official = HeteroData()
    official['polygon'].x = torch.randn(3, 32 + 8)
    with pytest.raises(ValueError, match='from_official_graph'):
        model(torch.randn(1, 3, 64, 64), batch_of(official))
    with pytest.raises(ValueError, match='loss_weights'):
        tiny_geolink(loss_weights=(1.0, 0.5))


def test_one_batch_overfits() -> None:
    model = tiny_geolink(loss_weights=(1.0, 1.0, 1.0))
    images = torch.randn(4, 3, 64, 64)
    graphs = batch_of(
        *(make_graph((6, 4, 3), seed=s) for s in range(3)), make_graph((0, 0, 0))
    )
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        out = model(images, graphs, generator=gen)
        optim.zero_grad()
        out.loss.backward()
        optim.step()
        losses.append(out.loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_unpatchify_inverts_patchify_and_reconstruction_keeps_visible_patches() -> None:
    from torchgeo_geolink.models import patchify, reconstruct_images, unpatchify

    images = torch.randn(2, 3, 32, 48)
    patches = patchify(images, 16)
    assert torch.equal(unpatchify(patches, 16, 3, (2, 3)), images)
    mask = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    pred = torch.zeros(
        2, 6, 16 * 16 * 3
    )  # standardized prediction 0 -> each masked patch's own mean
    recon = patchify(reconstruct_images(pred, images, mask, 16, norm_pix=True), 16)
    assert torch.equal(recon[mask == 0], patches[mask == 0])
    expected = patches[mask == 1].mean(dim=-1, keepdim=True).expand(-1, 768)
    assert torch.allclose(recon[mask == 1], expected, atol=1e-6)
