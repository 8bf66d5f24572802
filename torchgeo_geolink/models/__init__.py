# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink models: image and OSM encoders, pretraining heads, fusion and UPerNet."""

__all__: tuple[str, ...] = ()
