# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Mix-ins of the GeoLink tasks: resumable randomness and weight provenance."""

import os
import random
import warnings
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule

from ..errors import TagEncoderMismatchError
from ..models.weights import WeightsProvenance, tag_encoders_compatible

__all__ = ('ProvenanceMixin', 'ResumableRandomnessMixin', 'reseed')


def reseed(step: int) -> None:
    """Reseed torch, numpy and ``random`` from the seed, a step and the rank.

    Called at fixed points of training (after each validation) so that what follows is a
    function of the step, not of the history: a run resumed from a checkpoint then draws
    the same masks, dropout and data as the uninterrupted run.

    Args:
        step: The global step.

    .. versionadded:: 0.1
    """
    base = int(os.environ.get('PL_GLOBAL_SEED', '0'))
    rank = int(os.environ.get('RANK', os.environ.get('LOCAL_RANK', '0')))
    seed = (base * 1_000_003 + step * 7_919 + rank * 104_729) % (2**32)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class ResumableRandomnessMixin(LightningModule):
    """Reseed the random generators from the global step (validation, loading).

    Lightning checkpoints do not hold the random states, so a resumed run would
    otherwise draw other image masks, OSM node masks, dropout, windows and augmentations
    than the uninterrupted run. With this mix-in what follows a validation (where
    end-of-epoch checkpoints are written) depends only on the run's seed and the global
    step, so resuming from such a checkpoint continues exactly like the uninterrupted
    run.

    .. versionadded:: 0.1
    """

    def on_validation_end(self) -> None:
        """Reseed from the global step after a validation."""
        super().on_validation_end()
        if not self.trainer.sanity_checking or self.trainer.ckpt_path is not None:
            reseed(self.global_step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Reseed from the restored global step (for runs that skip the sanity check).

        Args:
            checkpoint: The loaded checkpoint.
        """
        super().on_load_checkpoint(checkpoint)
        reseed(int(checkpoint.get('global_step', 0)))


class ProvenanceMixin(LightningModule):
    """Keep what the weights imply, check the data against it, checkpoint it.

    The task sets :attr:`provenance` when it builds its model (from the weights it was
    given). At setup the datamodule's tag encoder (its ``tag_encoder_identity``
    attribute, when it has one) must be the one the OSM branch was trained with,
    otherwise a :class:`~torchgeo_geolink.errors.TagEncoderMismatchError` is raised,
    unless the task's ``allow_tag_encoder_mismatch`` hyperparameter is true (then a
    warning). Every checkpoint gets a ``'geolink_provenance'`` entry
    (:meth:`~torchgeo_geolink.models.WeightsProvenance.to_dict`): the architecture,
    ``legacy``, the tag encoder the graphs were made with, the normalization and the
    bands, which :func:`~torchgeo_geolink.models.geolink_from_weights` reads back.

    .. versionadded:: 0.1
    """

    #: What the weights imply (set when the model is built, restored from checkpoints).
    provenance: WeightsProvenance | None = None

    def uses_osm(self) -> bool:
        """Tell whether the task feeds OSM graphs to the model.

        Returns:
            True (tasks with an image-only mode override this).
        """
        return True

    def trains_osm(self) -> bool:
        """Tell whether fitting the task trains the OSM branch.

        Returns:
            :meth:`uses_osm` (tasks that can freeze the encoder override this).
        """
        return self.uses_osm()

    def check_provenance(self, stage: str) -> None:
        """Check the datamodule's tag encoder against the weights.

        After fitting a task that trains the OSM branch, the branch is trained for the
        datamodule's encoder, which the provenance then names.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.

        Raises:
            TagEncoderMismatchError: If the graphs are made with another tag encoder
                than the OSM branch was trained with (and ``allow_tag_encoder_mismatch``
                is not set).
        """
        provenance = self.provenance
        trainer = self._trainer
        datamodule = (
            getattr(trainer, 'datamodule', None) if trainer is not None else None
        )
        if provenance is None or not self.uses_osm():
            return
        trained_before = provenance.osm_trained
        if stage == 'fit' and self.trains_osm():
            provenance.osm_trained = True
        if datamodule is None:
            return
        actual = getattr(datamodule, 'tag_encoder_identity', None)
        expected = provenance.tag_encoder
        if trained_before and not tag_encoders_compatible(expected, actual):
            msg = (
                f'{type(self).__name__}: the weights were trained on OSM tags embedded by {expected!r}, but the '
                f'datamodule embeds them with {actual!r}; the OSM inputs would be meaningless. Use the same '
                "encoder (for the official weights: data tag_encoder: clip, with CLIP ViT-B/16's text model "
                'available locally), or set allow_tag_encoder_mismatch: true to train on purpose with another'
            )
            if not self.hparams.get('allow_tag_encoder_mismatch', False):
                raise TagEncoderMismatchError(msg)
            warnings.warn(msg, UserWarning, stacklevel=2)
        if actual is not None and (stage == 'fit' or not trained_before):
            provenance.tag_encoder = actual

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the provenance with the checkpoint.

        Args:
            checkpoint: The checkpoint being written.
        """
        super().on_save_checkpoint(checkpoint)
        if self.provenance is None:
            return
        for key in ('mean', 'std'):
            value = self.hparams.get(key)
            if value is not None:
                values = torch.as_tensor(value, dtype=torch.float64).flatten()
                setattr(self.provenance, key, [float(v) for v in values])
        checkpoint['geolink_provenance'] = self.provenance.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the provenance of a checkpoint.

        Args:
            checkpoint: The loaded checkpoint.
        """
        super().on_load_checkpoint(checkpoint)
        recorded = checkpoint.get('geolink_provenance')
        if recorded is not None:
            self.provenance = WeightsProvenance.from_dict(recorded)
