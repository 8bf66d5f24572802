# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""GeoLink: a ViT pretrained jointly with OpenStreetMap object graphs."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import timm
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import Tensor, nn
from torch_geometric.data import Batch, HeteroData
from torch_geometric.nn import LayerNorm, Set2Set
from torch_geometric.utils import scatter, to_dense_batch

from ..osm.constants import NODE_TYPES
from .graph_inputs import OSMInputs, osm_inputs
from .losses import info_nce_loss, masked_node_loss, masked_patch_loss
from .masking import (
    random_node_mask,
    random_patch_mask,
    random_subset_keys,
    rank_within_groups,
)
from .osm_encoder import OSMHeteroGAT
from .pos_embed import node_pos_embed, sincos_grid_table
from .two_way import TwoWayAttentionBlock

__all__ = ('DenseOSMTokens', 'GeoLink', 'GeoLinkEmbeddings', 'GeoLinkOutput')

#: OSM nodes per graph in the fusion block under ``legacy`` (a random subset, as the
#: reference).
LEGACY_FUSION_NODES = 50
#: Size of the node position encoding fed to ``osm_pos_embed``
#: (``osm_node_positions=True``).
_NODE_POS_DIM = 64


@dataclass
class GeoLinkOutput:
    """Everything a pretraining step of :class:`GeoLink` produces.

    .. versionadded:: 0.1
    """

    #: Weighted total ``w_rec * loss_rec + w_cont * loss_cont + w_node * loss_node``.
    loss: Tensor
    #: Masked-patch reconstruction loss.
    loss_rec: Tensor
    #: Image-OSM contrastive loss (samples without OSM left out).
    loss_cont: Tensor
    #: Masked OSM node reconstruction loss.
    loss_node: Tensor
    #: Predicted patches ``(B, L, p * p * C)`` (of the normalized-patch target when
    #: ``norm_pix_loss``).
    pred_img: Tensor
    #: ``(B, L)`` float, 1 for masked patches.
    mask_img: Tensor
    #: Predicted features of the masked OSM nodes ``(B, M, D)``.
    pred_osm: Tensor
    #: Their original features ``(B, M, D)``.
    target_osm: Tensor
    #: ``(B, M)`` bool, True where ``pred_osm`` holds a masked node.
    mask_osm: Tensor
    #: Image embedding ``(B, 64)``, L2-normalized (mean of the visible tokens,
    #: projected).
    img_embedding: Tensor
    #: OSM region embedding ``(B, 64)``, L2-normalized (meaningless where ``has_osm`` is
    #: False).
    osm_embedding: Tensor
    #: ``(B,)`` bool, True for samples with at least one OSM node.
    has_osm: Tensor


@dataclass
class GeoLinkEmbeddings:
    """The deterministic embeddings of a batch (:meth:`GeoLink.embed`).

    .. versionadded:: 0.1
    """

    #: Final-norm patch tokens ``(B, L, embed_dim)`` in row-major spatial order, CLS
    #: dropped.
    patch_tokens: Tensor
    #: Mean patch token ``(B, embed_dim)``.
    image: Tensor
    #: OSM region readout ``(B, graph_aggr_embed_dim)``; zero without OSM.
    osm: Tensor
    #: Mean hybrid RS-OSM token ``(B, fusion_embed_dim)``.
    fused: Tensor
    #: L2-normalized contrastive image embedding ``(B, consistency_embed_dim)``.
    image_projected: Tensor
    #: L2-normalized contrastive OSM embedding ``(B, consistency_embed_dim)``.
    osm_projected: Tensor
    #: ``(B,)`` bool, True where the window has OSM nodes.
    has_osm: Tensor


@dataclass
class DenseOSMTokens:
    """OSM nodes of a batch as padded per-graph token sequences for the two-way block.

    .. versionadded:: 0.1
    """

    #: Fused node tokens ``(B, M, fusion_dim)``.
    tokens: Tensor
    #: Their position encodings ``(B, M, fusion_dim)``.
    pos_embed: Tensor
    #: The nodes' input features ``(B, M, D)``.
    features: Tensor
    #: ``(B, M)`` bool, True for real tokens (False for padding).
    valid: Tensor
    #: ``(B, M)`` long: the node type of every token (index into ``NODE_TYPES``).
    node_type: Tensor
    #: ``(B, M)`` long: the node's row within its type in the batch.
    node_index: Tensor


class GeoLink(nn.Module):
    """The GeoLink network (Bai et al., NeurIPS 2025), laid out like its checkpoints.

    Image branch: a timm ViT (any size, any ``in_chans``, patch size and image size from
    the ViT) with GeoLink's own CLS token, fixed 2-D sin-cos position table and final
    norm, trained as an MAE. OSM branch: a heterogeneous GAT over the nine relations of
    the object graph. Heads: the MAE decoder, per-type Set2Set readout with type
    attention and 64-d projections for an image-OSM InfoNCE, and a two-way attention
    block that reconstructs masked OSM nodes from their neighborhood and the visible
    patches.

    Submodule and parameter names match the released checkpoints, so
    :func:`~torchgeo_geolink.models.load_official_checkpoint` loads them strictly.
    ``legacy=True`` reproduces the reference numerics where the default fixes them: OSM
    LayerNorm over all nodes of a type in the whole batch (B9), the no-op type attention
    (B1), the half-patch offset of node positions (B19) and a random subset of at most
    50 OSM nodes per graph in the fusion block (B11; fresh draws in training, the subset
    fixed by :attr:`node_cap_seed` in eval mode).

    If you use this model in your research, please cite:

    * https://arxiv.org/abs/2509.26016

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        img_encoder: nn.Module | str = 'vit_large_patch16_224',
        osm_encoder: OSMHeteroGAT | None = None,
        *,
        in_chans: int = 3,
        img_size: int | None = None,
        osm_in_chans: int = 512,
        osm_out_embed_dim: int = 128,
        graph_aggr_embed_dim: int = 128,
        fusion_embed_dim: int = 256,
        img_decoder_embed_dim: int = 512,
        consistency_embed_dim: int = 64,
        img_decoder_depth: int = 2,
        img_decoder_num_heads: int = 16,
        osm_cross_modal_encoder_depth: int = 1,
        osm_cross_modal_encoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = True,
        img_mask_ratio: float = 0.75,
        mask_block_size: int = 1,
        osm_mask_ratio: float = 0.2,
        max_masked_nodes: int = 10,
        set2set_steps: int = 5,
        fusion_dropout: float = 0.1,
        temperature: float = 0.2,
        loss_weights: Sequence[float] = (1.0, 0.01, 0.01),
        gather_distributed: bool = False,
        legacy: bool = False,
        osm_node_positions: bool = False,
        contrastive_readout: Literal['global', 'grid'] = 'global',
    ) -> None:
        """Initialize a new GeoLink model.

        Args:
            img_encoder: A timm ViT built with ``num_classes=0, global_pool=''``, or the
                name of one (e.g. ``'vit_large_patch16_224'``), created without
                pretrained weights.
            osm_encoder: The OSM graph encoder; default a one-layer
                :class:`OSMHeteroGAT` (``osm_in_chans`` -> ``osm_out_embed_dim``).
            in_chans: Image bands (only when *img_encoder* is a name).
            img_size: Image size (only when *img_encoder* is a name; default that of the
                name).
            osm_in_chans: Size of the OSM node features (tag embeddings).
            osm_out_embed_dim: Size of the OSM node embeddings.
            graph_aggr_embed_dim: Size of the per-type graph embeddings.
            fusion_embed_dim: Size of the two-way block tokens.
            img_decoder_embed_dim: Width of the MAE decoder.
            consistency_embed_dim: Size of the contrastive embeddings.
            img_decoder_depth: MAE decoder blocks.
            img_decoder_num_heads: MAE decoder heads.
            osm_cross_modal_encoder_depth: Two-way blocks.
            osm_cross_modal_encoder_num_heads: Two-way block heads.
            mlp_ratio: MLP ratio of the decoder blocks.
            norm_pix_loss: Standardize every target patch.
            img_mask_ratio: Fraction of masked patches.
            mask_block_size: Side of the masked patch blocks (1: per-patch masking, as
                the reference trains).
            osm_mask_ratio: Fraction of masked OSM nodes per graph and type.
            max_masked_nodes: Masked nodes per graph that take part in the node loss
                (random subset).
            set2set_steps: Processing steps of the Set2Set readouts.
            fusion_dropout: Attention dropout of the two-way block.
            temperature: InfoNCE temperature.
            loss_weights: Weights of the reconstruction, contrastive and node losses.
            gather_distributed: Contrast against the samples of all processes
                (all_gather with gradient).
            legacy: Reproduce the reference numerics (B1, B9, B11, B19) for the official
                weights.
            osm_node_positions: Add a learnt projection of each node's position encoding
                (:func:`node_pos_embed`) to its tag embedding before the OSM encoder, so
                that the graph embedding sees where objects lie in the window. Not in
                the reference (its graph readout ignores positions); adds the
                ``osm_pos_embed`` parameters, so it is off for the official checkpoints.
            contrastive_readout: What the image-OSM contrast compares. ``'global'`` (the
                paper's): the mean visible patch token against the Set2Set region
                readout of the graph. ``'grid'`` (not in the paper): both modalities
                laid out on the patch grid, in spatial order, and projected as a whole:
                every patch token of the whole (unmasked) image in its cell, against the
                sum of the embeddings of the OSM nodes whose position falls in each
                cell. A global pooling has to learn where things lie from the data; the
                grid readout compares the same place in both modalities by construction,
                which lets a small model trained on a small area link them in a way that
                carries to a new area. Adds the ``img_grid_prj`` and ``osm_grid_prj``
                parameters (the Set2Set readout then only serves :meth:`osm_embedding`
                without projection) and one unmasked ViT pass per step.

        Raises:
            ValueError: If *img_encoder* is not a ViT, *loss_weights* does not hold
                three numbers or *contrastive_readout* is unknown.
        """
        super().__init__()
        if isinstance(img_encoder, str):
            kwargs: dict[str, Any] = {'in_chans': in_chans}
            if img_size is not None:
                kwargs['img_size'] = img_size
            img_encoder = timm.create_model(
                img_encoder, pretrained=False, num_classes=0, global_pool='', **kwargs
            )
        if not hasattr(img_encoder, 'patch_embed') or not hasattr(
            img_encoder, 'blocks'
        ):
            raise ValueError(
                f'img_encoder must be a timm VisionTransformer, got {type(img_encoder).__name__}'
            )
        if len(loss_weights) != 3:
            raise ValueError(
                f'loss_weights must be (w_rec, w_cont, w_node), got {loss_weights!r}'
            )
        if contrastive_readout not in ('global', 'grid'):
            raise ValueError(
                f"contrastive_readout must be 'global' or 'grid', got {contrastive_readout!r}"
            )
        self.img_encoder = img_encoder
        patch_embed = cast(PatchEmbed, img_encoder.patch_embed)
        self.patch_embed = patch_embed  # alias kept by the official checkpoint
        self.patch_size = int(patch_embed.patch_size[0])
        grid, size = patch_embed.grid_size, patch_embed.img_size
        if grid is None or size is None:
            raise ValueError(
                'img_encoder must have a fixed image size (timm dynamic_img_size=False)'
            )
        self.grid_size = (int(grid[0]), int(grid[1]))
        self.img_size = (int(size[0]), int(size[1]))
        if img_size is not None and (img_size, img_size) != self.img_size:
            raise ValueError(
                f'img_size {img_size} differs from the image size {self.img_size} of the given img_encoder'
            )
        if any(side % self.patch_size for side in self.img_size):
            raise ValueError(
                f'img_size {self.img_size} is not a multiple of the patch size {self.patch_size}'
            )
        self.in_chans = int(patch_embed.proj.in_channels)
        embed_dim = int(cast(int, img_encoder.embed_dim))
        self.embed_dim = embed_dim
        num_patches = self.grid_size[0] * self.grid_size[1]

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.img_pos_embed = nn.Parameter(
            sincos_grid_table(self.grid_size, embed_dim), requires_grad=False
        )
        self.img_norm = nn.LayerNorm(embed_dim, eps=1e-5)

        # MAE decoder
        self.img_decoder_mlp = nn.Linear(embed_dim, img_decoder_embed_dim)
        self.img_mask_token = nn.Parameter(torch.zeros(1, 1, img_decoder_embed_dim))
        self.rec_img_pos_embed = nn.Parameter(
            sincos_grid_table(self.grid_size, img_decoder_embed_dim),
            requires_grad=False,
        )
        self.img_cross_modal_decoder = nn.Sequential(
            *(
                Block(
                    img_decoder_embed_dim,
                    img_decoder_num_heads,
                    mlp_ratio,
                    qkv_bias=True,
                )
                for _ in range(img_decoder_depth)
            )
        )
        self.img_decoder_norm = nn.LayerNorm(img_decoder_embed_dim)
        self.img_decoder_pred = nn.Linear(
            img_decoder_embed_dim, self.patch_size**2 * self.in_chans
        )

        # OSM encoder and graph readout
        self.osm_encoder = osm_encoder or OSMHeteroGAT(osm_in_chans, osm_out_embed_dim)
        self.osm_norm = nn.ModuleDict(
            {t: LayerNorm(osm_out_embed_dim) for t in NODE_TYPES}
        )
        self.osm_read_out = nn.ModuleDict(
            {t: Set2Set(osm_out_embed_dim, set2set_steps) for t in NODE_TYPES}
        )
        self.osm_aggr_mlp = nn.ModuleDict(
            {
                t: nn.Linear(2 * osm_out_embed_dim, graph_aggr_embed_dim)
                for t in NODE_TYPES
            }
        )
        self.type_attention = nn.Linear(graph_aggr_embed_dim, 1)
        self.img_consistency_prj = nn.Linear(embed_dim, consistency_embed_dim)
        self.osm_graph_consistency_prj = nn.Linear(
            graph_aggr_embed_dim, consistency_embed_dim
        )

        # Object-patch fusion
        self.img_fusion_mlp = nn.Linear(embed_dim, fusion_embed_dim)
        self.osm_node_fusion_mlp = nn.ModuleDict(
            {t: nn.Linear(osm_out_embed_dim, fusion_embed_dim) for t in NODE_TYPES}
        )
        self.osm_mask_token = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(1, osm_in_chans)) for t in NODE_TYPES}
        )
        self.osm_cross_modal_encoder = nn.ModuleList(
            TwoWayAttentionBlock(
                fusion_embed_dim, osm_cross_modal_encoder_num_heads, fusion_dropout
            )
            for _ in range(osm_cross_modal_encoder_depth)
        )
        self.osm_node_pred = nn.Linear(fusion_embed_dim, osm_in_chans)
        self.fusion_img_pos_embed = nn.Parameter(
            sincos_grid_table(self.grid_size, fusion_embed_dim), requires_grad=False
        )

        self.osm_in_chans = osm_in_chans
        self.fusion_embed_dim = fusion_embed_dim
        self.graph_aggr_embed_dim = graph_aggr_embed_dim
        self.norm_pix_loss = norm_pix_loss
        self.img_mask_ratio = img_mask_ratio
        self.mask_block_size = mask_block_size
        self.osm_mask_ratio = osm_mask_ratio
        self.max_masked_nodes = max_masked_nodes
        self.temperature = temperature
        self.loss_weights = tuple(float(w) for w in loss_weights)
        self.gather_distributed = gather_distributed
        self.legacy = legacy
        self.num_patches = num_patches
        #: Seed of the legacy node cap in eval mode, so that the same graph always keeps
        #: the same random nodes.
        self.node_cap_seed = 0
        #: Projection of the node position encodings added to the OSM encoder's input
        #: (``osm_node_positions``).
        self.osm_pos_embed = (
            nn.Linear(_NODE_POS_DIM, osm_in_chans) if osm_node_positions else None
        )
        self.contrastive_readout = contrastive_readout
        cells = self.grid_size[0] * self.grid_size[1]
        grid_readout = contrastive_readout == 'grid'
        #: Projections of the patch-grid layouts of both modalities
        #: (``contrastive_readout='grid'``).
        self.img_grid_prj = (
            nn.Linear(cells * embed_dim, consistency_embed_dim)
            if grid_readout
            else None
        )
        self.osm_grid_prj = (
            nn.Linear(
                cells * len(NODE_TYPES) * osm_out_embed_dim, consistency_embed_dim
            )
            if grid_readout
            else None
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """Initialize as the reference: xavier Linear and conv, N(0, 0.02) tokens."""
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        for token in (
            self.cls_token,
            self.img_mask_token,
            *self.osm_mask_token.values(),
        ):
            nn.init.normal_(token, std=0.02)
        for name, module in self.named_modules():
            if name.startswith(('img_encoder', 'patch_embed')):
                continue
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ image branch

    def _check_images(self, images: Tensor) -> None:
        """Check the image batch against the ViT.

        Args:
            images: ``(B, C, H, W)``.

        Raises:
            ValueError: If the shape does not match the ViT's bands and image size.
        """
        if (
            images.dim() != 4
            or images.shape[1] != self.in_chans
            or tuple(images.shape[-2:]) != self.img_size
        ):
            hint = ''
            if images.dim() == 4 and any(
                side % self.patch_size for side in images.shape[-2:]
            ):
                hint = f' (the image size must be a multiple of the patch size {self.patch_size})'
            raise ValueError(
                f'GeoLink expects images (B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]}), '
                f'got {tuple(images.shape)}{hint}'
            )

    def embed_patches(self, images: Tensor) -> Tensor:
        """Patch-embed images and add the fixed position table (without CLS).

        Args:
            images: ``(B, C, H, W)``.

        Returns:
            Patch tokens ``(B, L, embed_dim)``.
        """
        self._check_images(images)
        x = self.patch_embed(images)
        return x + self.img_pos_embed[:, 1:].to(x.dtype)

    def prepend_cls(self, tokens: Tensor) -> Tensor:
        """Prepend GeoLink's CLS token and apply the ViT's pre-block norm.

        Args:
            tokens: Patch tokens with position encodings ``(B, N, embed_dim)``.

        Returns:
            The input of the first ViT block, ``(B, 1 + N, embed_dim)``.
        """
        cls = (
            (self.cls_token + self.img_pos_embed[:, :1])
            .to(tokens.dtype)
            .expand(tokens.shape[0], -1, -1)
        )
        x = torch.cat([cls, tokens], dim=1)
        return (
            cast(nn.Module, self.img_encoder.norm_pre)(x)
            if hasattr(self.img_encoder, 'norm_pre')
            else x
        )

    def run_blocks(self, tokens: Tensor) -> Tensor:
        """Prepend GeoLink's CLS token and run the ViT blocks (no final norm).

        Args:
            tokens: Patch tokens with position encodings ``(B, N, embed_dim)``.

        Returns:
            ``(B, 1 + N, embed_dim)``.
        """
        return cast(nn.Module, self.img_encoder.blocks)(self.prepend_cls(tokens))

    def block_outputs(self, tokens: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """Prepend GeoLink's CLS token, run the ViT blocks, keep some outputs.

        The blocks after the last requested one do not run.

        Args:
            tokens: Patch tokens with position encodings ``(B, N, embed_dim)``.
            layers: Increasing indices of the blocks whose outputs are kept.

        Returns:
            One ``(B, 1 + N, embed_dim)`` tensor per requested block (no final norm).

        .. versionadded:: 0.1
        """
        x = self.prepend_cls(tokens)
        outputs: list[Tensor] = []
        for i, block in enumerate(cast(nn.Sequential, self.img_encoder.blocks)):
            if len(outputs) == len(layers):
                break
            x = block(x)
            if i in layers:
                outputs.append(x)
        return outputs

    def forward_img_encoder(
        self,
        images: Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Encode the visible patches of randomly masked images.

        Args:
            images: ``(B, C, H, W)``.
            mask_ratio: Fraction of masked patches (default ``img_mask_ratio``).
            generator: Random generator on the images' device.

        Returns:
            The normalized tokens ``(B, 1 + L_keep, embed_dim)`` (CLS first), the mask
            ``(B, L)`` (1 = masked), ``ids_restore`` ``(B, L)`` and ``ids_keep``
            ``(B, L_keep)``.
        """
        x = self.embed_patches(images)
        ratio = self.img_mask_ratio if mask_ratio is None else mask_ratio
        ids_keep, ids_restore, mask = random_patch_mask(
            x.shape[0], self.grid_size, ratio, x.device, self.mask_block_size, generator
        )
        x = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = self.img_norm(self.run_blocks(x))
        return x, mask, ids_restore, ids_keep

    def forward_img_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Predict all patches from the visible tokens.

        Args:
            latent: Normalized encoder tokens ``(B, 1 + L_keep, embed_dim)``.
            ids_restore: ``(B, L)``.

        Returns:
            Patch predictions ``(B, L, p * p * C)``.
        """
        x = self.img_decoder_mlp(latent)
        b, n, d = x.shape
        mask_tokens = self.img_mask_token.to(x.dtype).expand(
            b, ids_restore.shape[1] + 1 - n, -1
        )
        body = torch.cat([x[:, 1:], mask_tokens], dim=1)
        body = body.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        x = torch.cat([x[:, :1], body], dim=1) + self.rec_img_pos_embed.to(x.dtype)
        x = self.img_decoder_norm(self.img_cross_modal_decoder(x))
        return self.img_decoder_pred(x)[:, 1:]

    # ------------------------------------------------------------------ OSM branch

    def osm_inputs(self, graphs: HeteroData | Batch, num_graphs: int) -> OSMInputs:
        """Collect the per-type tensors of a batched graph.

        Args:
            graphs: Batched graph (the data-model contract).
            num_graphs: Number of images in the batch.

        Returns:
            Node and edge tensors, absent types filled with empty tensors.
        """
        return osm_inputs(graphs, num_graphs, self.osm_in_chans, self.cls_token.device)

    def encode_osm(self, x: dict[str, Tensor], inputs: OSMInputs) -> dict[str, Tensor]:
        """Run the GAT and the per-type LayerNorm.

        Args:
            x: Node features per type (possibly with masked nodes replaced).
            inputs: The batch's graph tensors.

        Returns:
            Normalized node embeddings ``(N_t, osm_out_embed_dim)`` per type.
        """
        if self.osm_pos_embed is not None:
            x = {
                t: x[t]
                + self.osm_pos_embed(
                    node_pos_embed(
                        inputs.pos[t], self.grid_size, _NODE_POS_DIM, self.legacy
                    )
                ).to(x[t].dtype)
                for t in NODE_TYPES
            }
        h = self.osm_encoder(x, inputs.edge_index, inputs.edge_attr)
        out = {}
        for t in NODE_TYPES:
            norm = cast(LayerNorm, self.osm_norm[t])
            if h[t].shape[0] == 0:  # nothing to normalize (no 0-element std warning)
                out[t] = h[t]
            elif self.legacy:  # statistics over all nodes of the type in the batch (B9)
                out[t] = norm(h[t])
            else:  # per-graph statistics
                out[t] = norm(h[t], inputs.batch[t], batch_size=inputs.num_graphs)
        return out

    def node_counts(self, inputs: OSMInputs) -> Tensor:
        """Count the nodes of every type in every graph.

        Args:
            inputs: The batch's graph tensors.

        Returns:
            ``(B, 3)`` long, columns in ``NODE_TYPES`` order.
        """
        counts = torch.zeros(
            inputs.num_graphs,
            len(NODE_TYPES),
            dtype=torch.long,
            device=self.cls_token.device,
        )
        for i, t in enumerate(NODE_TYPES):
            batch = inputs.batch[t]
            counts[:, i].scatter_add_(0, batch, torch.ones_like(batch))
        return counts

    def graph_embedding(
        self, h: dict[str, Tensor], inputs: OSMInputs, present: Tensor
    ) -> Tensor:
        """Read out one OSM region embedding per graph (Set2Set, type attention).

        Args:
            h: Node embeddings per type.
            inputs: The batch's graph tensors.
            present: ``(B, 3)`` bool, True where a graph has nodes of a type.

        Returns:
            ``(B, graph_aggr_embed_dim)``; zero for graphs without any node.
        """
        slots = []
        for i, t in enumerate(NODE_TYPES):
            r = self.osm_read_out[t](h[t], inputs.batch[t], dim_size=inputs.num_graphs)
            slots.append(self.osm_aggr_mlp[t](r) * present[:, i : i + 1].to(r.dtype))
        buffer = torch.stack(slots, dim=1)
        logits = self.type_attention(buffer)
        if (
            self.legacy
        ):  # the reference's softmax over a singleton axis: all weights are 1 (B1)
            weights = logits.softmax(dim=-1)
        else:
            logits = (
                logits.squeeze(-1)
                .float()
                .masked_fill(~present, torch.finfo(torch.float32).min)
            )
            weights = (logits.softmax(dim=-1) * present).unsqueeze(-1).to(buffer.dtype)
        return (buffer * weights).sum(dim=1)

    def dense_osm_tokens(
        self,
        h: dict[str, Tensor],
        inputs: OSMInputs,
        order: Tensor | None,
        max_nodes: int | None,
    ) -> DenseOSMTokens:
        """Gather OSM nodes into padded per-graph token sequences for the two-way block.

        Nodes of all types are pooled per graph (types in ``NODE_TYPES`` order), ordered
        by *order* (stable; input order when None) and the first *max_nodes* of every
        graph are kept. Only the kept nodes are projected and position-encoded.

        Args:
            h: Node embeddings per type.
            inputs: The batch's graph tensors.
            order: Sort key ``(N_total,)`` over the concatenated types, or None.
            max_nodes: Tokens per graph; None for the largest graph (needs one host
                sync).

        Returns:
            The padded tokens, position encodings, input features, validity, types and
            node rows.
        """
        device = self.cls_token.device
        batch = torch.cat([inputs.batch[t] for t in NODE_TYPES])
        node_type = torch.cat(
            [torch.full_like(inputs.batch[t], i) for i, t in enumerate(NODE_TYPES)]
        )
        node_index = torch.cat(
            [torch.arange(inputs.batch[t].numel(), device=device) for t in NODE_TYPES]
        )
        key = torch.zeros(batch.numel(), device=device) if order is None else order
        _, perm = rank_within_groups(key, batch, inputs.num_graphs)
        dense_perm, valid = to_dense_batch(
            perm,
            batch[perm],
            fill_value=0,
            max_num_nodes=max_nodes,
            batch_size=inputs.num_graphs,
        )
        if (
            dense_perm.numel() and batch.numel() == 0
        ):  # all graphs empty: nothing to gather from
            dense_perm = torch.zeros_like(dense_perm)
        dense_type = (
            node_type[dense_perm] if batch.numel() else torch.zeros_like(dense_perm)
        )
        dense_index = (
            node_index[dense_perm] if batch.numel() else torch.zeros_like(dense_perm)
        )

        dim = self.fusion_embed_dim
        shape = (*dense_perm.shape, dim)
        tokens = h[NODE_TYPES[0]].new_zeros(shape)
        pos_embed = torch.zeros(shape, device=device)
        features = torch.zeros((*dense_perm.shape, self.osm_in_chans), device=device)
        for i, t in enumerate(NODE_TYPES):
            sel = valid & (dense_type == i)
            rows = dense_index.clamp(max=max(inputs.batch[t].numel() - 1, 0))
            if inputs.batch[t].numel() == 0:
                continue
            tok = self.osm_node_fusion_mlp[t](h[t][rows])
            tokens = torch.where(sel.unsqueeze(-1), tok.to(tokens.dtype), tokens)
            pe = node_pos_embed(inputs.pos[t][rows], self.grid_size, dim, self.legacy)
            pos_embed = torch.where(sel.unsqueeze(-1), pe, pos_embed)
            features = torch.where(sel.unsqueeze(-1), inputs.x[t][rows], features)
        return DenseOSMTokens(
            tokens, pos_embed, features, valid, dense_type, dense_index
        )

    # ------------------------------------------------------------------ embeddings (deterministic)

    def patch_tokens(self, images: Tensor) -> Tensor:
        """Encode whole images: every patch token, in spatial order, nothing masked.

        Unlike :meth:`forward_img_encoder` with ``mask_ratio=0`` this neither shuffles
        the tokens nor draws random numbers, so the same images always give the same
        tokens.

        Args:
            images: Normalized images ``(B, C, H, W)``.

        Returns:
            The final-norm patch tokens ``(B, L, embed_dim)``, CLS dropped, row-major
            over the patch grid (``L = rows * cols``, token ``r * cols + c`` is patch
            ``(r, c)``, row 0 at the top).
        """
        return self.img_norm(self.run_blocks(self.embed_patches(images)))[:, 1:]

    def grid_image_embedding(self, tokens: Tensor) -> Tensor:
        """Project patch tokens laid out on the patch grid (grid readout).

        Args:
            tokens: Every patch token in spatial order ``(B, L, embed_dim)``, as
                :meth:`patch_tokens` gives them.

        Returns:
            The L2-normalized contrastive image embedding
            ``(B, consistency_embed_dim)``.
        """
        assert self.img_grid_prj is not None
        return F.normalize(self.img_grid_prj(tokens.flatten(1)).float(), dim=-1)

    def grid_osm_embedding(self, h: dict[str, Tensor], inputs: OSMInputs) -> Tensor:
        """Project the OSM node embeddings laid out on the patch grid (grid readout).

        Each node's embedding is added to the patch cell that holds the mean of its
        position points; the cells of the node types are concatenated, in the order of
        the image's patch tokens.

        Args:
            h: Node embeddings per type (from :meth:`encode_osm`).
            inputs: The batch's graph tensors.

        Returns:
            The L2-normalized contrastive OSM embedding ``(B, consistency_embed_dim)``.
        """
        assert self.osm_grid_prj is not None
        rows, cols = self.grid_size
        b = inputs.num_graphs
        layers = []
        for t in NODE_TYPES:
            xy = inputs.pos[t].float().mean(dim=1)
            col = (xy[:, 0] * cols).floor().clamp(0, cols - 1).long()
            row = (xy[:, 1] * rows).floor().clamp(0, rows - 1).long()
            cell = (inputs.batch[t] * rows + row) * cols + col
            grid = scatter(h[t], cell, dim=0, dim_size=b * rows * cols, reduce='sum')
            layers.append(grid.view(b, rows * cols, -1))
        layout = torch.cat(layers, dim=-1).flatten(1)
        return F.normalize(self.osm_grid_prj(layout).float(), dim=-1)

    def _project_image(self, tokens: Tensor) -> Tensor:
        """The contrastive image embedding of patch tokens.

        Args:
            tokens: ``(B, L, embed_dim)``: every patch token in spatial order for the
                grid readout; any set of patch tokens (e.g. the visible ones) for the
                global readout, which pools them.

        Returns:
            The L2-normalized embedding ``(B, consistency_embed_dim)``.
        """
        if self.contrastive_readout == 'grid':
            return self.grid_image_embedding(tokens)
        return F.normalize(self.img_consistency_prj(tokens.mean(dim=1)).float(), dim=-1)

    def _project_osm(
        self,
        h: dict[str, Tensor],
        inputs: OSMInputs,
        present: Tensor,
        region: Tensor | None = None,
    ) -> Tensor:
        """The contrastive OSM embedding of encoded nodes.

        Args:
            h: Node embeddings per type (from :meth:`encode_osm`).
            inputs: The batch's graph tensors.
            present: ``(B, 3)`` bool, True where a graph has nodes of a type.
            region: The region readout (:meth:`graph_embedding`) when already computed
                (global readout).

        Returns:
            The L2-normalized embedding ``(B, consistency_embed_dim)``.
        """
        if self.contrastive_readout == 'grid':
            return self.grid_osm_embedding(h, inputs)
        if region is None:
            region = self.graph_embedding(h, inputs, present)
        return F.normalize(self.osm_graph_consistency_prj(region).float(), dim=-1)

    def image_embedding(self, images: Tensor, project: bool = False) -> Tensor:
        """Pool whole images into one embedding each: the mean of :meth:`patch_tokens`.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            project: Return the L2-normalized contrastive embedding
                (``consistency_embed_dim`` wide) instead of the ``embed_dim`` mean
                token.

        Returns:
            ``(B, embed_dim)``, or ``(B, consistency_embed_dim)`` with *project*.
        """
        tokens = self.patch_tokens(images)
        if not project:
            return tokens.mean(dim=1)
        return self._project_image(tokens)

    def osm_embedding(
        self, graphs: HeteroData | Batch, num_graphs: int, project: bool = False
    ) -> Tensor:
        """Read out whole OSM graphs (nothing masked) into one region embedding each.

        Args:
            graphs: The batch of OSM graphs.
            num_graphs: Number of graphs (images) in the batch.
            project: Return the L2-normalized contrastive embedding instead of the
                region readout.

        Returns:
            ``(B, graph_aggr_embed_dim)`` (zero for a graph without nodes), or
            ``(B, consistency_embed_dim)`` with *project*.
        """
        inputs = self.osm_inputs(graphs, num_graphs)
        h = self.encode_osm(inputs.x, inputs)
        present = self.node_counts(inputs) > 0
        if not project:
            return self.graph_embedding(h, inputs, present)
        return self._project_osm(h, inputs, present)

    def fuse(
        self,
        patch_tokens: Tensor,
        graphs: HeteroData | Batch | None,
        max_nodes: int | None = None,
        encoded: tuple[OSMInputs, dict[str, Tensor]] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Fuse final image tokens with their graph's OSM nodes (two-way block).

        Every image token attends to all nodes of its own graph (the image stream after
        the patch-to-object step). A sample without OSM nodes, or ``graphs=None``, gets
        the image-only path.

        Args:
            patch_tokens: Final-norm patch tokens ``(B, L, embed_dim)`` in spatial order
                (:meth:`patch_tokens`).
            graphs: The batch's OSM graphs, or None.
            max_nodes: OSM nodes per graph taking part (the first ones); default: in
                legacy mode a random 50 (fixed by :attr:`node_cap_seed` in eval mode),
                else all.
            encoded: The graphs' inputs and their :meth:`encode_osm` node embeddings,
                when already computed.

        Returns:
            Hybrid tokens ``(B, L, fusion_embed_dim)`` and the object-to-patch attention
            ``(B, M, L)`` (None without OSM nodes).
        """
        b = patch_tokens.shape[0]
        image = self.img_fusion_mlp(patch_tokens)
        image_pe = self.fusion_img_pos_embed[:, 1:].to(image.dtype).expand(b, -1, -1)
        if graphs is not None:
            if encoded is None:
                inputs = self.osm_inputs(graphs, b)
                encoded = inputs, self.encode_osm(inputs.x, inputs)
            inputs, h = encoded
            order = None
            if max_nodes is None and self.legacy:
                max_nodes = LEGACY_FUSION_NODES
                order = random_subset_keys(
                    torch.cat([inputs.batch[t] for t in NODE_TYPES]),
                    b,
                    seed=None if self.training else self.node_cap_seed,
                )
            dense = self.dense_osm_tokens(h, inputs, order, max_nodes)
            if dense.tokens.shape[1] > 0:
                tokens = dense.tokens.to(image.dtype)
                token_pe = dense.pos_embed.to(image.dtype)
                attention = None
                for block in self.osm_cross_modal_encoder:
                    image, tokens, attention = block(
                        image,
                        image_pe,
                        tokens,
                        token_pe,
                        ~dense.valid,
                        return_attention=True,
                    )
                return image, attention
        for block in self.osm_cross_modal_encoder:
            image = cast(TwoWayAttentionBlock, block).norm2(image)
        return image, None

    def fused_embedding(
        self, images: Tensor, graphs: HeteroData | Batch | None
    ) -> Tensor:
        """Pool the hybrid RS-OSM tokens of whole images into one embedding each.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch's OSM graphs, or None for the image-only hybrid path.

        Returns:
            ``(B, fusion_embed_dim)``: the mean of the hybrid tokens of :meth:`fuse`.
        """
        return self.fuse(self.patch_tokens(images), graphs)[0].mean(dim=1)

    def embed(
        self, images: Tensor, graphs: HeteroData | Batch | None = None
    ) -> 'GeoLinkEmbeddings':
        """Compute every deterministic embedding of a batch in one pass of the ViT.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch's OSM graphs, or None (OSM and fused embeddings then come
                from the image-only path: zeros for ``osm``).

        Returns:
            The patch tokens, pooled image, OSM, fused and contrastive embeddings.
        """
        b = images.shape[0]
        tokens = self.patch_tokens(images)
        pooled = tokens.mean(dim=1)
        image_proj = self._project_image(tokens)
        encoded = None
        if graphs is None:
            region = pooled.new_zeros(b, self.graph_aggr_embed_dim)
            has_osm = torch.zeros(b, dtype=torch.bool, device=images.device)
        else:
            inputs = self.osm_inputs(graphs, b)
            encoded = inputs, self.encode_osm(inputs.x, inputs)
            counts = self.node_counts(inputs)
            region = self.graph_embedding(encoded[1], inputs, counts > 0)
            has_osm = (counts > 0).any(dim=1)
        if encoded is None:
            osm_proj = F.normalize(
                self.osm_graph_consistency_prj(region).float(), dim=-1
            )
        else:
            osm_proj = self._project_osm(encoded[1], encoded[0], counts > 0, region)
        fused = self.fuse(tokens, graphs, encoded=encoded)[0].mean(dim=1)
        return GeoLinkEmbeddings(
            patch_tokens=tokens,
            image=pooled,
            osm=region,
            fused=fused,
            image_projected=image_proj,
            osm_projected=osm_proj,
            has_osm=has_osm,
        )

    # ------------------------------------------------------------------ pretraining step

    def forward(
        self,
        images: Tensor,
        graphs: HeteroData | Batch | None,
        generator: torch.Generator | None = None,
    ) -> GeoLinkOutput:
        """Run one pretraining step: MAE, image-OSM contrast and masked nodes.

        Args:
            images: Normalized images ``(B, C, H, W)``.
            graphs: The batch of ``B`` OSM graphs (``torch_geometric.data.Batch``), or
                None for an image-only (plain MAE) step.
            generator: Random generator on the images' device, for reproducible masks.

        Returns:
            The losses, predictions, masks and the 64-d embeddings.
        """
        b = images.shape[0]
        latent, mask, ids_restore, ids_keep = self.forward_img_encoder(
            images, generator=generator
        )
        pred_img = self.forward_img_decoder(latent, ids_restore)
        loss_rec = masked_patch_loss(
            pred_img, images, mask, self.patch_size, self.norm_pix_loss
        )
        # the grid readout needs every patch in its cell, the masked encoder only gives
        # the visible ones
        img_embedding = self._project_image(
            self.patch_tokens(images)
            if self.contrastive_readout == 'grid'
            else latent[:, 1:]
        )

        if graphs is None:
            zero = loss_rec.new_zeros(())
            empty = images.new_zeros(b, 0, self.osm_in_chans)
            w_rec = self.loss_weights[0]
            return GeoLinkOutput(
                loss=w_rec * loss_rec,
                loss_rec=loss_rec,
                loss_cont=zero,
                loss_node=zero,
                pred_img=pred_img,
                mask_img=mask,
                pred_osm=empty,
                target_osm=empty,
                mask_osm=torch.zeros(b, 0, dtype=torch.bool, device=images.device),
                img_embedding=img_embedding,
                osm_embedding=torch.zeros_like(img_embedding),
                has_osm=torch.zeros(b, dtype=torch.bool, device=images.device),
            )

        inputs = self.osm_inputs(graphs, b)
        counts = self.node_counts(inputs)
        present = counts > 0
        has_osm = present.any(dim=1)

        # mask nodes: replace their features by the per-type mask token
        node_mask = {}
        x_masked = {}
        for t in NODE_TYPES:
            node_mask[t] = random_node_mask(
                inputs.batch[t], b, self.osm_mask_ratio, generator
            )
            token = self.osm_mask_token[t].to(inputs.x[t].dtype)
            x_masked[t] = torch.where(node_mask[t].unsqueeze(-1), token, inputs.x[t])
        h = self.encode_osm(x_masked, inputs)

        # graph-level contrast
        osm_embedding = self._project_osm(h, inputs, present)
        loss_cont = info_nce_loss(
            img_embedding,
            osm_embedding,
            has_osm,
            self.temperature,
            self.gather_distributed,
        )

        # node-level reconstruction of (at most max_masked_nodes random) masked nodes
        # per graph
        masked = torch.cat([node_mask[t] for t in NODE_TYPES])
        noise = torch.rand(masked.numel(), device=images.device, generator=generator)
        dense = self.dense_osm_tokens(
            h, inputs, noise + (~masked).float() * 2, self.max_masked_nodes
        )
        is_masked = torch.zeros_like(dense.valid)
        for i, t in enumerate(NODE_TYPES):
            if node_mask[t].numel():
                rows = dense.node_index.clamp(max=node_mask[t].numel() - 1)
                is_masked |= dense.valid & (dense.node_type == i) & node_mask[t][rows]
        valid = dense.valid & is_masked

        image = self.img_fusion_mlp(latent[:, 1:])
        image_pe = self.fusion_img_pos_embed[:, 1:].expand(b, -1, -1)
        image_pe = image_pe.gather(
            1, ids_keep.unsqueeze(-1).expand(-1, -1, image_pe.shape[-1])
        ).to(image.dtype)
        tokens = dense.tokens
        for block in self.osm_cross_modal_encoder:
            image, tokens, _ = block(
                image, image_pe, tokens, dense.pos_embed.to(tokens.dtype), ~valid
            )
        pred_osm = self.osm_node_pred(tokens)
        loss_node = masked_node_loss(pred_osm, dense.features, valid)

        w_rec, w_cont, w_node = self.loss_weights
        return GeoLinkOutput(
            loss=w_rec * loss_rec + w_cont * loss_cont + w_node * loss_node,
            loss_rec=loss_rec,
            loss_cont=loss_cont,
            loss_node=loss_node,
            pred_img=pred_img,
            mask_img=mask,
            pred_osm=pred_osm,
            target_osm=dense.features,
            mask_osm=valid,
            img_embedding=img_embedding,
            osm_embedding=osm_embedding,
            has_osm=has_osm,
        )
