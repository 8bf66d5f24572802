# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Joint image and graph augmentation."""

from .augmentation import DEFAULT_COLOR_JITTER, GeoLinkAugmentation
from .functional import (
    crop_matrix,
    drop_outside_nodes,
    filter_nodes,
    hflip_matrix,
    rot90_matrix,
    transform_positions,
    vflip_matrix,
    warp_images,
    warp_masks,
)

__all__ = (
    'DEFAULT_COLOR_JITTER',
    'GeoLinkAugmentation',
    'crop_matrix',
    'drop_outside_nodes',
    'filter_nodes',
    'hflip_matrix',
    'rot90_matrix',
    'transform_positions',
    'vflip_matrix',
    'warp_images',
    'warp_masks',
)
