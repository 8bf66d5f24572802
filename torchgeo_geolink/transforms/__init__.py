# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Joint image and graph augmentation."""

__all__: tuple[str, ...] = ()
