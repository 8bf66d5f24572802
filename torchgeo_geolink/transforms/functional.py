# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Affine warps applied identically to images, masks and graph node positions.

All matrices here are 3x3 homogeneous transforms in *normalized window coordinates*: x
grows right and y grows down, ``(0, 0)`` is the top-left corner of the top-left pixel
and ``(1, 1)`` the bottom-right corner of the bottom-right pixel (the convention of the
graphs' ``pos``, and of :func:`torch.nn.functional.grid_sample` with
``align_corners=False`` after the change of variables ``u = 2 p - 1``). A matrix ``T``
maps a point of the input window to the output window: ``p_out = T @ p_in``.
"""

import copy
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, HeteroData

__all__ = (
    'crop_matrix',
    'drop_outside_nodes',
    'filter_nodes',
    'hflip_matrix',
    'rot90_matrix',
    'transform_positions',
    'vflip_matrix',
    'warp_images',
    'warp_masks',
)

#: Maps normalized ``[0, 1]`` coordinates to the ``[-1, 1]`` coordinates of
#: :func:`~torch.nn.functional.grid_sample`.
_TO_GRID = torch.tensor([[2.0, 0.0, -1.0], [0.0, 2.0, -1.0], [0.0, 0.0, 1.0]])


def _eye(batch_size: int, device: torch.device | None = None) -> Tensor:
    """Return ``batch_size`` 3x3 identity matrices.

    Args:
        batch_size: number of matrices.
        device: device of the result.

    Returns:
        float32 tensor ``(B, 3, 3)``.
    """
    return torch.eye(3, device=device).expand(batch_size, 3, 3).clone()


def crop_matrix(boxes: Tensor) -> Tensor:
    """Matrices that map each crop box onto the whole output window (crop, then resize).

    Args:
        boxes: ``(B, 4)`` boxes ``[x0, y0, w, h]`` in normalized coordinates,
            ``w, h > 0``.

    Returns:
        ``(B, 3, 3)`` matrices with ``p_out = ((x - x0) / w, (y - y0) / h)``.

    .. versionadded:: 0.1
    """
    x0, y0, w, h = boxes.unbind(-1)
    mat = _eye(len(boxes), boxes.device)
    mat[:, 0, 0] = 1 / w
    mat[:, 0, 2] = -x0 / w
    mat[:, 1, 1] = 1 / h
    mat[:, 1, 2] = -y0 / h
    return mat


def hflip_matrix(flip: Tensor) -> Tensor:
    """Matrices that mirror the window left-right where ``flip`` is true.

    Args:
        flip: ``(B,)`` boolean tensor.

    Returns:
        ``(B, 3, 3)`` matrices with ``x -> 1 - x`` where ``flip``.

    .. versionadded:: 0.1
    """
    mat = _eye(len(flip), flip.device)
    mat[flip, 0, 0] = -1.0
    mat[flip, 0, 2] = 1.0
    return mat


def vflip_matrix(flip: Tensor) -> Tensor:
    """Matrices that mirror the window top-bottom where ``flip`` is true.

    Args:
        flip: ``(B,)`` boolean tensor.

    Returns:
        ``(B, 3, 3)`` matrices with ``y -> 1 - y`` where ``flip``.

    .. versionadded:: 0.1
    """
    mat = _eye(len(flip), flip.device)
    mat[flip, 1, 1] = -1.0
    mat[flip, 1, 2] = 1.0
    return mat


def rot90_matrix(k: Tensor) -> Tensor:
    """Matrices that rotate the window content by ``k`` quarter turns counter-clockwise.

    The rotation is that of :func:`torch.rot90` with ``dims=(-2, -1)``: one quarter turn
    maps ``(x, y)`` to ``(y, 1 - x)``.

    Args:
        k: ``(B,)`` integer tensor of quarter turns (any integer; taken modulo 4).

    Returns:
        ``(B, 3, 3)`` matrices.

    .. versionadded:: 0.1
    """
    k = k.remainder(4)
    one = _eye(1, k.device)[0]
    quarter = torch.tensor(
        [[0.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], device=k.device
    )
    powers = [one, quarter, quarter @ quarter, quarter @ quarter @ quarter]
    return torch.stack(powers)[k]


def _sampling_grid(matrices: Tensor, size: tuple[int, int]) -> Tensor:
    """The ``grid_sample`` grid that realizes ``matrices`` at ``size``.

    Args:
        matrices: ``(B, 3, 3)`` forward matrices (input window -> output window).
        size: output ``(H, W)``.

    Returns:
        ``(B, H, W, 2)`` sampling grid.
    """
    to_grid = _TO_GRID.to(matrices)
    # grid_sample needs output -> input in [-1, 1] coordinates: S T^-1 S^-1.
    theta = to_grid @ torch.linalg.inv(matrices) @ torch.linalg.inv(to_grid)
    return F.affine_grid(theta[:, :2], [len(matrices), 1, *size], align_corners=False)


def warp_images(images: Tensor, matrices: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample images through per-sample affine matrices (bilinear).

    Args:
        images: ``(B, C, H, W)`` float images.
        matrices: ``(B, 3, 3)`` forward matrices in normalized coordinates.
        size: output ``(H, W)``.

    Returns:
        ``(B, C, *size)`` images; points outside the input are filled by border
        replication.

    .. versionadded:: 0.1
    """
    grid = _sampling_grid(matrices.to(images.dtype), size)
    return F.grid_sample(
        images, grid, mode='bilinear', padding_mode='border', align_corners=False
    )


def warp_masks(masks: Tensor, matrices: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample label masks through per-sample affine matrices (nearest).

    Args:
        masks: ``(B, H, W)`` or ``(B, 1, H, W)`` integer masks.
        matrices: ``(B, 3, 3)`` forward matrices in normalized coordinates.
        size: output ``(H, W)``.

    Returns:
        masks of the input's dtype and rank with the new spatial size.

    .. versionadded:: 0.1
    """
    squeeze = masks.ndim == 3
    values = (masks[:, None] if squeeze else masks).to(torch.float64)
    grid = _sampling_grid(matrices.to(torch.float64), size)
    out = F.grid_sample(
        values, grid, mode='nearest', padding_mode='border', align_corners=False
    )
    out = out.round().to(masks.dtype)
    return out[:, 0] if squeeze else out


def transform_positions(pos: Tensor, matrices: Tensor) -> Tensor:
    """Apply one affine matrix per node to its ``K`` position points.

    Args:
        pos: ``(N, K, 2)`` positions in normalized coordinates.
        matrices: ``(N, 3, 3)`` matrix of each node (e.g.
            ``batch_matrices[node_batch]``).

    Returns:
        ``(N, K, 2)`` transformed positions (not clipped).

    .. versionadded:: 0.1
    """
    linear = matrices[:, None, :2, :2].to(pos.dtype)
    shift = matrices[:, None, :2, 2].to(pos.dtype)
    return (linear @ pos[..., None])[..., 0] + shift


def _refresh_batch_slices(batch: Batch) -> None:
    """Recompute a hetero batch's ``ptr`` and slice tables after removals.

    Keeps :meth:`~torch_geometric.data.Batch.to_data_list` and ``ptr`` consistent with
    the per-node ``batch`` vectors. The tables are replaced by new dicts (never
    mutated), since shallow copies of a batch share them.

    Args:
        batch: a batch of :class:`~torch_geometric.data.HeteroData` (modified in place).
    """
    num_graphs = batch.num_graphs
    old_slices: dict[Any, Any] = getattr(batch, '_slice_dict', {})
    old_incs: dict[Any, Any] = getattr(batch, '_inc_dict', {})
    slice_dict = {
        k: dict(v) if isinstance(v, dict) else v for k, v in old_slices.items()
    }
    inc_dict = {k: dict(v) if isinstance(v, dict) else v for k, v in old_incs.items()}
    ptrs: dict[str, Tensor] = {}
    for node_type in batch.node_types:
        store = batch[node_type]
        counts = torch.bincount(store.batch, minlength=num_graphs)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        ptrs[node_type] = ptr
        store.ptr = ptr
        for key in slice_dict.get(node_type, {}):
            slice_dict[node_type][key] = ptr.cpu()
    for edge_type in batch.edge_types:
        src, _, dst = edge_type
        graph_of_edge = batch[src].batch[batch[edge_type].edge_index[0]]
        counts = torch.bincount(graph_of_edge, minlength=num_graphs)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).cpu()
        for key in slice_dict.get(edge_type, {}):
            slice_dict[edge_type][key] = ptr
        if 'edge_index' in inc_dict.get(edge_type, {}):
            inc_dict[edge_type]['edge_index'] = torch.stack(
                [ptrs[src][:-1], ptrs[dst][:-1]], dim=1
            )[..., None].cpu()
    batch._slice_dict = slice_dict
    batch._inc_dict = inc_dict


def filter_nodes(graph: HeteroData | Batch, keep: dict[str, Tensor]) -> HeteroData:
    """Keep the nodes selected by masks and the edges between them, re-indexed.

    A vectorized equivalent of :meth:`~torch_geometric.data.HeteroData.subgraph` (one
    mask, one cumulative-sum remap table and one edge mask per type) that also keeps a
    :class:`~torch_geometric.data.Batch` valid (``ptr`` and
    :meth:`~torch_geometric.data.Batch.to_data_list`). Every node-level tensor (first
    dimension = number of nodes: ``x``, ``pos``, ``id``, ``batch``, ...) and edge-level
    tensor (``edge_attr``, ...) follows.

    Args:
        graph: the graph or batch (not modified).
        keep: boolean ``(N,)`` mask per node type (missing types keep all their nodes).

    Returns:
        A new graph sharing no modified state with the input.

    .. versionadded:: 0.1
    """
    out = cast(HeteroData, copy.copy(graph))
    remap: dict[str, Tensor] = {}
    for node_type in out.node_types:
        store = out[node_type]
        mask = keep.get(node_type)
        if mask is None:
            continue
        n = len(mask)
        for key, value in list(store.items()):
            if (
                key != 'ptr'
                and isinstance(value, Tensor)
                and value.dim() > 0
                and value.shape[0] == n
            ):
                store[key] = value[mask]
        if 'num_nodes' in store:
            store.num_nodes = int(mask.sum())
        remap[node_type] = torch.cumsum(mask.long(), 0) - 1
    for edge_type in out.edge_types:
        src, _, dst = edge_type
        store = out[edge_type]
        if 'edge_index' not in store or (src not in remap and dst not in remap):
            continue
        edge_index = store.edge_index
        num_edges = edge_index.shape[1]
        edge_mask = torch.ones(num_edges, dtype=torch.bool, device=edge_index.device)
        if src in remap:
            edge_mask &= keep[src][edge_index[0]]
        if dst in remap:
            edge_mask &= keep[dst][edge_index[1]]
        for key, value in list(store.items()):
            if (
                key != 'edge_index'
                and isinstance(value, Tensor)
                and value.dim() > 0
                and value.shape[0] == num_edges
            ):
                store[key] = value[edge_mask]
        kept = edge_index[:, edge_mask]
        row = remap[src][kept[0]] if src in remap else kept[0]
        col = remap[dst][kept[1]] if dst in remap else kept[1]
        store.edge_index = torch.stack([row, col])
    if isinstance(out, Batch):
        _refresh_batch_slices(out)
    return out


def drop_outside_nodes(graph: HeteroData | Batch) -> HeteroData:
    """Drop nodes with no position left in the window; clamp the others.

    A node is kept when at least one of its ``K`` points lies in ``[0, 1]^2`` (a
    partially visible polygon or line stays in the graph); kept positions are clamped to
    ``[0, 1]``. Edges that touch a dropped node are removed and the remaining ones
    re-indexed (:func:`filter_nodes`), and a :class:`~torch_geometric.data.Batch` keeps
    valid ``ptr`` and :meth:`~torch_geometric.data.Batch.to_data_list`.

    Args:
        graph: a graph or a batch of graphs whose node types all have ``pos``
            ``(N, K, 2)``.

    Returns:
        the filtered graph (a new object; the input is not modified).

    .. versionadded:: 0.1
    """
    hetero = cast(HeteroData, graph)
    keep: dict[str, Tensor] = {}
    for node_type in hetero.node_types:
        pos = hetero[node_type].pos
        keep[node_type] = ((pos >= 0) & (pos <= 1)).all(dim=-1).any(dim=-1)
    out = filter_nodes(graph, keep)
    for node_type in out.node_types:
        out[node_type].pos = out[node_type].pos.clamp(0.0, 1.0)
    return out
