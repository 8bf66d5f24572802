# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Joint image and graph augmentation."""

from .augmentation import GeoLinkAugmentation
from .functional import (
    adjust_colors,
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
from .normalize import NormalizeImage

__all__ = (
    'GeoLinkAugmentation',
    'NormalizeImage',
    'adjust_colors',
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
