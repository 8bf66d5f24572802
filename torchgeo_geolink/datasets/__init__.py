# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Geospatial datasets pairing raster imagery with OpenStreetMap vectors and graphs."""

from .demo import (
    DEMO_CLASSES,
    DEMO_CRS,
    DEMO_OSM_PATH,
    DEMO_RES,
    DEMO_WITHHELD_KEYS,
    DemoImage,
    DemoLabels,
    DemoPaths,
    build_demo,
    landuse_class,
    render_demo,
)
from .osm import LoadReport, OSMDataset
from .raster import WindowedRasterDataset
from .tiles import UFZ_CLASSES, GeoLinkTiles, ufz_label_lut
from .utils import collate_geolink, graph_to_sample, sample_to_graph, unbind_geolink

__all__ = (
    'DEMO_CLASSES',
    'DEMO_CRS',
    'DEMO_OSM_PATH',
    'DEMO_RES',
    'DEMO_WITHHELD_KEYS',
    'UFZ_CLASSES',
    'DemoImage',
    'DemoLabels',
    'DemoPaths',
    'GeoLinkTiles',
    'LoadReport',
    'OSMDataset',
    'WindowedRasterDataset',
    'build_demo',
    'collate_geolink',
    'graph_to_sample',
    'landuse_class',
    'render_demo',
    'sample_to_graph',
    'ufz_label_lut',
    'unbind_geolink',
)
