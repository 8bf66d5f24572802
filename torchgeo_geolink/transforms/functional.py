# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Affine warps applied identically to images, masks and graph node positions.

All matrices here are 3x3 homogeneous transforms in *normalised window coordinates*: x grows right and y grows
down, ``(0, 0)`` is the top-left corner of the top-left pixel and ``(1, 1)`` the bottom-right corner of the
bottom-right pixel (the convention of the graphs' ``pos``, and of :func:`torch.nn.functional.grid_sample` with
``align_corners=False`` after the change of variables ``u = 2 p - 1``). A matrix ``T`` maps a point of the input
window to the output window: ``p_out = T @ p_in``.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, HeteroData

__all__ = (
    'crop_matrix',
    'drop_outside_nodes',
    'hflip_matrix',
    'rot90_matrix',
    'transform_positions',
    'vflip_matrix',
    'warp_images',
    'warp_masks',
)

#: Maps normalised ``[0, 1]`` coordinates to the ``[-1, 1]`` coordinates of :func:`~torch.nn.functional.grid_sample`.
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
        boxes: ``(B, 4)`` boxes ``[x0, y0, w, h]`` in normalised coordinates, ``w, h > 0``.

    Returns:
        ``(B, 3, 3)`` matrices with ``p_out = ((x - x0) / w, (y - y0) / h)``.
    """
    x0, y0, w, h = boxes.unbind(-1)
    mat = _eye(len(boxes), boxes.device)
    mat[:, 0, 0] = 1 / w
    mat[:, 0, 2] = -x0 / w
    mat[:, 1, 1] = 1 / h
    mat[:, 1, 2] = -y0 / h
    return mat


def hflip_matrix(flip: Tensor) -> Tensor:
    """Matrices that mirror the window left-right where ``flip`` is true (identity elsewhere).

    Args:
        flip: ``(B,)`` boolean tensor.

    Returns:
        ``(B, 3, 3)`` matrices with ``x -> 1 - x`` where ``flip``.
    """
    mat = _eye(len(flip), flip.device)
    mat[flip, 0, 0] = -1.0
    mat[flip, 0, 2] = 1.0
    return mat


def vflip_matrix(flip: Tensor) -> Tensor:
    """Matrices that mirror the window top-bottom where ``flip`` is true (identity elsewhere).

    Args:
        flip: ``(B,)`` boolean tensor.

    Returns:
        ``(B, 3, 3)`` matrices with ``y -> 1 - y`` where ``flip``.
    """
    mat = _eye(len(flip), flip.device)
    mat[flip, 1, 1] = -1.0
    mat[flip, 1, 2] = 1.0
    return mat


def rot90_matrix(k: Tensor) -> Tensor:
    """Matrices that rotate the window content by ``k`` quarter turns counter-clockwise.

    The rotation is that of :func:`torch.rot90` with ``dims=(-2, -1)``: one quarter turn maps ``(x, y)`` to
    ``(y, 1 - x)``.

    Args:
        k: ``(B,)`` integer tensor of quarter turns (any integer; taken modulo 4).

    Returns:
        ``(B, 3, 3)`` matrices.
    """
    k = k.remainder(4)
    one = _eye(1, k.device)[0]
    quarter = torch.tensor(
        [[0.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], device=k.device
    )
    powers = [one, quarter, quarter @ quarter, quarter @ quarter @ quarter]
    return torch.stack(powers)[k]


def _sampling_grid(matrices: Tensor, size: tuple[int, int]) -> Tensor:
    """The :func:`~torch.nn.functional.grid_sample` grid that realises ``matrices`` at the output ``size``.

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
        matrices: ``(B, 3, 3)`` forward matrices in normalised coordinates.
        size: output ``(H, W)``.

    Returns:
        ``(B, C, *size)`` images; points outside the input are filled by border replication.
    """
    grid = _sampling_grid(matrices.to(images.dtype), size)
    return F.grid_sample(
        images, grid, mode='bilinear', padding_mode='border', align_corners=False
    )


def warp_masks(masks: Tensor, matrices: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample label masks through per-sample affine matrices (nearest neighbour, labels kept exact).

    Args:
        masks: ``(B, H, W)`` or ``(B, 1, H, W)`` integer masks.
        matrices: ``(B, 3, 3)`` forward matrices in normalised coordinates.
        size: output ``(H, W)``.

    Returns:
        masks of the input's dtype and rank with the new spatial size.
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
        pos: ``(N, K, 2)`` positions in normalised coordinates.
        matrices: ``(N, 3, 3)`` matrix of each node (e.g. ``batch_matrices[node_batch]``).

    Returns:
        ``(N, K, 2)`` transformed positions (not clipped).
    """
    linear = matrices[:, None, :2, :2].to(pos.dtype)
    shift = matrices[:, None, :2, 2].to(pos.dtype)
    return (linear @ pos[..., None])[..., 0] + shift


def _refresh_batch_slices(batch: Batch) -> None:
    """Recompute ``ptr`` and the slice/increment tables of a hetero batch after nodes or edges were removed.

    Keeps :meth:`~torch_geometric.data.Batch.to_data_list` and ``ptr`` consistent with the per-node ``batch``
    vectors.

    Args:
        batch: a batch of :class:`~torch_geometric.data.HeteroData` (modified in place).
    """
    num_graphs = batch.num_graphs
    ptrs: dict[str, Tensor] = {}
    for node_type in batch.node_types:
        store = batch[node_type]
        counts = torch.bincount(store.batch, minlength=num_graphs)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        ptrs[node_type] = ptr
        store.ptr = ptr
        slices = getattr(batch, '_slice_dict', {}).get(node_type)
        if slices is not None:
            for key in slices:
                slices[key] = ptr.cpu()
    for edge_type in batch.edge_types:
        src, _, dst = edge_type
        edge_index = batch[edge_type].edge_index
        graph_of_edge = batch[src].batch[edge_index[0]]
        counts = torch.bincount(graph_of_edge, minlength=num_graphs)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).cpu()
        slices = getattr(batch, '_slice_dict', {}).get(edge_type)
        if slices is not None:
            for key in slices:
                slices[key] = ptr
        incs = getattr(batch, '_inc_dict', {}).get(edge_type)
        if incs is not None and 'edge_index' in incs:
            incs['edge_index'] = torch.stack([ptrs[src][:-1], ptrs[dst][:-1]], dim=1)[
                ..., None
            ].cpu()


def drop_outside_nodes(graph: HeteroData) -> HeteroData:
    """Drop nodes that have no position point left inside the window, and clamp the others' positions.

    A node is kept when at least one of its ``K`` points lies in ``[0, 1]^2`` (a partially visible polygon or
    line stays in the graph); kept positions are clamped to ``[0, 1]``. Edges that touch a dropped node are
    removed and the remaining ones re-indexed. Every node-level attribute (``x``, ``pos``, ``id``, ``batch``)
    follows, and a :class:`~torch_geometric.data.Batch` keeps valid ``ptr`` and
    :meth:`~torch_geometric.data.Batch.to_data_list`.

    Args:
        graph: a graph or a batch of graphs whose node types all have ``pos`` ``(N, K, 2)``.

    Returns:
        the filtered graph (a new object; the input is not modified).
    """
    keep: dict[str, Tensor] = {}
    for node_type in graph.node_types:
        pos = graph[node_type].pos
        inside = ((pos >= 0) & (pos <= 1)).all(dim=-1)
        keep[node_type] = inside.any(dim=-1)
    out = graph.subgraph(keep)
    for node_type in out.node_types:
        out[node_type].pos = out[node_type].pos.clamp(0.0, 1.0)
    if isinstance(out, Batch):
        _refresh_batch_slices(out)
    return out
