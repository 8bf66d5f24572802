# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Mix-in that makes the randomness of a task resumable from checkpoints."""

from typing import Any

from lightning.pytorch import LightningModule

from .utils import reseed

__all__ = ('ResumableRandomnessMixin',)


class ResumableRandomnessMixin(LightningModule):
    """Reseed the random generators from the global step at every validation end and on checkpoint loading.

    Lightning checkpoints do not hold the random states, so a resumed run would otherwise draw other image masks,
    OSM node masks, dropout, windows and augmentations than the uninterrupted run. With this mix-in what follows a
    validation (where end-of-epoch checkpoints are written) depends only on the run's seed and the global step, so
    resuming from such a checkpoint continues exactly like the uninterrupted run.
    """

    def on_validation_end(self) -> None:
        """Reseed from the global step after a validation (also the sanity check of a resumed run)."""
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
