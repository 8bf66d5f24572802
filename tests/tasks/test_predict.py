# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Embedding export (predict_step, EmbeddingWriter) through ``torchgeo predict``."""

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
import torch
import yaml
from pyproj import CRS
from rasterio.transform import from_bounds
from torchgeo.datasets import GeoDataset
from torchgeo.main import main

from torchgeo_geolink.datamodules import GeoLinkDataModule
from torchgeo_geolink.datasets import DEMO_CRS
from torchgeo_geolink.errors import PredictionError
from torchgeo_geolink.samplers import OSMGriddedPatchSampler
from torchgeo_geolink.tasks import GeoLinkPretrain
from torchgeo_geolink.writers import EMBEDDING_NAMES, EmbeddingWriter, window_bounds

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / 'tests' / 'conf' / 'geolink_predict.yaml'
#: Data module arguments of tests/conf/geolink_predict.yaml.
DATA: dict[str, Any] = {
    'res': 8.0,
    'patch_size': 32,
    'batch_size': 4,
    'length': 4,
    'tag_dim': 64,
    'augment': False,
    'predict_region': 'val',
}


@dataclass
class Export:
    """Two ``torchgeo predict`` runs from one pretraining checkpoint."""

    root: str
    checkpoint: Path
    first: Path
    second: Path
    stdout: str


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run a block in *path* (the YAML writes to the relative ``embeddings`` folder)."""
    path.mkdir(parents=True, exist_ok=True)
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope='module')
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """Pretrain a step on the demo (``torchgeo fit``), then export embeddings twice."""
    tmp = tmp_path_factory.mktemp('predict')
    root = str(tmp / 'demo')
    common = ['--config', str(CONF), '--data.init_args.root', root]
    main([
        'fit', *common, '--trainer.max_steps', '1', '--trainer.limit_val_batches', '0',
        '--trainer.default_root_dir', str(tmp / 'fit'), '--trainer.enable_progress_bar', 'false',
    ])  # fmt: skip
    (checkpoint,) = (tmp / 'fit' / 'checkpoints').glob('*.ckpt')
    outputs = []
    stdout = io.StringIO()
    for run, progress in (('first', 'true'), ('second', 'false')):
        with working_directory(tmp / run), contextlib.redirect_stdout(stdout):
            main([
                'predict', *common, '--ckpt_path', str(checkpoint),
                '--return_predictions', 'false', '--trainer.enable_progress_bar', progress,
            ])  # fmt: skip
        outputs.append(tmp / run / 'embeddings')
    return Export(root, checkpoint, outputs[0], outputs[1], stdout.getvalue())


@pytest.fixture(scope='module')
def dataset(export: Export) -> GeoDataset:
    """The demo dataset of the YAML, built once for the data module checks."""
    dm = GeoLinkDataModule(root=export.root, **DATA)
    dm.setup('predict')
    assert dm.geo_dataset is not None
    return dm.geo_dataset


@pytest.fixture(scope='module')
def task(export: Export) -> GeoLinkPretrain:
    return GeoLinkPretrain.load_from_checkpoint(export.checkpoint).eval()


def predict_datamodule(dataset: GeoDataset, **kwargs: Any) -> GeoLinkDataModule:
    """A datamodule from the YAML's arguments (and *kwargs*) set up for prediction."""
    dm = GeoLinkDataModule(**{**DATA, **kwargs})
    dm.geo_dataset = dataset
    dm.setup('predict')
    return dm


def predict_windows(dm: GeoLinkDataModule) -> list[tuple[slice, slice]]:
    """The ``(x, y)`` windows of a data module's prediction grid, in order."""
    assert isinstance(dm.predict_sampler, OSMGriddedPatchSampler)
    return list(dm.predict_sampler)


def test_geoparquet_rows_and_geometries(export: Export, dataset: GeoDataset) -> None:
    frame = gpd.read_parquet(export.first / 'embeddings.parquet')
    windows = predict_windows(predict_datamodule(dataset))
    assert len(windows) > DATA['batch_size']
    assert len(frame) == len(windows)
    assert frame['window'].tolist() == list(range(len(windows)))
    assert frame.crs == CRS.from_user_input(DEMO_CRS) == dataset.crs
    expected = shapely.box(
        *np.array([(x.start, y.start, x.stop, y.stop) for x, y in windows]).T
    )
    assert shapely.equals_exact(frame.geometry.values, expected, tolerance=0).all()
    assert frame['has_osm'].dtype == bool and frame['has_osm'].any()


def test_embedding_columns(export: Export, task: GeoLinkPretrain) -> None:
    path = export.first / 'embeddings.parquet'
    schema = pq.read_schema(path)
    model = task.model
    widths = {
        'image': model.embed_dim,
        'osm': model.graph_aggr_embed_dim,
        'fused': model.fusion_embed_dim,
        'image_projected': 64,
        'osm_projected': 64,
    }
    frame = gpd.read_parquet(path)
    for name in EMBEDDING_NAMES:
        assert schema.field(name).type == pa.list_(pa.float32(), widths[name])
        values = np.stack(frame[name].to_numpy())
        assert values.shape == (len(frame), widths[name])
        assert np.isfinite(values).all()
    norms = np.linalg.norm(np.stack(frame['image_projected'].to_numpy()), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_embeddings_match_the_model(
    export: Export, dataset: GeoDataset, task: GeoLinkPretrain
) -> None:
    """The first written windows hold the checkpoint's embeddings of the first batch."""
    dm = predict_datamodule(dataset)
    batch = next(iter(dm.predict_dataloader()))
    batch = dm.aug(batch)
    with torch.inference_mode():
        expected = task.predict_step(batch, 0)
    frame = gpd.read_parquet(export.first / 'embeddings.parquet')
    for name in EMBEDDING_NAMES:
        written = np.stack(frame[name].to_numpy()[: len(batch['image'])])
        np.testing.assert_allclose(
            written, expected[name].numpy(), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_array_equal(
        frame['has_osm'].to_numpy()[: len(batch['image'])], expected['has_osm'].numpy()
    )


def test_deterministic(export: Export) -> None:
    first = pq.read_table(export.first / 'embeddings.parquet')
    second = pq.read_table(export.second / 'embeddings.parquet')
    assert first.equals(second)
    for name in ('000000.tif', f'{len(first) - 1:06d}.tif'):
        with (
            rasterio.open(export.first / 'patch_features' / name) as a,
            rasterio.open(export.second / 'patch_features' / name) as b,
        ):
            np.testing.assert_array_equal(a.read(), b.read())


def test_patch_feature_geotiffs(export: Export) -> None:
    frame = gpd.read_parquet(export.first / 'embeddings.parquet')
    assert not list(export.first.glob('*.partial'))
    crs = CRS.from_user_input(DEMO_CRS)
    for row in frame.itertuples():
        path = export.first / row.patch_features
        assert path.name == f'{row.window:06d}.tif'
        with rasterio.open(path) as src:
            assert CRS.from_wkt(src.crs.to_wkt()) == crs
            # 32 px windows of a ViT/16: a 2 x 2 patch grid, one band per channel of the
            # 192-d tokens
            assert (src.count, src.height, src.width) == (192, 2, 2)
            assert src.dtypes[0] == 'float32'
            assert src.transform.almost_equals(from_bounds(*row.geometry.bounds, 2, 2))
            data = src.read()
            assert np.isfinite(data).all()
    # the pooled image embedding is the mean of the patch tokens
    with rasterio.open(export.first / frame['patch_features'].iloc[0]) as src:
        mean = src.read().reshape(192, -1).mean(axis=1)
    np.testing.assert_allclose(mean, frame['image'].iloc[0], rtol=1e-4, atol=1e-5)


def test_progress_bar(export: Export) -> None:
    n = len(gpd.read_parquet(export.first / 'embeddings.parquet'))
    batches = -(-n // DATA['batch_size'])
    assert 'Predicting' in export.stdout
    assert f'{batches}/{batches}' in export.stdout


def test_predict_region(dataset: GeoDataset) -> None:
    everything = predict_datamodule(dataset, predict_region='all')
    val = predict_datamodule(dataset, predict_region='val')
    windows = [
        shapely.box(x.start, y.start, x.stop, y.stop) for x, y in predict_windows(val)
    ]
    assert 0 < len(windows) < len(predict_windows(everything))
    # 'all' grids the whole footprint, edge to edge
    grid = np.array(
        [(x.start, y.start, x.stop, y.stop) for x, y in predict_windows(everything)]
    )
    footprint = dataset.index.geometry.union_all().bounds
    assert (*grid[:, :2].min(axis=0), *grid[:, 2:].max(axis=0)) == pytest.approx(
        footprint, abs=8.0
    )
    region = val.rois['val']
    assert region is not None
    assert all(region.buffer(1e-6).contains(w) for w in windows)
    train = everything.rois['train']
    assert train is not None
    xmin, ymin, _, _ = train.bounds
    box = [xmin, ymin, xmin + 600, ymin + 600]
    boxed = predict_datamodule(dataset, predict_region=box)
    assert all(
        shapely.box(*box)
        .buffer(1e-6)
        .contains(shapely.box(x.start, y.start, x.stop, y.stop))
        for x, y in predict_windows(boxed)
    )
    with pytest.raises(ValueError, match='test_fraction is 0'):
        predict_datamodule(dataset, predict_region='test', test_fraction=0.0)
    with pytest.raises(ValueError, match='misses the dataset footprint'):
        predict_datamodule(dataset, predict_region=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="predict_region must be 'all'"):
        predict_datamodule(dataset, predict_region='everywhere')


def test_window_bounds_errors() -> None:
    with pytest.raises(PredictionError, match='no window bounds'):
        window_bounds({'image': torch.zeros(2, 3, 32, 32)})
    with pytest.raises(PredictionError, match='shape'):
        window_bounds({'image': torch.zeros(2, 3, 32, 32), 'bounds': torch.zeros(2, 3)})
    nine = torch.tensor([[10.0, 42.0, 1.0, 20.0, 52.0, 1.0, 0.0, 1.0, 1.0]])
    assert window_bounds({'bounds': nine}).tolist() == [[10.0, 20.0, 42.0, 52.0]]


def test_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='unknown embeddings'):
        EmbeddingWriter(embeddings=['pixels'])
    with pytest.raises(ValueError, match=r'must end in \.parquet'):
        EmbeddingWriter(filename='embeddings.csv')


def test_shipped_embed_config_matches_pretraining(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """geolink_embed.yaml parses and reads the data as geolink_pretrain.yaml does."""
    with pytest.raises(SystemExit) as exit_info:
        main(
            ['predict', '--config', str(REPO / 'geolink_embed.yaml'), '--print_config']
        )
    assert exit_info.value.code in (0, None)
    assert (
        'class_path: torchgeo_geolink.writers.EmbeddingWriter'
        in capsys.readouterr().out
    )
    embed = yaml.safe_load((REPO / 'geolink_embed.yaml').read_text())
    pretrain = yaml.safe_load((REPO / 'geolink_pretrain.yaml').read_text())
    assert embed['model']['class_path'] == pretrain['model']['class_path']
    keys = (
        'root',
        'demo_regions',
        'res',
        'patch_size',
        'mean',
        'std',
        'tag_encoder',
        'tag_dim',
        'drop_osm_keys',
        'osm_tag_keys',
    )
    for key in keys:
        assert embed['data']['init_args'].get(key) == pretrain['data']['init_args'].get(
            key
        ), key
    (writer,) = embed['trainer']['callbacks']
    assert writer['class_path'] == 'torchgeo_geolink.writers.EmbeddingWriter'
    assert embed['trainer']['enable_progress_bar'] is True
