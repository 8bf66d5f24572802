# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink models: image and OSM encoders, pretraining heads, fusion and UPerNet."""

from .fusion import GeoLinkFusionEncoder
from .geolink import DenseOSMTokens, GeoLink, GeoLinkEmbeddings, GeoLinkOutput
from .graph_inputs import OSMInputs, osm_inputs
from .losses import info_nce_loss, masked_node_loss, masked_patch_loss
from .masking import (
    random_node_mask,
    random_patch_mask,
    random_subset_keys,
    rank_within_groups,
)
from .osm_encoder import BipartiteGATConv, OSMHeteroGAT
from .patches import patchify, reconstruct_images, unpatchify
from .pos_embed import node_pos_embed, sincos_1d, sincos_2d, sincos_grid_table
from .two_way import TwoWayAttentionBlock
from .upernet import Feature2Pyramid, GeoLinkSegmentationModel, UPerNetHead
from .weights import (
    ARCHITECTURE_DEFAULTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFICIAL_TAG_ENCODER,
    WEIGHTS_DIR_ENV,
    GeoLinkViTLarge16_Weights,
    GeoLinkWeightsEnum,
    WeightsProvenance,
    export_vit,
    geolink_from_architecture,
    geolink_from_weights,
    geolink_vit_large_patch16_224,
    is_lightning_checkpoint,
    lightning_state_dict,
    load_official_checkpoint,
    load_official_vit,
    official_state_dict,
    save_official_checkpoint,
    tag_encoders_compatible,
    vit_large_patch16_224_geolink,
)

__all__ = (
    'ARCHITECTURE_DEFAULTS',
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'OFFICIAL_TAG_ENCODER',
    'WEIGHTS_DIR_ENV',
    'BipartiteGATConv',
    'DenseOSMTokens',
    'Feature2Pyramid',
    'GeoLink',
    'GeoLinkEmbeddings',
    'GeoLinkFusionEncoder',
    'GeoLinkOutput',
    'GeoLinkSegmentationModel',
    'GeoLinkViTLarge16_Weights',
    'GeoLinkWeightsEnum',
    'OSMHeteroGAT',
    'OSMInputs',
    'TwoWayAttentionBlock',
    'UPerNetHead',
    'WeightsProvenance',
    'export_vit',
    'geolink_from_architecture',
    'geolink_from_weights',
    'geolink_vit_large_patch16_224',
    'info_nce_loss',
    'is_lightning_checkpoint',
    'lightning_state_dict',
    'load_official_checkpoint',
    'load_official_vit',
    'masked_node_loss',
    'masked_patch_loss',
    'node_pos_embed',
    'official_state_dict',
    'osm_inputs',
    'patchify',
    'random_node_mask',
    'random_patch_mask',
    'random_subset_keys',
    'rank_within_groups',
    'reconstruct_images',
    'save_official_checkpoint',
    'sincos_1d',
    'sincos_2d',
    'sincos_grid_table',
    'tag_encoders_compatible',
    'unpatchify',
    'vit_large_patch16_224_geolink',
)
