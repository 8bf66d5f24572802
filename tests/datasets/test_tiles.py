# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tests of the GeoLink tile-format dataset."""

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch_geometric.data import HeteroData
from torchgeo.datasets import DatasetNotFoundError

from tests.conftest import write_tiles
from torchgeo_geolink.datasets import (
    UFZ_CLASSES,
    GeoLinkTiles,
    collate_geolink,
    sample_to_graph,
    ufz_label_lut,
)
from torchgeo_geolink.errors import TileError
from torchgeo_geolink.osm import TAG_EMBEDDING_DIM

#: Tiles in the official UFZ layout committed with the tests (see tests/data/official):
#: 3 tiles of 32 px.
FIXTURES = Path(__file__).resolve().parents[1] / 'data' / 'official' / 'ufz'
#: The official release's own six 224 px UFZ tiles, when its example data sits next to
#: the repository.
UFZ = Path(__file__).parents[2] / '..' / 'shared' / 'data' / 'geolink_examples' / 'ufz'
OFFICIAL_TILES = [pytest.param(FIXTURES, 3, 32, id='fixtures')] + (
    [pytest.param(UFZ, 6, 224, id='ufz')] if UFZ.exists() else []
)


def test_sample_contents(tmp_path: Path) -> None:
    graphs = write_tiles(tmp_path, ['a', 'b', 'c'])
    ds = GeoLinkTiles(tmp_path, split='all')
    assert ds.names == ['a', 'b', 'c']
    sample = ds[1]
    pixels = np.asarray(Image.open(tmp_path / 'img' / 'b.png'))
    assert sample['image'].dtype == torch.float32
    torch.testing.assert_close(
        sample['image'], torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32))
    )
    raw = np.asarray(Image.open(tmp_path / 'label' / 'b.png'))
    assert sample['mask'].dtype == torch.long
    # UFZ mapping: 0 -> ignore, k -> k - 1, 255 -> ignore
    expected = np.select([raw == 0, raw == 255], [255, 255], raw.astype(np.int64) - 1)
    assert np.array_equal(sample['mask'].numpy(), expected)
    official = graphs['b']
    torch.testing.assert_close(
        sample['osm_polygon_x'], official['polygon'].x[:, :TAG_EMBEDDING_DIM]
    )
    torch.testing.assert_close(
        sample['osm_polygon_pos'],
        official['polygon'].x[:, TAG_EMBEDDING_DIM:].reshape(-1, 4, 2),
    )
    torch.testing.assert_close(
        sample['osm_line_pos'],
        official['line'].x[:, TAG_EMBEDDING_DIM:].reshape(-1, 3, 2),
    )
    assert sample['osm_point_pos'].shape == (1, 1, 2)
    assert sample['osm_polygon_to_line_edge_attr'].shape[1] == 3
    graph = sample_to_graph(sample)
    assert graph['polygon'].num_nodes == 3


def test_label_lut() -> None:
    lut = ufz_label_lut()
    assert lut[0] == 255 and lut[255] == 255 and lut[10] == 255
    assert lut[1:10].tolist() == list(range(9))
    assert len(UFZ_CLASSES) == 9


def test_collate_batches_tiles(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a', 'b', 'c'])
    ds = GeoLinkTiles(tmp_path, split='all')
    batch = collate_geolink([ds[i] for i in range(3)])
    assert batch['image'].shape == (3, 3, 16, 16)
    assert batch['mask'].shape == (3, 16, 16)
    assert batch['graph'].num_graphs == 3
    assert batch['graph']['polygon'].ptr.tolist() == [0, 2, 5, 9]


def test_hash_splits_are_disjoint_and_complete(tmp_path: Path) -> None:
    names = [f't{i:02d}' for i in range(30)]
    write_tiles(tmp_path, names, size=4, labels=False)
    splits = {
        s: GeoLinkTiles(tmp_path, split=s, val_fraction=0.3, test_fraction=0.2).names
        for s in ('train', 'val', 'test')
    }
    assert sorted(splits['train'] + splits['val'] + splits['test']) == names
    assert not set(splits['train']) & set(splits['val'])
    assert not set(splits['val']) & set(splits['test'])
    assert all(len(s) > 0 for s in splits.values())
    # the assignment of a tile does not depend on the other tiles
    (tmp_path / 'img' / 't00.png').unlink()
    assert GeoLinkTiles(
        tmp_path, split='val', val_fraction=0.3, test_fraction=0.2
    ).names == [n for n in splits['val'] if n != 't00']


def test_split_file(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a', 'b', 'c'], size=4)
    (tmp_path / 'val.txt').write_text('c\nb\n')
    assert GeoLinkTiles(tmp_path, split='val').names == ['b', 'c']
    (tmp_path / 'test.txt').write_text('zz\n')
    with pytest.raises(ValueError, match='unknown tile'):
        GeoLinkTiles(tmp_path, split='test')


def test_without_labels(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a'], labels=False)
    sample = GeoLinkTiles(tmp_path, split='all')[0]
    assert 'mask' not in sample
    assert 'image' in sample


def test_missing_graph(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a', 'b'])
    (tmp_path / 'graph' / 'b.pt').unlink()
    with pytest.raises(TileError, match=r'b\.pt'):
        GeoLinkTiles(tmp_path, split='all')
    with pytest.warns(UserWarning, match='1 of 2 all tile'):
        ds = GeoLinkTiles(tmp_path, split='all', missing_graph='empty')
    assert ds.missing_graphs == ['b']
    sample = ds[1]
    assert all(
        sample[f'osm_{t}_x'].shape == (0, TAG_EMBEDDING_DIM)
        for t in ('polygon', 'line', 'point')
    )
    assert sample['osm_point_to_point_edge_index'].shape == (2, 0)


def test_corrupt_files_are_reported(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a', 'b', 'c'])
    (tmp_path / 'graph' / 'a.pt').write_bytes(b'not a pickle')
    (tmp_path / 'img' / 'b.png').write_bytes(b'not a png')
    torch.save({'x': torch.zeros(2)}, tmp_path / 'graph' / 'c.pt')
    ds = GeoLinkTiles(tmp_path, split='all')
    with pytest.raises(TileError, match=r'a\.pt: cannot load graph'):
        ds[0]
    with pytest.raises(TileError, match=r'b\.png: cannot read image'):
        ds[1]
    with pytest.raises(
        TileError, match=r'c\.pt: expected a torch_geometric HeteroData'
    ):
        ds[2]


def test_bad_official_graph_and_label_shape(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a', 'b'])
    bad = HeteroData()
    bad['polygon'].x = torch.zeros(3, 5)
    torch.save(bad, tmp_path / 'graph' / 'a.pt')
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'label' / 'b.png')
    ds = GeoLinkTiles(tmp_path, split='all')
    with pytest.raises(TileError, match=r'a\.pt: not a valid GeoLink graph'):
        ds[0]
    with pytest.raises(TileError, match='does not match image'):
        ds[1]


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        GeoLinkTiles(tmp_path)
    write_tiles(tmp_path, ['a'], size=4)
    with pytest.raises(ValueError, match='split'):
        GeoLinkTiles(tmp_path, split='bogus')  # ty: ignore[invalid-argument-type]
    with pytest.raises(ValueError, match='fractions'):
        GeoLinkTiles(tmp_path, val_fraction=0.7, test_fraction=0.3)
    with pytest.raises(ValueError, match='label_lut'):
        GeoLinkTiles(tmp_path, label_lut=[0, 1])


def test_transforms_and_plot(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a'])

    def halve(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sample['image'] = sample['image'] / 2
        return sample

    ds = GeoLinkTiles(tmp_path, split='all', transforms=halve)
    sample = ds[0]
    assert sample['image'].max() <= 127.5
    fig = ds.plot(sample, suptitle='tile')
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    plt.close(fig)


@pytest.mark.parametrize(('root', 'count', 'size'), OFFICIAL_TILES)
def test_official_ufz_tiles(root: Path, count: int, size: int) -> None:
    ds = GeoLinkTiles(root, split='all')
    assert len(ds) == count
    samples = [ds[i] for i in range(len(ds))]
    for name, sample in zip(ds.names, samples, strict=True):
        official = torch.load(root / 'graph' / f'{name}.pt', weights_only=False)
        assert sample['image'].shape == (3, size, size)
        assert set(sample['mask'].unique().tolist()) <= {*range(9), 255}
        for node_type, k in (('polygon', 4), ('line', 3), ('point', 1)):
            if node_type not in official.node_types:
                continue
            x = official[node_type].x
            assert sample[f'osm_{node_type}_x'].shape == (len(x), 512)
            torch.testing.assert_close(
                sample[f'osm_{node_type}_pos'], x[:, 512:].float().reshape(-1, k, 2)
            )
    batch = collate_geolink(samples)
    assert batch['graph'].num_graphs == count
    assert batch['image'].shape == (count, 3, size, size)


def test_resize_tiles_of_different_sizes(tmp_path: Path) -> None:
    write_tiles(tmp_path / 'a', ['small'], size=16)
    write_tiles(tmp_path / 'b', ['large'], size=40)
    for d in ('img', 'label', 'graph'):
        for f in (tmp_path / 'b' / d).iterdir():
            f.rename(tmp_path / 'a' / d / f.name)
    ds = GeoLinkTiles(tmp_path / 'a', split='all', size=20)
    samples = [ds[0], ds[1]]
    batch = collate_geolink(samples)
    assert batch['image'].shape == (2, 3, 20, 20)
    assert batch['mask'].shape == (2, 20, 20)
    raw = np.asarray(Image.open(tmp_path / 'a' / 'label' / 'large.png'))
    # nearest resampling keeps label values
    assert set(batch['mask'].unique().tolist()) <= {255, 0, 4, 8}
    assert set(ufz_label_lut()[np.unique(raw)].tolist()) >= set(
        batch['mask'][0].unique().tolist()
    )


def test_graph_edge_indices_are_validated(tmp_path: Path) -> None:
    """An edge index past the node count is refused on load."""
    graphs = write_tiles(tmp_path, ['a', 'b'])
    bad = graphs['a']
    edge_index = bad['line', 'to', 'polygon'].edge_index.clone()
    edge_index[1, 0] = bad['polygon'].x.shape[0]  # one past the last polygon
    bad['line', 'to', 'polygon'].edge_index = edge_index
    torch.save(bad, tmp_path / 'graph' / 'a.pt')
    ds = GeoLinkTiles(tmp_path, split='all')
    with pytest.raises(
        TileError,
        match=r"a\.pt: .*\('line', 'to', 'polygon'\): destination index 2 is outside the 2 'polygon'",
    ):
        ds[0]
    ds[1]  # the other tile is fine


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        (
            lambda g: setattr(
                g['polygon', 'to', 'polygon'],
                'edge_index',
                -g['polygon', 'to', 'polygon'].edge_index - 1,
            ),
            r"\('polygon', 'to', 'polygon'\): source index -\d+ is outside",
        ),
        (
            lambda g: setattr(
                g['line', 'to', 'line'],
                'edge_index',
                g['line', 'to', 'line'].edge_index.float(),
            ),
            r"\('line', 'to', 'line'\): edge_index must hold integers, got torch.float32",
        ),
        (
            lambda g: setattr(
                g['polygon', 'to', 'line'], 'edge_attr', torch.zeros(3, 6)
            ),
            r"\('polygon', 'to', 'line'\): edge_attr must have shape \(3, 3\)",
        ),
        (
            lambda g: setattr(
                g['point', 'to', 'point'], 'edge_attr', torch.full((1, 2), float('nan'))
            ),
            r"\('point', 'to', 'point'\): edge_attr holds NaN",
        ),
        (
            lambda g: g['line'].x.__setitem__((0, 3), float('inf')),
            r"'line' node features hold NaN or infinite values \(node 0\)",
        ),
        (
            lambda g: setattr(g['polygon'], 'x', g['polygon'].x[:, :-1]),
            r'node types disagree on the semantic width: polygon 511 \(x has 519 columns\), line 512',
        ),
        (
            lambda g: setattr(
                g['building'], 'x', torch.zeros(1, TAG_EMBEDDING_DIM + 8)
            ),
            r"unknown node or edge type\(s\) \['building'\]",
        ),
    ],
    ids=[
        'negative',
        'float-index',
        'attr-width',
        'nan-attr',
        'inf-x',
        'x-width',
        'unknown-type',
    ],
)
def test_malformed_graphs_name_file_and_type(
    tmp_path: Path, change: Callable[[HeteroData], object], message: str
) -> None:
    graphs = write_tiles(tmp_path, ['a', 'b'])  # 'b' has one point node
    graph = graphs['b']
    change(graph)
    torch.save(graph, tmp_path / 'graph' / 'b.pt')
    with pytest.raises(
        TileError, match=r'b\.pt: not a valid GeoLink graph: ' + message
    ):
        GeoLinkTiles(tmp_path, split='all')[1]


def test_label_values_and_bands_are_checked(tmp_path: Path) -> None:
    write_tiles(tmp_path, ['a', 'b'])
    Image.fromarray(np.full((16, 16), 300, dtype=np.uint16)).save(
        tmp_path / 'label' / 'a.png'
    )
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / 'label' / 'b.png')
    ds = GeoLinkTiles(tmp_path, split='all')
    with pytest.raises(
        TileError, match=r'a\.png: label values 300\.\.300 are outside 0\.\.255'
    ):
        ds[0]
    with pytest.raises(TileError, match=r'b\.png: label must have a single band'):
        ds[1]
