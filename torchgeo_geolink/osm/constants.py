# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Node types, edge types, relation columns and position layout of GeoLink graphs."""

from typing import Final

__all__ = (
    'EDGE_ATTR_DIMS',
    'EDGE_TYPES',
    'NODE_TYPES',
    'POS_POINTS',
    'RELATION_COLUMNS',
    'TAG_EMBEDDING_DIM',
)

#: The three node types of a GeoLink graph, in the order the official graphs store them.
NODE_TYPES: Final[tuple[str, str, str]] = ('polygon', 'line', 'point')

#: All nine ``(src, 'to', dst)`` edge types; every graph holds all of them (possibly
#: empty).
EDGE_TYPES: Final[tuple[tuple[str, str, str], ...]] = tuple(
    (src, 'to', dst) for src in NODE_TYPES for dst in NODE_TYPES
)

#: Meaning of each one-hot ``edge_attr`` column; an edge ``src -> dst`` carries the
#: relation *of src to dst* (as in the reference graphs). Same-type pairs add a ``self``
#: loop per node.
RELATION_COLUMNS: Final[dict[tuple[str, str, str], tuple[str, ...]]] = {
    ('polygon', 'to', 'polygon'): (
        'self',
        'touches',
        'overlaps',
        'covers',
        'coveredBy',
        'equals',
    ),
    ('polygon', 'to', 'line'): ('touches', 'crosses', 'covers'),
    ('polygon', 'to', 'point'): ('touches', 'contains'),
    ('line', 'to', 'polygon'): ('touches', 'crosses', 'coveredBy'),
    ('line', 'to', 'line'): (
        'self',
        'touches',
        'overlaps',
        'covers',
        'coveredBy',
        'equals',
    ),
    ('line', 'to', 'point'): ('touches', 'contains'),
    ('point', 'to', 'polygon'): ('touches', 'within'),
    ('point', 'to', 'line'): ('touches', 'within'),
    ('point', 'to', 'point'): ('self', 'delaunay'),
}

#: Width ``C`` of the one-hot ``edge_attr`` of each edge type.
EDGE_ATTR_DIMS: Final[dict[tuple[str, str, str], int]] = {
    edge_type: len(columns) for edge_type, columns in RELATION_COLUMNS.items()
}

#: Number ``K`` of ``(x, y)`` positions per node: polygon = three interior samples then
#: the centroid, line = centroid, start, end; point = the point.
POS_POINTS: Final[dict[str, int]] = {'polygon': 4, 'line': 3, 'point': 1}

#: Width of the semantic (tag) part of the node features of the official GeoLink graphs.
TAG_EMBEDDING_DIM: Final[int] = 512
