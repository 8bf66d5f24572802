# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Fixed sin-cos position encodings of image patches and OSM nodes (MAE convention)."""

import torch
from torch import Tensor

__all__ = ('node_pos_embed', 'sincos_1d', 'sincos_2d', 'sincos_grid_table')


def sincos_1d(pos: Tensor, dim: int) -> Tensor:
    """Encode scalar positions with the 1-D sin-cos table of MAE.

    ``emb(p) = [sin(p w_k), cos(p w_k)]`` with ``w_k = 10000 ** (-k / (dim / 2))``,
    ``k = 0 .. dim/2 - 1``.

    Args:
        pos: Positions of any shape.
        dim: Embedding size, even.

    Returns:
        A float32 tensor of shape ``(*pos.shape, dim)``.

    Raises:
        ValueError: If *dim* is odd.

    .. versionadded:: 0.1
    """
    if dim % 2:
        raise ValueError(f'sin-cos embedding size must be even, got {dim}')
    omega = torch.arange(dim // 2, dtype=torch.float32, device=pos.device) / (dim / 2)
    omega = 1.0 / 10000**omega
    out = pos.float().unsqueeze(-1) * omega
    return torch.cat([out.sin(), out.cos()], dim=-1)


def sincos_2d(xy: Tensor, dim: int) -> Tensor:
    """Encode 2-D positions: the first half of the channels x, the second y.

    Args:
        xy: Positions ``(..., 2)`` in patch units, ``x`` first.
        dim: Embedding size, a multiple of 4.

    Returns:
        A float32 tensor of shape ``(..., dim)``.

    Raises:
        ValueError: If *dim* is not a multiple of 4.

    .. versionadded:: 0.1
    """
    if dim % 4:
        raise ValueError(
            f'2-D sin-cos embedding size must be a multiple of 4, got {dim}'
        )
    return torch.cat(
        [sincos_1d(xy[..., 0], dim // 2), sincos_1d(xy[..., 1], dim // 2)], dim=-1
    )


def sincos_grid_table(
    grid_size: tuple[int, int], dim: int, cls_token: bool = True
) -> Tensor:
    """Build the fixed patch position table of a ViT, tokens in row-major order.

    Patch ``(row, col)`` is encoded at ``(x, y) = (col, row)``, its top-left corner in
    patch units, as in MAE.

    Args:
        grid_size: Patch grid ``(rows, cols)``.
        dim: Embedding size, a multiple of 4.
        cls_token: Prepend an all-zero row for the CLS token.

    Returns:
        A float32 tensor of shape ``(1, [1 +] rows * cols, dim)``.

    .. versionadded:: 0.1
    """
    rows, cols = grid_size
    y, x = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32),
        torch.arange(cols, dtype=torch.float32),
        indexing='ij',
    )
    table = sincos_2d(torch.stack([x, y], dim=-1).reshape(-1, 2), dim)
    if cls_token:
        table = torch.cat([table.new_zeros(1, dim), table], dim=0)
    return table.unsqueeze(0)


def node_pos_embed(
    pos: Tensor,
    grid_size: tuple[int, int],
    dim: int,
    legacy: bool = False,
    point_mask: Tensor | None = None,
) -> Tensor:
    """Encode OSM node positions in the frame of the patch position table.

    Each of the node's ``K`` points (polygon 4, line 3, point 1) is scaled from
    ``[0, 1]`` to patch units and encoded with :func:`sincos_2d`; the node's encoding is
    the mean over its points. With ``legacy=True`` the reference's half-patch offset is
    kept (a point at the center of patch ``k`` is encoded at ``k + 0.5`` while the patch
    token sits at ``k``, B19); otherwise half a patch is subtracted so that a patch
    center and its token share one encoding.

    Args:
        pos: Normalized positions ``(N, K, 2)``, x right, y down.
        grid_size: Patch grid ``(rows, cols)``.
        dim: Embedding size, a multiple of 4.
        legacy: Reproduce the reference's half-patch offset.
        point_mask: ``(N, K)``, True for the points that count (for node types padded to
            a common ``K``); all points count when None.

    Returns:
        A float32 tensor ``(N, dim)``.

    .. versionadded:: 0.1
    """
    rows, cols = grid_size
    scale = torch.tensor([cols, rows], dtype=torch.float32, device=pos.device)
    xy = pos.float() * scale
    if not legacy:
        xy = xy - 0.5
    emb = sincos_2d(xy, dim)
    if point_mask is None:
        return emb.mean(dim=-2)
    weight = point_mask.to(emb.dtype).unsqueeze(-1)
    return (emb * weight).sum(dim=-2) / weight.sum(dim=-2).clamp(min=1)
