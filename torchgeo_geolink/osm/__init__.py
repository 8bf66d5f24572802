# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSM tags, tag encoders and GeoLink heterogeneous graphs."""

from .constants import (
    EDGE_ATTR_DIMS,
    EDGE_TYPES,
    NODE_TYPES,
    POS_POINTS,
    RELATION_COLUMNS,
    TAG_EMBEDDING_DIM,
)
from .embedding import NodeEmbedder
from .encoders import (
    CachedTagEncoder,
    CLIPTagEncoder,
    HashingTagEncoder,
    SentenceTransformerTagEncoder,
    TagEncoder,
    make_tag_encoder,
)
from .frame_tags import (
    BOOKKEEPING_COLUMNS,
    TagRows,
    iter_frame_tags,
    iter_tag_rows,
    tags_from_frame,
)
from .geometry import NodeGeometries, split_by_type
from .graph import OSMGraphBuilder, empty_graph, graph_from_parts
from .official import from_official_graph, to_official_graph
from .positions import (
    line_positions,
    normalize_xy,
    point_positions,
    polygon_positions,
    stable_uniforms,
)
from .relations import EdgeSet, build_edges, de9im_matrix, delaunay_edges, iter_edges
from .tags import KeyWeights, normalize_key, parse_hstore, parse_label, tag_strings

__all__ = (
    'BOOKKEEPING_COLUMNS',
    'EDGE_ATTR_DIMS',
    'EDGE_TYPES',
    'NODE_TYPES',
    'POS_POINTS',
    'RELATION_COLUMNS',
    'TAG_EMBEDDING_DIM',
    'CLIPTagEncoder',
    'CachedTagEncoder',
    'EdgeSet',
    'HashingTagEncoder',
    'KeyWeights',
    'NodeEmbedder',
    'NodeGeometries',
    'OSMGraphBuilder',
    'SentenceTransformerTagEncoder',
    'TagEncoder',
    'TagRows',
    'build_edges',
    'de9im_matrix',
    'delaunay_edges',
    'empty_graph',
    'from_official_graph',
    'graph_from_parts',
    'iter_edges',
    'iter_frame_tags',
    'iter_tag_rows',
    'line_positions',
    'make_tag_encoder',
    'normalize_key',
    'normalize_xy',
    'parse_hstore',
    'parse_label',
    'point_positions',
    'polygon_positions',
    'split_by_type',
    'stable_uniforms',
    'tag_strings',
    'tags_from_frame',
    'to_official_graph',
)
