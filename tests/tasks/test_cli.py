# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tasks and datamodules via TorchGeo's CLI (``torchgeo fit|validate|test|predict``)."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.features
from pyproj import CRS
from rasterio.transform import from_origin
from torchgeo.main import main

from tests.conftest import write_tiles

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / 'tests' / 'conf'
CITY_CRS = CRS.from_epsg(32635)
CITY_ORIGIN = (385_000.0, 6_672_000.0)
ROOT_CONFIGS = [
    'geolink_pretrain.yaml',
    'geolink_pretrain_vitl.yaml',
    'geolink_segmentation.yaml',
]


@pytest.fixture
def city(tmp_path: Path, write_raster: Any, make_city: Any) -> list[str]:
    """A 200 m synthetic city (image, 0/1 building labels, OSM); the CLI data args."""
    x0, y0 = CITY_ORIGIN
    bounds = (x0, y0, x0 + 200, y0 + 200)
    frame = make_city(origin=CITY_ORIGIN, crs=CITY_CRS)
    buildings = [(g, 1) for g in frame.geometry[frame['building'].notna()]]
    image = write_raster(tmp_path / 'image.tif', bounds, CITY_CRS, burn=buildings)
    transform = from_origin(x0, y0 + 200, 1.0, 1.0)
    labels = rasterio.features.rasterize(
        buildings, out_shape=(200, 200), transform=transform
    ).astype(np.uint8)
    with rasterio.open(
        tmp_path / 'labels.tif',
        'w',
        driver='GTiff',
        width=200,
        height=200,
        count=1,
        dtype='uint8',
        crs=CITY_CRS,
        transform=transform,
    ) as dst:
        dst.write(labels[None])
    osm = tmp_path / 'city.gpkg'
    frame.to_file(osm, driver='GPKG')
    return [
        '--data.init_args.image_paths', str(image),
        '--data.init_args.osm_paths', str(osm),
        '--data.init_args.label_paths', str(tmp_path / 'labels.tif'),
    ]  # fmt: skip


@pytest.fixture
def tiles(tmp_path: Path) -> list[str]:
    """Four 32 x 32 GeoLink-format tiles (official graphs), 3 label classes."""
    root = tmp_path / 'tiles'
    write_tiles(root, [f't{i}' for i in range(4)], size=32, label_values=(1, 2, 3))
    return ['--data.init_args.root', str(root)]


def run(
    command: str, config: str, data_args: list[str], tmp_path: Path, *extra: str
) -> None:
    main([
        command, '--config', str(CONF / config), *data_args,
        '--trainer.accelerator', 'cpu', '--trainer.fast_dev_run', 'true',
        '--trainer.default_root_dir', str(tmp_path), '--trainer.enable_progress_bar', 'false', *extra,
    ])  # fmt: skip


@pytest.mark.parametrize(
    'config', ['geolink_pretrain.yaml', 'geolink_segmentation.yaml']
)
def test_geolink_datamodule(config: str, city: list[str], tmp_path: Path) -> None:
    run('fit', config, city, tmp_path)
    run('test', config, city, tmp_path)


def test_segmentation_validate_predict(city: list[str], tmp_path: Path) -> None:
    run(
        'validate',
        'geolink_segmentation.yaml',
        city,
        tmp_path,
        '--model.init_args.multimodal',
        'false',
    )
    run('predict', 'geolink_segmentation.yaml', city, tmp_path)


@pytest.mark.parametrize(
    'config', ['geolink_pretrain_tiles.yaml', 'geolink_segmentation_tiles.yaml']
)
def test_tiles_datamodule(config: str, tiles: list[str], tmp_path: Path) -> None:
    run('fit', config, tiles, tmp_path)


@pytest.mark.parametrize('config', ROOT_CONFIGS)
def test_shipped_config_prints(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(['fit', '--config', str(REPO / config), '--print_config'])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert 'class_path: torchgeo_geolink.tasks.GeoLink' in printed
    assert 'class_path: torchgeo_geolink.datamodules.GeoLinkDataModule' in printed
