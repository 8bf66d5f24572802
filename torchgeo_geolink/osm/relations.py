# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The nine spatial relation edge sets of GeoLink graphs (vectorized DE-9IM).

Semantics follow the reference implementation exactly: the DE-9IM matrix of each
intersecting pair is classified in the reference's order, an edge ``src -> dst`` carries
the relation *of src to dst*, the reverse edge the converse relation; same-type edge
sets add one self loop per node; point-point edges are the Delaunay triangulation of the
points when there are more than 3 of them (self loops only otherwise, or when Qhull
fails on duplicate or collinear points). Two documented choices:

* bug B3 is fixed by default: ``equals`` is tested before ``covers``/``coveredBy``, so
  identical geometries get ``equals`` both ways (the reference labels them
  covers/coveredBy); pass ``equals_first=False`` for parity;
* B4 is kept for parity: crossing lines are ``overlaps`` (the reference's ``T*T***T**``
  pattern), not a separate ``crosses`` column.

Candidate pairs come from ``shapely.STRtree.query(..., predicate='intersects')``; the
pairs that touch are found with ``shapely.touches`` (which, unlike ``relate``, runs on
several cores), and where that does not settle the relation, the pair's DE-9IM matrix
comes from one vectorized ``shapely.relate`` call (``covered_by`` for a line that meets
a polygon without touching it: it is covered by it or, in the reference's ``T*T******``
sense, crosses it). Edges are assembled with numpy: no Python loop over pairs or edges.
Edges of each type are sorted by ``(src, dst)``.
"""

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely
from numpy.typing import NDArray
from scipy.spatial import Delaunay, QhullError

from ..errors import InvalidFeatureError
from .constants import EDGE_TYPES

__all__ = ('EdgeSet', 'build_edges', 'de9im_matrix', 'delaunay_edges', 'iter_edges')

#: One edge set: ``edge_index`` int64 ``(2, E)`` and one-hot ``edge_attr`` float32
#: ``(E, C)``.
EdgeSet = tuple[NDArray[np.int64], NDArray[np.float32]]

# Cells of a DE-9IM matrix, row-major: Interior, Boundary, Exterior of a against those
# of b.
_II, _IB, _IE, _BI, _BB, _BE, _EI, _EB, _EE = range(9)

# Columns of the same-type one-hot (self, touches, overlaps, covers, coveredBy, equals).
_SELF, _TOUCHES, _OVERLAPS, _COVERS, _COVERED_BY, _EQUALS = range(6)
_NONE = -1

#: Queries (and predicates) of fewer geometries (pairs) run on one thread; larger
#: ones are split across the available cores (GEOS releases the GIL in
#: ``STRtree.query`` and in predicates: 2 threads halve the time of a query of 44k
#: polygons on 2 cores, 1 s; the tiles of exact mode stay far below).
PARALLEL_QUERY_MIN = 10_000
#: Pairs related per ``shapely.relate`` call.
RELATE_BLOCK = 65_536


def de9im_matrix(a: NDArray[np.object_], b: NDArray[np.object_]) -> NDArray[np.bool_]:
    """DE-9IM matrices of pairs of geometries, as booleans.

    Args:
        a: First geometries of the pairs.
        b: Second geometries of the pairs (same length).

    Returns:
        bool array ``(n, 9)``, cells in row-major order (II, IB, IE, BI, BB, BE, EI, EB,
        EE).

    Raises:
        InvalidFeatureError: If GEOS cannot relate a pair (typically an invalid
            geometry).

    .. versionadded:: 0.1
    """
    out = np.empty((len(a), 9), dtype=bool)
    # In blocks: GEOS answers each pair with a Python string (about 60 bytes), which for
    # the millions of pairs of a region would outweigh the 9-byte matrices.
    for start in range(0, len(a), RELATE_BLOCK):
        block = slice(start, start + RELATE_BLOCK)
        try:
            codes = shapely.relate(a[block], b[block])
        except shapely.errors.GEOSException as error:
            msg = f'cannot compute spatial relations ({error}); repair the geometries with shapely.make_valid first'
            raise InvalidFeatureError(msg) from error
        out[block] = np.asarray(codes, dtype='U9').view('U1').reshape(-1, 9) != 'F'
    return out


def _touches(m: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Touches: interiors disjoint, boundaries (or a boundary and an interior) meet."""
    return ~m[:, _II] & (m[:, _IB] | m[:, _BI] | m[:, _BB])


def _disjoint(m: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Disjoint: ``FF*FF****``."""
    return ~(m[:, _II] | m[:, _IB] | m[:, _BI] | m[:, _BB])


def _covers(m: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Covers (a covers b): they meet and no point of b is outside a."""
    return (m[:, _II] | m[:, _IB] | m[:, _BI] | m[:, _BB]) & ~m[:, _EI] & ~m[:, _EB]


def _covered_by(m: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Covered by (a covered by b): they meet and no point of a is outside b."""
    return (m[:, _II] | m[:, _IB] | m[:, _BI] | m[:, _BB]) & ~m[:, _IE] & ~m[:, _BE]


def _equals(m: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Topological equality: ``T*F**FFF*``."""
    return m[:, _II] & ~m[:, _IE] & ~m[:, _BE] & ~m[:, _EI] & ~m[:, _EB]


def _overlaps(m: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The reference's overlaps: ``T*T***T**`` (also true for crossing lines, B4)."""
    return m[:, _II] & m[:, _IE] & m[:, _EI]


def _assemble(
    src: NDArray[np.int64],
    dst: NDArray[np.int64],
    column: NDArray[np.int64],
    width: int,
) -> EdgeSet:
    """Drop unclassified pairs, sort by ``(src, dst)`` and one-hot encode.

    Args:
        src: Source node of each candidate edge.
        dst: Target node of each candidate edge.
        column: One-hot column of each candidate edge, ``-1`` for no edge.
        width: Number of one-hot columns.

    Returns:
        The edge set.
    """
    keep = column >= 0
    src, dst, column = src[keep], dst[keep], column[keep]
    order = np.lexsort((dst, src))
    edge_index = np.stack([src[order], dst[order]]).astype(np.int64, copy=False)
    edge_index = edge_index.reshape(2, -1)
    edge_attr = np.zeros((order.size, width), dtype=np.float32)
    edge_attr[np.arange(order.size), column[order]] = 1.0
    return edge_index, edge_attr


def _usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _map_blocks[T](
    func: Callable[[int, int], T], n: int
) -> tuple[NDArray[np.int64], list[T]]:
    """Apply *func* to contiguous blocks of *n* items, one per usable core when many.

    GEOS releases the GIL in ``STRtree.query`` and in boolean predicates (not in
    ``relate``), so the blocks run in threads.

    Args:
        func: called with the bounds ``(lo, hi)`` of each block.
        n: number of items.

    Returns:
        The block bounds (``len(results) + 1`` of them) and *func*'s result per block.
    """
    workers = min(n // PARALLEL_QUERY_MIN, _usable_cores())
    bounds = np.linspace(0, n, max(workers, 1) + 1).astype(np.int64)
    if workers < 2:
        return bounds, [func(0, n)]
    with ThreadPoolExecutor(workers) as pool:
        return bounds, list(pool.map(func, bounds[:-1], bounds[1:]))


def _pairwise(
    predicate: Callable[[NDArray[np.object_], NDArray[np.object_]], NDArray[np.bool_]],
    a: NDArray[np.object_],
    b: NDArray[np.object_],
) -> NDArray[np.bool_]:
    """A shapely predicate of pairs, in blocks on the usable cores.

    GEOS answers predicates from the same DE-9IM evaluation as ``relate``.

    Args:
        predicate: e.g. :func:`shapely.touches`.
        a: First geometries of the pairs.
        b: Second geometries of the pairs.

    Returns:
        The predicate of each pair.
    """
    _, parts = _map_blocks(lambda lo, hi: predicate(a[lo:hi], b[lo:hi]), len(a))
    return np.concatenate(parts)


def _candidates(
    query: NDArray[np.object_], tree: NDArray[np.object_]
) -> tuple[NDArray, NDArray]:
    """Intersecting pairs of two geometry arrays from an STRtree.

    Args:
        query: Geometries queried against the tree.
        tree: Geometries stored in the tree.

    Returns:
        Indices into ``query`` and into ``tree`` of every intersecting pair.
    """
    if len(query) == 0 or len(tree) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    index = shapely.STRtree(tree)
    # Contiguous blocks, offset back: the same pairs in the same order as one query.
    bounds, blocks = _map_blocks(
        lambda lo, hi: index.query(query[lo:hi], predicate='intersects'), len(query)
    )
    q = np.concatenate(
        [b[0].astype(np.int64) + lo for b, lo in zip(blocks, bounds[:-1], strict=True)]
    )
    t = np.concatenate([b[1].astype(np.int64) for b in blocks])
    return q, t


def _same_type(geoms: NDArray[np.object_], equals_first: bool) -> EdgeSet:
    """Polygon-polygon or line-line edges: self loops plus each pair's relation.

    Args:
        geoms: Geometries of one type.
        equals_first: Test equals before covers (fixes B3).

    Returns:
        The edge set (6 one-hot columns).
    """
    n = len(geoms)
    q, t = _candidates(geoms, geoms)
    keep = q < t
    i, j = q[keep], t[keep]
    # Like the reference: classify relate(g_j, g_i) for i < j and write r[i, j] and r[j,
    # i]. Touching pairs are 'touches' both ways: only the others need their matrix.
    touching = _pairwise(shapely.touches, geoms[j], geoms[i])
    rest = np.flatnonzero(~touching)
    m = de9im_matrix(geoms[j[rest]], geoms[i[rest]])
    touches, covers, covered_by = _touches(m), _covers(m), _covered_by(m)
    overlaps, equals, disjoint = _overlaps(m), _equals(m), _disjoint(m)
    cases = [disjoint, touches]
    ij: list[int] = [_NONE, _TOUCHES]
    ji: list[int] = [_NONE, _TOUCHES]
    if equals_first:
        cases.append(equals)
        ij.append(_EQUALS)
        ji.append(_EQUALS)
    cases += [
        covers,
        covered_by,
        overlaps,
        equals,
    ]  # j covers i: i is covered by j, and conversely
    ij += [_COVERED_BY, _COVERS, _OVERLAPS, _EQUALS]
    ji += [_COVERS, _COVERED_BY, _OVERLAPS, _EQUALS]
    col_ij = np.full(len(i), _TOUCHES, dtype=np.int64)
    col_ji = np.full(len(i), _TOUCHES, dtype=np.int64)
    col_ij[rest] = np.select(cases, ij, default=_NONE)
    col_ji[rest] = np.select(cases, ji, default=_NONE)
    loops = np.arange(n, dtype=np.int64)
    src = np.concatenate([i, j, loops])
    dst = np.concatenate([j, i, loops])
    column = np.concatenate([col_ij, col_ji, np.full(n, _SELF)])
    return _assemble(src, dst, column, 6)


def _line_polygon(
    lines: NDArray[np.object_], polygons: NDArray[np.object_]
) -> tuple[EdgeSet, EdgeSet]:
    """Line-to-polygon edges and their transposes.

    Args:
        lines: Line geometries.
        polygons: Polygon geometries.

    Returns:
        The line->polygon and polygon->line edge sets.
    """
    li, pj = _candidates(lines, polygons)
    # Pairs from an 'intersects' query are never disjoint; a line that meets a polygon
    # without touching it has interior points inside it (II) while the polygon's
    # interior leaves the line (EI): it is covered by the polygon or crosses it.
    touching = _pairwise(shapely.touches, lines[li], polygons[pj])
    rest = np.flatnonzero(~touching)
    covered = _pairwise(shapely.covered_by, lines[li[rest]], polygons[pj[rest]])
    column = np.zeros(len(li), dtype=np.int64)
    column[rest] = np.where(covered, 2, 1)
    return _assemble(li, pj, column, 3), _assemble(pj, li, column, 3)


def _point_other(
    points: NDArray[np.object_], others: NDArray[np.object_]
) -> tuple[EdgeSet, EdgeSet]:
    """Point-to-line/polygon edges and their transposes.

    Args:
        points: Point geometries.
        others: Line or polygon geometries.

    Returns:
        The point->other and other->point edge sets.
    """
    pi, oj = _candidates(points, others)
    # A point that meets a geometry lies on its boundary (touches) or in its interior
    # (within).
    column = np.where(_pairwise(shapely.touches, points[pi], others[oj]), 0, 1)
    return _assemble(pi, oj, column, 2), _assemble(oj, pi, column, 2)


def delaunay_edges(xy: NDArray[np.floating]) -> EdgeSet:
    """Point-point edges: Delaunay neighbors plus self loops.

    Duplicate points take no part in the triangulation (Qhull skips them); when Qhull
    fails (e.g. all points collinear or identical) only self loops are returned, as in
    the reference.

    Args:
        xy: Point coordinates ``(n, 2)``.

    Returns:
        The edge set (one-hot columns: self, delaunay).

    .. versionadded:: 0.1
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    # Every edge as one int64 key, src * n + dst: sorting them gives the edges sorted by
    # (src, dst), self loops included, at a fraction of the time and memory of
    # ``np.unique(..., axis=0)`` and a lexsort of the pair rows.
    keys = [np.arange(n, dtype=np.int64) * (n + 1)]
    if n > 3:
        try:
            simplices = Delaunay(xy).simplices.astype(np.int64)
        except (QhullError, ValueError):
            simplices = np.zeros((0, 3), dtype=np.int64)
        a, b, c = simplices.T
        keys += [a * n + b, b * n + c, a * n + c, b * n + a, c * n + b, c * n + a]
        del simplices, a, b, c
    # Sorted and de-duplicated by hand: numpy 2.5's hash-based np.unique takes 4 s on
    # the 4M keys of 320k points, a sort 0.1 s.
    keys = np.sort(np.concatenate(keys))
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    keys = keys[first]
    src, dst = np.divmod(keys, n)
    edge_attr = np.zeros((len(src), 2), dtype=np.float32)
    edge_attr[np.arange(len(src)), (src != dst).astype(np.int64)] = 1.0
    return np.stack([src, dst]), edge_attr


def _as_geometry_array(
    geoms: Sequence[object] | NDArray[np.object_] | None,
) -> NDArray[np.object_]:
    """Convert a sequence of shapely geometries to a 1-D object array.

    Args:
        geoms: Geometries, or None for none.

    Returns:
        1-D object array.
    """
    if geoms is None:
        return np.empty(0, dtype=object)
    out = np.empty(len(geoms), dtype=object)
    out[:] = list(geoms)
    return out


def iter_edges(
    polygons: Sequence[object] | NDArray[np.object_] | None,
    lines: Sequence[object] | NDArray[np.object_] | None,
    points: Sequence[object] | NDArray[np.object_] | None,
    equals_first: bool = True,
) -> Iterator[tuple[tuple[str, str, str], EdgeSet]]:
    """Yield the nine GeoLink edge sets one relation pass at a time.

    The lazy form of :func:`build_edges`, for callers that turn each edge set into
    something smaller before the next is computed (over a whole region, the nine
    float one-hot sets at once outweigh the compact table made of them).

    Args:
        polygons: Polygons.
        lines: Line strings.
        points: Points.
        equals_first: Test ``equals`` before ``covers`` (fixes B3); False reproduces the
            reference exactly.

    Yields:
        ``(edge_type, (edge_index, edge_attr))`` for each of the nine edge types.

    Raises:
        InvalidFeatureError: If GEOS cannot relate the geometries (invalid input).

    .. versionadded:: 0.1
    """
    poly = _as_geometry_array(polygons)
    line = _as_geometry_array(lines)
    point = _as_geometry_array(points)
    xy = shapely.get_coordinates(point) if len(point) else np.zeros((0, 2))
    # Qhull and GEOS both release the GIL: a region's point triangulation runs on a
    # thread of its own beside the GEOS passes.
    pool = (
        ThreadPoolExecutor(1)
        if len(xy) >= PARALLEL_QUERY_MIN and _usable_cores() > 1
        else None
    )
    try:
        triangulation = None if pool is None else pool.submit(delaunay_edges, xy)
        yield ('polygon', 'to', 'polygon'), _same_type(poly, equals_first)
        yield ('line', 'to', 'line'), _same_type(line, equals_first)
        # Each pass yields an edge set and its transpose; the generator lets go of both
        # before the next pass, so only the caller decides what stays in memory.
        passes = (
            (('line', 'polygon'), lambda: _line_polygon(line, poly)),
            (('point', 'line'), lambda: _point_other(point, line)),
            (('point', 'polygon'), lambda: _point_other(point, poly)),
        )
        for (a, b), compute in passes:
            forward, backward = compute()
            yield (a, 'to', b), forward
            yield (b, 'to', a), backward
            del forward, backward
        yield (
            ('point', 'to', 'point'),
            delaunay_edges(xy) if triangulation is None else triangulation.result(),
        )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def build_edges(
    polygons: Sequence[object] | NDArray[np.object_] | None,
    lines: Sequence[object] | NDArray[np.object_] | None,
    points: Sequence[object] | NDArray[np.object_] | None,
    equals_first: bool = True,
) -> dict[tuple[str, str, str], EdgeSet]:
    """Build all nine GeoLink edge sets over single-part, valid geometries.

    Node ``i`` of a type is element ``i`` of its array. Relations are computed in the
    geometries' own coordinates (the reference uses raw lon/lat). Designed to be called
    once per file; a window's graph is then an induced subgraph.

    Args:
        polygons: Polygons.
        lines: Line strings.
        points: Points.
        equals_first: Test ``equals`` before ``covers`` (fixes B3); False reproduces the
            reference exactly.

    Returns:
        Edge type -> ``(edge_index int64 (2, E), edge_attr float32 (E, C))`` for all
        nine edge types.

    Raises:
        InvalidFeatureError: If GEOS cannot relate the geometries (invalid input).

    .. versionadded:: 0.1
    """
    edges = dict(iter_edges(polygons, lines, points, equals_first))
    return {edge_type: edges[edge_type] for edge_type in EDGE_TYPES}
