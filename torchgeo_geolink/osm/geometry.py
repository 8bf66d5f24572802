# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Geometry clean-up: 2-D, valid, single-part geometries of three node types."""

from collections.abc import Sequence
from typing import Literal

import numpy as np
import shapely
from numpy.typing import NDArray

from ..errors import InvalidFeatureError
from .constants import NODE_TYPES

__all__ = ('NODE_KIND_OF_TYPE_ID', 'NodeGeometries', 'split_by_type')

#: Per node type: the single-part geometries and, for each, the row of the input feature
#: it comes from.
NodeGeometries = dict[str, tuple[NDArray[np.object_], NDArray[np.int64]]]

#: Node kind (position in ``NODE_TYPES``: 0 polygon, 1 line, 2 point) of each shapely
#: geometry type id, -1 for the multipart types and collections (index with
#: ``shapely.get_type_id``; a missing geometry's -1 also gives -1).
NODE_KIND_OF_TYPE_ID = np.array([2, 1, 1, 0, -1, -1, -1, -1], dtype=np.int8)
_COLLECTION_IDS = (4, 5, 6, 7)


def _describe(row: int, ids: Sequence[object] | None) -> str:
    """Name a feature in an error message.

    Args:
        row: Its row position.
        ids: Optional feature identifiers.

    Returns:
        E.g. ``"feature 'way/42' (row 3)"``.
    """
    return (
        f'feature {ids[row]!r} (row {row})'
        if ids is not None
        else f'feature at row {row}'
    )


def _explode(
    geoms: NDArray[np.object_], rows: NDArray[np.int64]
) -> tuple[NDArray[np.object_], NDArray[np.int64]]:
    """Split multi-part geometries and (nested) collections into single parts.

    Args:
        geoms: Geometries.
        rows: Row of each geometry.

    Returns:
        The parts and the row of each part, in input order.
    """
    while len(geoms) and np.isin(shapely.get_type_id(geoms), _COLLECTION_IDS).any():
        parts, owner = shapely.get_parts(geoms, return_index=True)
        geoms, rows = parts, rows[owner]
    return geoms, rows


def split_by_type(
    geometries: Sequence[object] | NDArray[np.object_],
    ids: Sequence[object] | None = None,
    errors: Literal['raise', 'drop'] = 'raise',
) -> NodeGeometries:
    """Clean features' geometries and split them into polygon, line and point nodes.

    Missing and empty geometries are skipped; Z/M coordinates dropped; invalid
    geometries repaired with ``shapely.make_valid`` keeping only the parts of the
    original dimension (a GeometryCollection keeps all); multi-part geometries and
    collections exploded into parts that share the feature's row. Node order within a
    type follows the input order.

    Args:
        geometries: One shapely geometry (or None) per feature.
        ids: Optional identifiers of the features, used in error messages.
        errors: What to do with a feature that cannot be used (non-finite coordinates,
            or nothing of its dimension left after repair, e.g. a polygon collapsed to a
            line): raise, or drop it.

    Returns:
        Node type -> (geometries, rows) for all three node types.

    Raises:
        InvalidFeatureError: If ``errors='raise'`` and a feature cannot be used (names
            it and the problem).
        ValueError: If ``errors`` is not 'raise' or 'drop'.

    .. versionadded:: 0.1
    """
    if errors not in ('raise', 'drop'):
        msg = f"errors must be 'raise' or 'drop', got {errors!r}"
        raise ValueError(msg)
    if (
        isinstance(geometries, np.ndarray)
        and geometries.dtype == object
        and geometries.ndim == 1
    ):
        geoms = geometries
    else:
        geoms = np.empty(len(geometries), dtype=object)
        geoms[:] = list(geometries)
    rows = np.arange(len(geoms), dtype=np.int64)
    not_geometry = ~(shapely.is_geometry(geoms) | shapely.is_missing(geoms))
    if not_geometry.any():
        row = int(np.flatnonzero(not_geometry)[0])
        msg = f'{_describe(row, ids)}: {type(geoms[row]).__name__} is not a shapely geometry'
        raise InvalidFeatureError(msg)
    keep = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    geoms, rows = shapely.force_2d(geoms[keep]), rows[keep]

    bad: list[tuple[int, str]] = []
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    non_finite = np.unique(owner[~np.isfinite(coords).all(axis=1)])
    if non_finite.size:
        bad += [
            (int(rows[k]), 'has non-finite (NaN or infinite) coordinates')
            for k in non_finite
        ]
        mask = np.ones(len(geoms), dtype=bool)
        mask[non_finite] = False
        geoms, rows = geoms[mask], rows[mask]

    dimension = shapely.get_dimensions(geoms)
    dimension[
        shapely.get_type_id(geoms) == 7
    ] = -1  # collections keep parts of every dimension
    invalid = ~shapely.is_valid(geoms)
    repaired = geoms.copy()
    if invalid.any():
        repaired[invalid] = shapely.make_valid(geoms[invalid])
    parts, owner = _explode(repaired, np.arange(len(geoms), dtype=np.int64))
    usable = ~shapely.is_empty(parts)
    part_dims = shapely.get_dimensions(parts)
    right_dim = (dimension[owner] == -1) | (part_dims == dimension[owner])
    # A valid GEOS geometry can still be degenerate for our purposes when repair changed
    # its dimension.
    parts_ok = usable & right_dim
    survived = np.zeros(len(geoms), dtype=bool)
    survived[owner[parts_ok]] = True
    for k in np.flatnonzero(~survived):
        kind = shapely.get_type_id(geoms[k])
        reason = (
            'is invalid and collapses to a lower dimension when repaired'
            if invalid[k]
            else 'has no usable part'
        )
        bad.append(
            (
                int(rows[k]),
                f'{reason} ({shapely.to_wkt(geoms[k], rounding_precision=6)[:80]}, type {kind})',
            )
        )
    if bad and errors == 'raise':
        bad.sort()
        row, reason = bad[0]
        more = f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''
        msg = f'{_describe(row, ids)} {reason}{more}'
        raise InvalidFeatureError(msg)
    parts, part_rows = parts[parts_ok], rows[owner[parts_ok]]

    part_kinds = NODE_KIND_OF_TYPE_ID[shapely.get_type_id(parts)]
    out: NodeGeometries = {}
    for kind, node_type in enumerate(NODE_TYPES):
        selected = part_kinds == kind
        out[node_type] = (parts[selected], part_rows[selected].astype(np.int64))
    return out
