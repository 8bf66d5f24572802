# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

# %% [markdown]
# # Your own raster and OSM files: paired samples and graphs
#
# This tutorial pairs a GeoTIFF with an OpenStreetMap file, samples windows where OSM
# exists, and looks at the GeoLink graph of each window. Any raster TorchGeo reads and
# any vector file GDAL reads (GeoJSON, GeoPackage, Shapefile, GeoParquet, `.osm.pbf`)
# will do; to stay offline we use the package's demo: a real OSM extract of Helsinki and
# an image *rendered* from it (synthetic, not a photograph).

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset

from torchgeo_geolink.datasets import (
    DEMO_OSM_PATH,
    OSMDataset,
    build_demo,
    collate_geolink,
    sample_to_graph,
)
from torchgeo_geolink.samplers import OSMRandomPatchSampler
from torchgeo_geolink.visualization import plot_graph

root = Path(tempfile.mkdtemp())
demo = build_demo(root)  # writes helsinki_demo_image.tif (and labels) once
print(demo.image, DEMO_OSM_PATH.name)

# %% [markdown]
# ## Two datasets, one intersection
#
# The image is a plain TorchGeo `RasterDataset`. The OSM file is an `OSMDataset`: read
# once, reprojected, tags normalized, geometries repaired and indexed. `image & osm`
# reprojects the OSM features to the image's CRS (here EPSG:3067, meters) and
# resolution.

# %%
image = RasterDataset(paths=demo.image)
osm = OSMDataset(paths=DEMO_OSM_PATH)
print(osm)
dataset = image & osm
print(dataset.crs, dataset.res)

# %% [markdown]
# ## Windows where OSM exists
#
# `OSMRandomPatchSampler` places windows where OSM features are, so few samples are
# wasted on empty graphs. Each sample holds the image chip and the window's graph
# flattened into `osm_*` tensors; `sample_to_graph` rebuilds the PyG `HeteroData`.

# %%
sampler = OSMRandomPatchSampler(dataset, size=224, length=4, generator=0)
windows = list(sampler)
sample = dataset[windows[0]]
graph = sample_to_graph(sample)
print(sample['image'].shape)
print(graph)

# %% [markdown]
# Node positions are normalized to the window (x right, y down), so the graph draws
# directly over the chip: here edges are colored by their spatial relation, and the
# small dots are each polygon's interior samples and each line's ends.

# %%
fig = plot_graph(
    sample['image'], graph, color_by='relation', show_positions=True, title='window 0'
)
plt.show()

# %% [markdown]
# The dataset's own `plot` draws the clipped features themselves by type.

# %%
fig = osm.plot(sample)
plt.show()

# %% [markdown]
# ## Batches
#
# `collate_geolink` stacks the images and joins the graphs into one PyG `Batch`, ready
# for the model.

# %%
loader = DataLoader(dataset, sampler=sampler, batch_size=4, collate_fn=collate_geolink)
batch = next(iter(loader))
print(batch['image'].shape)
print(batch['graph'])
print({t: batch['graph'][t].num_nodes for t in ('polygon', 'line', 'point')})
