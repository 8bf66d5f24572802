# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Images as sequences of flattened patches in MAE order, and MAE reconstructions."""

import torch
from torch import Tensor

__all__ = ('patchify', 'reconstruct_images', 'unpatchify')


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into flattened patches in MAE order.

    Args:
        images: ``(B, C, H, W)`` with H and W multiples of *patch_size*.
        patch_size: Patch side ``p``.

    Returns:
        ``(B, H/p * W/p, p * p * C)``.

    .. versionadded:: 0.1
    """
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    x = torch.einsum('nchpwq->nhwpqc', x)
    return x.reshape(
        b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c
    )


def unpatchify(
    patches: Tensor, patch_size: int, channels: int, grid: tuple[int, int]
) -> Tensor:
    """Reassemble images from flattened patches, the inverse of :func:`patchify`.

    Args:
        patches: ``(B, rows * cols, p * p * C)`` in MAE order.
        patch_size: Patch side ``p``.
        channels: Number of channels ``C``.
        grid: Patch grid ``(rows, cols)``.

    Returns:
        ``(B, C, rows * p, cols * p)``.

    .. versionadded:: 0.1
    """
    b = patches.shape[0]
    rows, cols = grid
    x = patches.reshape(b, rows, cols, patch_size, patch_size, channels)
    x = torch.einsum('nhwpqc->nchpwq', x)
    return x.reshape(b, channels, rows * patch_size, cols * patch_size)


def reconstruct_images(
    pred: Tensor, images: Tensor, mask: Tensor, patch_size: int, norm_pix: bool = True
) -> Tensor:
    """Compose MAE reconstructions: visible input patches, predicted masked ones.

    With *norm_pix* the predictions are per-patch standardized targets; they are mapped
    back with each input patch's mean and standard deviation, as MAE's visualizations
    do.

    Args:
        pred: Predicted patches ``(B, L, p * p * C)``.
        images: Input images ``(B, C, H, W)`` (as given to the model).
        mask: ``(B, L)``, 1 for masked patches.
        patch_size: Patch side ``p``.
        norm_pix: Whether the model predicts standardized patches.

    Returns:
        ``(B, C, H, W)`` images in the input's value range.

    .. versionadded:: 0.1
    """
    target = patchify(images, patch_size)
    pred = pred.to(target.dtype)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        pred = pred * std + mean
    patches = torch.where(mask.bool().unsqueeze(-1), pred, target)
    _, c, h, w = images.shape
    return unpatchify(patches, patch_size, c, (h // patch_size, w // patch_size))
