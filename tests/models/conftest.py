# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Fixtures of the model tests."""

from collections.abc import Iterator

import pytest
import torch

from tests.models.geolink_testing import tiny_geolink
from torchgeo_geolink.models import GeoLink


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The tiny models are latency-bound: intra-op threads only add contention on a
    # shared CI machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> GeoLink:
    return tiny_geolink()
