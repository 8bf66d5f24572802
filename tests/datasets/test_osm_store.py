# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The columnar OSM store serves the samples of the per-feature implementation it replaced."""

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import shapely

DATA = Path(__file__).resolve().parents[1] / 'data' / 'osm_store'


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location('osm_store_data', DATA / 'data.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.fixture(scope='module')
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA / 'reference.npz') as data:
        return dict(data)


@pytest.mark.parametrize('graph_mode', ['induced', 'exact'])
@pytest.mark.parametrize('crs_name', ['utm', 'geo'])
def test_store_matches_reference(
    reference: dict[str, np.ndarray], crs_name: str, graph_mode: str
) -> None:
    ds = GEN.dataset(crs_name, graph_mode)
    if graph_mode == 'induced':
        np.testing.assert_array_equal(ds.kinds, reference[f'{crs_name}/kinds'])
        digest = hashlib.sha256(
            b''.join(shapely.to_wkb(ds.geometries, byte_order=1))
        ).hexdigest()
        assert digest == str(reference[f'{crs_name}/wkb_sha256'])
    windows = GEN.windows(ds, crs_name)
    assert windows
    for w, (xmin, ymin, xmax, ymax) in enumerate(windows):
        got: dict[str, np.ndarray] = {}
        prefix = f'{crs_name}/{graph_mode}/{w}'
        GEN.flatten(prefix, ds[xmin:xmax, ymin:ymax], got)
        assert set(got) == {k for k in reference if k.startswith(prefix + '/')}
        for key, value in got.items():
            if key.endswith('/x'):
                np.testing.assert_allclose(value, reference[key], rtol=0, atol=1e-5)
            else:
                np.testing.assert_array_equal(value, reference[key], err_msg=key)
