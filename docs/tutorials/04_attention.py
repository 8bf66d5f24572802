# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

# %% [markdown]
# # What the model links: attention of OSM objects over image patches
#
# In GeoLink's two-way block, every OSM object (a token built from its tags, its graph
# neighborhood and its position) attends to the image patches. That attention shows
# which part of the image the model associates with each object. This tutorial extracts
# it with `GeoLinkFusionEncoder.forward_with_attention` and draws it with
# `plot_attention`.
#
# To stay fast and offline it uses a ViT-Tiny trained for a single step on the demo
# data, so its attention is close to uniform; load the official checkpoint
# (`load_official_checkpoint(path, legacy=True)`, with graphs built by `CLIPTagEncoder`)
# to see the pretrained links.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from lightning.pytorch import Trainer

from torchgeo_geolink.datamodules import GeoLinkDataModule
from torchgeo_geolink.models import GeoLinkFusionEncoder
from torchgeo_geolink.osm import NODE_TYPES
from torchgeo_geolink.tasks import GeoLinkPretrain
from torchgeo_geolink.visualization import plot_attention, plot_graph

torch.manual_seed(0)
work = Path(tempfile.mkdtemp())
datamodule = GeoLinkDataModule(
    root=str(work / 'demo'), batch_size=2, patch_size=64, length=4
)
task = GeoLinkPretrain(model='vit_tiny_patch16_224', img_size=64)
Trainer(accelerator='cpu', fast_dev_run=1, logger=False, enable_progress_bar=False).fit(
    task, datamodule=datamodule
)
model = task.model.eval()

# %% [markdown]
# ## Attention of every OSM token over the patches
#
# The attention has shape `(B, M, L)`: for each of the `B` windows, `M` OSM tokens
# (padded to the largest graph) over the `L = h * w` patches. `dense_osm_tokens` tells
# which node each token is.

# %%
datamodule.setup('validate')
raw = next(iter(datamodule.val_dataloader()))
batch = datamodule.aug(raw)
encoder = GeoLinkFusionEncoder(
    model, output_layers=(len(model.img_encoder.blocks) - 1,)
)
with torch.no_grad():
    _, attention = encoder.forward_with_attention(batch['image'], batch['graph'])
    inputs = model.osm_inputs(batch['graph'], batch['image'].shape[0])
    tokens = model.dense_osm_tokens(
        model.encode_osm(inputs.x, inputs), inputs, None, encoder.max_nodes
    )
assert attention is not None
print(tuple(attention.shape), model.grid_size)

# %% [markdown]
# ## The first window's objects
#
# For window 0, keep the valid tokens, find each one's node type, index and centroid
# (the last `pos` point of a polygon, the first of a line), and show the attention of a
# few objects next to the graph.

# %%
valid = tokens.valid[0]
types = [NODE_TYPES[t] for t in tokens.node_type[0][valid].tolist()]
rows = tokens.node_index[0][valid].tolist()
graph = batch['graph']
anchor = {'polygon': -1, 'line': 0, 'point': 0}
positions = torch.stack([graph[t].pos[r, anchor[t]] for t, r in zip(types, rows)])
labels = [f'{t} {r}' for t, r in zip(types, rows)]
weights = attention[0][valid]

image = raw['image'][0].to(torch.uint8)
fig = plot_graph(image, graph.get_example(0), title='window 0')
plt.show()

chosen = [types.index(t) for t in ('polygon', 'line', 'point') if t in types]
fig = plot_attention(
    image, weights, chosen, grid=model.grid_size, labels=labels, positions=positions
)
plt.show()

# %% [markdown]
# Each panel is one object: the heat map is its attention over the patches (one color
# scale for all panels), the cross its centroid. A pretrained model concentrates an
# object's attention on the patches that show it (a building's roof, a road's course);
# this one-step model has not learnt that yet.
