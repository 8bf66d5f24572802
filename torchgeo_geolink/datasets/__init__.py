# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Geospatial datasets pairing raster imagery with OpenStreetMap vectors and graphs."""

from typing import TYPE_CHECKING, Any

from .demo import (
    DEMO_CLASSES,
    DEMO_CRS,
    DEMO_OSM_PATH,
    DEMO_REGIONS,
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

if TYPE_CHECKING:  # imported lazily at run time, see __getattr__
    from .streaming import GeoLinkStreamingTiles

__all__ = (
    'DEMO_CLASSES',
    'DEMO_CRS',
    'DEMO_OSM_PATH',
    'DEMO_REGIONS',
    'DEMO_RES',
    'DEMO_WITHHELD_KEYS',
    'UFZ_CLASSES',
    'DemoImage',
    'DemoLabels',
    'DemoPaths',
    'GeoLinkStreamingTiles',
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


def __getattr__(name: str) -> Any:
    """Import :class:`GeoLinkStreamingTiles` on first use.

    It needs the optional ``litdata`` (extra ``scale``).

    Args:
        name: The attribute.

    Returns:
        The attribute.

    Raises:
        AttributeError: If the module has no such attribute.
    """
    if name == 'GeoLinkStreamingTiles':
        from .streaming import GeoLinkStreamingTiles

        return GeoLinkStreamingTiles
    msg = f'module {__name__!r} has no attribute {name!r}'
    raise AttributeError(msg)
