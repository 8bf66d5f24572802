# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Node positions of GeoLink graphs, normalized to the window (vectorized)."""

import hashlib
from collections.abc import Sequence

import numpy as np
import shapely
from numpy.typing import NDArray

__all__ = (
    'line_positions',
    'line_sample_points',
    'node_sample_points',
    'normalize_xy',
    'point_positions',
    'polygon_positions',
    'polygon_sample_points',
    'stable_uniforms',
)

_ANGLES = np.radians([0.0, 120.0, 240.0])
_WALK_STEPS = 10


def _check_bounds(bounds: Sequence[float]) -> tuple[float, float, float, float]:
    """Validate window bounds.

    Args:
        bounds: ``(xmin, ymin, xmax, ymax)``.

    Returns:
        The bounds as floats.

    Raises:
        ValueError: If the bounds are not four finite numbers with ``xmin < xmax`` and
            ``ymin < ymax``.
    """
    values = tuple(float(b) for b in bounds)
    if (
        len(values) != 4
        or not np.all(np.isfinite(values))
        or values[0] >= values[2]
        or values[1] >= values[3]
    ):
        msg = f'bounds must be finite (xmin, ymin, xmax, ymax) with xmin < xmax and ymin < ymax, got {bounds}'
        raise ValueError(msg)
    return values[0], values[1], values[2], values[3]


def normalize_xy(
    xy: NDArray[np.floating], bounds: Sequence[float]
) -> NDArray[np.float32]:
    """Normalize coordinates to the window, x right and y down.

    Positions are not clipped: parts of features outside the window fall outside
    ``[0, 1]``.

    Args:
        xy: Coordinates ``(..., 2)`` in the bounds' CRS.
        bounds: Window ``(xmin, ymin, xmax, ymax)``.

    Returns:
        float32 array of the same shape, x to the right and y down.

    .. versionadded:: 0.1
    """
    xmin, ymin, xmax, ymax = _check_bounds(bounds)
    xy = np.asarray(xy, dtype=np.float64)
    out = np.empty_like(xy)
    out[..., 0] = (xy[..., 0] - xmin) / (xmax - xmin)
    out[..., 1] = 1.0 - (xy[..., 1] - ymin) / (ymax - ymin)
    return out.astype(np.float32)


def stable_uniforms(geometries: NDArray[np.object_], count: int) -> NDArray[np.float64]:
    """Draw ``count`` uniforms in ``[0, 1)`` per geometry, seeded by its WKB.

    The same geometry always gets the same numbers, in any process or platform.

    Args:
        geometries: Shapely geometries.
        count: Numbers per geometry (at most 8).

    Returns:
        float64 array ``(n, count)``.

    .. versionadded:: 0.1
    """
    wkbs = shapely.to_wkb(geometries, byte_order=1)
    digests = b''.join(hashlib.blake2b(w, digest_size=8 * count).digest() for w in wkbs)
    words = np.frombuffer(digests, dtype='<u8').reshape(len(wkbs), count)
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


def polygon_sample_points(
    polygons: NDArray[np.object_], uniforms: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Three interior sample points and the centroid of each polygon.

    For each angle a radius ``r ~ U(d_min / 2, d_max / 2)`` is drawn (d: distances from
    the centroid to the exterior vertices); if ``centroid + r (cos, sin)`` is not inside
    the polygon, ``r`` walks down over 10 evenly spaced values to 0 and the first inside
    point is used; when none is, ``centroid + d_min / 200 (cos, sin)``. Unlike the
    reference, the radii are deterministic (:func:`stable_uniforms` of the geometry).

    Args:
        polygons: Shapely polygons (single-part, non-empty).
        uniforms: Optional ``(n, 3)`` uniforms in ``[0, 1)`` replacing the hash-seeded
            ones.

    Returns:
        float64 array ``(n, 4, 2)`` in the polygons' coordinates: three samples, then
        the centroid.

    .. versionadded:: 0.1
    """
    n = len(polygons)
    out = np.empty((n, 4, 2), dtype=np.float64)
    if n == 0:
        return out
    centroid = shapely.get_coordinates(shapely.centroid(polygons))
    ring_xy, ring_owner = shapely.get_coordinates(
        shapely.get_exterior_ring(polygons), return_index=True
    )
    distance = np.hypot(*(ring_xy - centroid[ring_owner]).T)
    d_min = np.full(n, np.inf)
    d_max = np.full(n, -np.inf)
    np.minimum.at(d_min, ring_owner, distance)
    np.maximum.at(d_max, ring_owner, distance)
    r_min, r_max = d_min / 2, d_max / 2
    if uniforms is None:
        uniforms = stable_uniforms(polygons, 3)
    radius = r_min[:, None] + uniforms * (r_max - r_min)[:, None]  # (n, 3)
    direction = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=-1)  # (3, 2)

    # Prepared for the point-in-polygon tests and unprepared after: a prepared polygon
    # that later meets shapely.relate (the relation pass) keeps GEOS structures on
    # itself, about 3 KB each, which over a region outweighs the polygons.
    unprepared = polygons[~shapely.is_prepared(polygons)]
    shapely.prepare(unprepared)
    owner = np.repeat(np.arange(n), 3)
    points = centroid[:, None, :] + radius[..., None] * direction  # (n, 3, 2)
    inside = shapely.contains_xy(
        polygons[owner], points[..., 0].ravel(), points[..., 1].ravel()
    ).reshape(n, 3)
    fail_i, fail_k = np.nonzero(~inside)
    if fail_i.size:
        steps = np.linspace(
            1.0, 0.0, _WALK_STEPS
        )  # r, ..., 0 as in the reference's linspace(r, 0, 10)
        walk_r = radius[fail_i, fail_k][:, None] * steps  # (m, 10)
        walk = (
            centroid[fail_i][:, None, :]
            + walk_r[..., None] * direction[fail_k][:, None, :]
        )
        walk_inside = shapely.contains_xy(
            np.repeat(polygons[fail_i], _WALK_STEPS),
            walk[..., 0].ravel(),
            walk[..., 1].ravel(),
        ).reshape(-1, _WALK_STEPS)
        found = walk_inside.any(axis=1)
        first = walk_inside.argmax(axis=1)
        fallback = centroid[fail_i] + (r_min[fail_i] / 100)[:, None] * direction[fail_k]
        chosen = np.where(found[:, None], walk[np.arange(fail_i.size), first], fallback)
        points[fail_i, fail_k] = chosen
    shapely.destroy_prepared(unprepared)
    out[:, :3] = points
    out[:, 3] = centroid
    return out


def polygon_positions(
    polygons: NDArray[np.object_],
    bounds: Sequence[float],
    uniforms: NDArray[np.float64] | None = None,
) -> NDArray[np.float32]:
    """Normalized polygon node positions ``(n, 4, 2)``.

    Args:
        polygons: Shapely polygons.
        bounds: Window ``(xmin, ymin, xmax, ymax)``.
        uniforms: Optional ``(n, 3)`` uniforms replacing the hash-seeded radii draws.

    Returns:
        float32 array ``(n, 4, 2)``.

    .. versionadded:: 0.1
    """
    return normalize_xy(
        polygon_sample_points(np.asarray(polygons, dtype=object), uniforms), bounds
    )


def line_sample_points(lines: NDArray[np.object_]) -> NDArray[np.float64]:
    """Centroid, start vertex and end vertex of each line.

    Args:
        lines: Shapely line strings.

    Returns:
        float64 array ``(n, 3, 2)``.

    .. versionadded:: 0.1
    """
    lines = np.asarray(lines, dtype=object)
    xy = np.empty((len(lines), 3, 2), dtype=np.float64)
    if len(lines):
        xy[:, 0] = shapely.get_coordinates(shapely.centroid(lines))
        xy[:, 1] = shapely.get_coordinates(shapely.get_point(lines, 0))
        xy[:, 2] = shapely.get_coordinates(shapely.get_point(lines, -1))
    return xy


def node_sample_points(
    geometries: NDArray[np.object_], kinds: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Node positions of mixed features, padded to four points.

    Args:
        geometries: Single-part geometries.
        kinds: Node kind of each (0 polygon, 1 line, 2 point, the positions in
            ``NODE_TYPES``).

    Returns:
        float64 array ``(n, 4, 2)``: polygon: :func:`polygon_sample_points`; line:
        :func:`line_sample_points`; point: itself; unused slots NaN.

    .. versionadded:: 0.1
    """
    out = np.full((len(geometries), 4, 2), np.nan)
    for kind, fill in enumerate(
        (
            polygon_sample_points,
            line_sample_points,
            lambda g: shapely.get_coordinates(g).reshape(-1, 1, 2),
        )
    ):
        sel = np.flatnonzero(kinds == kind)
        if len(sel):
            xy = fill(geometries[sel])
            out[sel, : xy.shape[1]] = xy
    return out


def line_positions(
    lines: NDArray[np.object_], bounds: Sequence[float]
) -> NDArray[np.float32]:
    """Normalized line node positions ``(n, 3, 2)``.

    Args:
        lines: Shapely line strings.
        bounds: Window ``(xmin, ymin, xmax, ymax)``.

    Returns:
        float32 array ``(n, 3, 2)``.

    .. versionadded:: 0.1
    """
    return normalize_xy(line_sample_points(lines), bounds)


def point_positions(
    points: NDArray[np.object_], bounds: Sequence[float]
) -> NDArray[np.float32]:
    """Normalized point node positions ``(n, 1, 2)``.

    Args:
        points: Shapely points.
        bounds: Window ``(xmin, ymin, xmax, ymax)``.

    Returns:
        float32 array ``(n, 1, 2)``.

    .. versionadded:: 0.1
    """
    points = np.asarray(points, dtype=object)
    xy = shapely.get_coordinates(points).reshape(len(points), 1, 2)
    return normalize_xy(xy, bounds)
