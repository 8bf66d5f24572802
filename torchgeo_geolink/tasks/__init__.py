# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning tasks (TorchGeo BaseTask) for GeoLink pretraining and segmentation."""

__all__: tuple[str, ...] = ()
