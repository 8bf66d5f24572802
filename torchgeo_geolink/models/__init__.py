# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink models: image and OSM encoders, pretraining heads, fusion and UPerNet."""

from .geolink import DenseOSMTokens, GeoLink, GeoLinkOutput
from .graph_inputs import POS_POINTS, OSMInputs, osm_inputs
from .losses import info_nce_loss, masked_node_loss, masked_patch_loss, patchify
from .masking import random_node_mask, random_patch_mask, rank_within_groups
from .osm_encoder import EDGE_TYPES, NODE_TYPES, OSMHeteroGAT
from .pos_embed import node_pos_embed, sincos_1d, sincos_2d, sincos_grid_table
from .two_way import TwoWayAttentionBlock

__all__ = (
    'EDGE_TYPES',
    'NODE_TYPES',
    'POS_POINTS',
    'DenseOSMTokens',
    'GeoLink',
    'GeoLinkOutput',
    'OSMHeteroGAT',
    'OSMInputs',
    'TwoWayAttentionBlock',
    'info_nce_loss',
    'masked_node_loss',
    'masked_patch_loss',
    'node_pos_embed',
    'osm_inputs',
    'patchify',
    'random_node_mask',
    'random_patch_mask',
    'rank_within_groups',
    'sincos_1d',
    'sincos_2d',
    'sincos_grid_table',
)
