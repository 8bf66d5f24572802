# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning DataModules for GeoLink pretraining and fine-tuning."""

from .geolink import (
    GeoLinkDataModule,
    dominant_class,
    make_tag_encoder,
    merge_keep_first,
    region_rois,
)
from .tiles import GeoLinkStreamingTilesDataModule, GeoLinkTilesDataModule

__all__ = (
    'GeoLinkDataModule',
    'GeoLinkStreamingTilesDataModule',
    'GeoLinkTilesDataModule',
    'dominant_class',
    'make_tag_encoder',
    'merge_keep_first',
    'region_rois',
)
