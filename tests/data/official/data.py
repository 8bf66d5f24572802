#!/usr/bin/env python3

# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Small fixtures in GeoLink's official file formats, so those tests run on any clone.

Run from the repository root::

    python tests/data/official/data.py [--reference DIR] [--examples DIR]

It always writes ``ufz/``: three tiles in the official UFZ tile layout (``img/``,
``label/``, ``graph/``). The graphs are built from the OpenStreetMap extract of Helsinki
shipped in the package (ODbL) with the 512-wide hashing tag encoder and stored as the
official graphs are: a pickled PyG ``HeteroData`` whose ``x`` is the tag embedding
followed by the node positions, without the node and edge types that have no rows.
Images and labels are synthetic noise (labels 0..9 and 255, as UFZ labels).

With ``--reference DIR`` (a folder holding ``official_state_dict_vitb16.json``, the
parameter names and shapes of the official multimodal ViT-B/16 checkpoint) it rewrites
``state_dict_vitb16.json`` with the two fields the tests read: ``state_dict`` and the
PyG 2.4 key variant.

With ``--examples DIR`` (the ``osm2graph`` folder of the official example data) it
rewrites ``osm2graph/``: each example tile's OSM GeoJSON layers (ODbL) and its bounding
box, without the image.
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pyproj import CRS
from torch_geometric.data import HeteroData

from torchgeo_geolink.datasets import OSMDataset, sample_to_graph
from torchgeo_geolink.osm import EDGE_TYPES, NODE_TYPES, to_official_graph

HERE = Path(__file__).resolve().parent
PBF = HERE.parents[2] / 'torchgeo_geolink' / 'data' / 'helsinki.osm.pbf'
#: Tiles as ``(name, dx, dy, side)``: the lower-left corner of the window from the
#: extract's lower-left corner and its side, in meters (UTM 35N). The second tile has
#: polygons only.
TILES = (
    ('helsinki_0', 520.0, 910.0, 32.0),
    ('helsinki_1', 300.0, 400.0, 24.0),
    ('helsinki_2', 100.0, 1200.0, 32.0),
)
#: Tile side in pixels.
PIXELS = 32


def official_layout(graph: HeteroData) -> HeteroData:
    """Drop the node and edge types without rows, as the official graph files do.

    Args:
        graph: a graph from :func:`~torchgeo_geolink.osm.to_official_graph`.

    Returns:
        The graph with only the non-empty node and edge types.
    """
    out = HeteroData()
    for node_type in NODE_TYPES:
        if graph[node_type].num_nodes:
            out[node_type].x = graph[node_type].x
    for edge_type in EDGE_TYPES:
        store = graph[edge_type]
        if store.edge_index.shape[1]:
            out[edge_type].edge_index = store.edge_index
            out[edge_type].edge_attr = store.edge_attr
    return out


def write_ufz(root: Path) -> None:
    """Write the three tiles.

    Args:
        root: the ``ufz`` folder.
    """
    ds = OSMDataset(PBF, crs=CRS.from_epsg(32635), res=1.0)
    xmin, ymin, _, _ = ds.index.total_bounds
    rng = np.random.default_rng(0)
    for folder in ('img', 'label', 'graph'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, dx, dy, side in TILES:
        x0, y0 = xmin + dx, ymin + dy
        sample = ds[x0 : x0 + side, y0 : y0 + side]
        graph = official_layout(to_official_graph(sample_to_graph(sample)))
        torch.save(graph, root / 'graph' / f'{name}.pt')
        pixels = rng.integers(0, 256, (PIXELS, PIXELS, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / 'img' / f'{name}.png')
        labels = rng.choice(
            np.array([*range(10), 255], dtype=np.uint8), (PIXELS, PIXELS)
        )
        Image.fromarray(labels).save(root / 'label' / f'{name}.png')


def write_reference(reference: Path) -> None:
    """Write ``state_dict_vitb16.json`` from the official key list.

    Args:
        reference: folder holding ``official_state_dict_vitb16.json``.
    """
    info = json.loads((reference / 'official_state_dict_vitb16.json').read_text())
    variant = info['pyg_2_4_0_variant']
    out = {
        'state_dict': info['state_dict'],
        'pyg_2_4_0_variant': {
            'keys_only_in_pyg281': variant['keys_only_in_pyg281'],
            'keys_only_in_pyg240': variant['keys_only_in_pyg240'],
        },
    }
    (HERE / 'state_dict_vitb16.json').write_text(json.dumps(out, indent=1) + '\n')


def write_examples(examples: Path) -> None:
    """Copy the OSM layers and bounding box of each official example tile.

    Args:
        examples: the official ``osm2graph`` folder.
    """
    for tile in sorted(p for p in examples.iterdir() if p.is_dir()):
        out = HERE / 'osm2graph' / tile.name
        out.mkdir(parents=True, exist_ok=True)
        for layer in sorted(tile.glob('*.geojson')):
            shutil.copyfile(layer, out / layer.name)
        meta = json.loads((tile / f'{tile.name}_meta.json').read_text())
        (out / f'{tile.name}_meta.json').write_text(
            json.dumps({'bbox': meta['bbox']}) + '\n'
        )


def main() -> None:
    """Write the fixtures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--reference', type=Path, help='folder of the official key lists'
    )
    parser.add_argument(
        '--examples', type=Path, help='official osm2graph example folder'
    )
    args = parser.parse_args()
    write_ufz(HERE / 'ufz')
    if args.reference is not None:
        write_reference(args.reference)
    if args.examples is not None:
        write_examples(args.examples)


if __name__ == '__main__':
    main()
