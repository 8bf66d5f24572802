# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

# %% [markdown]
# # Pretraining with `torchgeo fit`
#
# GeoLink pretraining is a TorchGeo task, `GeoLinkPretrain`, trained by the TorchGeo
# command line from a YAML file: `torchgeo fit --config geolink_pretrain.yaml` (that is
# what `make pretrain` runs). This tutorial runs the same command, from Python, on a
# *tiny* configuration (a ViT-Tiny on 64 x 64 windows of the demo data, two training
# steps) so that it finishes in seconds on a CPU; the real configuration only changes
# sizes.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from torchgeo.main import main

work = Path(tempfile.mkdtemp())

# %% [markdown]
# ## The configuration
#
# `model` names the task and its arguments, `data` the data module (here the embedded
# Helsinki demo: image rendered from OSM, OSM from the shipped extract), `trainer` the
# Lightning trainer. Everything can be overridden on the command line, e.g.
# `--trainer.devices 4` or `--model.init_args.lr 1e-4`.

# %%
config = f"""
seed_everything: 0
trainer:
  accelerator: cpu
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  log_every_n_steps: 1
  default_root_dir: {work}
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args:
      save_dir: {work}
model:
  class_path: torchgeo_geolink.tasks.GeoLinkPretrain
  init_args:
    model: vit_tiny_patch16_224
    img_size: 64
    lr: 1.0e-4
data:
  class_path: torchgeo_geolink.datamodules.GeoLinkDataModule
  init_args:
    root: {work / 'demo'}
    batch_size: 4
    patch_size: 64
    length: 8
"""
path = work / 'tiny_pretrain.yaml'
path.write_text(config)

# %% [markdown]
# ## Training
#
# `torchgeo.main.main` is the `torchgeo` command; `['fit', '--config', ...]` are its
# arguments.

# %%
main(['fit', '--config', str(path)])

# %% [markdown]
# ## What was logged
#
# The task logs the total loss and its three parts: the masked-image reconstruction
# (`rec`), the image-OSM contrastive loss (`cont`) and the masked OSM node
# reconstruction (`node`). A checkpoint is saved for the embeddings and segmentation
# tutorial.

# %%
metrics = pd.read_csv(next(work.glob('lightning_logs/version_*/metrics.csv')))
print(metrics.dropna(axis=1, how='all').tail())
checkpoint = next(work.glob('**/checkpoints/*.ckpt'))
print(checkpoint.name)

losses = [c for c in metrics.columns if c.startswith('train_') and 'loss' in c]
ax = (
    metrics[['step', *losses]]
    .dropna(how='all', subset=losses)
    .plot(x='step', marker='o', figsize=(6, 3.5))
)
ax.set_ylabel('loss')
plt.show()
