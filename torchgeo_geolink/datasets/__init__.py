# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Geospatial datasets pairing raster imagery with OpenStreetMap vectors and graphs."""

from .osm import LoadReport, OSMDataset
from .utils import collate_geolink, graph_to_sample, sample_to_graph, unbind_geolink

__all__ = (
    'LoadReport',
    'OSMDataset',
    'collate_geolink',
    'graph_to_sample',
    'sample_to_graph',
    'unbind_geolink',
)
