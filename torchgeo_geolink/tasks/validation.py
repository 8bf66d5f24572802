# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""A validation pass of the untrained model, so that every run logs its own baseline."""

from lightning.pytorch import Trainer

__all__ = ('run_baseline_validation',)


def run_baseline_validation(trainer: Trainer) -> None:
    """Run the fit's validation loop once before the first training step.

    Its metrics are logged like any validation's, at step 0: the first ``val_*`` row of
    the run is the model before training. Nothing is run without validation batches.

    Args:
        trainer: A trainer inside ``fit``, at its first step.

    .. versionadded:: 0.1
    """
    # As Lightning's own validation inside fit: the validating stage selects the
    # validation loop and the datamodule's validation transforms (not the training
    # augmentation).
    trainer.validating = True
    trainer.fit_loop.epoch_loop.val_loop.run()
    trainer.training = True
