# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Benchmark OSMGraphBuilder against an all-pairs builder (like the reference).

Tiles hold N polygons (buildings plus some larger land-use areas), N/2 lines and N
points at constant, city-like density, with GeoLink labels drawn from a realistic tag
vocabulary. Both builders start from the same GeoDataFrame and include tag encoding with
the default hashing encoder (our builder starts with a cold cache each run, the
all-pairs one encodes every tag of every feature, one string at a time, like the
reference), positions and the nine edge sets. Targets: >= 100x faster than all-pairs at
N = 800, growth exponent <= 1.2 (N 100 -> 800).

Usage: ``python benchmarks/graph_builder.py [--quick]`` (quick: N <= 800).
"""

import argparse
import math
import random
import re
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
import torch
from shapely import affinity
from shapely.geometry import LineString, Point, box

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, print_table, timeit

from torchgeo_geolink.osm import HashingTagEncoder, KeyWeights, OSMGraphBuilder

TAGS = {
    'polygon': [
        'building:yes',
        'building:house',
        'building:apartments',
        'building:commercial',
        'landuse:grass',
        'landuse:residential',
        'leisure:park',
        'amenity:parking',
        'natural:water',
        'landuse:industrial',
    ],
    'line': [
        'highway:residential',
        'highway:service',
        'highway:footway',
        'highway:primary',
        'railway:rail',
        'waterway:stream',
        'highway:cycleway',
        'barrier:fence',
    ],
    'point': [
        'amenity:bench',
        'highway:crossing',
        'natural:tree',
        'shop:bakery',
        'amenity:cafe',
        'highway:street_lamp',
        'amenity:waste_basket',
    ],
}
EXTRA = [
    'surface:asphalt',
    'lit:yes',
    'oneway:yes',
    'name:Main Street',
    'addr street:Aleksanterinkatu',
    'building levels:4',
    'maxspeed:30',
    'source:survey',
    'roof shape:flat',
    'wheelchair:yes',
]


def synthetic_tile(
    n: int, seed: int = 0
) -> tuple[gpd.GeoDataFrame, tuple[float, float, float, float]]:
    """A synthetic city tile with N polygons, N/2 lines and N points."""
    rng = np.random.default_rng(seed)
    side = 40.0 * math.sqrt(n)  # meters: ~1,600 m2 per polygon, like a dense city block
    geoms, labels = [], []
    for k in range(n):
        cx, cy = rng.uniform(0, side, 2)
        w, h = rng.uniform(40, 150, 2) if k % 10 == 0 else rng.uniform(6, 30, 2)
        geoms.append(
            affinity.rotate(
                box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), rng.uniform(0, 90)
            )
        )
    for _ in range(n // 2):
        start = rng.uniform(0, side, 2)
        steps = rng.normal(0, 40, size=(rng.integers(2, 6), 2))
        geoms.append(LineString(np.vstack([start, start + np.cumsum(steps, axis=0)])))
    lines = geoms[n:]
    for k in range(n):
        if k % 5 == 0 and lines:  # some points sit on lines (crossings, lamps)
            geoms.append(
                lines[k % len(lines)].interpolate(rng.uniform(0, 1), normalized=True)
            )
        else:
            geoms.append(Point(rng.uniform(0, side, 2)))
    for kind, count in (('polygon', n), ('line', n // 2), ('point', n)):
        for _ in range(count):
            tags = [TAGS[kind][rng.integers(len(TAGS[kind]))]]
            tags += [
                EXTRA[i]
                for i in rng.choice(len(EXTRA), rng.integers(0, 4), replace=False)
            ]
            labels.append(';'.join(tags))
    return gpd.GeoDataFrame({'label': labels}, geometry=geoms, crs='EPSG:32635'), (
        0.0,
        0.0,
        side,
        side,
    )


# --- the all-pairs builder (reference-style: scalar predicates, Python loops) ---

DISJOINT = re.compile('FF.FF....')
TOUCHES = [re.compile('FT.......'), re.compile('F..T.....'), re.compile('F...T....')]
COVERS = [re.compile(p) for p in ('T.....FF.', '.T....FF.', '...T..FF.', '....T.FF.')]
COVERED_BY = [
    re.compile(p) for p in ('T.F..F...', '.TF..F...', '..FT.F...', '..F.TF...')
]
OVERLAPS = re.compile('T.T...T..')
EQUALS = re.compile('T.F..FFF.')
WITHIN = re.compile('T.F..F...')


def _code(relation: str) -> str:
    """Replace dimensions by T so the patterns stay readable."""
    return re.sub('[012]', 'T', relation)


def _any(patterns: list[re.Pattern], code: str) -> bool:
    return any(p.fullmatch(code) for p in patterns)


def all_pairs_builder(
    gdf: gpd.GeoDataFrame, bounds: tuple[float, float, float, float]
) -> dict:
    """Build node features and edge sets with all-pairs relate and Python loops."""
    encoder, weights = HashingTagEncoder(), KeyWeights.from_json()
    xmin, ymin, xmax, ymax = bounds
    typed: dict[str, list] = {'polygon': [], 'line': [], 'point': []}
    for label, geom in zip(gdf['label'], gdf.geometry, strict=True):
        kind = {'Polygon': 'polygon', 'LineString': 'line', 'Point': 'point'}[
            geom.geom_type
        ]
        vectors, ws = [], []
        for tag in label.split(';'):
            vectors.append(encoder.encode([tag])[0])
            ws.append(weights.weight(tag.split(':')[0]))
        w = torch.tensor(ws, dtype=torch.float32)
        stacked = torch.stack(vectors)
        x = (stacked * w[:, None]).sum(0) / w.sum() if w.sum() > 0 else stacked.mean(0)
        if kind == 'polygon':
            c = geom.centroid
            d = [c.distance(Point(v)) for v in geom.exterior.coords]
            pts = []
            for i in range(3):
                theta = math.radians(120 * i)
                r = random.uniform(min(d) / 2, max(d) / 2)
                for rr in np.linspace(r, 0, 10):
                    p = Point(c.x + rr * math.cos(theta), c.y + rr * math.sin(theta))
                    if geom.contains(p):
                        break
                pts.append(p)
            xy = [*pts, c]
        elif kind == 'line':
            xy = [geom.centroid, Point(geom.coords[0]), Point(geom.coords[-1])]
        else:
            xy = [geom]
        pos = [
            ((p.x - xmin) / (xmax - xmin), 1 - (p.y - ymin) / (ymax - ymin)) for p in xy
        ]
        typed[kind].append((geom, x, pos))
    geoms = {k: [g for g, _, _ in v] for k, v in typed.items()}
    edges: dict = {}

    def same_type(gs: list) -> list:
        n = len(gs)
        r: list[list[int | str]] = [['self'] * n for _ in range(n)]  # -1: no edge
        for i in range(n):
            for j in range(i + 1, n):
                code = _code(shapely.relate(gs[j], gs[i]))
                if DISJOINT.fullmatch(code):
                    r[i][j] = r[j][i] = -1
                elif _any(TOUCHES, code):
                    r[i][j] = r[j][i] = 'touches'
                elif _any(COVERS, code):
                    r[i][j], r[j][i] = 'coveredBy', 'covers'
                elif _any(COVERED_BY, code):
                    r[i][j], r[j][i] = 'covers', 'coveredBy'
                elif OVERLAPS.fullmatch(code):
                    r[i][j] = r[j][i] = 'overlaps'
                elif EQUALS.fullmatch(code):
                    r[i][j] = r[j][i] = 'equals'
                else:
                    r[i][j] = r[j][i] = -1
        return [(i, j, r[i][j]) for i in range(n) for j in range(n) if r[i][j] != -1]

    edges['polygon', 'polygon'] = same_type(geoms['polygon'])
    edges['line', 'line'] = same_type(geoms['line'])
    l2p = []
    for i, a in enumerate(geoms['line']):
        for j, b in enumerate(geoms['polygon']):
            code = _code(shapely.relate(a, b))
            if DISJOINT.fullmatch(code):
                continue
            if _any(TOUCHES, code):
                l2p.append((i, j, 'touches'))
            elif _any(COVERED_BY, code):
                l2p.append((i, j, 'coveredBy'))
            elif re.fullmatch('T.T......|T.....T..', code):
                l2p.append((i, j, 'crosses'))
    edges['line', 'polygon'] = l2p
    for other in ('line', 'polygon'):
        p2o = []
        for i, a in enumerate(geoms['point']):
            for j, b in enumerate(geoms[other]):
                code = _code(shapely.relate(a, b))
                if DISJOINT.fullmatch(code):
                    continue
                if _any(TOUCHES, code):
                    p2o.append((i, j, 'touches'))
                elif WITHIN.fullmatch(code):
                    p2o.append((i, j, 'within'))
        edges['point', other] = p2o
    from scipy.spatial import Delaunay

    pts = geoms['point']
    pp = [(i, i, 'self') for i in range(len(pts))]
    if len(pts) > 3:
        tri = Delaunay([p.coords[0] for p in pts]).simplices
        pp += sorted(
            {(int(a), int(b), 'delaunay') for t in tri for a in t for b in t if a != b}
        )
    edges['point', 'point'] = pp
    return edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='N <= 800 only')
    args = parser.parse_args()
    sizes = [100, 200, 400, 800] if args.quick else [100, 200, 400, 800, 1600]
    header(
        'OSMGraphBuilder vs all-pairs builder (hashing tag encoder included, cold cache)'
    )
    rows, ours_ms = [], {}
    torch.set_num_threads(1)
    for n in sizes:
        gdf, bounds = synthetic_tile(n)
        graph = OSMGraphBuilder()(gdf, bounds)
        edges = sum(graph[e].edge_index.shape[1] for e in graph.edge_types)
        ours = (
            timeit(
                lambda gdf=gdf, bounds=bounds: OSMGraphBuilder()(gdf, bounds), repeat=3
            )
            * 1e3
        )
        ours_ms[n] = ours
        baseline = (
            timeit(
                lambda gdf=gdf, bounds=bounds: all_pairs_builder(gdf, bounds), repeat=1
            )
            * 1e3
        )
        rows.append(
            [
                n,
                int(n * 2.5),
                edges,
                round(ours, 1),
                round(baseline, 1),
                f'{baseline / ours:.0f}x',
            ]
        )
        print(f'N={n} done', file=sys.stderr, flush=True)
    print_table(
        rows, ['N', 'features', 'edges', 'ours (ms)', 'all-pairs (ms)', 'speed-up']
    )
    slope = math.log(ours_ms[800] / ours_ms[100]) / math.log(8)
    print(
        f'\ngrowth exponent of ours, N = 100 -> 800 (log-log slope): {slope:.2f} (target <= 1.2); '
        f'speed-up at N = 800: target >= 100x'
    )


if __name__ == '__main__':
    main()
