# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning callbacks for GeoLink training: a kNN probe of the encoder."""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader

from .datamodules import GeoLinkDataModule
from .models import GeoLink
from .samplers import OSMGriddedPatchSampler
from .tasks.classification import weighted_knn

__all__ = ('KNNProbe',)

_EMBEDDINGS = ('image', 'image_projected', 'fused')


@contextmanager
def _preserved_rng(device: torch.device) -> Iterator[None]:
    """Restore the torch, NumPy and ``random`` generators on exit.

    Args:
        device: The device the model runs on.

    Yields:
        Nothing.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == 'cuda'
        else []
    )
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Put a module in eval mode, then give every submodule back its own mode.

    Args:
        module: The module.

    Yields:
        Nothing.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


class KNNProbe(Callback):
    """Log the weighted kNN accuracy of the frozen encoder (``val_knn_top1``).

    As the kNN monitor of DINO/iBOT runs, learning becomes visible during
    self-supervised pretraining: at a probed validation, the model (in eval mode,
    without gradients) embeds a labeled pool of training windows and the validation
    windows, and every validation window is classified by a weighted vote of its *k*
    most cosine-similar training windows (:func:`~torchgeo_geolink.tasks.weighted_knn`).
    The top-1 accuracy is logged as ``val_knn_top1``.

    * Validation pool: the validation batches as Lightning delivers them (after the
      datamodule's transforms).
    * Training pool: with a :class:`~torchgeo_geolink.datamodules.GeoLinkDataModule`, a
      grid of windows over its training region (at its evaluation stride and
      ``min_features``), transformed as validation batches are (normalized, not
      augmented); with another datamodule, its ``train_dataset`` in order. It is never
      drawn from the training sampler, whose state would otherwise change.

    Batches need a ``label`` ``(B,)`` per window: use
    ``GeoLinkDataModule(demo_labels=True, target='dominant_class')`` (or
    ``label_paths``); GeoLinkPretrain ignores the extra key. The probe draws no random
    numbers that training would see: the torch, NumPy and ``random`` generators are
    restored after it, the modules' train/eval modes too, so a run with the probe trains
    exactly like one without it. The first validation after the sanity check (e.g. the
    baseline validation of the untrained model) is probed, then every
    *every_n_epochs*-th one and the one of the last epoch. Under DDP each process embeds
    the whole training pool and its share of the validation pool; the accuracy is
    reduced over processes.

    The model is the task's ``model`` attribute, a
    :class:`~torchgeo_geolink.models.GeoLink`.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        k: int = 20,
        temperature: float = 0.07,
        embedding: Literal['image', 'image_projected', 'fused'] = 'image',
        max_train_windows: int | None = None,
        ignore_index: int | None = None,
    ) -> None:
        """Initialize a new KNNProbe instance.

        Args:
            every_n_epochs: Probe every this many validations.
            k: Neighbors of the vote (20 as DINO).
            temperature: Temperature of the vote weights
                ``exp(similarity / temperature)`` (0.07 as DINO).
            embedding: ``'image'`` (mean final-norm patch token), ``'image_projected'``
                (the L2-normalized contrastive image embedding) or ``'fused'`` (mean
                hybrid image-OSM token).
            max_train_windows: Use at most this many training windows, evenly spread
                over the pool (None: all).
            ignore_index: Label left out of both pools.

        Raises:
            ValueError: If an argument is out of range.
        """
        if every_n_epochs < 1 or k < 1 or temperature <= 0:
            msg = f'KNNProbe: every_n_epochs and k must be >= 1 and temperature > 0, got {every_n_epochs}, {k}, {temperature}'
            raise ValueError(msg)
        if embedding not in _EMBEDDINGS:
            msg = f'KNNProbe: embedding must be one of {_EMBEDDINGS}, got {embedding!r}'
            raise ValueError(msg)
        if max_train_windows is not None and max_train_windows < 1:
            msg = f'KNNProbe: max_train_windows must be >= 1, got {max_train_windows}'
            raise ValueError(msg)
        self.every_n_epochs = every_n_epochs
        self.k = k
        self.temperature = temperature
        self.embedding = embedding
        self.max_train_windows = max_train_windows
        self.ignore_index = ignore_index
        self._validations = 0
        self._active = False
        self._val_parts: list[tuple[Tensor, Tensor]] = []

    # ------------------------------------------------------------------ state (resumable counter)

    def state_dict(self) -> dict[str, Any]:
        """The number of validations seen, so a resumed run probes at the same epochs.

        Returns:
            The callback's state.
        """
        return {'validations': self._validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the number of validations seen.

        Args:
            state_dict: The callback's saved state.
        """
        self._validations = int(state_dict.get('validations', 0))

    # ------------------------------------------------------------------ embedding

    @staticmethod
    def _geolink(pl_module: LightningModule) -> GeoLink:
        """The task's GeoLink model.

        Args:
            pl_module: The task.

        Returns:
            Its ``model``.

        Raises:
            TypeError: If the task has no GeoLink ``model``.
        """
        model = getattr(pl_module, 'model', None)
        if not isinstance(model, GeoLink):
            msg = f'KNNProbe: {type(pl_module).__name__}.model must be a GeoLink model, got {type(model).__name__}'
            raise TypeError(msg)
        return model

    def _embed(
        self, pl_module: LightningModule, batch: dict[str, Any]
    ) -> tuple[Tensor, Tensor]:
        """Embed a transformed batch with the frozen current model.

        Args:
            pl_module: The task.
            batch: A batch on the device with ``image``, ``label`` (and ``graph`` for
                ``'fused'``).

        Returns:
            The embeddings ``(B, D)`` and labels ``(B,)`` (without the *ignore_index*
            windows).

        Raises:
            ValueError: If the batch has no ``label``.
        """
        if 'label' not in batch:
            msg = (
                "KNNProbe: batches need a 'label' per window, e.g. GeoLinkDataModule(demo_labels=True, "
                f"target='dominant_class'); got keys {sorted(batch)}"
            )
            raise ValueError(msg)
        model = self._geolink(pl_module)
        images = batch['image']
        with torch.no_grad(), _eval_mode(pl_module), _preserved_rng(pl_module.device):
            match self.embedding:
                case 'image':
                    features = model.image_embedding(images)
                case 'image_projected':
                    features = model.image_embedding(images, project=True)
                case _:
                    features = model.fused_embedding(images, batch.get('graph'))
        labels = batch['label'].long()
        if self.ignore_index is not None:
            keep = labels != self.ignore_index
            features, labels = features[keep], labels[keep]
        return features.float(), labels

    def _train_loader(self, trainer: Trainer) -> DataLoader[Any]:
        """The loader of the labeled training pool (never the training sampler).

        Args:
            trainer: The trainer.

        Returns:
            A loader of untransformed, collated batches.

        Raises:
            TypeError: If the datamodule offers no training pool.
        """
        datamodule = getattr(trainer, 'datamodule', None)
        dataset: Any
        if isinstance(datamodule, GeoLinkDataModule):
            dataset = datamodule.dataset
            sampler = OSMGriddedPatchSampler(
                dataset,
                size=datamodule.patch_size,
                stride=datamodule.eval_stride or datamodule.patch_size,
                roi=datamodule.rois.get('train'),
                min_features=datamodule.min_features,
            )
            windows: list[Any] = list(sampler)
        elif (train_dataset := getattr(datamodule, 'train_dataset', None)) is not None:
            dataset = train_dataset
            windows = list(range(len(dataset)))
        else:
            msg = (
                'KNNProbe needs a GeoLinkDataModule or a datamodule with a train_dataset for its training pool, '
                f'got {type(datamodule).__name__}'
            )
            raise TypeError(msg)
        if self.max_train_windows is not None and len(windows) > self.max_train_windows:
            picks = np.linspace(0, len(windows) - 1, self.max_train_windows)
            windows = [windows[i] for i in np.unique(np.round(picks).astype(int))]
        return DataLoader(
            dataset,
            batch_size=getattr(datamodule, 'batch_size', 1),
            sampler=windows,
            collate_fn=getattr(datamodule, 'collate_fn', None),
            num_workers=getattr(datamodule, 'num_workers', 0),
        )

    def _train_pool(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> tuple[Tensor, Tensor]:
        """Embed the labeled training pool, transformed as validation batches.

        Args:
            trainer: The trainer.
            pl_module: The task.

        Returns:
            The embeddings and labels of the pool.
        """
        datamodule = trainer.datamodule
        transform = getattr(datamodule, 'val_aug', None) or getattr(
            datamodule, 'aug', None
        )
        features: list[Tensor] = []
        labels: list[Tensor] = []
        with _preserved_rng(pl_module.device):
            for batch in self._train_loader(trainer):
                batch = move_data_to_device(batch, pl_module.device)
                if transform is not None:
                    batch = transform(batch)
                if hasattr(datamodule, 'add_target'):
                    batch = datamodule.add_target(batch)
                f, y = self._embed(pl_module, batch)
                features.append(f)
                labels.append(y)
        if not features:
            return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
        return torch.cat(features), torch.cat(labels)

    # ------------------------------------------------------------------ hooks

    def on_validation_epoch_start(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        """Decide whether this validation is probed.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        self._val_parts = []
        self._active = False
        if trainer.sanity_checking:
            return
        last = (
            trainer.max_epochs is not None
            and trainer.max_epochs > 0
            and trainer.current_epoch >= trainer.max_epochs - 1
        )
        self._active = self._validations % self.every_n_epochs == 0 or last
        self._validations += 1

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Embed the validation batch (probed validations only).

        Args:
            trainer: The trainer.
            pl_module: The task.
            outputs: The validation step's output (unused).
            batch: The transformed validation batch.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        if self._active:
            self._val_parts.append(self._embed(pl_module, batch))

    def on_validation_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        """Embed the training pool, classify the validation pool, log ``val_knn_top1``.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if not self._active:
            return
        self._active = False
        parts, self._val_parts = self._val_parts, []
        bank, bank_labels = self._train_pool(trainer, pl_module)
        if bank.shape[0] == 0:  # the same on every process: all embed the whole pool
            rank_zero_warn('KNNProbe: no labeled training windows; nothing logged')
            return
        device = bank.device
        correct = torch.zeros((), device=device)
        total = torch.zeros((), device=device)
        if parts:
            val_features = torch.cat([f for f, _ in parts])
            val_labels = torch.cat([y for _, y in parts])
            if val_labels.numel():
                num_classes = int(max(bank_labels.max(), val_labels.max())) + 1
                probabilities = weighted_knn(
                    bank,
                    bank_labels,
                    val_features,
                    num_classes,
                    self.k,
                    self.temperature,
                )
                correct += (probabilities.argmax(dim=1) == val_labels).sum()
                total += val_labels.numel()
        # Every process takes part in the reductions, also one without validation
        # windows.
        correct = trainer.strategy.reduce(correct, reduce_op='sum')
        total = trainer.strategy.reduce(total, reduce_op='sum')
        if float(total) == 0:
            rank_zero_warn('KNNProbe: no labeled validation windows; nothing logged')
            return
        pl_module.log('val_knn_top1', correct / total, prog_bar=True)
