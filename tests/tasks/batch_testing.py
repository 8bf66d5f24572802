# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Test helpers of the task tests: small synthetic GeoLink batches."""

from typing import Any

import torch
from torch_geometric.data import Batch, HeteroData

from torchgeo_geolink.osm import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS


def make_graph(
    counts: dict[str, int], generator: torch.Generator, dim: int = 512
) -> HeteroData:
    graph = HeteroData()
    for t in NODE_TYPES:
        n = counts.get(t, 0)
        graph[t].x = torch.randn(n, dim, generator=generator)
        graph[t].pos = torch.rand(n, POS_POINTS[t], 2, generator=generator)
    for et in EDGE_TYPES:
        src, _, dst = et
        ns, nd = counts.get(src, 0), counts.get(dst, 0)
        e = min(ns, nd) * 2 if ns and nd else 0
        idx = torch.stack(
            [
                torch.randint(0, max(ns, 1), (e,), generator=generator),
                torch.randint(0, max(nd, 1), (e,), generator=generator),
            ]
        )
        graph[et].edge_index = idx
        attr = torch.zeros(e, EDGE_ATTR_DIMS[et])
        if e:
            attr[
                torch.arange(e),
                torch.randint(0, EDGE_ATTR_DIMS[et], (e,), generator=generator),
            ] = 1
        graph[et].edge_attr = attr
    return graph


def make_batch(
    batch_size: int, size: int = 32, seed: int = 0, empty: tuple[int, ...] = ()
) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for i in range(batch_size):
        counts = (
            {} if i in empty else {'polygon': 3 + i % 3, 'line': 2, 'point': i % 2 * 4}
        )
        graphs.append(make_graph(counts, g))
    return {
        'image': torch.randn(batch_size, 3, size, size, generator=g),
        'mask': torch.randint(0, 4, (batch_size, size, size), generator=g),
        'graph': Batch.from_data_list(graphs),
    }


class BatchList(torch.utils.data.Dataset):
    """Pre-collated synthetic batches from a DataLoader with ``batch_size=None``."""

    def __init__(
        self, n: int, batch_size: int = 4, size: int = 32, seed: int = 0
    ) -> None:
        self.batches = [
            make_batch(batch_size, size, seed + i, empty=(i % batch_size,))
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, object]:
        return self.batches[index]
