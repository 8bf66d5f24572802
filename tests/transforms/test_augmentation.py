# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tests of the joint image and graph augmentation."""

from pathlib import Path
from typing import Any

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, HeteroData

from torchgeo_geolink.datamodules import GeoLinkTilesDataModule
from torchgeo_geolink.osm import EDGE_ATTR_DIMS, NODE_TYPES, POS_POINTS
from torchgeo_geolink.transforms import (
    GeoLinkAugmentation,
    crop_matrix,
    drop_outside_nodes,
    filter_nodes,
    hflip_matrix,
    rot90_matrix,
    vflip_matrix,
)

SIZE = 64


def empty_graph() -> HeteroData:
    graph = HeteroData()
    for node_type in NODE_TYPES:
        graph[node_type].x = torch.zeros(0, 8)
        graph[node_type].pos = torch.zeros(0, POS_POINTS[node_type], 2)
    for src in NODE_TYPES:
        for dst in NODE_TYPES:
            dims = EDGE_ATTR_DIMS[src, 'to', dst]
            graph[src, 'to', dst].edge_index = torch.zeros(2, 0, dtype=torch.long)
            graph[src, 'to', dst].edge_attr = torch.zeros(0, dims)
    return graph


def square_polygon_pos(x0: float, y0: float, side: float) -> Tensor:
    """Positions (3 interior points, centroid last) of an axis-aligned square."""
    cx, cy = x0 + side / 2, y0 + side / 2
    r = side / 4
    return torch.tensor(
        [[cx + r, cy], [cx - r / 2, cy + r * 0.8], [cx - r / 2, cy - r * 0.8], [cx, cy]]
    )


def square_sample(
    x0: float, y0: float, side: float
) -> tuple[Tensor, Tensor, HeteroData]:
    """A dark image with a bright square, its mask and graph (polygon, corner point)."""
    image = torch.full((3, SIZE, SIZE), 0.1)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.long)
    c0, r0 = round(x0 * SIZE), round(y0 * SIZE)
    c1, r1 = round((x0 + side) * SIZE), round((y0 + side) * SIZE)
    image[:, r0:r1, c0:c1] = 0.9
    mask[r0:r1, c0:c1] = 1
    graph = empty_graph()
    graph['polygon'].x = torch.arange(8.0)[None]
    graph['polygon'].pos = square_polygon_pos(x0, y0, side)[None]
    graph['polygon'].id = torch.tensor([7])
    graph['point'].x = torch.ones(1, 8)
    graph['point'].pos = torch.tensor([[[0.02, 0.02]]])
    graph['point'].id = torch.tensor([3])
    graph['point', 'to', 'polygon'].edge_index = torch.tensor([[0], [0]])
    graph['point', 'to', 'polygon'].edge_attr = torch.tensor([[0.0, 1.0]])
    graph['polygon', 'to', 'point'].edge_index = torch.tensor([[0], [0]])
    graph['polygon', 'to', 'point'].edge_attr = torch.tensor([[0.0, 1.0]])
    graph['polygon', 'to', 'polygon'].edge_index = torch.tensor([[0], [0]])
    graph['polygon', 'to', 'polygon'].edge_attr = torch.eye(6)[:1]
    graph['point', 'to', 'point'].edge_index = torch.tensor([[0], [0]])
    graph['point', 'to', 'point'].edge_attr = torch.tensor([[1.0, 0.0]])
    return image, mask, graph


def make_batch(squares: list[tuple[float, float, float]]) -> dict[str, Any]:
    samples = [square_sample(*square) for square in squares]
    return {
        'image': torch.stack([s[0] for s in samples]),
        'mask': torch.stack([s[1] for s in samples]),
        'graph': Batch.from_data_list([s[2] for s in samples]),
        'bounds': torch.arange(len(squares) * 4.0).reshape(-1, 4),
    }


def bright_centroid(image: Tensor) -> Tensor | None:
    """Normalized pixel centroid (x, y) of the bright region, None if on the border."""
    bright = image.mean(0) > 0.5
    if not bright.any():
        return None
    if bright[0].any() or bright[-1].any() or bright[:, 0].any() or bright[:, -1].any():
        return None
    rows, cols = torch.nonzero(bright, as_tuple=True)
    height, width = bright.shape
    return torch.stack(
        [(cols.double().mean() + 0.5) / width, (rows.double().mean() + 0.5) / height]
    )


def sample_at(image: Tensor, pos: Tensor) -> Tensor:
    """Bilinear image values (mean over channels) at normalized positions ``(M, 2)``."""
    grid = (pos * 2 - 1)[None, None].to(image.dtype)
    return F.grid_sample(image[None], grid, align_corners=False)[0].mean(0)[0]


def assert_aligned(out: dict[str, Any]) -> int:
    """Check samples: polygon centroid on the bright square, mask matching image."""
    graph = out['graph']
    assert isinstance(graph, Batch)
    images, masks = out['image'], out['mask']
    assert isinstance(images, Tensor) and isinstance(masks, Tensor)
    checked = 0
    for i, sample in enumerate(graph.to_data_list()):
        image = images[i]
        # the mask (nearest) and the image (bilinear) show the same square
        bright = image.mean(0) > 0.5
        agree = (bright == (masks[i] == 1)).double().mean()
        assert agree > 0.97
        if len(sample['polygon'].pos) == 0:
            # a dropped polygon had no position point left in the crop: no bright pixel
            # may be near them
            continue
        pos = sample['polygon'].pos[0]
        # interior points and the centroid of a kept polygon are bright (unless clamped
        # to the border)
        interior = ((pos > 0.02) & (pos < 0.98)).all(-1)
        if interior.any():
            assert (sample_at(image, pos[interior]) > 0.5).all()
        centroid = bright_centroid(image)
        if centroid is not None and interior[-1]:
            tol = 1.5 / min(image.shape[-2:])
            torch.testing.assert_close(pos[-1].double(), centroid, atol=tol, rtol=0)
            checked += 1
    return checked


@pytest.mark.parametrize(
    'matrix',
    [
        hflip_matrix(torch.tensor([True])),
        vflip_matrix(torch.tensor([True])),
        rot90_matrix(torch.tensor([1])),
        rot90_matrix(torch.tensor([2])),
        rot90_matrix(torch.tensor([3])),
        crop_matrix(torch.tensor([[0.1, 0.2, 0.6, 0.7]])),
        crop_matrix(torch.tensor([[0.2, 0.25, 0.5, 0.5]])),
    ],
    ids=['hflip', 'vflip', 'rot90', 'rot180', 'rot270', 'crop', 'crop_half'],
)
def test_each_op_keeps_square_and_polygon_aligned(matrix: Tensor) -> None:
    batch = make_batch([(0.3, 0.35, 0.25)])
    out = GeoLinkAugmentation().apply_matrices(batch, matrix)
    assert assert_aligned(out) == 1
    assert out['bounds'] is batch['bounds']


@pytest.mark.parametrize('size', [None, 48, (40, 56)])
def test_random_compositions_stay_aligned(size: int | tuple[int, int] | None) -> None:
    generator = torch.Generator().manual_seed(0)
    squares = [(0.1 + 0.07 * (i % 9), 0.05 + 0.06 * (i % 11), 0.2) for i in range(24)]
    aug = GeoLinkAugmentation(
        size=size, crop_scale=(0.3, 1.0), color_jitter=None, generator=generator
    )
    checked = 0
    for _ in range(3):
        out = aug(make_batch(squares))
        expected = (
            (SIZE, SIZE)
            if size is None
            else ((size, size) if isinstance(size, int) else size)
        )
        assert out['image'].shape[-2:] == expected
        assert out['mask'].shape[-2:] == expected
        checked += assert_aligned(out)
    # most samples keep the whole square and are compared exactly
    assert checked >= 24


def test_hflip_and_rot90_are_exact() -> None:
    batch = make_batch([(0.1, 0.2, 0.3)])
    batch['image'] = torch.rand(1, 3, SIZE, SIZE)
    aug = GeoLinkAugmentation()
    out = aug.apply_matrices(batch, hflip_matrix(torch.tensor([True])))
    torch.testing.assert_close(out['image'], batch['image'].flip(-1))
    out = aug.apply_matrices(batch, rot90_matrix(torch.tensor([1])))
    torch.testing.assert_close(
        out['image'], torch.rot90(batch['image'], 1, dims=(-2, -1))
    )
    torch.testing.assert_close(
        out['mask'], torch.rot90(batch['mask'], 1, dims=(-2, -1))
    )
    # a point at the top-left corner area moves to the bottom-left under a
    # counter-clockwise quarter turn
    point = out['graph']['point'].pos[0, 0]
    torch.testing.assert_close(point, torch.tensor([0.02, 0.98]))


def test_crop_resize_matches_interpolate() -> None:
    batch = make_batch([(0.1, 0.2, 0.3)])
    batch['image'] = torch.rand(1, 3, SIZE, SIZE)
    out = GeoLinkAugmentation().apply_matrices(
        batch, crop_matrix(torch.tensor([[0.5, 0.25, 0.5, 0.5]]))
    )
    crop = batch['image'][..., 16:48, 32:64]
    expected = F.interpolate(
        crop, size=(SIZE, SIZE), mode='bilinear', align_corners=False
    )
    # the outermost output pixels blend with the real neighbors of the crop, which
    # interpolate cannot see
    inner = (..., slice(1, -1), slice(1, -1))
    torch.testing.assert_close(out['image'][inner], expected[inner], atol=1e-5, rtol=0)


def test_masks_keep_exact_labels() -> None:
    batch = make_batch([(0.1, 0.2, 0.3), (0.5, 0.5, 0.3)])
    batch['mask'] = torch.randint(0, 5, (2, SIZE, SIZE))
    batch['mask'][0, :4] = 255
    out = GeoLinkAugmentation(size=37, generator=torch.Generator().manual_seed(1))(
        batch
    )
    assert out['mask'].dtype == torch.long
    assert set(out['mask'].unique().tolist()) <= {0, 1, 2, 3, 4, 255}


def test_nodes_outside_crop_are_dropped_with_their_edges() -> None:
    # square in the right half, a crop of the left half: the polygon leaves, the corner
    # point stays
    batch = make_batch([(0.6, 0.4, 0.3), (0.1, 0.1, 0.2)])
    matrices = torch.cat([crop_matrix(torch.tensor([[0.0, 0.0, 0.5, 1.0]]))] * 2)
    out = GeoLinkAugmentation().apply_matrices(batch, matrices)
    graph = out['graph']
    assert isinstance(graph, Batch)
    assert graph['polygon'].num_nodes == 1
    assert graph['polygon'].id.tolist() == [7]
    assert graph['polygon'].batch.tolist() == [1]
    assert graph['polygon'].ptr.tolist() == [0, 0, 1]
    assert graph['point'].num_nodes == 2
    assert graph['point', 'to', 'point'].edge_index.tolist() == [[0, 1], [0, 1]]
    # only sample 1 keeps its point -> polygon edge, re-indexed to the remaining polygon
    assert graph['point', 'to', 'polygon'].edge_index.tolist() == [[1], [0]]
    assert graph['point', 'to', 'polygon'].edge_attr.shape == (1, 2)
    samples = graph.to_data_list()
    assert samples[0]['polygon'].num_nodes == 0
    assert samples[0]['point', 'to', 'polygon'].edge_index.shape == (2, 0)
    assert samples[1]['point', 'to', 'polygon'].edge_index.tolist() == [[0], [0]]
    torch.testing.assert_close(samples[1]['polygon'].x, torch.arange(8.0)[None])
    # the input is not modified
    assert batch['graph']['polygon'].num_nodes == 2
    assert batch['graph']['polygon'].ptr.tolist() == [0, 1, 2]
    assert [g['polygon'].num_nodes for g in batch['graph'].to_data_list()] == [1, 1]
    torch.testing.assert_close(
        batch['graph']['polygon'].pos[0], square_polygon_pos(0.6, 0.4, 0.3)
    )


def test_partially_visible_nodes_are_clamped() -> None:
    graph = empty_graph()
    graph['line'].x = torch.zeros(2, 8)
    graph['line'].pos = torch.tensor(
        [[[0.5, 0.5], [-0.2, 0.5], [1.3, 0.5]], [[-0.5, 0.1], [-0.9, 0.1], [-0.1, 2.0]]]
    )
    graph['line', 'to', 'line'].edge_index = torch.tensor([[0, 0, 1], [0, 1, 1]])
    graph['line', 'to', 'line'].edge_attr = torch.eye(6)[[0, 1, 0]]
    out = drop_outside_nodes(graph)
    assert out['line'].num_nodes == 1
    torch.testing.assert_close(
        out['line'].pos, torch.tensor([[[0.5, 0.5], [0.0, 0.5], [1.0, 0.5]]])
    )
    assert out['line', 'to', 'line'].edge_index.tolist() == [[0], [0]]


def test_empty_graphs_and_batches() -> None:
    images = torch.rand(3, 3, 32, 32)
    graph = Batch.from_data_list([empty_graph() for _ in range(3)])
    out = GeoLinkAugmentation(size=16, generator=torch.Generator().manual_seed(2))(
        {'image': images, 'graph': graph}
    )
    assert out['image'].shape == (3, 3, 16, 16)
    assert out['graph'].num_graphs == 3
    assert all(out['graph'][t].num_nodes == 0 for t in NODE_TYPES)
    assert len(out['graph'].to_data_list()) == 3


def test_identity_is_a_no_op_and_jitter_changes_only_colors() -> None:
    batch = make_batch([(0.2, 0.2, 0.3), (0.4, 0.4, 0.3)])
    aug = GeoLinkAugmentation(
        crop_p=0, hflip_p=0, vflip_p=0, rot90_p=0, color_jitter=None
    )
    out = aug(batch)
    assert out['image'] is batch['image']
    jitter = GeoLinkAugmentation(
        crop_p=0, hflip_p=0, vflip_p=0, rot90_p=0, color_jitter_p=1.0
    )
    out = jitter(batch)
    assert not torch.equal(out['image'], batch['image'])
    assert out['graph'] is batch['graph']
    assert torch.equal(out['mask'], batch['mask'])
    # non-RGB images get brightness/contrast only
    four = {'image': torch.rand(2, 4, 16, 16)}
    assert jitter(four)['image'].shape == (2, 4, 16, 16)


def test_generator_makes_it_reproducible() -> None:
    batch = make_batch([(0.1 * i, 0.1, 0.3) for i in range(5)])
    outs = [
        GeoLinkAugmentation(
            size=32, color_jitter=None, generator=torch.Generator().manual_seed(5)
        )(batch)
        for _ in range(2)
    ]
    torch.testing.assert_close(outs[0]['image'], outs[1]['image'])
    torch.testing.assert_close(
        outs[0]['graph']['polygon'].pos, outs[1]['graph']['polygon'].pos
    )


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'hflip_p': 1.5}, 'hflip_p'),
        ({'crop_scale': (0.0, 1.0)}, 'crop_scale'),
        ({'crop_ratio': (2.0, 1.0)}, 'crop_ratio'),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GeoLinkAugmentation(**kwargs)  # ty: ignore[invalid-argument-type]


def test_bad_batch_is_reported() -> None:
    aug = GeoLinkAugmentation()
    with pytest.raises(ValueError, match=r"batch\['image'\]"):
        aug.apply_matrices({'image': torch.rand(3, 8, 8)}, torch.eye(3)[None])
    with pytest.raises(ValueError, match='matrices'):
        aug.apply_matrices({'image': torch.rand(2, 3, 8, 8)}, torch.eye(3)[None])


#: Per-channel statistics of standardized imagery (not the default 0 / 255).
MEAN = torch.tensor([120.0, 110.0, 100.0])
STD = torch.tensor([50.0, 45.0, 40.0])


def standardize() -> K.AugmentationSequential:
    """TorchGeo's default datamodule normalization with MEAN and STD."""
    return K.AugmentationSequential(
        K.Normalize(mean=MEAN, std=STD), data_keys=None, keepdim=True
    )


def raw_images(batch_size: int) -> Tensor:
    """8-bit-range noise images: every crop holds dark and bright pixels."""
    gen = torch.Generator().manual_seed(0)
    return (20 + 210 * torch.rand(batch_size, 3, 16, 16, generator=gen)).round()


def test_brightness_jitter_runs_on_the_raw_range_before_standardization() -> None:
    raw = raw_images(16)
    jitter = GeoLinkAugmentation(
        crop_p=0,
        hflip_p=0,
        vflip_p=0,
        rot90_p=0,
        color_jitter=(0.4, 0.0, 0.0, 0.0),
        color_jitter_p=0.5,
        color_jitter_max=255,
        generator=torch.Generator().manual_seed(3),
    )
    out = torch.nn.Sequential(jitter, standardize())({'image': raw})['image']
    plain = standardize()({'image': raw})['image']
    unchanged = [bool(torch.equal(out[i], plain[i])) for i in range(len(raw))]
    # samples that are not jittered pass bit for bit; the others are jittered
    assert any(unchanged) and not all(unchanged)
    # standardized values are not clipped to [0, 1]
    assert out.min() < -1 and out.max() > 1.5
    back = out * STD[:, None, None] + MEAN[:, None, None]
    for i in range(len(raw)):
        if unchanged[i]:
            continue
        # brightness multiplies the raw intensities by one factor (clamped at white),
        # not the standardized ones
        factor = (back[i] / raw[i]).median()
        assert 0.6 - 1e-4 <= factor <= 1.4 + 1e-4 and abs(factor - 1) > 1e-3
        torch.testing.assert_close(
            back[i], (raw[i] * factor).clamp(0, 255), atol=1e-3, rtol=1e-5
        )


def test_full_jitter_of_standardized_tiles_datamodule(tmp_path: Path) -> None:
    dm = GeoLinkTilesDataModule(
        root=str(tmp_path), mean=MEAN.tolist(), std=STD.tolist()
    )
    assert isinstance(dm.train_aug, torch.nn.Sequential)
    assert isinstance(dm.train_aug[0], GeoLinkAugmentation)
    raw = raw_images(32)
    batch = make_batch([(0.3, 0.35, 0.25)] * 32)
    batch['image'] = F.interpolate(raw, size=SIZE)
    torch.manual_seed(0)
    out = dm.train_aug(batch)
    image = out['image']
    assert image.shape == (32, 3, SIZE, SIZE)
    back = image * STD[:, None, None] + MEAN[:, None, None]
    # jittered in the raw range [0, 255], then standardized (before the fix: clipped to
    # [0, 1])
    assert back.min() >= -1e-3 and back.max() <= 255 + 1e-3
    # every window has dark pixels below the mean: none is clipped to [0, 1]
    assert (image.amin(dim=(1, 2, 3)) < 0).all()
    assert image.max() > 1.5
    assert out['graph'].num_graphs == 32
    # validation: TorchGeo's normalization only
    val = dm.aug({'image': raw, 'graph': batch['graph']})
    torch.testing.assert_close(
        val['image'], (raw - MEAN[:, None, None]) / STD[:, None, None]
    )
    assert val['graph'] is batch['graph']


def test_jitter_rejects_values_outside_its_raw_range() -> None:
    jitter = GeoLinkAugmentation(
        crop_p=0, hflip_p=0, vflip_p=0, rot90_p=0, color_jitter_p=1.0
    )
    with pytest.raises(ValueError, match='color_jitter_max=1'):
        jitter({'image': raw_images(2)})
    with pytest.raises(ValueError, match='color_jitter_max'):
        GeoLinkAugmentation(color_jitter_max=0)
    with pytest.raises(ValueError, match='four strengths'):
        GeoLinkAugmentation(color_jitter=(0.4, 0.4, 0.4, 0.6))


def test_filter_nodes_matches_pyg_subgraph() -> None:
    gen = torch.Generator().manual_seed(0)
    graphs: list[Any] = []
    for n in (5, 0, 7):
        graph = empty_graph()
        for node_type in NODE_TYPES:
            graph[node_type].x = torch.randn(n, 8, generator=gen)
            graph[node_type].pos = torch.rand(
                n, POS_POINTS[node_type], 2, generator=gen
            )
        for src in NODE_TYPES:
            for dst in NODE_TYPES:
                edges = torch.randint(0, max(n, 1), (2, 3 * n), generator=gen)
                graph[src, 'to', dst].edge_index = edges
                graph[src, 'to', dst].edge_attr = torch.randn(
                    3 * n, EDGE_ATTR_DIMS[src, 'to', dst], generator=gen
                )
        graphs.append(graph)
    keeps = [
        {t: torch.rand(g[t].num_nodes, generator=gen) < 0.6 for t in NODE_TYPES}
        for g in graphs
    ]
    batch = Batch.from_data_list(graphs)
    keep = {t: torch.cat([k[t] for k in keeps]) for t in NODE_TYPES}
    filtered = filter_nodes(batch, keep)
    for graph, mask, got in zip(graphs, keeps, filtered.to_data_list(), strict=True):
        expected = graph.subgraph(mask)
        for node_type in NODE_TYPES:
            torch.testing.assert_close(got[node_type].x, expected[node_type].x)
            torch.testing.assert_close(got[node_type].pos, expected[node_type].pos)
        for edge_type in graph.edge_types:
            assert torch.equal(
                got[edge_type].edge_index, expected[edge_type].edge_index
            )
            torch.testing.assert_close(
                got[edge_type].edge_attr, expected[edge_type].edge_attr
            )
    # the input batch is left intact
    assert [g['polygon'].num_nodes for g in batch.to_data_list()] == [5, 0, 7]
