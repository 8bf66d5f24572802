# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning tasks for GeoLink pretraining, segmentation and classification."""

from .classification import GeoLinkClassification, weighted_knn
from .metrics import CrossModalRetrieval
from .pretrain import GeoLinkPretrain
from .schedules import WarmupCosine, adamw_warmup_cosine, warmup_cosine_scheduler
from .segmentation import GeoLinkSegmentation

__all__ = (
    'CrossModalRetrieval',
    'GeoLinkClassification',
    'GeoLinkPretrain',
    'GeoLinkSegmentation',
    'WarmupCosine',
    'adamw_warmup_cosine',
    'warmup_cosine_scheduler',
    'weighted_knn',
)
