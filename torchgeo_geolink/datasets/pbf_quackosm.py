# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Reading ``.osm.pbf`` files with QuackOSM (DuckDB) instead of GDAL's OSM driver.

GDAL's driver stays the default: on the shipped extracts and on Helsinki tiled up to
518k features, QuackOSM 0.19 took 4-20x as long on 2 cores
(``benchmarks/pbf_readers.py``). It lowers the peak memory of the process that builds
the dataset (by 12 % at 518k features, more on small files), but its own child process
peaks at about 950 MiB whatever the file's size (DuckDB and its imports), so up to that
size GDAL is the leaner reader of the whole machine too. Choose it with
``pbf_reader='quackosm'`` for files whose frame is much larger than that, where the
dataset process's peak limits. Install it with ``pip install
torchgeo-geolink[quackosm]``; offline, the ``duckdb-extension-spatial`` wheel of that
extra provides DuckDB's ``spatial`` extension, which DuckDB would otherwise download.

QuackOSM returns every tagged node, way and relation once (ways closed into areas by its
own rules, multipolygon relations as areas) with a ``tags`` mapping column, which the
reader's tag parsing takes as it is.
"""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import shapely
from geopandas import GeoDataFrame
from pyproj import CRS

from ..errors import OSMFileError

__all__ = ('read_pbf_quackosm',)

# Run by path, so that the child imports QuackOSM but not this package (and torch).
_CHILD = Path(__file__).with_name('_quackosm_child.py')


def read_pbf_quackosm(
    path: str, roi: shapely.Geometry | None = None, roi_crs: CRS | None = None
) -> GeoDataFrame:
    """Read the tagged features of an ``.osm.pbf`` file with QuackOSM.

    QuackOSM runs in a child process that writes GeoParquet, read back here: importing
    it registers GeoArrow's Arrow extension types for the whole process, after which
    pyogrio can no longer read any file into pandas; the child also takes DuckDB's
    memory with it when it ends.

    Args:
        path: the file.
        roi: read only the features that intersect this region (QuackOSM's
            ``geometry_filter``); None reads every feature.
        roi_crs: CRS of *roi* (default: WGS 84, the file's).

    Returns:
        The features in WGS 84, with a ``tags`` column of mappings.

    Raises:
        OSMFileError: if QuackOSM is missing or cannot read the file.

    .. versionadded:: 0.1
    """
    if importlib.util.find_spec('quackosm') is None:
        msg = (
            "pbf_reader='quackosm' needs QuackOSM: pip install "
            "'torchgeo-geolink[quackosm]' (or use the default pbf_reader='gdal')"
        )
        raise OSMFileError(msg)
    wgs84 = CRS.from_epsg(4326)
    region = ''
    if roi is not None:
        region = gpd.GeoSeries([roi], crs=roi_crs or wgs84).to_crs(wgs84).iloc[0].wkt
    with tempfile.TemporaryDirectory(prefix='geolink-quackosm-') as work:
        result = Path(work) / 'features.parquet'
        command = [sys.executable, str(_CHILD), path, str(result), work, region]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ['no error output'])[-1]
            raise OSMFileError(f'{path}: QuackOSM cannot read the file ({last})')
        frame = gpd.read_parquet(result)
    frame = frame.reset_index(drop=True)
    # Arrow maps arrive in pandas as lists of (key, value) pairs.
    frame['tags'] = [
        dict(pairs) if pairs is not None else {} for pairs in frame['tags']
    ]
    # QuackOSM's 'node/123' ids are not tags.
    frame = frame.drop(columns=['feature_id'], errors='ignore')
    # QuackOSM declares OGC:CRS84, the same lon/lat coordinates: say EPSG:4326, as
    # GDAL's driver does, so both readers give a dataset the same CRS.
    return frame.set_crs(wgs84, allow_override=True)
