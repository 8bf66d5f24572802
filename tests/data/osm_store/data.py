#!/usr/bin/env python3

# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Reference samples of the shipped Helsinki extract, for the OSM store equality test.

Run from the repository root (``python tests/data/osm_store/data.py``) to write
``reference.npz``: for a fixed list of windows, in both graph modes and two dataset CRSs
(the file's EPSG:4326 and UTM 35N), the node ids, positions, edges and a fingerprint of
the node embeddings of each sample. The committed file was written by the per-feature
implementation of ``OSMDataset`` that preceded the columnar store, so the test checks
that the store gives the same samples.
"""

import hashlib
from pathlib import Path
from typing import Any, cast

import numpy as np
import shapely
from pyproj import CRS

from torchgeo_geolink.datasets import OSMDataset
from torchgeo_geolink.osm import EDGE_TYPES, NODE_TYPES

HERE = Path(__file__).resolve().parent
PBF = HERE.parents[2] / 'torchgeo_geolink' / 'data' / 'helsinki.osm.pbf'

#: Windows as ``(dx, dy, width, height)`` from the lower-left corner of the dataset, in
#: meters (UTM).
UTM_WINDOWS = (
    (300.0, 400.0, 150.0, 150.0),
    (520.0, 910.0, 224.0, 224.0),
    (100.0, 1200.0, 150.0, 150.0),
    (0.0, 0.0, 224.0, 224.0),
    (700.0, 1500.0, 300.0, 190.0),
    (433.3, 777.7, 64.0, 64.0),
)
#: Windows as ``(dx, dy, width, height)`` in degrees, for the dataset in the file's CRS.
GEO_WINDOWS = ((0.005, 0.004, 0.004, 0.002), (0.011, 0.009, 0.003, 0.003))
#: Seed of the fixed projection that fingerprints the node embeddings.
SEED = 0
#: Number of projections of each embedding kept.
PROJECTIONS = 8


def fingerprint(x: np.ndarray) -> np.ndarray:
    """Project embeddings on fixed random directions (a compact fingerprint).

    Args:
        x: ``(N, D)`` node embeddings.

    Returns:
        float64 ``(N, PROJECTIONS)``.
    """
    rng = np.random.default_rng(SEED)
    return x.astype(np.float64) @ rng.standard_normal((x.shape[1], PROJECTIONS))


def windows(ds: OSMDataset, crs_name: str) -> list[tuple[float, float, float, float]]:
    """The reference windows of a dataset.

    Args:
        ds: the dataset.
        crs_name: ``'utm'`` or ``'geo'``.

    Returns:
        ``(xmin, ymin, xmax, ymax)`` of each window.
    """
    xmin, ymin, _, _ = ds.index.total_bounds
    table = UTM_WINDOWS if crs_name == 'utm' else GEO_WINDOWS
    return [
        (xmin + dx, ymin + dy, xmin + dx + w, ymin + dy + h) for dx, dy, w, h in table
    ]


def dataset(crs_name: str, graph_mode: str) -> OSMDataset:
    """Open the Helsinki extract as the reference does.

    Args:
        crs_name: ``'utm'`` (EPSG:32635) or ``'geo'`` (the file's EPSG:4326).
        graph_mode: ``'induced'`` or ``'exact'``.

    Returns:
        The dataset.
    """
    crs = CRS.from_epsg(32635) if crs_name == 'utm' else None
    res = 1.0 if crs_name == 'utm' else None
    return OSMDataset(PBF, crs=crs, res=res, graph_mode=graph_mode)  # ty: ignore[invalid-argument-type]


def flatten(prefix: str, sample: dict, out: dict[str, np.ndarray]) -> None:
    """Store the arrays of one sample under *prefix*.

    Args:
        prefix: key prefix.
        sample: the sample.
        out: arrays to write, updated in place.
    """
    for t in NODE_TYPES:
        out[f'{prefix}/{t}/id'] = sample[f'osm_{t}_id'].numpy()
        out[f'{prefix}/{t}/pos'] = sample[f'osm_{t}_pos'].numpy()
        out[f'{prefix}/{t}/x'] = fingerprint(sample[f'osm_{t}_x'].numpy())
    for src, _, dst in EDGE_TYPES:
        name = f'osm_{src}_to_{dst}'
        out[f'{prefix}/{src}_{dst}/edge_index'] = sample[f'{name}_edge_index'].numpy()
        out[f'{prefix}/{src}_{dst}/edge_attr'] = (
            sample[f'{name}_edge_attr'].numpy().argmax(axis=1).astype(np.int8)
        )
    out[f'{prefix}/bounds'] = sample['osm_bounds'].numpy()


def main() -> None:
    """Write ``reference.npz``."""
    out: dict[str, np.ndarray] = {}
    for crs_name in ('utm', 'geo'):
        for mode in ('induced', 'exact'):
            ds = dataset(crs_name, mode)
            if mode == 'induced':
                digest = hashlib.sha256(
                    b''.join(shapely.to_wkb(ds.geometries, byte_order=1))
                ).hexdigest()
                out[f'{crs_name}/kinds'] = ds.kinds
                out[f'{crs_name}/wkb_sha256'] = np.array(digest)
            for w, window in enumerate(windows(ds, crs_name)):
                xmin, ymin, xmax, ymax = window
                flatten(f'{crs_name}/{mode}/{w}', ds[xmin:xmax, ymin:ymax], out)
    # the arrays are passed by name (typed as Any, so that none is taken for the
    # allow_pickle flag)
    np.savez_compressed(HERE / 'reference.npz', **cast(dict[str, Any], out))


if __name__ == '__main__':
    main()
