# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Scene classification from GeoLink embeddings: probe, fine-tuning and kNN."""

from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torchgeo.tasks import BaseTask
from torchgeo.tasks.mixins import ClassificationMixin
from torchvision.models._api import WeightsEnum

from ..models import GeoLink
from .downstream import DownstreamMixin
from .mixins import ResumableRandomnessMixin

__all__ = ('GeoLinkClassification', 'weighted_knn')

_MODES = ('linear', 'finetune', 'knn')
_EMBEDDINGS = ('image', 'fused')


def weighted_knn(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> Tensor:
    r"""Class probabilities of a weighted k-nearest-neighbor vote (cosine).

    As the kNN evaluation of DINO (Caron et al., 2021): each query takes its *k* most
    similar bank embeddings (cosine similarity :math:`s`), each neighbor votes for its
    class with weight :math:`\exp(s / T)`, and the votes are normalized to
    probabilities.

    Args:
        bank: Embeddings of the labeled pool ``(N, D)`` (any scale; they are
            L2-normalized here).
        bank_labels: Their classes ``(N,)``, in ``[0, num_classes)``.
        queries: Embeddings to classify ``(B, D)``.
        num_classes: Number of classes.
        k: Number of neighbors (at most *N* are used).
        temperature: Temperature :math:`T` of the vote weights.

    Returns:
        Class probabilities ``(B, num_classes)``, float32.

    Raises:
        ValueError: If the bank is empty, its size differs from its labels', or *k* or
            *temperature* is not positive.

    .. versionadded:: 0.1
    """
    if bank.shape[0] == 0:
        raise ValueError('weighted_knn: the bank of labeled embeddings is empty')
    if bank.shape[0] != bank_labels.shape[0]:
        msg = f'weighted_knn: {bank.shape[0]} bank embeddings but {bank_labels.shape[0]} labels'
        raise ValueError(msg)
    if k < 1 or temperature <= 0:
        msg = f'weighted_knn: k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}'
        raise ValueError(msg)
    bank = F.normalize(bank.float().to(queries.device), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    similarity = queries @ bank.T
    top, index = similarity.topk(min(k, bank.shape[0]), dim=1)
    # exp((s - s_max) / T): the same normalized weights as exp(s / T), without overflow
    # at small T.
    weights = ((top - top[:, :1]) / temperature).exp()
    votes = torch.zeros(
        queries.shape[0], num_classes, dtype=weights.dtype, device=weights.device
    )
    votes.scatter_add_(1, bank_labels.to(queries.device).long()[index], weights)
    return votes / votes.sum(dim=1, keepdim=True)


class GeoLinkClassification(
    ResumableRandomnessMixin, DownstreamMixin, ClassificationMixin, BaseTask
):
    """Classify windows from their GeoLink embedding.

    The embedding of a window is either the image's (``embedding='image'``: the mean of
    the final-norm patch tokens,
    :meth:`~torchgeo_geolink.models.GeoLink.image_embedding`) or the fused image-OSM one
    (``embedding='fused'``: the mean of the hybrid tokens of the two-way block,
    :meth:`~torchgeo_geolink.models.GeoLink.fused_embedding`); both are deterministic
    (nothing is masked).

    Modes:

    * ``'linear'`` (linear probe): the GeoLink model is frozen **and kept in eval mode**
      throughout fitting (dropout off, the same features in training and evaluation);
      only a linear head on the embedding trains.
    * ``'finetune'``: the GeoLink model and the linear head train together.
    * ``'knn'``: no gradient training. A weighted kNN classifier (:func:`weighted_knn`,
      DINO's evaluation: cosine similarity, *knn_k* neighbors, vote weights
      ``exp(s / knn_temperature)``) over the frozen embeddings of the training windows.
      It runs through ``torchgeo fit`` like the other modes: the training epoch is the
      pass that embeds the training windows into the memory bank (manual optimization
      without an optimizer: nothing is updated, the model is frozen and in eval mode;
      each batch still counts as a global step, so checkpoints are written as usual),
      and the validation at the end of the epoch classifies the validation windows
      against it. The bank therefore holds the training batches exactly as the
      datamodule delivers them: turn the datamodule's training augmentation off (e.g.
      ``augment: false``) for a bank of plain windows, as DINO's, and use one epoch
      (every epoch rebuilds the same bank). Building the bank in the training loop keeps
      Lightning in charge of the data (device transfer, the datamodule's transforms;
      under DDP the per-process banks are gathered) instead of iterating a dataloader by
      hand. The sanity-check validation before the first epoch has no bank yet and logs
      nothing. The bank is saved in the checkpoint, so ``torchgeo test`` / ``validate``
      from a fitted kNN checkpoint work. ``val_loss`` is the cross-entropy of the kNN
      probabilities; no ``train_*`` metric is logged.

    Metrics and their names follow TorchGeo's :class:`~torchgeo.tasks.Classification`
    (:class:`~torchgeo.tasks.ClassificationMixin`): ``{train,val,test}_`` +
    ``OverallAccuracy``, ``AverageAccuracy``, ``OverallF1Score``, ``AverageF1Score``,
    ``OverallJaccardIndex``, ... and the classwise values, with ``train_loss``,
    ``val_loss`` and ``test_loss``.

    Batches are those of :func:`~torchgeo_geolink.datasets.collate_geolink` with a
    ``label`` ``(B,)`` per window, e.g.
    :class:`~torchgeo_geolink.datamodules.GeoLinkDataModule` with
    ``target='dominant_class'`` (the dominant class of a label raster per window). The
    ``graph`` is used by ``embedding='fused'`` only.

    The GeoLink model is built from the weights as
    :class:`~torchgeo_geolink.tasks.GeoLinkSegmentation` builds its encoder
    (:func:`~torchgeo_geolink.models.geolink_from_weights`): a checkpoint of a GeoLink
    task (e.g. :class:`~torchgeo_geolink.tasks.GeoLinkPretrain`, whose architecture it
    takes), either official GeoLink file (the image-only ViT suits
    ``embedding='image'``), or random. What the weights imply is used unless given
    otherwise: their normalization (*mean*, *std*, imposed on a datamodule left at its
    defaults; without one the datamodule's is recorded), ``legacy``, and, for
    ``embedding='fused'``, their tag encoder (a datamodule with another one is refused).
    Every checkpoint records the architecture built, so it reloads with
    :meth:`~lightning.pytorch.core.LightningModule.load_from_checkpoint` alone.

    .. versionadded:: 0.1
    """

    ignore = ('weights',)
    monitor = 'val_loss'

    def __init__(
        self,
        model: str = 'vit_large_patch16_224',
        weights: WeightsEnum | str | None = None,
        in_channels: int = 3,
        img_size: int = 224,
        legacy: bool | None = None,
        mode: Literal['linear', 'finetune', 'knn'] = 'linear',
        embedding: Literal['image', 'fused'] = 'image',
        task: Literal['binary', 'multiclass', 'multilabel'] = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        labels: list[str] | None = None,
        pos_weight: Tensor | None = None,
        loss: Literal['ce', 'bce', 'jaccard', 'focal', 'dice'] = 'ce',
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
        knn_k: int = 20,
        knn_temperature: float = 0.07,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        allow_tag_encoder_mismatch: bool = False,
        architecture: dict[str, Any] | None = None,
    ) -> None:
        """Initialize a new GeoLinkClassification task.

        Args:
            model: Name of the timm ViT of the GeoLink model; taken from the weights
                when given.
            weights: Initial GeoLink weights: the path to a Lightning checkpoint
                (``.ckpt``) of a GeoLink task (e.g.
                :class:`~torchgeo_geolink.tasks.GeoLinkPretrain`), the path to an
                official GeoLink file (``.pth``, multimodal or image-only), a
                :class:`~torchgeo_geolink.models.GeoLinkWeightsEnum` member, or ``None``
                (random).
            in_channels: Number of image bands; taken from the weights when given.
            img_size: Side of the (square) input images in pixels, a multiple of the
                patch size; taken from the weights when given.
            legacy: Reproduce the reference code's numerics; None takes what the weights
                were trained with (True for the official files, False without weights).
            mode: ``'linear'`` (frozen model in eval mode, linear head), ``'finetune'``
                (everything trains) or ``'knn'`` (weighted kNN on frozen embeddings, no
                gradient training).
            embedding: Classify the pooled ``'image'`` embedding or the pooled
                ``'fused'`` image-OSM one.
            task: One of 'binary', 'multiclass' or 'multilabel' (``mode='knn'``:
                'multiclass' only).
            num_classes: Number of classes (``task='multiclass'``).
            num_labels: Number of labels (``task='multilabel'``).
            labels: Class names (used in the classwise metric names).
            pos_weight: Weight of positive examples of the 'bce' loss.
            loss: One of 'ce', 'bce', 'jaccard', 'focal' or 'dice'.
            class_weights: Rescaling weight of each class in the 'ce' loss.
            ignore_index: Class index ignored in the loss and metrics (and left out of
                the kNN bank).
            knn_k: Neighbors of the kNN vote (``mode='knn'``; 20 as DINO).
            knn_temperature: Temperature of the kNN vote weights (``mode='knn'``; 0.07
                as DINO).
            lr: Peak learning rate of AdamW.
            weight_decay: AdamW weight decay (not applied to biases, norms and tokens).
            warmup_epochs: Epochs of linear warmup before the cosine decay.
            min_lr_ratio: Final learning rate as a fraction of *lr*.
            mean: Per-band mean the images are normalized with; None takes the weights'
                (ImageNet for the official files) or, without, the datamodule's.
            std: Per-band standard deviation, as *mean*.
            allow_tag_encoder_mismatch: Accept graphs embedded with another tag encoder
                than the weights' OSM branch was trained with (a warning instead of an
                error; ``embedding='fused'``).
            architecture: GeoLink architecture hyperparameters (keys of
                :data:`~torchgeo_geolink.models.ARCHITECTURE_DEFAULTS`). Filled in with
                the architecture built from the weights and saved, so that a checkpoint
                rebuilds its model without the weights; leave it None.

        Raises:
            ValueError: If *mode* or *embedding* is unknown, or ``mode='knn'`` is asked
                for with another task than 'multiclass', without *num_classes*, or with
                a non-positive *knn_k* or *knn_temperature*.
        """
        if mode not in _MODES:
            msg = f'GeoLinkClassification: mode must be one of {_MODES}, got {mode!r}'
            raise ValueError(msg)
        if embedding not in _EMBEDDINGS:
            msg = f'GeoLinkClassification: embedding must be one of {_EMBEDDINGS}, got {embedding!r}'
            raise ValueError(msg)
        if mode == 'knn':
            if task != 'multiclass' or num_classes is None:
                msg = f"GeoLinkClassification: mode='knn' needs task='multiclass' and num_classes (got task={task!r}, num_classes={num_classes})"
                raise ValueError(msg)
            if knn_k < 1 or knn_temperature <= 0:
                msg = f'GeoLinkClassification: knn_k must be >= 1 and knn_temperature > 0, got {knn_k}, {knn_temperature}'
                raise ValueError(msg)
        self.weights = weights
        super().__init__()

    @property
    def frozen(self) -> bool:
        """Whether the GeoLink model is frozen (linear probe and kNN modes).

        Returns:
            True unless ``mode='finetune'``.
        """
        return self.hparams['mode'] != 'finetune'

    def configure_models(self) -> None:
        """Build the GeoLink model and the linear head; freeze as the mode asks."""
        hp = self.hparams
        geolink = self._build_geolink("embedding='fused'", "embedding='image'")
        self.model: GeoLink = geolink
        dim = (
            self.model.embed_dim
            if hp['embedding'] == 'image'
            else self.model.fusion_embed_dim
        )
        #: kNN memory bank: embeddings and labels of the training windows
        #: (``mode='knn'``).
        self.knn_bank: tuple[Tensor, Tensor] | None = None
        self._bank_parts: list[tuple[Tensor, Tensor]] = []
        if hp['mode'] == 'knn':
            self.automatic_optimization = False
        else:
            num_outputs = hp['num_classes'] or hp['num_labels'] or 1
            self.head = nn.Linear(dim, num_outputs)
            nn.init.trunc_normal_(self.head.weight, std=0.01)
            nn.init.zeros_(self.head.bias)
        self._freeze(self.model)

    def uses_osm(self) -> bool:
        """Tell whether the model sees the OSM graphs.

        Returns:
            True for ``embedding='fused'``.
        """
        return self.hparams['embedding'] == 'fused'

    def trains_osm(self) -> bool:
        """Tell whether fitting trains the OSM branch.

        Returns:
            True when fine-tuning the fused embedding.
        """
        return self.uses_osm() and self.hparams['mode'] == 'finetune'

    def _frozen_module(self) -> nn.Module | None:
        """The GeoLink model in the linear probe and kNN modes.

        Its dropout is then off, and it computes the same embeddings in training as in
        evaluation.

        Returns:
            The GeoLink model, or None when fine-tuning.
        """
        if not hasattr(self, 'model') or not self.frozen:
            return None
        return self.model

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW with warmup then cosine decay (head alone when frozen); none for kNN.

        Returns:
            The optimizer and its per-step scheduler, or None in the kNN mode.
        """
        if self.hparams['mode'] == 'knn':
            return None
        return self._adamw_warmup_cosine(self.head if self.frozen else self)

    def embed(self, images: Tensor, graphs: Any = None) -> Tensor:
        """Pooled embedding of each window (gradient-free when the model is frozen).

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch's OSM graphs (``embedding='fused'`` only; None gives the
                image-only hybrid path).

        Returns:
            ``(B, embed_dim)`` for ``embedding='image'``, ``(B, fusion_embed_dim)`` for
            ``'fused'``.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.hparams['embedding'] == 'image':
                return self.model.image_embedding(images)
            return self.model.fused_embedding(images, graphs)

    def forward(self, images: Tensor, graphs: Any = None) -> Tensor:
        """Class scores of a batch.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch's OSM graphs (``embedding='fused'`` only).

        Returns:
            Logits ``(B, num_outputs)``; in the kNN mode the log of the kNN class
            probabilities.

        Raises:
            RuntimeError: In the kNN mode, before the bank of training embeddings
                exists.
        """
        features = self.embed(images, graphs)
        if self.hparams['mode'] != 'knn':
            return self.head(features)
        if self.knn_bank is None:
            msg = (
                "GeoLinkClassification(mode='knn') has no bank of training embeddings yet: fit it (its training "
                'epoch fills the bank) or load the checkpoint of a fitted kNN task'
            )
            raise RuntimeError(msg)
        bank, bank_labels = self.knn_bank
        hp = self.hparams
        probabilities = weighted_knn(
            bank,
            bank_labels,
            features,
            hp['num_classes'],
            hp['knn_k'],
            hp['knn_temperature'],
        )
        return probabilities.clamp_min(1e-12).log()

    def _scores(self, batch: dict[str, Any]) -> Tensor:
        """Scores of a batch, squeezed to ``(B,)`` for binary tasks.

        Args:
            batch: A collated batch.

        Returns:
            The class scores.
        """
        return self(batch['image'], batch.get('graph')).squeeze(1)

    def training_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor | None:
        """Compute the training loss, or (kNN mode) add the batch to the bank.

        Args:
            batch: A collated batch with ``image``, ``label`` and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The loss, or None in the kNN mode.
        """
        if self.hparams['mode'] == 'knn':
            with torch.no_grad():
                features = self.embed(batch['image'], batch.get('graph'))
            self._bank_parts.append((features.detach(), batch['label'].detach()))
            # Lightning's placeholder optimizer (no parameters): its no-op step counts
            # the batch as a global step, so checkpoints are written and step-based
            # logging advances as in the other modes.
            cast(LightningOptimizer, self.optimizers()).step()
            return None
        return super().training_step(batch, batch_idx, dataloader_idx)

    def on_train_epoch_start(self) -> None:
        """Start a new kNN bank for this epoch's training windows."""
        super().on_train_epoch_start()
        self._bank_parts = []

    def on_train_epoch_end(self) -> None:
        """Log the training metrics (none in the kNN mode)."""
        if self.hparams['mode'] == 'knn':
            self._finish_bank()
            self.train_metrics.reset()
            return
        super().on_train_epoch_end()

    def _finish_bank(self) -> None:
        """Turn the embeddings collected in the training epoch into the bank."""
        if not self._bank_parts:
            return
        features = torch.cat([f for f, _ in self._bank_parts])
        labels = torch.cat([y for _, y in self._bank_parts]).long()
        self._bank_parts = []
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            features, labels = self._gather_bank(features, labels)
        ignore = self.hparams['ignore_index']
        if ignore is not None:
            keep = labels != ignore
            features, labels = features[keep], labels[keep]
        self.knn_bank = (features, labels)

    def _gather_bank(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Concatenate the banks of all processes (of possibly different sizes).

        Args:
            features: This process's embeddings ``(n, D)``.
            labels: Their labels ``(n,)``.

        Returns:
            Everyone's embeddings and labels, in process order.
        """
        size = torch.tensor([features.shape[0]], device=features.device)
        sizes = cast(Tensor, self.all_gather(size)).flatten().tolist()
        longest = max(int(s) for s in sizes)
        pad = longest - features.shape[0]
        features = F.pad(features, (0, 0, 0, pad))
        labels = F.pad(labels, (0, pad))
        all_features = cast(Tensor, self.all_gather(features))
        all_labels = cast(Tensor, self.all_gather(labels))
        return (
            torch.cat([all_features[i, : int(n)] for i, n in enumerate(sizes)]),
            torch.cat([all_labels[i, : int(n)] for i, n in enumerate(sizes)]),
        )

    def on_validation_epoch_start(self) -> None:
        """Finish the kNN bank of the training epoch."""
        super().on_validation_epoch_start()
        if self.hparams['mode'] == 'knn':
            self._finish_bank()

    def _ready_to_evaluate(self) -> bool:
        """Tell whether a validation or test step can run.

        Returns:
            False in the sanity-check validation of the kNN mode before the first
            training epoch (no bank to classify against), True otherwise.
        """
        if self.hparams['mode'] == 'knn' and self.knn_bank is None:
            if self.trainer.sanity_checking:
                return False
            self._finish_bank()
        return True

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics (none in a kNN sanity check)."""
        if self.hparams['mode'] == 'knn' and self.knn_bank is None:
            self.val_metrics.reset()
            return
        super().on_validation_epoch_end()

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Predict class probabilities.

        Args:
            batch: A collated batch with ``image`` (and ``graph``).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            Probabilities ``(B, num_outputs)``: softmax for multiclass, sigmoid for
            binary and multilabel.
        """
        return self._probabilities(self(batch['image'], batch.get('graph')))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the kNN bank with the checkpoint (``mode='knn'``).

        Args:
            checkpoint: The checkpoint being written.
        """
        super().on_save_checkpoint(checkpoint)
        if self.knn_bank is not None:
            features, labels = self.knn_bank
            checkpoint['knn_bank'] = {
                'features': features.detach().cpu(),
                'labels': labels.detach().cpu(),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the kNN bank of a checkpoint (``mode='knn'``).

        Args:
            checkpoint: The loaded checkpoint.
        """
        super().on_load_checkpoint(checkpoint)
        bank = checkpoint.get('knn_bank')
        if bank is not None:
            self.knn_bank = (bank['features'], bank['labels'])
