# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The columnar OSM store serves the samples of the per-feature code it replaced."""

import hashlib
import importlib.util
import pickle
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import shapely
import torch
from pyproj import CRS
from torch.utils.data import DataLoader

from tests.conftest import CITY_CRS, CITY_ORIGIN, city_frame
from torchgeo_geolink.datasets import OSMDataset, collate_geolink, osm_reader, osm_store
from torchgeo_geolink.errors import InvalidFeatureError, OSMFileError
from torchgeo_geolink.osm import NODE_TYPES, HashingTagEncoder

X0, Y0 = CITY_ORIGIN
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


# ---------------------------------------------------------------------- on-disk cache


def _same_samples(a: OSMDataset, b: OSMDataset, window: tuple[float, ...]) -> None:
    xmin, ymin, xmax, ymax = window
    sa, sb = a[xmin:xmax, ymin:ymax], b[xmin:xmax, ymin:ymax]
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def _mapped(table: object) -> bool:
    """Tell whether an array (or each array of a sparse table) is a memory map's view."""
    if isinstance(table, scipy.sparse.csr_array):
        return all(_mapped(a) for a in (table.data, table.indices, table.indptr))
    base = table
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return False


CITY_WINDOW = (X0 + 20, Y0 + 10, X0 + 150, Y0 + 170)


def test_cache_reused(
    tmp_path: Path, city_gpkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osm_store, 'SPARSE_TABLE_MIN_BYTES', 0)  # a sparse table
    cache = tmp_path / 'cache'
    plain = OSMDataset(city_gpkg)
    first = OSMDataset(city_gpkg, cache_dir=cache)
    assert not isinstance(first.store.table.data, np.memmap)  # built here
    _same_samples(plain, first, CITY_WINDOW)  # also saves positions and relations
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1
    saved = {p.name: p.stat().st_mtime_ns for p in entries[0].iterdir()}
    assert {'meta.json', 'table_data.npy', 'positions.npy', 'edges_dst.npy'} <= set(
        saved
    )

    second = OSMDataset(city_gpkg, cache_dir=cache)
    # Opened from the entry: mapped arrays, nothing rebuilt or rewritten.
    assert isinstance(second.store.table, scipy.sparse.csr_array)
    assert _mapped(second.store.table)
    assert isinstance(second.store.tag_pairs, np.memmap)
    assert isinstance(second.store.positions, np.memmap)
    assert second.store.edges is not None
    assert isinstance(second.store.edges.dst, np.memmap)
    _same_samples(plain, second, CITY_WINDOW)
    assert second.tags == plain.tags
    assert [r.kept for r in second.reports] == [r.kept for r in plain.reports]
    assert {p.name: p.stat().st_mtime_ns for p in entries[0].iterdir()} == saved


class DenseEncoder(HashingTagEncoder):
    """Hashing embeddings plus a constant: no zero entry."""

    @property
    def identity(self) -> str:
        return 'dense-' + super().identity

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return super().encode(texts) + 0.01


def test_sparse_tag_table_gives_the_dense_sums(
    city_gpkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(OSMDataset(city_gpkg).store.table, np.ndarray)  # small: dense
    monkeypatch.setattr(osm_store, 'SPARSE_TABLE_MIN_BYTES', 0)
    ds = OSMDataset(city_gpkg)
    table = ds.store.table
    # the hashing encoder writes a few columns of 512 per string
    assert isinstance(table, scipy.sparse.csr_array)
    assert table.nnz < 0.05 * table.shape[0] * table.shape[1]
    rows = np.arange(len(ds.store))
    sparse = ds.store.embed(rows)
    ds.store.table = table.toarray()
    assert torch.equal(ds.store.embed(rows), sparse)  # bit for bit


def test_dense_encoder_keeps_a_dense_table(tmp_path: Path, city_gpkg: Path) -> None:
    encoder = DenseEncoder(dim=32)
    ds = OSMDataset(city_gpkg, tag_encoder=encoder, cache_dir=tmp_path)
    assert isinstance(ds.store.table, np.ndarray)
    torch.testing.assert_close(
        ds.store.table, encoder.encode(ds.store.strings).numpy(), rtol=0, atol=0
    )
    (entry,) = (p for p in tmp_path.iterdir() if p.is_dir())
    assert (entry / 'table.npy').is_file()
    again = OSMDataset(city_gpkg, tag_encoder=encoder, cache_dir=tmp_path)
    assert isinstance(again.store.table, np.ndarray) and _mapped(again.store.table)
    torch.testing.assert_close(again.embeddings, ds.embeddings, rtol=0, atol=0)


def test_cache_invalidated(tmp_path: Path) -> None:
    cache = tmp_path / 'cache'
    path = tmp_path / 'city.gpkg'
    city_frame().to_file(path)
    before = OSMDataset(path, cache_dir=cache)
    n = len(before.store)

    frame = city_frame()
    extra = gpd.GeoDataFrame(
        {'amenity': ['bench']}, geometry=[shapely.Point(X0 + 1, Y0 + 1)], crs=CITY_CRS
    )
    pd_frame = gpd.GeoDataFrame(
        pd.concat([frame, extra], ignore_index=True), crs=CITY_CRS
    )
    pd_frame.to_file(path)  # same name, new content
    after = OSMDataset(path, cache_dir=cache)
    assert len(after.store) == n + 1
    assert not _mapped(after.store.table)  # rebuilt

    other = OSMDataset(path, cache_dir=cache, tag_encoder=HashingTagEncoder(dim=64))
    assert not _mapped(other.store.table)  # another encoder: rebuilt
    assert other.store.table.shape[1] == 64
    exact = OSMDataset(path, cache_dir=cache, graph_mode='exact')
    assert not _mapped(exact.store.table)  # another graph mode
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 4
    again = OSMDataset(path, cache_dir=cache, tag_encoder=HashingTagEncoder(dim=64))
    assert _mapped(again.store.table)


def test_cache_follows_crs_change(tmp_path: Path, city_raster: Path) -> None:
    # image & osm sets the OSM dataset's CRS: the reprojected store gets its own entry,
    # reused next time.
    cache = tmp_path / 'cache'
    city_frame().to_crs(4326).to_file(tmp_path / 'city.geojson')
    reference = OSMDataset(tmp_path / 'city.geojson', crs=CITY_CRS)
    for run in range(2):
        osm = OSMDataset(tmp_path / 'city.geojson', cache_dir=cache)
        assert osm.crs == CRS.from_epsg(4326)
        osm.crs = CITY_CRS
        assert _mapped(osm.store.table) == (run == 1)
        _same_samples(reference, osm, CITY_WINDOW)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_cache_shared_by_workers(tmp_path: Path, city_gpkg: Path) -> None:
    cache = tmp_path / 'cache'
    ds = OSMDataset(city_gpkg, cache_dir=cache)
    plain = OSMDataset(city_gpkg)
    # A cache-backed dataset pickles as the path of its entry: workers map the same
    # files (no copy).
    builder = len(pickle.dumps(ds.builder))  # the encoder and the key-weight table
    assert len(pickle.dumps(ds)) - builder < 10_000 < len(pickle.dumps(plain)) - builder
    clone = pickle.loads(pickle.dumps(ds))
    assert _mapped(clone.store.table)
    assert clone.store.entry == ds.store.entry
    _same_samples(plain, clone, CITY_WINDOW)

    windows = [
        (X0 + dx, X0 + dx + 60, Y0 + dy, Y0 + dy + 60)
        for dx in (0, 50, 100)
        for dy in (0, 70)
    ]
    sampler = [(slice(a, b), slice(c, d)) for a, b, c, d in windows]
    serial = list(
        DataLoader(ds, sampler=sampler, batch_size=2, collate_fn=collate_geolink)
    )
    parallel = list(
        DataLoader(
            ds, sampler=sampler, batch_size=2, num_workers=2, collate_fn=collate_geolink
        )
    )
    for a, b in zip(serial, parallel, strict=True):
        for t in NODE_TYPES:
            torch.testing.assert_close(a['graph'][t].x, b['graph'][t].x)
            torch.testing.assert_close(a['graph'][t].id, b['graph'][t].id)


def test_cache_waits_for_builder(tmp_path: Path, city_gpkg: Path) -> None:
    # A rank other than 0 never builds: it waits for the entry, then maps it.
    from torchgeo_geolink.datasets import osm_cache

    cache = tmp_path / 'cache'
    ds = OSMDataset(city_gpkg, cache_dir=cache)
    key = ds._cache_key(None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('RANK', '1')
        mapped = OSMDataset(city_gpkg, cache_dir=cache)
        assert _mapped(mapped.store.table)
        with pytest.raises(OSMFileError, match='no OSM store after waiting'):
            osm_cache.open_or_build(
                cache, 'missing', lambda: ds.store, mapped._load, timeout=0.3
            )
    assert (cache / key / 'meta.json').is_file()


# ---------------------------------------------------------- reading only what is needed


def test_roi_reads_only_the_region() -> None:
    full = OSMDataset(GEN.PBF)
    xmin, ymin, _, _ = full.index.total_bounds
    roi = (xmin + 0.004, ymin + 0.004, xmin + 0.010, ymin + 0.008)
    part = OSMDataset(GEN.PBF, roi=roi)
    assert 0 < len(part.store) < len(full.store) / 2
    assert part.reports[0].read < full.reports[0].read
    assert shapely.intersects(part.geometries, shapely.box(*roi)).all()
    # A window inside the region gives the same nodes (rows are renumbered).
    a = full[roi[0] + 0.001 : roi[2] - 0.001, roi[1] + 0.001 : roi[3] - 0.001]
    b = part[roi[0] + 0.001 : roi[2] - 0.001, roi[1] + 0.001 : roi[3] - 0.001]
    for t in NODE_TYPES:
        assert len(a[f'osm_{t}_id']) > 0
        torch.testing.assert_close(a[f'osm_{t}_pos'], b[f'osm_{t}_pos'], rtol=0, atol=0)
        torch.testing.assert_close(a[f'osm_{t}_x'], b[f'osm_{t}_x'])


def test_keys_filter(city_gpkg: Path) -> None:
    ds = OSMDataset(city_gpkg, keys=['building'])
    assert np.bincount(ds.kinds, minlength=3).tolist() == [16, 0, 0]
    assert all('building' in t and 'building levels' in t for t in ds.tags)
    assert ds.reports[0].dropped_unmatched == 26
    assert ds.reports[0].kept == 16


@pytest.mark.parametrize('chunk', [1, 7])
def test_chunked_read_gives_the_whole_read(
    city_gpkg: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    def read() -> osm_reader.FileFeatures:
        return osm_reader.read_features(
            str(city_gpkg),
            keys=['building', 'highway'],
            drop_keys=['building levels'],
            tag_keys=['name'],
        )

    whole = read()
    monkeypatch.setattr(osm_reader, 'READ_CHUNK', chunk)
    parts = read()
    assert len(whole.geometries) == 10  # the streets: buildings carry 'levels'
    assert shapely.equals_exact(whole.geometries, parts.geometries).all()
    assert (whole.kinds == parts.kinds).all()
    tags = [whole.tags.tags(i) for i in range(len(whole.tags))]
    assert tags == [parts.tags.tags(i) for i in range(len(parts.tags))]
    assert tags[0] == {'name': 'Street 0'}
    assert whole.report == parts.report
    assert whole.report.dropped_keys == 16


# ---------------------------------------------------------------- reports and bad input


def test_report_reasons(tmp_path: Path) -> None:
    nan = float('nan')
    geoms = [
        shapely.Point(X0 + 1, Y0 + 1),
        shapely.Point(nan, Y0),  # non-finite, not empty
        shapely.LineString([(X0, Y0), (X0 + 5, nan)]),
        shapely.Polygon(),  # empty
        shapely.MultiPolygon(
            [shapely.box(X0, Y0, X0 + 2, Y0 + 2)]
        ),  # one part: not exploded
        shapely.MultiPoint([(X0, Y0), (X0 + 1, Y0)]),  # two parts: exploded
        shapely.Polygon(
            [(X0, Y0), (X0 + 1, Y0), (X0 + 2, Y0), (X0, Y0)]
        ),  # collapses to a line
    ]
    frame = gpd.GeoDataFrame(
        {'name': [f'f{i}' for i in range(len(geoms))]}, geometry=geoms, crs=CITY_CRS
    )
    frame.to_file(tmp_path / 'odd.gpkg')
    with pytest.warns(UserWarning, match=r'odd\.gpkg.*2 with NaN') as caught:
        ds = OSMDataset(tmp_path / 'odd.gpkg')
    assert sum('odd.gpkg' in str(w.message) for w in caught) == 1  # once per file
    report = ds.reports[0]
    assert report.read == 7
    assert report.dropped_nonfinite == 2
    assert report.dropped_empty == 1
    assert report.dropped_degenerate == 1
    assert report.exploded == 1
    assert (
        report.kept == 4
    )  # the point, the polygon and the two points of the multipoint
    assert report.read == 3 + report.dropped


def test_unprojectable_feature_dropped_or_strict(tmp_path: Path) -> None:
    ortho = CRS.from_proj4('+proj=ortho +lat_0=60 +lon_0=25 +datum=WGS84 +units=m')
    frame = gpd.GeoDataFrame(
        {'name': ['far side', 'near', 'road']},
        geometry=[
            shapely.Point(
                -155, -60
            ),  # the far side of the globe: no orthographic coordinates
            shapely.Point(25, 60.01),
            shapely.LineString([(24.9, 60), (25.1, 60)]),
        ],
        crs=4326,
    )
    frame.to_file(tmp_path / 'globe.geojson')
    with pytest.warns(
        UserWarning, match=r"globe\.geojson: feature 1 \(\{'name': 'far side'\}\)"
    ):
        ds = OSMDataset(tmp_path / 'globe.geojson', crs=ortho)
    assert len(ds.store) == 2
    assert ds.reports[0].dropped_reprojection == 1
    assert ds.reports[0].kept == 2
    assert [t['name'] for t in ds.tags] == ['road', 'near']  # lines before points
    assert np.isfinite(ds.store.bounds).all()
    check = ds[-10000:10000, -10000:10000]
    assert len(check['osm_point_id']) == 1
    with pytest.raises(InvalidFeatureError, match=r'globe\.geojson: feature 1'):
        OSMDataset(tmp_path / 'globe.geojson', crs=ortho, strict=True)
    # The same through a CRS change after loading.
    later = OSMDataset(tmp_path / 'globe.geojson')
    with pytest.warns(UserWarning, match='cannot be reprojected'):
        later.crs = ortho
    assert len(later.store) == 2


@pytest.mark.parametrize(
    ('x', 'y', 'match'),
    [
        ((10, 10), (0, 50), 'empty window \\(zero width\\)'),
        ((0, 50), (20, 20), 'empty window \\(zero height\\)'),
        ((50, 0), (0, 50), 'inverted window \\(x from'),
        ((0, 50), (50, 0), 'inverted window \\(y from'),
    ],
)
def test_empty_and_inverted_windows(
    city_gpkg: Path, x: tuple[float, float], y: tuple[float, float], match: str
) -> None:
    ds = OSMDataset(city_gpkg)
    with pytest.raises(IndexError, match=match):
        ds[X0 + x[0] : X0 + x[1], Y0 + y[0] : Y0 + y[1]]


def test_relations_once_in_the_final_crs(tmp_path: Path) -> None:
    # image & osm sets the CRS after creation: only the geometries are reprojected, the
    # relations are derived once, in the final CRS, and equal those of a dataset created
    # in that CRS.
    city_frame().to_crs(4326).to_file(tmp_path / 'city.geojson')
    lazy = OSMDataset(tmp_path / 'city.geojson')
    assert lazy.store._edges is None and lazy.store._positions is None
    lazy.crs = CITY_CRS
    assert lazy.store._edges is None
    direct = OSMDataset(tmp_path / 'city.geojson', crs=CITY_CRS)
    assert direct.store._edges is not None  # crs given: prepared at creation
    _same_samples(direct, lazy, CITY_WINDOW)
    assert lazy.store._edges is not None
    edges = lazy.store.edges
    assert edges is not None and direct.store.edges is not None
    np.testing.assert_array_equal(edges.dst, direct.store.edges.dst)
    np.testing.assert_array_equal(edges.attr, direct.store.edges.attr)
