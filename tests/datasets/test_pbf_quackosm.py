# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSMDataset(pbf_reader='quackosm'): QuackOSM as an optional reader of .osm.pbf."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import shapely

from tests.conftest import REPO
from torchgeo_geolink.datasets import OSMDataset
from torchgeo_geolink.errors import OSMFileError

KOUVOLA_PBF = REPO / 'torchgeo_geolink' / 'data' / 'kouvola.osm.pbf'


def test_missing_quackosm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        'find_spec',
        lambda name, *args: None if name == 'quackosm' else find_spec(name, *args),
    )
    with pytest.raises(
        OSMFileError, match=r"pip install 'torchgeo-geolink\[quackosm\]"
    ):
        OSMDataset(KOUVOLA_PBF, pbf_reader='quackosm', progress=False)


def test_unknown_reader() -> None:
    with pytest.raises(ValueError, match="pbf_reader must be 'gdal' or 'quackosm'"):
        OSMDataset(KOUVOLA_PBF, pbf_reader='osmium', progress=False)  # ty: ignore[invalid-argument-type]


def test_layers_are_gdal_only() -> None:
    with pytest.raises(ValueError, match="layers=\\['points'\\] are GDAL's"):
        OSMDataset(
            KOUVOLA_PBF, layers=['points'], pbf_reader='quackosm', progress=False
        )


@pytest.fixture(scope='module')
def quackosm_kouvola() -> OSMDataset:
    # Not imported here: importing QuackOSM would register GeoArrow's Arrow types in
    # this process, which the reader keeps in its child process.
    for module in ('quackosm', 'duckdb_extensions'):  # offline: the spatial extension
        if importlib.util.find_spec(module) is None:
            pytest.skip(f'{module} is not installed')
    return OSMDataset(KOUVOLA_PBF, pbf_reader='quackosm', progress=False)


def test_quackosm_reads_what_gdal_reads(quackosm_kouvola: OSMDataset) -> None:
    # GDAL read after QuackOSM in the same process: the child process kept GeoArrow's
    # Arrow extension types out of this one.
    gdal = OSMDataset(KOUVOLA_PBF, progress=False)
    quack = quackosm_kouvola
    assert quack.reports[0].read == quack.reports[0].kept > 2000
    assert set(quack.store.strings) <= set(gdal.store.strings)
    assert not any(s.startswith('feature_id') for s in quack.store.strings)
    counts = np.bincount(quack.kinds, minlength=3)
    expected = np.bincount(gdal.kinds, minlength=3)
    assert (np.abs(counts - expected) <= 0.15 * expected + 5).all(), (counts, expected)
    assert quack.crs == gdal.crs


def test_quackosm_roi(quackosm_kouvola: OSMDataset) -> None:
    xmin, ymin, xmax, ymax = quackosm_kouvola.index.total_bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    roi = shapely.box(xmin, ymin, cx, cy)
    part = OSMDataset(KOUVOLA_PBF, pbf_reader='quackosm', roi=roi, progress=False)
    assert 0 < len(part.store) < len(quackosm_kouvola.store)
    assert shapely.intersects(part.geometries, roi.buffer(1e-9)).all()


def test_readers_have_their_own_cache_entries(
    tmp_path: Path, quackosm_kouvola: OSMDataset
) -> None:
    cache = tmp_path / 'cache'
    OSMDataset(KOUVOLA_PBF, cache_dir=cache, progress=False)
    quack = OSMDataset(
        KOUVOLA_PBF, cache_dir=cache, pbf_reader='quackosm', progress=False
    )
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2
    assert quack.tags == quackosm_kouvola.tags
