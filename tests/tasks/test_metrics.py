# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch

from torchgeo_geolink.tasks.metrics import CrossModalRetrieval, embedding_std


class TestCrossModalRetrieval:
    def test_perfect_pairs(self) -> None:
        metric = CrossModalRetrieval()
        emb = torch.eye(6)
        metric.update(emb[:4], emb[:4] * 3)
        metric.update(emb[4:], emb[4:])
        out = metric.compute()
        assert out['top1'] == 1
        assert out['pool_size'] == 6
        assert out['chance'] == pytest.approx(1 / 6)

    def test_directions_differ(self) -> None:
        # image 0 and 1 both closest to osm 0; osm 1 is closest to image 1
        image = torch.tensor([[1.0, 0.0], [1.0, 0.1]])
        osm = torch.tensor([[1.0, 0.0], [0.9, 0.5]])
        out = CrossModalRetrieval()
        out.update(image, osm)
        res = out.compute()
        sim = (
            torch.nn.functional.normalize(image, dim=1)
            @ torch.nn.functional.normalize(osm, dim=1).T
        )
        i2o = (sim.argmax(1) == torch.arange(2)).float().mean()
        o2i = (sim.argmax(0) == torch.arange(2)).float().mean()
        assert res['image_to_osm_top1'] == i2o
        assert res['osm_to_image_top1'] == o2i
        assert res['top1'] == pytest.approx(float(i2o + o2i) / 2)
        assert i2o != o2i

    def test_shuffled_is_wrong(self) -> None:
        metric = CrossModalRetrieval()
        emb = torch.eye(5)
        metric.update(emb, emb.roll(1, dims=0))
        assert metric.compute()['top1'] == 0

    def test_empty_and_reset(self) -> None:
        metric = CrossModalRetrieval()
        assert metric.compute()['pool_size'] == 0
        metric.update(torch.eye(3), torch.eye(3))
        metric.reset()
        assert metric.compute()['pool_size'] == 0

    def test_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match='one shape'):
            CrossModalRetrieval().update(torch.zeros(2, 4), torch.zeros(3, 4))


def test_embedding_std() -> None:
    collapsed = torch.ones(8, 16)
    assert embedding_std(collapsed) == pytest.approx(0.0, abs=1e-6)
    spread = torch.randn(512, 16, generator=torch.Generator().manual_seed(0))
    assert embedding_std(spread) == pytest.approx(16**-0.5, rel=0.15)
    assert embedding_std(torch.ones(1, 4)) == 0
