# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

# %% [markdown]
# # Embeddings and segmentation from a checkpoint
#
# A pretrained GeoLink gives two kinds of patch embeddings: *unimodal* ones from the
# image encoder alone, and a *hybrid* map in which every patch has attended to the OSM
# objects of its window through the pretrained two-way block. This tutorial extracts
# both from a checkpoint and fine-tunes a UPerNet segmentation model on them. To run in
# seconds on a CPU it first makes its own tiny checkpoint (a ViT-Tiny, one training step
# on the demo data); with the official weights, pass the `.pth` file instead (see "Using
# the official checkpoints").

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from lightning.pytorch import Trainer

from torchgeo_geolink.datamodules import GeoLinkDataModule
from torchgeo_geolink.datasets import DEMO_CLASSES, DEMO_WITHHELD_KEYS
from torchgeo_geolink.models import GeoLinkFusionEncoder
from torchgeo_geolink.tasks import GeoLinkPretrain, GeoLinkSegmentation
from torchgeo_geolink.visualization import plot_embedding_pca

torch.manual_seed(0)
work = Path(tempfile.mkdtemp())
datamodule = GeoLinkDataModule(
    root=str(work / 'demo'),
    demo_labels=True,
    drop_osm_keys=DEMO_WITHHELD_KEYS,
    batch_size=4,
    patch_size=64,
    length=8,
)

# %% [markdown]
# ## A (tiny) pretraining checkpoint

# %%
pretrain = GeoLinkPretrain(model='vit_tiny_patch16_224', img_size=64)
trainer = Trainer(
    accelerator='cpu', fast_dev_run=1, logger=False, enable_progress_bar=False
)
trainer.fit(pretrain, datamodule=datamodule)
checkpoint = work / 'pretrain.ckpt'
trainer.save_checkpoint(checkpoint)

# %% [markdown]
# ## Unimodal and hybrid embeddings
#
# `GeoLinkFusionEncoder` returns the token maps of chosen ViT blocks; when the last
# block is listed, its map is replaced by the hybrid image + OSM map. The images are
# normalized by the data module's `aug` as in training.

# %%
model = GeoLinkPretrain.load_from_checkpoint(checkpoint).model.eval()
depth = len(model.img_encoder.blocks)
fused_encoder = GeoLinkFusionEncoder(model, output_layers=(depth // 2, depth - 1))
image_encoder = GeoLinkFusionEncoder(model, output_layers=(depth - 1,), hybrid=False)

datamodule.setup('validate')
batch = datamodule.aug(next(iter(datamodule.val_dataloader())))
with torch.no_grad():
    fused_maps = fused_encoder(batch['image'], batch['graph'])
    (unimodal,) = image_encoder(batch['image'])
print([tuple(m.shape) for m in fused_maps], tuple(unimodal.shape))

# %% [markdown]
# A PCA of each map (three components as RGB) shows which patches the model considers
# alike.

# %%
raw = next(iter(datamodule.val_dataloader()))['image'][0]
fig = plot_embedding_pca(raw.to(torch.uint8), unimodal[0], fused_maps[-1][0])
plt.show()

# %% [markdown]
# ## Segmentation
#
# `GeoLinkSegmentation` builds the same encoder from the checkpoint (`weights=`), adds a
# UPerNet head and trains on the demo's land-use labels. They are derived from OSM
# land-use tags, so the data module was told to withhold those keys
# (`drop_osm_keys=DEMO_WITHHELD_KEYS`) from the graphs: the OSM input must not contain
# the answer. `multimodal=True` feeds the hybrid map; `multimodal=False` the image
# alone.

# %%
segmentation = GeoLinkSegmentation(
    model='vit_tiny_patch16_224',
    weights=str(checkpoint),
    img_size=64,
    output_layers=(2, 5, 8, 11),
    decoder_channels=32,
    num_classes=len(DEMO_CLASSES),
)
trainer = Trainer(
    accelerator='cpu', fast_dev_run=1, logger=False, enable_progress_bar=False
)
trainer.fit(segmentation, datamodule=datamodule)

segmentation.eval()
with torch.no_grad():
    logits = segmentation(batch['image'], batch['graph'])
prediction = logits.argmax(dim=1)
print(tuple(logits.shape))

fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), layout='constrained')
axes[0].imshow(raw.permute(1, 2, 0).to(torch.uint8).numpy())
axes[1].imshow(
    batch['mask'][0].numpy(), vmin=0, vmax=len(DEMO_CLASSES) - 1, cmap='tab10'
)
axes[2].imshow(prediction[0].numpy(), vmin=0, vmax=len(DEMO_CLASSES) - 1, cmap='tab10')
for ax, title in zip(axes, ('image', 'labels', 'prediction (1 step!)')):
    ax.set_title(title)
    ax.set_axis_off()
plt.show()
