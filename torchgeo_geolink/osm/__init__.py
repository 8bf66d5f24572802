# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSM tags, tag encoders and GeoLink heterogeneous graphs (independent of TorchGeo datasets)."""

__all__: tuple[str, ...] = ()
