# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""What the GeoLink downstream tasks share: model, optimizer, loss and steps."""

import warnings
from typing import Any, Self

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn

from ..models import GeoLink
from ..models.weights import ARCHITECTURE_DEFAULTS, geolink_from_weights
from .mixins import ProvenanceMixin
from .normalization import sync_normalization
from .schedules import adamw_warmup_cosine

__all__ = ('DownstreamMixin',)


class DownstreamMixin(ProvenanceMixin):
    """Mix-in of the supervised GeoLink tasks (segmentation and scene classification).

    For a task that also has TorchGeo's :class:`~torchgeo.tasks.ClassificationMixin`
    (loss and metrics), a ``weights`` attribute and the ``architecture``, ``model``,
    ``in_channels``, ``img_size``, ``legacy``, ``mean``, ``std``, ``loss``, ``task``,
    ``lr``, ``weight_decay``, ``warmup_epochs`` and ``min_lr_ratio`` hyperparameters, it
    provides:

    * ``_build_geolink``: the GeoLink model from the weights
      (:func:`~torchgeo_geolink.models.geolink_from_weights`), with its provenance, and
      the hyperparameters the weights imply;
    * ``_freeze`` and :meth:`train`: the frozen part of the model (``_frozen_module``)
      stays frozen and in eval mode;
    * :meth:`setup`: the normalization agreed with the datamodule and the tag encoder
      checked;
    * :meth:`configure_optimizers`: AdamW with linear warmup then cosine decay per step;
    * the training, validation and test steps on the batch's ``_target_key``, logging
      ``train_loss``, ``val_loss`` and ``test_loss`` and updating the
      ``train_``/``val_``/``test_`` metrics.

    .. versionadded:: 0.1
    """

    #: The loss (set by :meth:`~torchgeo.tasks.ClassificationMixin.configure_losses`).
    criterion: nn.Module
    #: Key of the targets in a batch.
    _target_key = 'label'
    #: Whether ``train_loss`` is shown on the progress bar.
    _train_loss_on_progress_bar = False

    def _build_geolink(self, osm_setting: str, image_setting: str) -> GeoLink:
        """Build the GeoLink model from the weights or the saved architecture.

        Sets :attr:`provenance` and records in the hyperparameters the architecture
        built, ``legacy`` and, when not given, the normalization of the weights. Warns
        when the OSM branch is used but the weights hold the image branch only.

        Args:
            osm_setting: The task's setting that uses the OSM branch (named in the
                warning).
            image_setting: The task's setting for an image-only model (named in the
                warning).

        Returns:
            The GeoLink model.
        """
        hp = self.hparams
        weights = getattr(self, 'weights', None)
        reloading = weights is None and hp['architecture'] is not None
        if reloading:  # a checkpoint of this task: the recorded architecture, weights from the state dict
            architecture = dict(hp['architecture'])
        else:
            architecture = {k: hp[k] for k in ('model', 'in_channels', 'img_size')}
        geolink, provenance = geolink_from_weights(
            weights, architecture, legacy=hp['legacy']
        )
        if reloading:
            provenance.source = 'lightning'
            provenance.osm_trained = True
        self.provenance = provenance
        if self.uses_osm() and weights is not None and not provenance.osm_trained:
            warnings.warn(
                f'{weights}: holds the image branch only; with {osm_setting} the OSM branch and the fusion '
                f'block start at random (use {image_setting} for the image-only GeoLink)',
                UserWarning,
                stacklevel=3,
            )
        arch = provenance.architecture
        hp['architecture'] = {k: arch[k] for k in ARCHITECTURE_DEFAULTS if k in arch}
        hp['model'], hp['in_channels'] = arch['model'], arch['in_channels']
        hp['img_size'] = geolink.img_size[0]
        hp['legacy'] = geolink.legacy
        if hp['mean'] is None and hp['std'] is None and provenance.mean is not None:
            hp['mean'], hp['std'] = list(provenance.mean), list(provenance.std or [])
        return geolink

    def _frozen_module(self) -> nn.Module | None:
        """The part of the model that is frozen and kept in eval mode.

        Returns:
            None (nothing frozen); tasks that can freeze override this.
        """
        return None

    def _freeze(self, model: nn.Module) -> None:
        """Freeze ``_frozen_module`` in eval mode, or train the whole model.

        Args:
            model: The task's whole model.
        """
        frozen = self._frozen_module()
        if frozen is not None:
            frozen.requires_grad_(False)
            frozen.eval()
        else:  # the weights load in eval mode, and Lightning keeps the modes it finds at the start of fitting
            model.train()

    def train(self, mode: bool = True) -> Self:
        """Set the training mode, keeping the frozen part of the model in eval mode.

        Lightning switches the whole module between train and eval mode around every
        validation; a frozen part stays in eval mode throughout, so that its dropout is
        off and it computes the same features in training as in evaluation.

        Args:
            mode: True for training mode, False for eval mode.

        Returns:
            The task.
        """
        super().train(mode)
        frozen = self._frozen_module()
        if frozen is not None:
            frozen.eval()
        return self

    def setup(self, stage: str) -> None:
        """Agree on the normalization and check the tag encoder against the weights.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.

        Raises:
            TagEncoderMismatchError: If the datamodule's tag encoder is not the one of
                the weights (when the task uses the OSM branch, unless
                ``allow_tag_encoder_mismatch``).
        """
        super().setup(stage)
        sync_normalization(self)
        self.check_provenance(stage)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW with linear warmup then cosine decay per step.

        Returns:
            The optimizer and its per-step scheduler.
        """
        return self._adamw_warmup_cosine(self)

    def _adamw_warmup_cosine(self, module: nn.Module) -> OptimizerLRScheduler:
        """AdamW on a module's trainable parameters with warmup then cosine decay.

        Args:
            module: The module whose parameters train.

        Returns:
            The optimizer and its per-step scheduler.
        """
        hp = self.hparams
        return adamw_warmup_cosine(
            module,
            self.trainer,
            lr=hp['lr'],
            weight_decay=hp['weight_decay'],
            min_lr_ratio=hp['min_lr_ratio'],
            warmup_epochs=hp['warmup_epochs'],
        )

    def _scores(self, batch: dict[str, Any]) -> Tensor:
        """Class scores of a batch.

        Args:
            batch: A collated batch.

        Returns:
            The scores.

        Raises:
            NotImplementedError: Always; each task implements this.
        """
        raise NotImplementedError

    def _loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Loss of a batch.

        Args:
            y_hat: Scores.
            y: Targets.

        Returns:
            The loss.
        """
        if self.hparams['loss'] == 'bce':
            y = y.float()
        loss: Tensor = self.criterion(y_hat, y)
        return loss

    def _probabilities(self, y_hat: Tensor) -> Tensor:
        """Probabilities from scores.

        Args:
            y_hat: Scores, classes or labels along dimension 1.

        Returns:
            Softmax over dimension 1 for multiclass tasks, sigmoid for binary and
            multilabel tasks.
        """
        if self.hparams['task'] == 'multiclass':
            return y_hat.softmax(dim=1)
        return y_hat.sigmoid()

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, Tensor]:
        """Update the metrics of a stage and log its loss.

        Args:
            batch: A collated batch with ``image``, the targets and ``graph``.
            stage: ``'train'``, ``'val'`` or ``'test'``.

        Returns:
            The scores and the loss of the batch.
        """
        y = batch[self._target_key]
        y_hat = self._scores(batch)
        metrics = getattr(self, f'{stage}_metrics')
        metrics(y_hat, y)
        loss = self._loss(y_hat, y)
        if stage == 'train':
            prog_bar = self._train_loss_on_progress_bar
            self.log('train_loss', loss, batch_size=y.shape[0], prog_bar=prog_bar)
        else:
            self.log(f'{stage}_loss', loss, batch_size=y.shape[0], sync_dist=True)
        return y_hat, loss

    def _ready_to_evaluate(self) -> bool:
        """Tell whether a validation or test step can run.

        Returns:
            True; tasks that cannot evaluate at times override this.
        """
        return True

    def training_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor | None:
        """Compute the training loss and metrics.

        Args:
            batch: A collated batch with ``image``, the targets and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The loss.
        """
        return self._step(batch, 'train')[1]

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the validation loss and metrics.

        Args:
            batch: A collated batch with ``image``, the targets and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        if self._ready_to_evaluate():
            self._step(batch, 'val')

    def test_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the test loss and metrics.

        Args:
            batch: A collated batch with ``image``, the targets and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        if self._ready_to_evaluate():
            self._step(batch, 'test')
