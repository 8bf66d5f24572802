# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Geospatial datasets pairing raster imagery with OpenStreetMap vectors and graphs."""

__all__: tuple[str, ...] = ()
