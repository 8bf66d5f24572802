# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The fusion block's legacy 50-node cap (a random subset) and the image size checks."""

import pytest
import torch

from tests.models.geolink_testing import batch_of, make_graph, tiny_geolink
from torchgeo_geolink.models import GeoLink, random_subset_keys
from torchgeo_geolink.models.geolink import LEGACY_FUSION_NODES
from torchgeo_geolink.osm.constants import NODE_TYPES

COUNTS = (47, 67, 47)  #: polygons, lines, points of one tile (161 nodes)


def kept_types(model: GeoLink, seed: int | None) -> torch.Tensor:
    """Node types the legacy cap keeps of a 47/67/47 graph, as GeoLink.fuse selects."""
    inputs = model.osm_inputs(batch_of(make_graph(COUNTS)), 1)
    h = model.encode_osm(inputs.x, inputs)
    group = torch.cat([inputs.batch[t] for t in NODE_TYPES])
    keys = random_subset_keys(group, 1, seed=seed)
    dense = model.dense_osm_tokens(h, inputs, keys, LEGACY_FUSION_NODES)
    return dense.node_type[dense.valid]


def test_cap_keeps_a_uniform_random_subset() -> None:
    model = tiny_geolink(legacy=True).eval()
    total = sum(COUNTS)
    shares = torch.zeros(len(NODE_TYPES))
    draws = 300
    for seed in range(draws):
        types = kept_types(model, seed)
        assert types.numel() == LEGACY_FUSION_NODES
        shares += torch.bincount(types, minlength=3).float()
    mean = shares / draws
    expected = torch.tensor(COUNTS, dtype=torch.float) * LEGACY_FUSION_NODES / total
    # the hypergeometric mean, e.g. 14.6 polygons (the first 50 in type order would be
    # 47 / 3 / 0)
    assert torch.allclose(mean, expected, atol=0.6), (mean, expected)


def test_every_node_equally_likely() -> None:
    group = torch.zeros(161, dtype=torch.long)
    hits = torch.zeros(161)
    draws = 400
    for seed in range(draws):
        keys = random_subset_keys(group, 1, seed=seed)
        hits[keys.argsort()[:LEGACY_FUSION_NODES]] += 1
    rate = hits / draws
    assert 0.2 < float(rate.min()) and float(rate.max()) < 0.43


def test_cap_deterministic_in_eval_random_in_training() -> None:
    model = tiny_geolink(legacy=True).eval()
    assert torch.equal(kept_types(model, 0), kept_types(model, 0))
    # a graph keeps the same nodes whatever else is in the batch
    alone = torch.zeros(20, dtype=torch.long)
    batched = torch.cat(
        [torch.zeros(7, dtype=torch.long), torch.ones(20, dtype=torch.long)]
    )
    assert torch.equal(
        random_subset_keys(alone, 1, seed=5), random_subset_keys(batched, 2, seed=5)[7:]
    )
    torch.manual_seed(0)
    fresh = [random_subset_keys(alone, 1) for _ in range(2)]
    assert not torch.equal(*fresh)


def test_fuse_applies_the_cap_only_in_legacy_mode() -> None:
    images = torch.randn(1, 3, 64, 64)
    graphs = batch_of(make_graph((40, 20, 10)))  # 70 nodes
    for legacy, tokens in ((True, LEGACY_FUSION_NODES), (False, 70)):
        model = tiny_geolink(legacy=legacy).eval()
        with torch.no_grad():
            patch = model.patch_tokens(images)
            hybrid, attention = model.fuse(patch, graphs)
            again, _ = model.fuse(patch, graphs)
        assert attention is not None and attention.shape[1] == tokens
        assert torch.equal(hybrid, again)  # eval: no randomness
    model = tiny_geolink(legacy=True).eval()
    with torch.no_grad():
        patch = model.patch_tokens(images)
        a, _ = model.fuse(patch, graphs)
        model.node_cap_seed = 1
        b, _ = model.fuse(patch, graphs)
    assert not torch.allclose(a, b)  # another seed keeps other nodes


def test_img_size_multiple_of_patch_size() -> None:
    with pytest.raises(ValueError, match=r'img_size \(60, 60\).*patch size 16'):
        GeoLink('vit_tiny_patch16_224', img_size=60)
    model = tiny_geolink()
    with pytest.raises(ValueError, match='multiple of the patch size 16'):
        model.patch_tokens(torch.randn(1, 3, 60, 60))
    with pytest.raises(ValueError, match=r'expects images \(B, 3, 64, 64\)'):
        model.patch_tokens(torch.randn(1, 3, 48, 48))


def test_img_size_of_a_given_encoder_is_checked() -> None:
    # a ViT built at 64 px cannot be told to take 32 px images: refuse instead of
    # ignoring img_size
    with pytest.raises(ValueError, match=r'img_size 32 differs.*\(64, 64\)'):
        tiny_geolink(img_size=32)
    assert tiny_geolink(img_size=64).img_size == (64, 64)
