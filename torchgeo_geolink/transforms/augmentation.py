# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Joint augmentation of images and their OSM graphs, kept aligned."""

import copy
import math
from collections.abc import Mapping
from typing import Any, Final

import kornia.augmentation as K
import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from .functional import (
    crop_matrix,
    drop_outside_nodes,
    hflip_matrix,
    rot90_matrix,
    transform_positions,
    vflip_matrix,
    warp_images,
    warp_masks,
)

__all__ = ('DEFAULT_COLOR_JITTER', 'GeoLinkAugmentation')

#: Default brightness, contrast, saturation and hue strengths of the color jitter of
#: :class:`GeoLinkAugmentation` and the datamodules (the ranges of
#: :class:`kornia.augmentation.ColorJitter`).  .. versionadded:: 0.1
DEFAULT_COLOR_JITTER: Final[tuple[float, float, float, float]] = (0.4, 0.4, 0.4, 0.1)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """Return ``size`` as ``(height, width)``.

    Args:
        size: one side length or a pair.

    Returns:
        the pair.
    """
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class GeoLinkAugmentation(nn.Module):
    """Random crop, flips, 90-degree rotations and color jitter of images and graphs.

    Operates on a collated batch (the output of
    :func:`~torchgeo_geolink.datasets.collate_geolink` moved to the device): ``image``
    ``(B, C, H, W)``, optional ``mask`` ``(B, H, W)`` and ``graph``, a PyG
    :class:`~torch_geometric.data.Batch` whose node types carry ``pos`` ``(N, K, 2)``
    normalized to the window (x right, y down, in ``[0, 1]``). Other keys (``bounds``,
    ``transform``, ...) pass through unchanged, so after a crop they describe the window
    *before* augmentation.

    For every sample one random affine matrix is composed (crop box -> output window,
    horizontal flip, vertical flip, ``k`` quarter turns, in that order) and applied in a
    single resampling to the image (bilinear), the mask (nearest) and every node
    position, so the three stay aligned exactly. The crop box always lies inside the
    image, so no padding is ever introduced.

    Nodes whose ``K`` position points all fall outside the crop are dropped together
    with their edges; partially visible nodes (one point inside) are kept with their
    positions clamped to ``[0, 1]``. Positions are only points (not geometries), so a
    large polygon that covers the whole crop but whose sample points all lie outside it
    is dropped too; keep ``crop_scale`` moderate (the default keeps at least 35% of the
    area).

    Color jitter changes the image only. It is :class:`kornia.augmentation.ColorJitter`
    (torchvision's formulas) applied to the *raw* intensities: apply this module before
    normalizing, and give the intensity of white as ``color_jitter_max`` (255 for 8-bit
    imagery, 1 for images already scaled to ``[0, 1]``). A jittered image is divided by
    ``color_jitter_max``, jittered and clamped in ``[0, 1]``, and scaled back, so the
    result stays in the raw range ``[0, color_jitter_max]`` whatever normalization
    follows; images that are not jittered pass through bit for bit. Three-channel images
    get brightness, contrast, saturation and hue jitter; others brightness and contrast.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        crop_scale: tuple[float, float] = (0.35, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        crop_p: float = 1.0,
        hflip_p: float = 0.5,
        vflip_p: float = 0.5,
        rot90_p: float = 0.5,
        color_jitter: tuple[float, float, float, float] | None = DEFAULT_COLOR_JITTER,
        color_jitter_p: float = 0.8,
        color_jitter_max: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Initialize a new GeoLinkAugmentation instance.

        Args:
            size: output ``(H, W)`` (or side) of image and mask; None keeps the input
                size.
            crop_scale: range of the crop area as a fraction of the image area.
            crop_ratio: range of the crop aspect ratio (width / height in pixels),
                sampled log-uniformly.
            crop_p: probability of cropping a sample (otherwise the whole image is
                kept).
            hflip_p: probability of a horizontal flip.
            vflip_p: probability of a vertical flip.
            rot90_p: probability of a rotation by 90, 180 or 270 degrees (chosen
                uniformly).
            color_jitter: brightness, contrast, saturation and hue strengths (as in
                :class:`kornia.augmentation.ColorJitter`: factors drawn from
                ``[1 - v, 1 + v]``, hue shift from ``[-v, v]``), or None for no color
                jitter.
            color_jitter_p: probability of jittering a sample's colors.
            color_jitter_max: intensity of white in the input images (the raw range is
                ``[0, color_jitter_max]``; 255 for 8-bit imagery).
            generator: random generator of the geometric parameters and of the choice of
                the jittered samples (CPU); None uses torch's global one. The jitter
                factors are drawn by kornia from torch's global generator.

        Raises:
            ValueError: if a probability, scale or ratio range, the jitter strengths or
                *color_jitter_max* are invalid.
        """
        super().__init__()
        for name, p in (
            ('crop_p', crop_p),
            ('hflip_p', hflip_p),
            ('vflip_p', vflip_p),
            ('rot90_p', rot90_p),
            ('color_jitter_p', color_jitter_p),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(
                    f'GeoLinkAugmentation: {name} must lie in [0, 1], got {p}'
                )
        if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ValueError(
                f'GeoLinkAugmentation: crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}'
            )
        if not 0.0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(
                f'GeoLinkAugmentation: crop_ratio must satisfy 0 < min <= max, got {crop_ratio}'
            )
        self.size = None if size is None else _pair(size)
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.crop_p = crop_p
        self.hflip_p = hflip_p
        self.vflip_p = vflip_p
        self.rot90_p = rot90_p
        self.generator = generator
        if color_jitter is not None and not (
            len(color_jitter) == 4
            and 0 <= color_jitter[3] <= 0.5
            and min(color_jitter[:3]) >= 0
        ):
            raise ValueError(
                'GeoLinkAugmentation: color_jitter must be four strengths (brightness, contrast, saturation, hue) '
                f'>= 0 with hue <= 0.5, got {color_jitter}'
            )
        if not color_jitter_max > 0:
            raise ValueError(
                f'GeoLinkAugmentation: color_jitter_max must be positive, got {color_jitter_max}'
            )
        self.color_jitter = color_jitter
        self.color_jitter_p = color_jitter_p
        self.color_jitter_max = float(color_jitter_max)
        self.rgb_jitter: K.ColorJitter | None = None
        self.band_jitter: K.ColorJitter | None = None
        if color_jitter is not None:
            brightness, contrast, saturation, hue = color_jitter
            self.rgb_jitter = K.ColorJitter(
                brightness, contrast, saturation, hue, p=1.0
            )
            # Saturation and hue are defined for RGB only.
            self.band_jitter = K.ColorJitter(brightness, contrast, p=1.0)

    def _rand(self, *shape: int) -> Tensor:
        """Uniform ``[0, 1)`` samples from the module's generator (on the CPU).

        Args:
            *shape: shape of the result.

        Returns:
            float32 tensor.
        """
        return torch.rand(*shape, generator=self.generator)

    def sample_matrices(self, batch_size: int, height: int, width: int) -> Tensor:
        """Draw one random forward matrix per sample (normalized coordinates).

        Args:
            batch_size: number of samples.
            height: input image height in pixels (for the pixel aspect ratio of crops).
            width: input image width in pixels.

        Returns:
            ``(B, 3, 3)`` float32 matrices on the CPU.
        """
        b = batch_size
        scale = self.crop_scale[0] + (
            self.crop_scale[1] - self.crop_scale[0]
        ) * self._rand(b)
        log_lo, log_hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * self._rand(b))
        # Pixel aspect w_px / h_px = ratio and area w_px * h_px = scale * H * W, in
        # normalized units.
        w = torch.sqrt(scale * ratio * height / width).clamp(max=1.0)
        h = torch.sqrt(scale * width / (ratio * height)).clamp(max=1.0)
        crop = self._rand(b) < self.crop_p
        w = torch.where(crop, w, torch.ones_like(w))
        h = torch.where(crop, h, torch.ones_like(h))
        x0 = (1 - w) * self._rand(b)
        y0 = (1 - h) * self._rand(b)
        hflip = self._rand(b) < self.hflip_p
        vflip = self._rand(b) < self.vflip_p
        quarter_turns = torch.where(
            self._rand(b) < self.rot90_p,
            torch.randint(1, 4, (b,), generator=self.generator),
            torch.zeros(b, dtype=torch.long),
        )
        boxes = torch.stack([x0, y0, w, h], dim=-1)
        return (
            rot90_matrix(quarter_turns)
            @ vflip_matrix(vflip)
            @ hflip_matrix(hflip)
            @ crop_matrix(boxes)
        )

    def apply_matrices(
        self, batch: Mapping[str, Any], matrices: Tensor
    ) -> dict[str, Any]:
        """Apply given per-sample matrices (no jitter) to image, mask and graph.

        Args:
            batch: collated batch with ``image`` and optionally ``mask`` and ``graph``.
            matrices: ``(B, 3, 3)`` forward matrices in normalized coordinates.

        Returns:
            a new batch dict (other keys shared with the input).

        Raises:
            ValueError: if ``image`` is missing or not ``(B, C, H, W)``, or ``matrices``
                has the wrong shape.
        """
        out = dict(batch)
        image = batch.get('image')
        if not isinstance(image, Tensor) or image.ndim != 4:
            shape = (
                tuple(image.shape)
                if isinstance(image, Tensor)
                else type(image).__name__
            )
            raise ValueError(
                f"GeoLinkAugmentation: batch['image'] must be a (B, C, H, W) tensor, got {shape}"
            )
        b, _, height, width = image.shape
        if matrices.shape != (b, 3, 3):
            raise ValueError(
                f'GeoLinkAugmentation: expected matrices of shape ({b}, 3, 3), got {tuple(matrices.shape)}'
            )
        size = self.size or (height, width)
        matrices = matrices.to(image.device)
        identity = torch.eye(3, device=image.device)
        if size == (height, width) and bool((matrices == identity).all()):
            return out
        out['image'] = warp_images(image, matrices, size)
        mask = batch.get('mask')
        if isinstance(mask, Tensor):
            out['mask'] = warp_masks(mask, matrices, size)
        graph = batch.get('graph')
        if isinstance(graph, HeteroData):
            graph = copy.copy(graph)
            for node_type in graph.node_types:
                store = graph[node_type]
                if 'pos' not in store:
                    continue
                graph_of_node = (
                    store.batch
                    if 'batch' in store
                    else store.pos.new_zeros(len(store.pos), dtype=torch.long)
                )
                store.pos = transform_positions(store.pos, matrices[graph_of_node])
            out['graph'] = drop_outside_nodes(graph)
        return out

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Augment a collated batch.

        Args:
            batch: ``image`` ``(B, C, H, W)``, optional ``mask`` and ``graph`` (see the
                class docstring).

        Returns:
            the augmented batch (a new dict).
        """
        image = batch['image']
        matrices = self.sample_matrices(
            image.shape[0], image.shape[-2], image.shape[-1]
        )
        out = self.apply_matrices(batch, matrices)
        if self.color_jitter is not None:
            out['image'] = self._jitter(out['image'])
        return out

    def _jitter(self, images: Tensor) -> Tensor:
        """Random color jitter of a share ``color_jitter_p`` of the images.

        Args:
            images: ``(B, C, H, W)`` raw images in ``[0, color_jitter_max]``.

        Returns:
            The images, the chosen ones jittered (a new tensor; the others keep their
            exact values).

        Raises:
            ValueError: if a chosen image has values outside ``[0, color_jitter_max]``
                (jittering would clip them).
        """
        assert self.rgb_jitter is not None and self.band_jitter is not None
        chosen = torch.nonzero(self._rand(len(images)) < self.color_jitter_p)[:, 0]
        if len(chosen) == 0:
            return images
        chosen = chosen.to(images.device)
        raw = images[chosen]
        top = self.color_jitter_max
        # Bilinear resampling keeps values inside the input range up to rounding.
        low, high = float(raw.amin()), float(raw.amax())
        if low < -1e-5 * top or high > (1 + 1e-5) * top:
            raise ValueError(
                f'GeoLinkAugmentation: color jitter expects raw intensities in [0, color_jitter_max={top:g}], '
                f'got values in [{low:g}, {high:g}]; jitter before normalizing, set color_jitter_max to the '
                'intensity of white, or turn color jitter off'
            )
        jitter = self.rgb_jitter if images.shape[1] == 3 else self.band_jitter
        out = images.clone()
        out[chosen] = (jitter(raw / top) * top).clamp(0, top).to(images.dtype)
        return out
