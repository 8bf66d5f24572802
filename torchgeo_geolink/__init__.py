# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""torchgeo-geolink: GeoLink foundation models with OpenStreetMap, for TorchGeo."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version('torchgeo-geolink')
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = '0.0.0'

__all__ = ('__version__',)
