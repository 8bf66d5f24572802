# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Sample-key and PyG graph conversions, GeoLink's collate, the split-fraction check."""

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, HeteroData
from torchgeo.datasets.utils import Sample, unbind_samples

from ..osm.constants import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS

__all__ = (
    'check_split_fractions',
    'collate_geolink',
    'graph_to_sample',
    'merge_keep_first',
    'sample_to_graph',
    'unbind_geolink',
)

#: Prefix of every sample key holding part of the OSM graph.
OSM_PREFIX = 'osm_'


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Check the validation and test shares of a split (of tiles or a region's height).

    Args:
        val_fraction: share given to validation (0 for none).
        test_fraction: share given to testing (0 for none).

    Raises:
        ValueError: if a share is negative or not a number, or the two leave nothing for
            training.

    .. versionadded:: 0.1
    """
    if not (
        val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1
    ):
        raise ValueError(
            f'invalid split fractions: val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be '
            '>= 0 with a sum < 1'
        )


def _edge_key(edge_type: tuple[str, str, str]) -> str:
    """Sample key prefix of an edge type.

    Args:
        edge_type: ``(src, 'to', dst)``.

    Returns:
        ``'osm_<src>_to_<dst>'``.
    """
    return f'{OSM_PREFIX}{edge_type[0]}_to_{edge_type[2]}'


def sample_to_graph(sample: Mapping[str, Tensor]) -> HeteroData:
    """Rebuild the GeoLink graph of one sample from its flattened ``osm_*`` keys.

    Missing keys give empty node or edge sets, so the graph always holds the three node
    types and nine edge types of the contract.

    Args:
        sample: a sample of :class:`~torchgeo_geolink.datasets.OSMDataset` (possibly
            joined with an image).

    Returns:
        A :class:`~torch_geometric.data.HeteroData` with ``x``, ``pos`` and ``id`` per
        node type, ``edge_index`` and ``edge_attr`` per edge type, and the graph-level
        ``bounds`` (``(1, 4)``) when the sample holds ``osm_bounds``.

    Raises:
        ValueError: if node features and positions disagree on the number of nodes, or
            an edge index points outside its node sets.

    .. versionadded:: 0.1
    """
    graph = HeteroData()
    dim = next(
        (
            sample[f'{OSM_PREFIX}{t}_x'].shape[-1]
            for t in NODE_TYPES
            if f'{OSM_PREFIX}{t}_x' in sample
        ),
        0,
    )
    for node_type in NODE_TYPES:
        key = f'{OSM_PREFIX}{node_type}'
        x = sample.get(f'{key}_x', torch.zeros(0, dim))
        pos = sample.get(f'{key}_pos', torch.zeros(0, POS_POINTS[node_type], 2))
        if len(x) != len(pos):
            msg = f'{key}_x has {len(x)} nodes but {key}_pos has {len(pos)}'
            raise ValueError(msg)
        graph[node_type].x = x
        graph[node_type].pos = pos
        graph[node_type].id = sample.get(
            f'{key}_id', torch.full((len(x),), -1, dtype=torch.long)
        )
        graph[node_type].num_nodes = len(x)
    for edge_type in EDGE_TYPES:
        key = _edge_key(edge_type)
        edge_index = sample.get(
            f'{key}_edge_index', torch.zeros(2, 0, dtype=torch.long)
        )
        # Batched, an index past its node set would silently point at a node of the next
        # graph.
        if edge_index.numel():
            src, _, dst = edge_type
            n_src, n_dst = graph[src].num_nodes, graph[dst].num_nodes
            if (
                int(edge_index.min()) < 0
                or int(edge_index[0].max()) >= n_src
                or int(edge_index[1].max()) >= n_dst
            ):
                msg = (
                    f'{key}_edge_index {edge_type} points outside the {n_src} {src!r} and {n_dst} {dst!r} '
                    'nodes of the sample'
                )
                raise ValueError(msg)
        graph[edge_type].edge_index = edge_index
        graph[edge_type].edge_attr = sample.get(
            f'{key}_edge_attr', torch.zeros(0, EDGE_ATTR_DIMS[edge_type])
        )
    if f'{OSM_PREFIX}bounds' in sample:
        graph.bounds = sample[f'{OSM_PREFIX}bounds'].reshape(1, 4)
    return graph


def graph_to_sample(graph: HeteroData) -> Sample:
    """Flatten a GeoLink graph into ``osm_*`` tensor keys.

    It is the inverse of :func:`sample_to_graph`.

    Args:
        graph: a graph with the node types and edge types of the contract (missing ones
            are written empty).

    Returns:
        The ``osm_<type>_x``/``_pos``/``_id``,
        ``osm_<src>_to_<dst>_edge_index``/``_edge_attr`` keys, and ``osm_bounds`` when
        the graph holds ``bounds``.

    .. versionadded:: 0.1
    """
    sample: Sample = {}
    node_types = set(graph.node_types)
    edge_types = set(graph.edge_types)
    for node_type in NODE_TYPES:
        key = f'{OSM_PREFIX}{node_type}'
        store = graph[node_type] if node_type in node_types else None
        x = store.x if store is not None and 'x' in store else torch.zeros(0, 0)
        sample[f'{key}_x'] = x
        pos = store.pos if store is not None and 'pos' in store else None
        sample[f'{key}_pos'] = (
            pos if pos is not None else torch.zeros(len(x), POS_POINTS[node_type], 2)
        )
        if store is not None and 'id' in store:
            sample[f'{key}_id'] = store.id
    for edge_type in EDGE_TYPES:
        key = _edge_key(edge_type)
        store = graph[edge_type] if edge_type in edge_types else None
        has_index = store is not None and 'edge_index' in store
        sample[f'{key}_edge_index'] = (
            store.edge_index if has_index else torch.zeros(2, 0, dtype=torch.long)
        )
        has_attr = store is not None and 'edge_attr' in store
        sample[f'{key}_edge_attr'] = (
            store.edge_attr if has_attr else torch.zeros(0, EDGE_ATTR_DIMS[edge_type])
        )
    if 'bounds' in graph:
        sample[f'{OSM_PREFIX}bounds'] = graph.bounds.reshape(4)
    return sample


def collate_geolink(samples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate GeoLink samples into a batch (DataLoader ``collate_fn``).

    Tensors that are not part of the graph (``image``, ``mask``, ``bounds``,
    ``transform``, ...) are stacked as :func:`torchgeo.datasets.stack_samples` does; all
    ``osm_*`` keys are replaced by one ``'graph'``, a
    :class:`torch_geometric.data.Batch` of the samples' graphs (per node type ``batch``
    and ``ptr``), in sample order, so a batch of B images always comes with B graphs
    (possibly empty).

    Args:
        samples: samples of ``image & osm`` or of an
            :class:`~torchgeo_geolink.datasets.OSMDataset`.

    Returns:
        The batch.

    Raises:
        ValueError: if the samples do not all hold the same non-graph keys, or a key's
            tensors differ in shape.

    .. versionadded:: 0.1
    """
    samples = list(samples)
    if not samples:
        return {}
    keys = [k for k in samples[0] if not k.startswith(OSM_PREFIX)]
    batch: dict[str, Any] = {}
    for key in keys:
        if any(key not in s for s in samples):
            msg = f'key {key!r} is missing from some samples of the batch'
            raise ValueError(msg)
        values = [s[key] for s in samples]
        shapes = sorted({tuple(v.shape) for v in values if isinstance(v, Tensor)})
        if len(shapes) > 1:
            msg = (
                f'key {key!r} has different shapes in the batch ({", ".join(map(str, shapes))}); '
                'give the samples one size (e.g. GeoLinkTiles(size=...)) to batch them'
            )
            raise ValueError(msg)
        batch[key] = torch.stack(values)
    batch['graph'] = Batch.from_data_list([sample_to_graph(s) for s in samples])
    return batch


def unbind_geolink(batch: Mapping[str, Any]) -> list[Sample]:
    """Split a batch of :func:`collate_geolink` back into samples (e.g. to plot them).

    Args:
        batch: a collated batch.

    Returns:
        One sample per batch element, with its graph flattened back into ``osm_*`` keys.

    .. versionadded:: 0.1
    """
    tensors = {k: v for k, v in batch.items() if k != 'graph'}
    samples = unbind_samples(tensors) if tensors else []
    if 'graph' in batch:
        graphs = batch['graph'].to_data_list()
        if not samples:
            samples = [{} for _ in graphs]
        for sample, graph in zip(samples, graphs, strict=True):
            sample.update(graph_to_sample(graph))
    return samples


def merge_keep_first(samples: Iterable[Sample]) -> Sample:
    """Join the samples of intersected datasets.

    Keys are united, and the first dataset wins on shared keys.

    Used instead of :func:`~torchgeo.datasets.concat_samples` so that
    ``image & labels & osm`` keeps the image's 9-element ``bounds`` and ``transform``
    (rather than concatenating them to 18) while adding ``mask`` and the ``osm_*`` keys.

    Args:
        samples: one sample per dataset, left to right.

    Returns:
        The joined sample.

    .. versionadded:: 0.1
    """
    out: Sample = {}
    for sample in samples:
        for key, value in sample.items():
            out.setdefault(key, value)
    return out
