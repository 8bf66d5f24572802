# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSM-aware window samplers."""

__all__: tuple[str, ...] = ()
