# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLinkDataModule on small rasters and vector files, with a real Trainer."""

from pathlib import Path
from typing import Any

import geopandas as gpd
import lightning
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shapely
import torch
from lightning import LightningModule, Trainer
from matplotlib.figure import Figure
from pyproj import CRS
from torch import Tensor, nn
from torch_geometric.data import Batch
from torchgeo.datasets import GeoDataset

from torchgeo_geolink.datamodules import (
    GeoLinkDataModule,
    merge_keep_first,
    region_rois,
)
from torchgeo_geolink.datasets import DEMO_CLASSES, DEMO_WITHHELD_KEYS, OSMDataset
from torchgeo_geolink.samplers import find_osm_dataset
from torchgeo_geolink.transforms import GeoLinkAugmentation

PATCH = 32
CRS_UTM35 = CRS.from_epsg(32635)
ORIGIN = (385_000.0, 6_672_000.0)


@pytest.fixture
def city(tmp_path: Path, write_raster: Any, make_city: Any) -> dict[str, Path]:
    """A 200 m city at 1 m: RGB image, building labels (255) and OSM GeoPackage."""
    x0, y0 = ORIGIN
    bounds = (x0, y0, x0 + 200, y0 + 200)
    frame = make_city(origin=ORIGIN, crs=CRS_UTM35)
    buildings = [(g, 1) for g in frame.geometry[frame['building'].notna()]]
    image = write_raster(tmp_path / 'image.tif', bounds, CRS_UTM35, burn=buildings)
    labels = write_raster(
        tmp_path / 'labels.tif', bounds, CRS_UTM35, bands=1, burn=buildings
    )
    osm = tmp_path / 'city.gpkg'
    frame.to_file(osm, driver='GPKG')
    return {'image': image, 'labels': labels, 'osm': osm}


def make_dm(city: dict[str, Path], **kwargs: Any) -> GeoLinkDataModule:
    options: dict[str, Any] = {
        'image_paths': [str(city['image'])],
        'osm_paths': [str(city['osm'])],
        'label_paths': str(city['labels']),
        'patch_size': PATCH,
        'batch_size': 4,
        'length': 8,
        'val_fraction': 0.25,
        'test_fraction': 0.25,
        'tag_dim': 32,
    }
    options.update(kwargs)
    return GeoLinkDataModule(**options)


def windows(sampler: Any) -> list[shapely.Polygon]:
    return [shapely.box(x.start, y.start, x.stop, y.stop) for x, y in sampler]


def test_batches_hold_image_mask_and_graph(city: dict[str, Path]) -> None:
    dm = make_dm(city)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert batch['image'].shape == (4, 3, PATCH, PATCH)
    assert batch['mask'].shape == (4, PATCH, PATCH)
    assert batch['mask'].dtype == torch.long
    # the image's own georeferencing, not concatenated with the label's
    assert batch['bounds'].shape == (4, 9) and batch['transform'].shape == (4, 9)
    graph = batch['graph']
    assert isinstance(graph, Batch) and graph.num_graphs == 4
    assert graph['polygon'].x.shape[1] == 32
    assert not any(k.startswith('osm_') for k in batch)
    # buildings are burned in both rasters: image and mask agree pixel by pixel
    assert torch.equal(batch['image'][:, 0] == 255, batch['mask'] == 255)
    assert (batch['mask'] == 255).any()
    # a polygon node centroid lies on its building in the image
    sample = graph.to_data_list()[0]
    if sample['polygon'].num_nodes:
        cx, cy = (sample['polygon'].pos[:, -1] * PATCH).long().clamp(0, PATCH - 1).T
        assert (batch['image'][0, 0, cy, cx] == 255).float().mean() > 0.5


def test_regions_do_not_leak(city: dict[str, Path]) -> None:
    dm = make_dm(city, length=64, eval_stride=16)
    dm.setup('fit')
    dm.setup('test')
    train, val, test = (
        windows(dm.train_sampler),
        windows(dm.val_sampler),
        windows(dm.test_sampler),
    )
    assert len(train) == 64 and len(val) > 0 and len(test) > 0
    for region, boxes in (('train', train), ('val', val), ('test', test)):
        roi = dm.rois[region]
        assert roi is not None
        assert all(roi.buffer(1e-6).covers(b) for b in boxes)
    train_union = shapely.union_all(train)
    for box in val + test:
        assert shapely.intersection(train_union, box).area < 1e-6
    assert (
        shapely.intersection(shapely.union_all(val), shapely.union_all(test)).area
        < 1e-6
    )


def test_region_rois() -> None:
    footprint = shapely.box(0, 0, 10, 100)
    train, val, test = region_rois(footprint, 0.2, 0.1)
    assert val is not None and test is not None
    assert val.bounds == (0, 0, 10, 20) and test.bounds == (0, 90, 10, 100)
    assert train.bounds == (0, 20, 10, 90)
    assert region_rois(footprint, 0.2, 0.0)[2] is None
    with pytest.raises(ValueError, match='sum < 1'):
        region_rois(footprint, 0.6, 0.4)


def test_region_rois_split_every_disjoint_part() -> None:
    # two cities far apart: each gives its own southern validation and northern test
    # strip
    south, north = shapely.box(0, 0, 10, 100), shapely.box(50, 1000, 70, 1050)
    train, val, test = region_rois(shapely.union_all([south, north]), 0.2, 0.1)
    assert val is not None and test is not None
    assert val.equals(
        shapely.union_all([shapely.box(0, 0, 10, 20), shapely.box(50, 1000, 70, 1010)])
    )
    assert test.equals(
        shapely.union_all(
            [shapely.box(0, 90, 10, 100), shapely.box(50, 1045, 70, 1050)]
        )
    )
    assert train.area == pytest.approx(10 * 70 + 20 * 35)
    assert shapely.intersection(train, val).area == 0
    assert shapely.intersection(train, test).area == 0


def test_merge_keep_first() -> None:
    a = {'bounds': torch.zeros(9), 'image': torch.zeros(1)}
    b = {'bounds': torch.ones(9), 'mask': torch.ones(1)}
    out = merge_keep_first([a, b])
    assert torch.equal(out['bounds'], torch.zeros(9))
    assert set(out) == {'bounds', 'image', 'mask'}


def test_drop_osm_keys(city: dict[str, Path]) -> None:
    dm = make_dm(city, drop_osm_keys=['shop'], label_paths=None)
    dm.setup('validate')
    batch = next(iter(dm.val_dataloader()))
    # shops are the only points of the city
    assert batch['graph']['point'].num_nodes == 0
    assert batch['graph']['polygon'].num_nodes > 0
    assert 'mask' not in batch


def test_reads_only_the_osm_the_imagery_covers_and_caches_it(
    city: dict[str, Path], tmp_path: Path
) -> None:
    # move half of the city out of the raster: those features are never read
    frame = gpd.read_file(city['osm'])
    outside = frame.copy()
    outside['geometry'] = outside.geometry.translate(xoff=5_000)
    wider = tmp_path / 'wider.gpkg'
    pd.concat([frame, outside], ignore_index=True).pipe(gpd.GeoDataFrame).to_file(
        wider, driver='GPKG'
    )
    cache = tmp_path / 'osm_cache'
    dm = make_dm({**city, 'osm': wider}, osm_cache_dir=str(cache))
    dm.setup('validate')
    assert isinstance(dm.dataset, GeoDataset)
    osm = find_osm_dataset(dm.dataset)
    assert osm.cache_dir == str(cache) and any(cache.iterdir())
    assert len(osm.geometries) == len(
        OSMDataset(str(city['osm']), crs=CRS_UTM35).geometries
    )
    # the same windows as without the far-away copy
    plain = make_dm(city)
    plain.setup('validate')
    a, b = next(iter(dm.val_dataloader())), next(iter(plain.val_dataloader()))
    for t in ('polygon', 'line', 'point'):
        assert torch.equal(a['graph'][t].pos, b['graph'][t].pos)


def test_pbf_reader_reaches_the_osm_dataset(city: dict[str, Path]) -> None:
    # a GeoPackage: the choice of .osm.pbf reader is recorded, and changes nothing
    dm = make_dm(city, osm_pbf_reader='quackosm')
    dm.setup('validate')
    assert isinstance(dm.dataset, GeoDataset)
    osm = find_osm_dataset(dm.dataset)
    assert osm.pbf_reader == 'quackosm'
    assert osm.tags == OSMDataset(str(city['osm']), crs=CRS_UTM35).tags


def test_two_workers_give_the_same_batches(city: dict[str, Path]) -> None:
    serial = make_dm(city, num_workers=0)
    serial.setup('validate')
    parallel = make_dm(city, num_workers=2)
    parallel.setup('validate')
    a = list(serial.val_dataloader())
    b = list(parallel.val_dataloader())
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x['image'], y['image'])
        assert torch.equal(x['graph']['polygon'].pos, y['graph']['polygon'].pos)
    # random training windows are drawn in the main process from a seeded sampler
    first = make_dm(city, num_workers=2, seed=7)
    first.setup('fit')
    second = make_dm(city, num_workers=2, seed=7)
    second.setup('fit')
    assert windows(first.train_sampler) == windows(second.train_sampler)


class Recorder(LightningModule):
    """A minimal module recording the batches it gets after on_after_batch_transfer."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: dict[str, list[dict[str, Any]]] = {'train': [], 'val': []}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        self.seen['train'].append(batch)
        return self.layer(batch['image'].mean().reshape(1, 1)).sum()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.seen['val'].append(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_on_after_batch_transfer_with_trainer(city: dict[str, Path]) -> None:
    lightning.seed_everything(0)
    dm = make_dm(city, std=255.0)
    module = Recorder()
    trainer = Trainer(
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
    )
    trainer.fit(module, datamodule=dm)
    assert len(module.seen['train']) == 2 and len(module.seen['val']) == 1
    val = module.seen['val'][0]
    # validation: normalized only, identical to the raw batch divided by 255
    raw = next(iter(dm.val_dataloader()))
    torch.testing.assert_close(val['image'], raw['image'] / 255)
    assert torch.equal(val['graph']['polygon'].pos, raw['graph']['polygon'].pos)
    # training: normalized and augmented, graphs still consistent
    for batch in module.seen['train']:
        image = batch['image']
        assert image.shape == (4, 3, PATCH, PATCH)
        # bilinear resampling stays in the raw range up to float rounding
        assert image.min() >= 0 and image.max() <= 1 + 1e-6
        graph = batch['graph']
        assert graph.num_graphs == 4
        for node_type in ('polygon', 'line', 'point'):
            pos = graph[node_type].pos
            assert ((pos >= 0) & (pos <= 1)).all()
            assert graph[node_type].ptr[-1] == graph[node_type].num_nodes
    assert isinstance(dm.train_aug, nn.Sequential)
    assert isinstance(dm.train_aug[0], GeoLinkAugmentation)


def test_plot(city: dict[str, Path]) -> None:
    dm = make_dm(city)
    assert dm.plot({}) is None
    dm.setup('validate')
    assert dm.val_sampler is not None
    window = next(iter(dm.val_sampler))
    assert dm.geo_dataset is not None
    fig = dm.plot(dm.geo_dataset[window])
    assert isinstance(fig, Figure)
    plt.close(fig)


def test_invalid_arguments(city: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match='osm_paths is required'):
        GeoLinkDataModule(image_paths=str(city['image']))
    with pytest.raises(ValueError, match='sum < 1'):
        make_dm(city, val_fraction=0.5, test_fraction=0.5)


def test_demo_mode(tmp_path: Path) -> None:
    dm = GeoLinkDataModule(
        root=str(tmp_path / 'demo'),
        demo_labels=True,
        drop_osm_keys=DEMO_WITHHELD_KEYS,
        res=2.0,
        patch_size=48,
        batch_size=4,
        length=4,
        tag_dim=32,
    )
    assert dm.is_demo
    dm.prepare_data()
    assert (tmp_path / 'demo' / 'helsinki_demo_image.tif').exists()
    dm.setup('fit')
    assert dm.val_sampler is not None and len(dm.val_sampler) >= 16
    batch = next(iter(dm.train_dataloader()))
    assert batch['image'].shape == (4, 3, 48, 48)
    assert int(batch['mask'].max()) < len(DEMO_CLASSES)
    assert batch['graph'].num_graphs == 4
    assert batch['graph']['polygon'].num_nodes + batch['graph']['line'].num_nodes > 0
    # land-use areas are withheld from the graph: no node carries a withheld key
    assert dm.geo_dataset is not None
    osm = next(d for d in dm.geo_dataset.datasets if isinstance(d, OSMDataset))
    ids = batch['graph']['polygon'].id.tolist()
    assert all(not set(osm.tags[i]) & set(DEMO_WITHHELD_KEYS) for i in ids)
    assert np.isfinite(batch['image'].numpy()).all()


def test_without_validation_or_test_region(city: dict[str, Path]) -> None:
    dm = make_dm(city, val_fraction=0.0, test_fraction=0.0, label_paths=None)
    dm.setup('fit')
    assert dm.rois['val'] is None and dm.rois['test'] is None
    assert dm.val_dataloader() == [] and dm.test_dataloader() == []
    module = Recorder()
    trainer = Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
    )
    trainer.fit(module, datamodule=dm)
    assert len(module.seen['train']) == 1 and module.seen['val'] == []
