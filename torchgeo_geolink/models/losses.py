# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The three GeoLink pretraining losses: MAE, image-OSM contrast, masked nodes."""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from .patches import patchify

__all__ = ('info_nce_loss', 'masked_node_loss', 'masked_patch_loss')


def masked_patch_loss(
    pred: Tensor, images: Tensor, mask: Tensor, patch_size: int, norm_pix: bool = True
) -> Tensor:
    """MAE reconstruction loss: per-patch MSE averaged over the masked patches.

    Args:
        pred: Predicted patches ``(B, L, p * p * C)``.
        images: Input images ``(B, C, H, W)`` (already normalized).
        mask: ``(B, L)``, 1 for masked patches.
        patch_size: Patch side ``p``.
        norm_pix: Standardize every target patch (mean 0, unbiased variance 1, eps
            1e-6).

    Returns:
        The scalar loss.

    .. versionadded:: 0.1
    """
    target = patchify(images, patch_size).float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    loss = (pred.float() - target).pow(2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def _gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """Concatenate *x* over all processes, keeping the gradient of the local part.

    Args:
        x: Local tensor ``(B, ...)``, same shape on every process.

    Returns:
        The gathered tensor ``(world * B, ...)`` and the offset of the local rows.
    """
    if (
        not (dist.is_available() and dist.is_initialized())
        or dist.get_world_size() == 1
    ):
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0), dist.get_rank() * x.shape[0]


def info_nce_loss(
    img: Tensor,
    osm: Tensor,
    has_osm: Tensor,
    temperature: float = 0.2,
    gather_distributed: bool = False,
) -> Tensor:
    """Symmetric InfoNCE between L2-normalized image and OSM embeddings.

    A sample without OSM is neither an anchor nor a negative; the loss is the mean over
    the anchors that have OSM (0, with zero gradient, when none has). Nothing is indexed
    by a data-dependent mask, so the loss causes no host-device synchronization.

    Args:
        img: Image embeddings ``(B, E)``, L2-normalized.
        osm: OSM embeddings ``(B, E)``, L2-normalized.
        has_osm: ``(B,)`` bool, True for samples with at least one OSM node.
        temperature: Softmax temperature.
        gather_distributed: Use the samples of all processes as negatives (all_gather
            with gradient).

    Returns:
        The scalar loss.

    .. versionadded:: 0.1
    """
    b = img.shape[0]
    if gather_distributed:
        img_all, offset = _gather_with_grad(img)
        osm_all, _ = _gather_with_grad(osm)
        has_all, _ = _gather_with_grad(has_osm.to(img.dtype))
        has_all = has_all > 0
    else:
        img_all, osm_all, has_all, offset = img, osm, has_osm, 0
    target = torch.arange(b, device=img.device) + offset
    columns = torch.arange(img_all.shape[0], device=img.device)
    keep = has_all[None, :] | (columns[None, :] == target[:, None])
    i2o = (img @ osm_all.T).float() / temperature
    o2i = (osm @ img_all.T).float() / temperature
    i2o = i2o.masked_fill(~keep, float('-inf'))
    o2i = o2i.masked_fill(~keep, float('-inf'))
    per_sample = 0.5 * (
        F.cross_entropy(i2o, target, reduction='none')
        + F.cross_entropy(o2i, target, reduction='none')
    )
    weight = has_osm.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1)


def masked_node_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Masked OSM node reconstruction loss: MSE averaged over the valid nodes.

    Args:
        pred: Predicted node features ``(B, M, D)``.
        target: Original node features ``(B, M, D)``.
        valid: ``(B, M)`` bool, True for masked nodes that carry a loss.

    Returns:
        The scalar loss (0 when no node is valid).

    .. versionadded:: 0.1
    """
    per_node = (pred.float() - target.float()).pow(2).mean(dim=-1)
    weight = valid.to(per_node.dtype)
    return (per_node * weight).sum() / weight.sum().clamp(min=1)
