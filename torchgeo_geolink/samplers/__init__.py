# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSM-aware window samplers."""

from .osm import OSMGriddedPatchSampler, OSMRandomPatchSampler, find_osm_dataset

__all__ = ('OSMGriddedPatchSampler', 'OSMRandomPatchSampler', 'find_osm_dataset')
