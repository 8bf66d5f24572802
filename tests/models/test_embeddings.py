# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink's embedding API: spatial order, determinism, agreement of entry points."""

import torch

from tests.models.geolink_testing import batch_of, make_graph
from torchgeo_geolink.models import GeoLink, GeoLinkFusionEncoder


def test_patch_tokens_deterministic_and_leave_rng_alone(model: GeoLink) -> None:
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    state = torch.get_rng_state()
    first = model.patch_tokens(images)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, model.patch_tokens(images))
    assert first.shape == (2, 16, 64)


def test_patch_tokens_in_spatial_order(model: GeoLink) -> None:
    # With the position table removed, a transformer without positions is
    # permutation-equivariant: moving one patch's content must move exactly its token,
    # row-major over the 4 x 4 grid.
    model.eval()
    with torch.no_grad():
        model.img_pos_embed.zero_()
    images = torch.randn(1, 3, 64, 64)
    moved = images.clone()
    # swap patch (0, 1) with patch (2, 3)
    a = images[..., 0:16, 16:32].clone()
    moved[..., 0:16, 16:32] = images[..., 32:48, 48:64]
    moved[..., 32:48, 48:64] = a
    tokens, tokens_moved = model.patch_tokens(images), model.patch_tokens(moved)
    i, j = 0 * 4 + 1, 2 * 4 + 3
    torch.testing.assert_close(tokens_moved[0, i], tokens[0, j])
    torch.testing.assert_close(tokens_moved[0, j], tokens[0, i])
    others = [k for k in range(16) if k not in (i, j)]
    torch.testing.assert_close(tokens_moved[0, others], tokens[0, others])


def test_patch_tokens_match_unmasked_encoder_after_unshuffle(model: GeoLink) -> None:
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    latent, mask, _, ids_keep = model.forward_img_encoder(
        images, mask_ratio=0.0, generator=torch.Generator().manual_seed(3)
    )
    assert not mask.any()
    unshuffled = torch.empty_like(latent[:, 1:])
    unshuffled.scatter_(1, ids_keep.unsqueeze(-1).expand_as(unshuffled), latent[:, 1:])
    torch.testing.assert_close(model.patch_tokens(images), unshuffled)


def test_embed_agrees_with_single_entry_points(model: GeoLink) -> None:
    model.eval()
    images = torch.randn(3, 3, 64, 64)
    graphs = batch_of(
        make_graph((3, 2, 4), seed=1),
        make_graph((0, 0, 0), seed=2),
        make_graph((1, 5, 0), seed=3),
    )
    out = model.embed(images, graphs)
    torch.testing.assert_close(out.image, model.image_embedding(images))
    torch.testing.assert_close(
        out.image_projected, model.image_embedding(images, project=True)
    )
    torch.testing.assert_close(out.osm, model.osm_embedding(graphs, 3))
    torch.testing.assert_close(
        out.osm_projected, model.osm_embedding(graphs, 3, project=True)
    )
    torch.testing.assert_close(out.fused, model.fused_embedding(images, graphs))
    assert out.has_osm.tolist() == [True, False, True]
    assert torch.equal(out.osm[1], torch.zeros_like(out.osm[1]))
    assert out.fused.shape == (3, model.fusion_embed_dim)
    torch.testing.assert_close(
        out.image_projected.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0
    )
    # the OSM graph changes the fused embedding of the windows that have nodes
    alone = model.fused_embedding(images, None)
    assert not torch.allclose(alone[0], out.fused[0])


def test_fused_embedding_is_mean_of_fusion_encoder_hybrid_map(model: GeoLink) -> None:
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    graphs = batch_of(make_graph((2, 3, 1), seed=4), make_graph((4, 0, 2), seed=5))
    encoder = GeoLinkFusionEncoder(model, output_layers=(3,))
    hybrid = encoder(images, graphs)[0]
    torch.testing.assert_close(
        model.fused_embedding(images, graphs), hybrid.flatten(2).mean(dim=2)
    )
