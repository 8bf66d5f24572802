# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink pretraining task: MAE, image-OSM contrast and masked OSM nodes."""

from collections.abc import Sequence
from typing import Any, Literal

import kornia.augmentation as K
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torchgeo.tasks import BaseTask
from torchvision.models._api import WeightsEnum

from ..models import reconstruct_images
from ..models.weights import (
    ARCHITECTURE_DEFAULTS,
    WeightsProvenance,
    geolink_from_architecture,
    load_geolink_weights,
)
from ..visualization import plot_graph, plot_image
from ..writers import window_bounds
from .metrics import CrossModalRetrieval, embedding_std
from .mixins import ProvenanceMixin, ResumableRandomnessMixin
from .normalization import sync_normalization
from .schedules import adamw_warmup_cosine
from .validation import run_baseline_validation

__all__ = ('GeoLinkPretrain',)

#: The architecture defaults (one source: the signatures of GeoLink and OSMHeteroGAT).
_ARCH = ARCHITECTURE_DEFAULTS


class GeoLinkPretrain(ResumableRandomnessMixin, ProvenanceMixin, BaseTask):
    """Pretrain a GeoLink model on paired images and OpenStreetMap graphs.

    The loss is ``L_rec + w_cont * L_cont + w_node * L_node``: masked-patch
    reconstruction of the image (MAE), a symmetric InfoNCE between the image and
    OSM-graph embeddings, and the reconstruction of masked OSM node features through the
    two-way attention block. Windows without OSM still train the image branch and are
    left out of the two OSM terms; their count is logged
    (``train_windows_without_osm``).

    Batches are those of :func:`~torchgeo_geolink.datasets.collate_geolink`:
    ``{'image': (B, C, H, W), 'graph': torch_geometric.data.Batch, ...}``.

    Logged: ``train_loss`` and its parts ``train_loss_rec``, ``train_loss_cont``,
    ``train_loss_node``; ``train_psnr`` (of the normalized-patch reconstruction, as
    TorchGeo's MAE); ``train_ssl_std`` (collapse monitor of the 64-d image embeddings);
    ``val_loss`` and its parts, ``val_psnr``; ``val_retrieval_top1`` (image-to-OSM and
    OSM-to-image top-1 retrieval, averaged, over the whole validation pool of windows
    with OSM, from unmasked images and graphs: :meth:`retrieval_embeddings`) with
    ``val_retrieval_chance`` (1 / pool size).

    .. versionadded:: 0.1
    """

    ignore = ('weights',)
    monitor = 'val_loss'

    def __init__(
        self,
        model: str = _ARCH['model'],
        weights: WeightsEnum | str | None = None,
        in_channels: int = _ARCH['in_channels'],
        img_size: int = 224,
        osm_in_channels: int = _ARCH['osm_in_channels'],
        osm_hidden_channels: int = _ARCH['osm_hidden_channels'],
        osm_num_layers: int = _ARCH['osm_num_layers'],
        osm_edge_features: bool = _ARCH['osm_edge_features'],
        osm_node_positions: bool = _ARCH['osm_node_positions'],
        contrastive_readout: Literal['global', 'grid'] = _ARCH['contrastive_readout'],
        decoder_embed_dim: int = _ARCH['decoder_embed_dim'],
        decoder_depth: int = _ARCH['decoder_depth'],
        decoder_num_heads: int = _ARCH['decoder_num_heads'],
        img_mask_ratio: float = _ARCH['img_mask_ratio'],
        osm_mask_ratio: float = _ARCH['osm_mask_ratio'],
        rec_weight: float = _ARCH['rec_weight'],
        cont_weight: float = _ARCH['cont_weight'],
        node_weight: float = _ARCH['node_weight'],
        temperature: float = _ARCH['temperature'],
        norm_pix_loss: bool = _ARCH['norm_pix_loss'],
        legacy: bool | None = None,
        lr: float = 1.5e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_epochs: float = 5,
        warmup_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        gather_distributed: bool = _ARCH['gather_distributed'],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        baseline_validation: bool = True,
    ) -> None:
        """Initialize a new GeoLinkPretrain task.

        Args:
            model: Name of the timm ViT image encoder (patch 16), e.g.
                ``vit_large_patch16_224`` (the paper's) or ``vit_tiny_patch16_224`` (the
                demo's).
            weights: Initial weights: a :class:`~torchvision.models._api.WeightsEnum`
                member of :mod:`torchgeo_geolink.models`, the path to an official
                GeoLink checkpoint (``.pth``) or the path to a Lightning checkpoint
                (``.ckpt``) of this task. ``None`` for random initialization.
            in_channels: Number of image bands.
            img_size: Side of the (square) input images in pixels; a multiple of 16.
            osm_in_channels: Size of the OSM node tag embeddings (512 for the default
                encoders).
            osm_hidden_channels: Width of the OSM graph encoder (128 in the paper).
            osm_num_layers: Number of heterogeneous GAT layers (1 in the paper).
            osm_edge_features: Let the GAT attention see the relation one-hots
                (``edge_dim``); the reference ignores them.
            osm_node_positions: Add a learnt encoding of each node's position in the
                window to its tag embedding before the OSM encoder, so the contrastive
                graph embedding sees the layout (not in the paper; off for the official
                checkpoints).
            contrastive_readout: What the image-OSM contrast compares: ``'global'`` (the
                paper's: the mean patch token against the Set2Set graph readout) or
                ``'grid'`` (both modalities on the patch grid, in spatial order; not in
                the paper, see :class:`~torchgeo_geolink.models.GeoLink`).
            decoder_embed_dim: Width of the MAE decoder (512 in the paper).
            decoder_depth: Transformer blocks of the MAE decoder (2 in the paper).
            decoder_num_heads: Attention heads of the MAE decoder (16 in the paper).
            img_mask_ratio: Share of image patches masked (0.75 in the paper).
            osm_mask_ratio: Share of OSM nodes masked per type and graph (0.2 in the
                paper).
            rec_weight: Weight of the image reconstruction loss (1 in the paper).
            cont_weight: Weight of the image-OSM contrastive loss (0.01 in the paper).
            node_weight: Weight of the masked OSM node reconstruction loss (0.01 in the
                paper).
            temperature: Softmax temperature of the contrastive loss (0.2 in the paper).
            norm_pix_loss: Standardize every target patch of the reconstruction loss, as
                MAE.
            legacy: Reproduce the reference code's numerics (batch-wide OSM LayerNorm,
                no-op type attention, half-patch position offset, random 50-node cap),
                as the official weights were trained; None takes what *weights* were
                trained with (True for the official files), False without weights.
            lr: Peak learning rate of AdamW.
            weight_decay: AdamW weight decay (not applied to biases, norms and tokens).
            betas: AdamW betas (MAE's 0.9, 0.95).
            warmup_epochs: Epochs of linear warmup before the cosine decay (fractions
                allowed).
            warmup_steps: Steps of linear warmup; overrides *warmup_epochs* when given.
            min_lr_ratio: Final learning rate as a fraction of *lr*.
            gather_distributed: Gather the contrastive negatives from all processes
                under DDP.
            mean: Per-band mean the images were normalized with; None takes the
                datamodule's at the start of fitting. Saved with the checkpoint so that
                every task loading it normalizes the same way.
            std: Per-band standard deviation, as *mean*.
            baseline_validation: Validate the untrained model once before the first
                training step, so that every run logs its own starting point (the first
                ``val_*`` row, at step 0).
        """
        self.weights = weights
        super().__init__()

    def configure_models(self) -> None:
        """Build the GeoLink model, load the initial weights, note provenance."""
        hp = self.hparams
        legacy = hp['legacy']
        self.model = geolink_from_architecture({**hp, 'legacy': bool(legacy)})
        loaded = None
        if self.weights is not None:
            loaded = load_geolink_weights(
                self.model, self.weights, follow_legacy=legacy is None
            )
        hp['legacy'] = self.model.legacy
        architecture = {k: hp[k] for k in ARCHITECTURE_DEFAULTS}
        provenance = WeightsProvenance(architecture, self.model.legacy)
        if loaded is not None:
            provenance.tag_encoder, provenance.bands = loaded.tag_encoder, loaded.bands
            provenance.osm_trained = loaded.osm_trained
            if hp['mean'] is None and hp['std'] is None and loaded.mean is not None:
                # the normalization the weights were trained with (ImageNet for the
                # official files)
                hp['mean'], hp['std'] = list(loaded.mean), list(loaded.std or [])
        self.provenance = provenance

    def setup(self, stage: str) -> None:
        """Agree on the image normalization with the datamodule.

        See :func:`~torchgeo_geolink.tasks.normalization.sync_normalization`.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        super().setup(stage)
        sync_normalization(self)
        self.check_provenance(stage)

    def on_train_start(self) -> None:
        """Validate the untrained model once before a new run's first step."""
        super().on_train_start()
        trainer = self.trainer
        if (
            self.hparams['baseline_validation']
            and trainer.global_step == 0
            and trainer.ckpt_path is None
        ):
            run_baseline_validation(trainer)

    def configure_metrics(self) -> None:
        """Initialize the validation retrieval metric."""
        self.val_retrieval = CrossModalRetrieval()

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW (MAE betas) with linear warmup then cosine decay per step.

        Returns:
            The optimizer and its per-step scheduler.
        """
        hp = self.hparams
        return adamw_warmup_cosine(
            self.model,
            self.trainer,
            lr=hp['lr'],
            weight_decay=hp['weight_decay'],
            min_lr_ratio=hp['min_lr_ratio'],
            warmup_epochs=hp['warmup_epochs'],
            warmup_steps=hp['warmup_steps'],
            betas=hp['betas'],
        )

    def _shared_step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, Any]:
        """Run the model on a batch and log the losses of a stage.

        Args:
            batch: A collated batch with ``image`` and ``graph``.
            stage: ``'train'``, ``'val'`` or ``'test'``.

        Returns:
            The weighted total loss and the model output.
        """
        images: Tensor = batch['image']
        graphs = batch['graph']
        out = self.model(images, graphs)
        loss = out.loss
        b = images.shape[0]
        on_step = stage == 'train'
        self.log(
            f'{stage}_loss',
            loss,
            batch_size=b,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            sync_dist=not on_step,
        )
        for name in ('rec', 'cont', 'node'):
            self.log(
                f'{stage}_loss_{name}',
                getattr(out, f'loss_{name}'),
                batch_size=b,
                on_step=on_step,
                on_epoch=True,
                sync_dist=not on_step,
            )
        psnr = -10.0 * torch.log10(out.loss_rec.detach().float().clamp(min=1e-10))
        self.log(
            f'{stage}_psnr',
            psnr,
            batch_size=b,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        return loss, out

    def training_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute and log the training loss.

        Args:
            batch: A collated batch with ``image`` and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The weighted total loss.
        """
        loss, out = self._shared_step(batch, 'train')
        b = batch['image'].shape[0]
        self.log(
            'train_ssl_std',
            embedding_std(out.img_embedding),
            batch_size=b,
            on_step=True,
            on_epoch=True,
        )
        self.log(
            'train_windows_without_osm',
            (~out.has_osm).sum().float(),
            batch_size=b,
            on_step=False,
            on_epoch=True,
            reduce_fx='sum',
            sync_dist=True,
        )
        return loss

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the validation losses and accumulate the retrieval pool.

        Args:
            batch: A collated batch with ``image`` and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        _, out = self._shared_step(batch, 'val')
        image, osm = self.retrieval_embeddings(batch['image'], batch['graph'])
        self.val_retrieval.update(image[out.has_osm], osm[out.has_osm])
        if batch_idx < 2:
            self._log_figure(batch, out, batch_idx)

    def _log_figure(self, batch: dict[str, Any], out: Any, batch_idx: int) -> None:
        """Log the first window of a batch with its graph and reconstruction.

        Only when the logger can show figures (e.g. TensorBoard), as TorchGeo's tasks
        do.

        Args:
            batch: A collated batch with ``image`` and ``graph``.
            out: The model output of the batch.
            batch_idx: Index of the batch.
        """
        experiment = getattr(self.logger, 'experiment', None) if self.logger else None
        if not hasattr(experiment, 'add_figure'):
            return
        model = self.model
        images = batch['image'][:1]
        recon = reconstruct_images(
            out.pred_img[:1],
            images,
            out.mask_img[:1],
            model.patch_size,
            model.norm_pix_loss,
        )
        datamodule = getattr(self.trainer, 'datamodule', None)
        mean, std = getattr(datamodule, 'mean', None), getattr(datamodule, 'std', None)
        if mean is not None and std is not None:
            denormalize = K.Denormalize(mean.to(images.device), std.to(images.device))
            images, recon = denormalize(images), denormalize(recon)
        fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
        plot_graph(
            images[0].detach().cpu(),
            batch['graph'].get_example(0).cpu(),
            ax=axes[0],
            title='Image and OSM graph',
        )
        plot_image(recon[0].detach().cpu(), ax=axes[1], title='MAE reconstruction')
        experiment.add_figure(f'image/{batch_idx}', fig, global_step=self.global_step)
        plt.close(fig)

    def retrieval_embeddings(
        self, images: Tensor, graphs: Any
    ) -> tuple[Tensor, Tensor]:
        """Embed whole images and graphs in the shared contrastive space.

        The image embedding is the projected mean of all patch tokens, the OSM embedding
        the projected region readout of the unmasked graph: deterministic, unlike the
        masked embeddings of a training step.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch of ``B`` OSM graphs.

        Returns:
            L2-normalized image and OSM embeddings, ``(B, 64)`` each.
        """
        image = self.model.image_embedding(images, project=True)
        osm = self.model.osm_embedding(graphs, images.shape[0], project=True)
        return image, osm

    def on_validation_epoch_end(self) -> None:
        """Log top-1 retrieval over the validation pool and its chance level."""
        result = self.val_retrieval.compute()
        self.log('val_retrieval_top1', result['top1'], prog_bar=True)
        self.log('val_retrieval_chance', result['chance'])
        self.log('val_retrieval_image_to_osm_top1', result['image_to_osm_top1'])
        self.log('val_retrieval_osm_to_image_top1', result['osm_to_image_top1'])
        self.val_retrieval.reset()

    def test_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the test losses.

        Args:
            batch: A collated batch with ``image`` and ``graph``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        self._shared_step(batch, 'test')

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """Embed every window of a batch deterministically, for the writer.

        The outputs are those :class:`~torchgeo_geolink.writers.EmbeddingWriter` writes
        (``torchgeo predict``).

        Args:
            batch: A collated batch with ``image``, ``graph`` and the window bounds (the
                graphs' ``bounds`` or TorchGeo's ``bounds``).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            ``bounds`` ``(B, 4)`` float64 ``[xmin, ymin, xmax, ymax]`` in the dataset
            CRS; the pooled embeddings of
            :meth:`~torchgeo_geolink.models.GeoLink.embed`: ``image`` (mean patch
            token), ``osm`` (OSM region readout), ``fused`` (mean hybrid image-OSM
            token), ``image_projected`` and ``osm_projected`` (L2-normalized contrastive
            embeddings); ``has_osm`` ``(B,)``; and ``patch_features``
            ``(B, D, rows, cols)``, the patch tokens on the patch grid (row 0 at the
            top).

        .. versionadded:: 0.1
        """
        images: Tensor = batch['image']
        bounds = window_bounds(batch)
        out = self.model.embed(images, batch.get('graph'))
        b, _, height, width = images.shape
        patch = self.model.patch_size
        patch_features = out.patch_tokens.transpose(1, 2).reshape(
            b, -1, height // patch, width // patch
        )
        return {
            'bounds': bounds,
            'image': out.image,
            'osm': out.osm,
            'fused': out.fused,
            'image_projected': out.image_projected,
            'osm_projected': out.osm_projected,
            'has_osm': out.has_osm,
            'patch_features': patch_features,
        }
