# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Vectorized random masking of image patches and OSM nodes, without host syncs."""

import math

import torch
from torch import Tensor

__all__ = (
    'random_node_mask',
    'random_patch_mask',
    'random_subset_keys',
    'rank_within_groups',
)


def random_patch_mask(
    batch_size: int,
    grid_size: tuple[int, int],
    mask_ratio: float,
    device: torch.device,
    block_size: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw MAE masks: keep ``int(L * (1 - mask_ratio))`` random patches per image.

    With ``block_size > 1`` the noise is drawn on a coarser grid and repeated, so that
    square blocks of ``block_size x block_size`` patches are masked together (one block
    may be partially kept).

    Args:
        batch_size: Number of images ``B``.
        grid_size: Patch grid ``(rows, cols)``; ``L = rows * cols``.
        mask_ratio: Fraction of masked patches, in ``[0, 1)``.
        device: Device of the masks.
        block_size: Side of the masked blocks, in patches.
        generator: Random generator (on *device*) for reproducible masks.

    Returns:
        ``ids_keep`` ``(B, L_keep)`` (kept patch indices), ``ids_restore`` ``(B, L)``
        (unshuffle) and ``mask`` ``(B, L)`` float, 1 for masked patches.

    Raises:
        ValueError: If *mask_ratio* is outside ``[0, 1)`` or *block_size* is smaller
            than 1.

    .. versionadded:: 0.1
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
    if block_size < 1:
        raise ValueError(f'block_size must be >= 1, got {block_size}')
    rows, cols = grid_size
    num_patches = rows * cols
    if block_size == 1:
        noise = torch.rand(batch_size, num_patches, device=device, generator=generator)
    else:
        coarse = torch.rand(
            batch_size,
            math.ceil(rows / block_size),
            math.ceil(cols / block_size),
            device=device,
            generator=generator,
        )
        noise = coarse.repeat_interleave(block_size, dim=1).repeat_interleave(
            block_size, dim=2
        )
        noise = noise[:, :rows, :cols].reshape(batch_size, num_patches)
    len_keep = int(num_patches * (1 - mask_ratio))
    ids_shuffle = noise.argsort(dim=1, stable=True)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(batch_size, num_patches, device=device)
    mask[:, :len_keep] = 0
    mask = mask.gather(1, ids_restore)
    return ids_keep, ids_restore, mask


def rank_within_groups(
    key: Tensor, group: Tensor, num_groups: int
) -> tuple[Tensor, Tensor]:
    """Rank elements by *key* within their group, all groups at once.

    Args:
        key: Sort key ``(N,)``; ties keep the input order.
        group: Group index ``(N,)`` in ``[0, num_groups)``.
        num_groups: Number of groups.

    Returns:
        ``rank`` ``(N,)`` (0 for the smallest key of each group) and ``perm`` ``(N,)``,
        the order that sorts the elements by group, then by key.

    .. versionadded:: 0.1
    """
    perm = key.argsort(stable=True)
    perm = perm[group[perm].argsort(stable=True)]
    counts = torch.zeros(num_groups, dtype=torch.long, device=key.device)
    counts.scatter_add_(0, group, torch.ones_like(group))
    start = counts.cumsum(0) - counts
    positions = torch.arange(key.numel(), device=key.device)
    rank = torch.empty_like(group).scatter_(0, perm, positions - start[group[perm]])
    return rank, perm


def random_subset_keys(
    group: Tensor,
    num_groups: int,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sort keys whose first ``k`` per group are a uniform random ``k``-subset.

    This is the reference's node cap (a random subset of each graph's nodes). Without
    *seed* the keys are fresh uniform draws (from *generator* or the global generator).
    With *seed* the key of an element depends only on the seed and its rank within its
    group, so a group gets the same subset in any batch and on every call: the capped
    output is deterministic, and over seeds each subset is equally likely.

    Args:
        group: Group index ``(N,)`` in ``[0, num_groups)``, elements of a group in a
            fixed order.
        num_groups: Number of groups.
        seed: Seed of the deterministic keys, or None for fresh draws.
        generator: Random generator of the fresh draws (on the device of *group*).

    Returns:
        Keys ``(N,)`` in ``[0, 1)`` for :func:`rank_within_groups`.

    .. versionadded:: 0.1
    """
    n = group.numel()
    if seed is None:
        return torch.rand(n, device=group.device, generator=generator)
    rank, _ = rank_within_groups(torch.zeros(n, device=group.device), group, num_groups)
    size = int(rank.max()) + 1 if n else 0
    table = torch.rand(size, generator=torch.Generator().manual_seed(seed))
    return table.to(group.device)[rank]


def random_node_mask(
    batch: Tensor,
    num_graphs: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mask ``max(1, min(round(mask_ratio * n), n))`` random nodes per graph.

    Args:
        batch: Graph index of every node ``(N,)``.
        num_graphs: Number of graphs ``B``.
        mask_ratio: Fraction of masked nodes.
        generator: Random generator (on the device of *batch*).

    Returns:
        A boolean mask ``(N,)``, True for masked nodes.

    .. versionadded:: 0.1
    """
    counts = torch.zeros(num_graphs, dtype=torch.long, device=batch.device)
    counts.scatter_add_(0, batch, torch.ones_like(batch))
    k = torch.minimum(torch.round(counts * mask_ratio).long().clamp(min=1), counts)
    key = torch.rand(batch.numel(), device=batch.device, generator=generator)
    rank, _ = rank_within_groups(key, batch, num_graphs)
    return rank < k[batch]
