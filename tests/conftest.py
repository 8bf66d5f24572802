# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Shared fixtures and helpers: small GeoTIFFs, OSM-like vector files and GeoLink tiles.

All are real files, written in a temporary directory.
"""

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
import torch
from PIL import Image
from pyproj import CRS
from rasterio.transform import from_origin
from torch_geometric.data import HeteroData

from torchgeo_geolink.osm import EDGE_ATTR_DIMS, POS_POINTS, TAG_EMBEDDING_DIM

#: Projected CRS of the synthetic city (UTM 35N, as Helsinki).
CITY_CRS = CRS.from_epsg(32635)
#: Lower-left corner of the synthetic city in :data:`CITY_CRS`.
CITY_ORIGIN = (385_000.0, 6_672_000.0)
#: Repository root (``shared`` example data sits next to it).
REPO = Path(__file__).resolve().parents[1]
#: Real OSM extract shipped with the package.
HELSINKI_PBF = REPO / 'torchgeo_geolink' / 'data' / 'helsinki.osm.pbf'

WriteRaster = Callable[..., Path]
CityFrame = Callable[..., gpd.GeoDataFrame]


def write_geotiff(
    path: Path,
    bounds: tuple[float, float, float, float],
    crs: CRS,
    res: float = 1.0,
    bands: int = 3,
    burn: list[tuple[shapely.Geometry, int]] | None = None,
) -> Path:
    """Write a GeoTIFF of uint8 noise (< 100) with optional shapes burned in at 255."""
    xmin, ymin, xmax, ymax = bounds
    width, height = round((xmax - xmin) / res), round((ymax - ymin) / res)
    transform = from_origin(xmin, ymax, res, res)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 100, size=(bands, height, width), dtype=np.uint8)
    if burn:
        mask = rasterio.features.rasterize(
            burn, out_shape=(height, width), transform=transform
        )
        data[:, mask > 0] = 255
    profile = {
        'driver': 'GTiff',
        'width': width,
        'height': height,
        'count': bands,
        'dtype': 'uint8',
        'crs': crs,
        'transform': transform,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(data)
    return path


def city_frame(
    origin: tuple[float, float] = CITY_ORIGIN,
    blocks: int = 4,
    block: float = 50.0,
    crs: CRS = CITY_CRS,
    seed: int = 0,
) -> gpd.GeoDataFrame:
    """A small city of building squares, streets and shops, one column per tag key."""
    rng = np.random.default_rng(seed)
    x0, y0 = origin
    rows: list[dict[str, object]] = []
    for i in range(blocks):
        for j in range(blocks):
            bx, by = x0 + i * block, y0 + j * block
            side = block * rng.uniform(0.4, 0.7)
            rows.append(
                {
                    'building': 'yes',
                    'building:levels': str(int(rng.integers(1, 8))),
                    'geometry': shapely.box(
                        bx + 5, by + 5, bx + 5 + side, by + 5 + side
                    ),
                }
            )
            rows.append(
                {
                    'shop': 'bakery',
                    'name': f'Shop {i}-{j}',
                    'geometry': shapely.Point(bx + 8, by + 8),
                }
            )
    for i in range(blocks + 1):
        x = x0 + i * block
        rows.append(
            {
                'highway': 'residential',
                'name': f'Street {i}',
                'geometry': shapely.LineString([(x, y0), (x, y0 + blocks * block)]),
            }
        )
        y = y0 + i * block
        rows.append(
            {
                'highway': 'primary',
                'name': f'Avenue {i}',
                'geometry': shapely.LineString([(x0, y), (x0 + blocks * block, y)]),
            }
        )
    return gpd.GeoDataFrame(rows, geometry='geometry', crs=crs)


def official_graph(counts: dict[str, int], seed: int) -> HeteroData:
    """An official-layout graph: 512 semantic columns, then the position columns."""
    gen = torch.Generator().manual_seed(seed)
    graph = HeteroData()
    for node_type, n in counts.items():
        semantic = torch.randn(n, TAG_EMBEDDING_DIM, generator=gen)
        pos = torch.rand(n, 2 * POS_POINTS[node_type], generator=gen)
        graph[node_type].x = torch.cat([semantic, pos], dim=1)
    for src, n_src in counts.items():
        for dst, n_dst in counts.items():
            width = EDGE_ATTR_DIMS[src, 'to', dst]
            if n_src and n_dst:
                edge_index = torch.stack(
                    [torch.arange(n_src), torch.arange(n_src) % n_dst]
                )
            else:
                edge_index = torch.zeros(2, 0, dtype=torch.long)
            graph[src, 'to', dst].edge_index = edge_index
            graph[src, 'to', dst].edge_attr = torch.eye(width)[
                torch.zeros(edge_index.shape[1], dtype=torch.long)
            ]
    return graph


def save_tile(
    root: Path,
    name: str,
    image: np.ndarray,
    graph: HeteroData,
    label: np.ndarray | None = None,
) -> None:
    """Save one tile in GeoLink's tile format.

    It writes ``img/<name>.png``, ``label/<name>.png`` and ``graph/<name>.pt``.
    """
    for d in ('img', 'label', 'graph'):
        (root / d).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / 'img' / f'{name}.png')
    if label is not None:
        Image.fromarray(label).save(root / 'label' / f'{name}.png')
    torch.save(graph, root / 'graph' / f'{name}.pt')


def write_tiles(
    root: Path,
    names: list[str],
    size: int = 16,
    labels: bool = True,
    label_values: tuple[int, ...] = (0, 1, 5, 9, 255),
) -> dict[str, HeteroData]:
    """Write tiny tiles in GeoLink's tile format and return their graphs.

    Each tile is a noise PNG image, a PNG of raw labels drawn from *label_values* (UFZ
    values by default) and an official ``.pt`` graph (:func:`official_graph`).
    """
    graphs = {}
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        raw = None
        if labels:
            raw = np.array(label_values, dtype=np.uint8)[
                rng.integers(0, len(label_values), (size, size))
            ]
        graphs[name] = official_graph(
            {'polygon': 2 + i, 'line': 1, 'point': i % 2}, seed=i
        )
        save_tile(root, name, pixels, graphs[name], raw)
    return graphs


@pytest.fixture
def write_raster() -> WriteRaster:
    """Factory writing a GeoTIFF (see :func:`write_geotiff`)."""
    return write_geotiff


@pytest.fixture
def make_city() -> CityFrame:
    """Factory of a synthetic city GeoDataFrame (see :func:`city_frame`)."""
    return city_frame


@pytest.fixture
def city_gpkg(tmp_path: Path) -> Path:
    """A GeoPackage of the default synthetic city in UTM 35N."""
    path = tmp_path / 'city.gpkg'
    city_frame().to_file(path, driver='GPKG')
    return path


@pytest.fixture
def city_raster(tmp_path: Path) -> Path:
    """A 1 m GeoTIFF covering the default synthetic city."""
    x0, y0 = CITY_ORIGIN
    return write_geotiff(tmp_path / 'image.tif', (x0, y0, x0 + 200, y0 + 200), CITY_CRS)
