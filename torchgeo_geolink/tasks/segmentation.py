# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Semantic segmentation with a GeoLink encoder and a UPerNet decoder."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import kornia.augmentation as K
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchgeo.tasks import BaseTask
from torchgeo.tasks.mixins import ClassificationMixin
from torchvision.models._api import WeightsEnum

from ..models import GeoLinkFusionEncoder, GeoLinkSegmentationModel
from ..models.weights import ARCHITECTURE_DEFAULTS
from ..visualization import plot_graph, plot_image
from .downstream import DownstreamMixin
from .mixins import ResumableRandomnessMixin

__all__ = ('GeoLinkSegmentation',)


class GeoLinkSegmentation(
    ResumableRandomnessMixin, DownstreamMixin, ClassificationMixin, BaseTask
):
    """Semantic segmentation from GeoLink features, image alone or fused with OSM.

    The encoder is a :class:`~torchgeo_geolink.models.GeoLinkFusionEncoder` over a
    :class:`~torchgeo_geolink.models.GeoLink` model: it returns the token maps of
    several ViT blocks and, in the multimodal mode, replaces the last one with the
    hybrid image-OSM map of the two-way block. A UPerNet decoder turns them into
    per-pixel class scores. The encoder is initialized from a checkpoint of a GeoLink
    task (whose architecture it takes), from either official GeoLink file (the
    multimodal model, or the image-only ViT for ``multimodal=False``), or at random; it
    is fine-tuned or frozen.

    What the weights imply is used unless given otherwise (see
    :func:`~torchgeo_geolink.models.geolink_from_weights`): with an official file
    ``legacy=True``, the ImageNet normalization (imposed on a datamodule left at its
    defaults) and CLIP tag embeddings (a datamodule with another tag encoder is
    refused). Every checkpoint records the architecture actually built, so it reloads
    with :meth:`~lightning.pytorch.core.LightningModule.load_from_checkpoint` alone.

    Metrics follow TorchGeo's :class:`~torchgeo.tasks.SemanticSegmentation`
    (``val_AverageJaccardIndex``, ``val_OverallAccuracy``, ...). Batches are those of
    :func:`~torchgeo_geolink.datasets.collate_geolink` (``image``, ``mask``, ``graph``,
    and ``bounds``/``transform`` for georeferenced predictions).

    .. versionadded:: 0.1
    """

    ignore = ('weights',)
    _target_key = 'mask'
    _train_loss_on_progress_bar = True

    def __init__(
        self,
        model: str = ARCHITECTURE_DEFAULTS['model'],
        weights: WeightsEnum | str | None = None,
        in_channels: int = ARCHITECTURE_DEFAULTS['in_channels'],
        img_size: int = 224,
        multimodal: bool = True,
        output_layers: Sequence[int] | None = None,
        decoder_channels: int = 512,
        task: Literal['binary', 'multiclass', 'multilabel'] = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        labels: list[str] | None = None,
        pos_weight: Tensor | None = None,
        loss: Literal['ce', 'bce', 'jaccard', 'focal', 'dice'] = 'ce',
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
        legacy: bool | None = None,
        freeze_backbone: bool = False,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1,
        min_lr_ratio: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        allow_tag_encoder_mismatch: bool = False,
        architecture: dict[str, Any] | None = None,
    ) -> None:
        """Initialize a new GeoLinkSegmentation task.

        Args:
            model: Name of the timm ViT of the encoder; taken from the weights when
                given.
            weights: Initial encoder weights: the path to a Lightning checkpoint
                (``.ckpt``) of a GeoLink task, the path to an official GeoLink file
                (``.pth``, multimodal or image-only), a
                :class:`~torchgeo_geolink.models.GeoLinkWeightsEnum` member, or ``None``
                (random).
            in_channels: Number of image bands; taken from the weights when given.
            img_size: Side of the (square) input images in pixels, a multiple of the
                patch size; taken from the weights when given.
            multimodal: Fuse the last feature map with the OSM graph (True) or use the
                image alone (False).
            output_layers: 0-based ViT blocks whose token maps feed the decoder; the
                last ViT block gives the hybrid map. ``None``: the blocks at 1/3, 1/2,
                2/3 of the depth and the last (7, 11, 15, 23 for ViT-L/16, as the
                paper).
            decoder_channels: Width of the UPerNet head (512 in the paper).
            task: One of 'binary', 'multiclass' or 'multilabel'.
            num_classes: Number of classes (``task='multiclass'``).
            num_labels: Number of labels (``task='multilabel'``).
            labels: Class names (used in the classwise metric names).
            pos_weight: Weight of positive examples of the 'bce' loss.
            loss: One of 'ce', 'bce', 'jaccard', 'focal' or 'dice'.
            class_weights: Rescaling weight of each class in the 'ce' loss.
            ignore_index: Class index ignored in the loss and metrics.
            legacy: Reproduce the reference code's numerics; None takes what the weights
                were trained with (True for the official files, False without weights).
            freeze_backbone: Freeze the GeoLink encoder (fusion block included) and
                train the decoder only.
            lr: Peak learning rate of AdamW.
            weight_decay: AdamW weight decay (not applied to biases, norms and tokens).
            warmup_epochs: Epochs of linear warmup before the cosine decay.
            min_lr_ratio: Final learning rate as a fraction of *lr*.
            mean: Per-band mean the images are normalized with; None takes the weights'
                (ImageNet for the official files) or, without, the datamodule's.
            std: Per-band standard deviation, as *mean*.
            allow_tag_encoder_mismatch: Accept graphs embedded with another tag encoder
                than the weights' OSM branch was trained with (a warning instead of an
                error).
            architecture: GeoLink architecture hyperparameters (keys of
                :data:`~torchgeo_geolink.models.ARCHITECTURE_DEFAULTS`). Filled in with
                the architecture built from the weights and saved, so that a checkpoint
                rebuilds its model without the weights; leave it None.
        """
        self.weights = weights
        super().__init__()

    def configure_models(self) -> None:
        """Build the GeoLink encoder, the fusion wrapper and the UPerNet."""
        hp = self.hparams
        geolink = self._build_geolink('multimodal=True', 'multimodal=False')
        depth = len(cast(nn.Sequential, geolink.img_encoder.blocks))
        layers = hp['output_layers']
        if layers is None:
            layers = (
                round(depth / 3) - 1,
                depth // 2 - 1,
                round(2 * depth / 3) - 1,
                depth - 1,
            )
        encoder = GeoLinkFusionEncoder(
            geolink, output_layers=tuple(layers), hybrid=hp['multimodal']
        )
        num_outputs = hp['num_classes'] or hp['num_labels'] or 1
        self.model = GeoLinkSegmentationModel(
            encoder, num_classes=num_outputs, channels=hp['decoder_channels']
        )
        self._freeze(self.model)

    def uses_osm(self) -> bool:
        """Tell whether the model sees the OSM graphs.

        Returns:
            The ``multimodal`` hyperparameter.
        """
        return bool(self.hparams['multimodal'])

    def trains_osm(self) -> bool:
        """Tell whether fitting trains the OSM branch.

        Returns:
            True in the multimodal mode with an encoder that is not frozen.
        """
        return self.uses_osm() and not self.hparams['freeze_backbone']

    def _frozen_module(self) -> nn.Module | None:
        """The encoder when ``freeze_backbone``: frozen and kept in eval mode.

        Its dropout (e.g. the fusion block's) is then off, and it computes the same
        features in training as in evaluation.

        Returns:
            The encoder, or None when it trains.
        """
        if not self.hparams.get('freeze_backbone') or not hasattr(self, 'model'):
            return None
        return self.model.encoder

    def forward(self, images: Tensor, graphs: Any = None) -> Tensor:
        """Predict class scores.

        Args:
            images: ``(B, C, H, W)``.
            graphs: The batched OSM graphs (used in the multimodal mode only).

        Returns:
            Scores ``(B, num_classes, H, W)``.
        """
        if not self.hparams['multimodal']:
            graphs = None
        return self.model(images, graphs)

    def _scores(self, batch: dict[str, Any]) -> Tensor:
        """Scores of a batch, squeezed to ``(B, H, W)`` for binary tasks.

        Args:
            batch: A collated batch.

        Returns:
            The class scores.
        """
        y_hat = self(batch['image'], batch.get('graph'))
        return y_hat.squeeze(1) if self.hparams['task'] == 'binary' else y_hat

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the validation loss and metrics, and log a figure.

        Args:
            batch: A collated batch with ``image``, ``mask`` and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        y_hat, _ = self._step(batch, 'val')
        if batch_idx < 10:
            self._log_figure(batch, y_hat, batch_idx)

    def _log_figure(self, batch: dict[str, Any], y_hat: Tensor, batch_idx: int) -> None:
        """Log the first sample of a batch when the logger can show figures.

        Args:
            batch: A collated batch.
            y_hat: Scores of the batch.
            batch_idx: Index of the batch.
        """
        experiment = getattr(self.logger, 'experiment', None) if self.logger else None
        if not hasattr(experiment, 'add_figure'):
            return
        image = batch['image'][:1].detach()
        datamodule = getattr(self.trainer, 'datamodule', None)
        mean, std = getattr(datamodule, 'mean', None), getattr(datamodule, 'std', None)
        if mean is not None and std is not None:
            image = K.Denormalize(mean.to(image.device), std.to(image.device))(image)
        sample: dict[str, Any] = {
            'image': image[0].cpu(),
            'mask': batch['mask'][0].cpu(),
            'prediction': self._labels(y_hat[:1])[0].cpu(),
        }
        graph = batch.get('graph')
        if self.hparams['multimodal'] and graph is not None:
            sample['graph'] = graph.get_example(0).cpu()
        fig = self.plot(sample)
        experiment.add_figure(f'image/{batch_idx}', fig, global_step=self.global_step)
        plt.close(fig)

    def _labels(self, y_hat: Tensor) -> Tensor:
        """Hard predictions from scores.

        Args:
            y_hat: Scores ``(B, K, H, W)`` (``(B, H, W)`` for binary tasks).

        Returns:
            Class indices ``(B, H, W)`` (0/1 per label ``(B, K, H, W)`` for multilabel
            tasks).
        """
        if self.hparams['task'] == 'multiclass':
            return y_hat.argmax(1)
        return (y_hat.sigmoid() >= 0.5).long()

    def plot(self, sample: Mapping[str, Any], suptitle: str | None = None) -> Figure:
        """Draw a sample as TorchGeo's datasets do: image | mask | prediction.

        Args:
            sample: ``image`` ``(C, H, W)`` (not normalized), ``mask`` and
                ``prediction`` ``(H, W)`` class indices (a multilabel sample shows its
                first label), optionally one OSM ``graph`` drawn over the image.
            suptitle: Optional figure title.

        Returns:
            The figure.

        .. versionadded:: 0.1
        """
        fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout='constrained')
        image = sample['image']
        if sample.get('graph') is not None:
            plot_graph(image, sample['graph'], ax=axes[0], title='Image and OSM graph')
        else:
            plot_image(image, ax=axes[0], title='Image')
        hp = self.hparams
        num_classes = int(hp['num_classes'] or hp['num_labels'] or 2)
        cmap = plt.get_cmap(
            'tab10' if num_classes <= 10 else 'tab20', max(num_classes, 2)
        )
        for ax, key, title in (
            (axes[1], 'mask', 'Mask'),
            (axes[2], 'prediction', 'Prediction'),
        ):
            labels = torch.as_tensor(sample[key])
            if labels.dim() == 3:
                labels = labels[0]
            values = labels.double().numpy()
            if hp['ignore_index'] is not None:
                values[labels.numpy() == hp['ignore_index']] = np.nan
            ax.imshow(
                values,
                cmap=cmap,
                vmin=-0.5,
                vmax=max(num_classes, 2) - 0.5,
                interpolation='none',
            )
            ax.set_title(title)
            ax.set_axis_off()
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor | None]:
        """Predict georeferenced class probabilities.

        Args:
            batch: A collated batch with ``image`` and ``graph``
                (``bounds``/``transform`` when georeferenced).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            ``probabilities`` ``(B, K, H, W)`` (sigmoid for binary and multilabel
            tasks), ``bounds`` and ``transform`` of each window (None for
            non-georeferenced data), as TorchGeo's tasks.
        """
        y_hat = self(batch['image'], batch.get('graph'))
        return {
            'probabilities': self._probabilities(y_hat),
            'bounds': batch.get('bounds'),
            'transform': batch.get('transform'),
        }
