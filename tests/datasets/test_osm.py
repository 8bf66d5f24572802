# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

import pickle
from pathlib import Path

import geopandas as gpd
import matplotlib
import numpy as np
import pytest
import shapely
import shapely.affinity
import torch
from matplotlib.figure import Figure
from pyproj import CRS, Transformer
from torch.utils.data import DataLoader
from torch_geometric.data import Batch
from torchgeo.datasets import IntersectionDataset, RasterDataset
from torchgeo.samplers import RandomPatchSampler

from tests.conftest import (
    CITY_CRS,
    CITY_ORIGIN,
    HELSINKI_PBF,
    city_frame,
    write_geotiff,
)
from torchgeo_geolink.datasets import OSMDataset, collate_geolink, sample_to_graph
from torchgeo_geolink.errors import InvalidFeatureError, OSMFileError
from torchgeo_geolink.osm import EDGE_ATTR_DIMS, EDGE_TYPES, NODE_TYPES, POS_POINTS

matplotlib.use('Agg')

X0, Y0 = CITY_ORIGIN


def node_count(sample: dict[str, torch.Tensor]) -> int:
    return sum(len(sample[f'osm_{t}_id']) for t in NODE_TYPES)


def check_contract(sample: dict[str, torch.Tensor], dim: int = 512) -> None:
    assert all(k.startswith('osm_') for k in sample)
    for t in NODE_TYPES:
        n = len(sample[f'osm_{t}_id'])
        assert sample[f'osm_{t}_x'].shape == (n, dim)
        assert sample[f'osm_{t}_x'].dtype == torch.float32
        assert sample[f'osm_{t}_pos'].shape == (n, POS_POINTS[t], 2)
        assert sample[f'osm_{t}_pos'].dtype == torch.float32
        assert sample[f'osm_{t}_id'].dtype == torch.long
    for src, _, dst in EDGE_TYPES:
        index = sample[f'osm_{src}_to_{dst}_edge_index']
        attr = sample[f'osm_{src}_to_{dst}_edge_attr']
        assert index.dtype == torch.long
        assert index.shape[0] == 2
        assert attr.shape == (index.shape[1], EDGE_ATTR_DIMS[src, 'to', dst])
        if index.numel():
            assert int(index[0].max()) < len(sample[f'osm_{src}_id'])
            assert int(index[1].max()) < len(sample[f'osm_{dst}_id'])
            assert torch.all(attr.sum(dim=1) == 1)
    assert sample['osm_bounds'].dtype == torch.float64


class Raster(RasterDataset):
    filename_glob = '*.tif'


@pytest.mark.parametrize('suffix', ['geojson', 'gpkg', 'shp', 'parquet'])
def test_formats(tmp_path: Path, suffix: str) -> None:
    frame = city_frame()
    path = tmp_path / f'city.{suffix}'
    if suffix == 'parquet':
        frame.to_parquet(path)
    elif suffix == 'shp':
        # One geometry type per shapefile, tags as GeoLink labels (shapefile field names
        # are cut at 10 chars).
        path = tmp_path / 'shp'
        path.mkdir()
        types = frame.geom_type.to_numpy()
        for kind in ('Polygon', 'LineString', 'Point'):
            part = frame[types == kind]
            labels = [
                ';'.join(
                    f'{k.replace(":", " ")}:{v}'
                    for k, v in row.items()
                    if k != 'geometry' and isinstance(v, str)
                )
                for row in part.to_dict('records')
            ]
            gpd.GeoDataFrame(
                {'label': labels}, geometry=part.geometry.values, crs=CITY_CRS
            ).to_file(path / f'{kind}.shp')
    else:
        frame.to_file(path)
    ds = OSMDataset(path)
    assert len(ds) == (3 if suffix == 'shp' else 1)
    assert ds.crs == CITY_CRS
    assert ds.res == (1.0, 1.0)
    assert len(ds.geometries) == len(frame)
    assert np.bincount(ds.kinds, minlength=3).tolist() == [16, 10, 16]
    building = next(t for t in ds.tags if 'building' in t)
    assert building['building'] == 'yes'
    assert (
        'building levels' in building
    )  # ':' in keys becomes a space, as GeoLink writes them
    sample = ds[X0 : X0 + 100, Y0 : Y0 + 100]
    check_contract(sample)
    assert node_count(sample) > 0


def test_directory_and_mismatched_crs(tmp_path: Path) -> None:
    # Two files in different CRSs: both end up in the dataset CRS, next to sidecar files
    # that are not read.
    city_frame().to_file(tmp_path / 'a.gpkg')
    shifted = city_frame(origin=(X0 + 400, Y0)).to_crs(4326)
    shifted.to_file(tmp_path / 'b.geojson')
    (tmp_path / 'notes.txt').write_text('not a vector file')
    ds = OSMDataset(tmp_path)
    assert len(ds) == 2
    assert ds.crs == CITY_CRS
    _, ymin, xmax, _ = ds.index.total_bounds
    assert xmax == pytest.approx(X0 + 600, abs=0.01)
    assert ymin == pytest.approx(Y0, abs=0.01)


def test_tag_forms(tmp_path: Path) -> None:
    square = shapely.box(X0, Y0, X0 + 10, Y0 + 10)
    frames = {
        'label': gpd.GeoDataFrame(
            {'label': ['building:yes;addr street:Main St']},
            geometry=[square],
            crs=CITY_CRS,
        ),
        'hstore': gpd.GeoDataFrame(
            {'other_tags': ['"building"=>"yes","addr:street"=>"Main St"']},
            geometry=[square],
            crs=CITY_CRS,
        ),
        'columns': gpd.GeoDataFrame(
            {'building': ['yes'], 'addr:street': ['Main St']},
            geometry=[square],
            crs=CITY_CRS,
        ),
    }
    for name, frame in frames.items():
        frame.to_file(tmp_path / f'{name}.geojson')
        ds = OSMDataset(tmp_path / f'{name}.geojson')
        assert ds.tags == [{'building': 'yes', 'addr street': 'Main St'}], name
    embeddings = [OSMDataset(tmp_path / f'{n}.geojson').embeddings for n in frames]
    torch.testing.assert_close(embeddings[0], embeddings[1])
    torch.testing.assert_close(embeddings[0], embeddings[2])


def test_odd_characters_in_tags(tmp_path: Path) -> None:
    tags = '"name"=>"Café \\"Ä\\" => ;:,", "note"=>"línea\\nnueva 日本"'
    frame = gpd.GeoDataFrame(
        {'other_tags': [tags]}, geometry=[shapely.Point(X0 + 5, Y0 + 5)], crs=CITY_CRS
    )
    frame.to_file(tmp_path / 'odd.gpkg')
    ds = OSMDataset(tmp_path / 'odd.gpkg')
    assert ds.tags[0]['name'] == 'Café "Ä" => ;:,'
    sample = ds[X0 : X0 + 10, Y0 : Y0 + 10]
    assert sample['osm_point_x'].shape == (1, 512)
    assert torch.isfinite(sample['osm_point_x']).all()


def test_helsinki_pbf() -> None:
    ds = OSMDataset(HELSINKI_PBF, crs=CRS.from_epsg(32635), res=1.0)
    report = ds.reports[0]
    assert report.repaired > 0  # the extract's multipolygons hold broken rings
    assert report.kept == len(ds.geometries)
    # GDAL types every area as a MultiPolygon: only those with several parts count as
    # exploded.
    assert report.exploded == 3
    assert report.dropped_nonfinite == 0
    assert report.dropped_empty + report.dropped_degenerate == 28
    assert all(np.bincount(ds.kinds, minlength=3) > 100)
    xmin, ymin, xmax, ymax = ds.index.total_bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    sample = ds[cx : cx + 224, cy : cy + 224]
    check_contract(sample)
    assert 100 < node_count(sample) < 2000
    pos = torch.cat([sample[f'osm_{t}_pos'][:, -1] for t in ('line', 'point')])
    assert pos.min() >= -1e-4
    assert pos.max() <= 1 + 1e-4


def test_image_and_osm_dataloader(tmp_path: Path, city_raster: Path) -> None:
    # OSM in EPSG:4326 joined to a UTM raster: the OSM dataset is reprojected in memory.
    city_frame().to_crs(4326).to_file(tmp_path / 'city.geojson')
    osm = OSMDataset(tmp_path / 'city.geojson')
    image = Raster(city_raster.parent)
    ds = image & osm
    assert isinstance(ds, IntersectionDataset)
    assert osm.crs == image.crs
    assert osm.res == image.res
    sampler = RandomPatchSampler(ds, size=64, length=6, generator=0)
    loader = DataLoader(ds, sampler=sampler, batch_size=3, collate_fn=collate_geolink)
    batches = list(loader)
    assert len(batches) == 2
    batch = batches[0]
    assert batch['image'].shape == (3, 3, 64, 64)
    assert batch['bounds'].shape == (3, 9)
    assert batch['transform'].shape == (3, 9)
    graph = batch['graph']
    assert isinstance(graph, Batch)
    assert graph.num_graphs == 3
    for t in NODE_TYPES:
        assert graph[t].ptr.shape == (4,)
    assert graph.bounds.shape == (3, 4)


def test_alignment_4326_osm_on_utm_raster(tmp_path: Path) -> None:
    # A square burned into a UTM GeoTIFF; its polygon stored in EPSG:4326. After
    # `image & osm` the polygon's node positions must fall on the burned pixels.
    square = shapely.box(X0 + 60, Y0 + 90, X0 + 100, Y0 + 130)
    write_geotiff(
        tmp_path / 'img' / 'image.tif',
        (X0, Y0, X0 + 200, Y0 + 200),
        CITY_CRS,
        burn=[(square, 1)],
    )
    frame = gpd.GeoDataFrame(
        {'building': ['yes']}, geometry=[square], crs=CITY_CRS
    ).to_crs(4326)
    frame.to_file(tmp_path / 'square.geojson')
    ds = Raster(tmp_path / 'img') & OSMDataset(tmp_path / 'square.geojson')
    sample = ds[X0 + 40 : X0 + 168, Y0 + 50 : Y0 + 178]
    image = sample['image'][0]
    assert image.shape == (128, 128)
    pos = sample['osm_polygon_pos'][0]
    assert pos.shape == (4, 2)
    cols = (pos[:, 0] * 128).long()
    rows = (pos[:, 1] * 128).long()
    assert torch.all(image[rows, cols] == 255)
    # Centroid: pixel (col 40, row 68) from the top-left corner of the window, to within
    # a pixel.
    torch.testing.assert_close(
        pos[3] * 128, torch.tensor([40.0, 68.0]), atol=1.0, rtol=0
    )


def test_induced_and_exact_agree(city_gpkg: Path) -> None:
    induced = OSMDataset(city_gpkg)
    exact = OSMDataset(city_gpkg, graph_mode='exact')
    for window in [
        (X0 + 30, X0 + 130, Y0 + 20, Y0 + 150),
        (X0, X0 + 200, Y0, Y0 + 200),
    ]:
        a = induced[window[0] : window[1], window[2] : window[3]]
        b = exact[window[0] : window[1], window[2] : window[3]]
        for t in NODE_TYPES:
            torch.testing.assert_close(a[f'osm_{t}_id'], b[f'osm_{t}_id'])
            torch.testing.assert_close(
                a[f'osm_{t}_pos'], b[f'osm_{t}_pos'], atol=1e-5, rtol=0
            )
            torch.testing.assert_close(a[f'osm_{t}_x'], b[f'osm_{t}_x'])
        # Same-type relations of whole features agree (only clipping-dependent relations
        # may differ).
        for key in (
            'osm_polygon_to_polygon_edge_index',
            'osm_point_to_polygon_edge_index',
        ):
            edges_a = {tuple(e) for e in a[key].T.tolist()}
            edges_b = {tuple(e) for e in b[key].T.tolist()}
            assert edges_a == edges_b


def test_cut_features_exploded(tmp_path: Path) -> None:
    # A U-shaped polygon cut by the window into two parts: two nodes with the same id,
    # sharing relations.
    u_shape = shapely.Polygon(
        [(0, 0), (30, 0), (30, 30), (20, 30), (20, 10), (10, 10), (10, 30), (0, 30)]
    )
    u_shape = shapely.affinity.translate(u_shape, X0, Y0)
    point = shapely.Point(X0 + 15, Y0 + 5)
    frame = gpd.GeoDataFrame(
        {'landuse': ['grass', None], 'amenity': [None, 'bench']},
        geometry=[u_shape, point],
    )
    frame.set_crs(CITY_CRS).to_file(tmp_path / 'u.gpkg')
    for mode in ('induced', 'exact'):
        ds = OSMDataset(tmp_path / 'u.gpkg', graph_mode=mode)
        sample = ds[X0 : X0 + 30, Y0 + 20 : Y0 + 30]
        assert sample['osm_polygon_id'].tolist() == [0, 0]
        assert len(sample['osm_point_id']) == 0
        self_loops = sample['osm_polygon_to_polygon_edge_index']
        assert sorted(map(tuple, self_loops.T.tolist())) == [(0, 0), (1, 1)]
        full = ds[X0 : X0 + 30, Y0 : Y0 + 30]
        assert full['osm_polygon_to_point_edge_index'].T.tolist() == [[0, 0]]


def test_bad_geometries(tmp_path: Path) -> None:
    geoms = [
        shapely.Polygon(
            [(0, 0), (10, 10), (10, 0), (0, 10)]
        ),  # bow-tie: invalid, repaired into two triangles
        shapely.MultiPoint([(1, 1), (2, 2)]),
        shapely.GeometryCollection(
            [shapely.Point(3, 3), shapely.LineString([(0, 5), (9, 5)])]
        ),
        shapely.LineString([(0, 1, 5), (9, 1, 7)]),  # 3-D
        shapely.Polygon(),  # empty
        None,
    ]
    geoms = [
        shapely.affinity.translate(g, X0, Y0) if g is not None else None for g in geoms
    ]
    frame = gpd.GeoDataFrame(
        {'name': [f'f{i}' for i in range(len(geoms))]}, geometry=geoms, crs=CITY_CRS
    )
    frame.to_file(tmp_path / 'bad.gpkg')
    ds = OSMDataset(tmp_path / 'bad.gpkg')
    report = ds.reports[0]
    assert report.read == 6
    assert report.repaired == 1
    assert (
        report.exploded == 2
    )  # multipoint and collection (the repaired bow-tie is counted as repaired)
    assert report.dropped_empty == 2
    assert np.bincount(ds.kinds, minlength=3).tolist() == [2, 2, 3]
    assert shapely.is_valid(ds.geometries).all()
    assert not shapely.has_z(ds.geometries).any()
    sample = ds[X0 : X0 + 10, Y0 : Y0 + 10]
    check_contract(sample)


def test_window_without_features_and_outside(city_gpkg: Path) -> None:
    ds = OSMDataset(city_gpkg)
    empty = ds[X0 + 44 : X0 + 46, Y0 + 44 : Y0 + 46]  # inside a block, between features
    check_contract(empty)
    assert node_count(empty) == 0
    graph = sample_to_graph(empty)
    assert graph['polygon'].num_nodes == 0
    with pytest.raises(IndexError, match='not found'):
        ds[X0 + 1000 : X0 + 1100, Y0 : Y0 + 100]


def test_missing_crs(tmp_path: Path) -> None:
    frame = city_frame()
    frame = gpd.GeoDataFrame(
        frame.drop(columns='geometry'), geometry=list(frame.geometry), crs=None
    )
    frame.to_file(tmp_path / 'nocrs.geojson')
    # GDAL reads a GeoJSON without "crs" as WGS 84: UTM coordinates must not be taken
    # for degrees.
    with pytest.raises(OSMFileError, match=r'nocrs\.geojson.*not longitudes/latitudes'):
        OSMDataset(tmp_path / 'nocrs.geojson')
    frame[frame.geom_type == 'Polygon'][['building', 'geometry']].to_file(
        tmp_path / 'nocrs.shp'
    )
    (tmp_path / 'nocrs.prj').unlink(missing_ok=True)
    with pytest.raises(
        OSMFileError, match=r'nocrs\.shp.*no coordinate reference system'
    ):
        OSMDataset(tmp_path / 'nocrs.shp')
    ds = OSMDataset(tmp_path / 'nocrs.shp', source_crs=32635)
    assert ds.crs == CITY_CRS


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / 'corrupt.gpkg').write_bytes(b'not a geopackage at all')
    with pytest.raises(OSMFileError, match=r'corrupt\.gpkg'):
        OSMDataset(tmp_path / 'corrupt.gpkg')
    (tmp_path / 'zero.geojson').write_bytes(b'')
    with pytest.raises(OSMFileError, match=r'zero\.geojson'):
        OSMDataset(tmp_path / 'zero.geojson')
    (tmp_path / 'corrupt.parquet').write_bytes(b'PAR1 garbage')
    with pytest.raises(OSMFileError, match=r'corrupt\.parquet'):
        OSMDataset(tmp_path / 'corrupt.parquet')
    with pytest.raises(OSMFileError, match='no such file'):
        OSMDataset(tmp_path / 'missing.gpkg')
    (tmp_path / 'empty_dir').mkdir()
    with pytest.raises(OSMFileError, match='no vector file'):
        OSMDataset(tmp_path / 'empty_dir')
    with pytest.raises(OSMFileError, match='layer'):
        city_frame().to_file(tmp_path / 'city.gpkg', layer='buildings')
        OSMDataset(tmp_path / 'city.gpkg', layers=['roads'])


def test_empty_file(tmp_path: Path) -> None:
    empty = gpd.GeoDataFrame({'name': []}, geometry=[], crs=CITY_CRS)
    empty.to_file(tmp_path / 'empty.geojson')
    with (
        pytest.warns(UserWarning, match='no usable feature'),
        pytest.raises(OSMFileError, match='usable'),
    ):
        OSMDataset(tmp_path / 'empty.geojson')
    city_frame().to_file(tmp_path / 'city.geojson')
    with pytest.warns(UserWarning, match=r'empty\.geojson'):
        ds = OSMDataset(tmp_path)
    assert ds.filepaths == [str(tmp_path / 'city.geojson')]


def test_unparsable_tags(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {'other_tags': ['not hstore']}, geometry=[shapely.Point(X0, Y0)], crs=CITY_CRS
    )
    frame.to_file(tmp_path / 'tags.gpkg')
    with pytest.raises(InvalidFeatureError, match=r'tags\.gpkg'):
        OSMDataset(tmp_path / 'tags.gpkg')


def test_drop_keys(city_gpkg: Path) -> None:
    ds = OSMDataset(city_gpkg, drop_keys=['building:levels'])
    assert ds.reports[0].dropped_keys == 16
    assert not any('building' in t for t in ds.tags)
    assert np.bincount(ds.kinds, minlength=3).tolist() == [0, 10, 16]


def test_crs_change_reprojects_in_memory(tmp_path: Path) -> None:
    path = tmp_path / 'city.gpkg'
    city_frame().to_file(path)
    ds = OSMDataset(path)
    before = ds[X0 + 20 : X0 + 120, Y0 + 20 : Y0 + 120]
    path.unlink()  # nothing is re-read from disk
    ds.crs = CRS.from_epsg(4326)
    assert ds.index.crs == CRS.from_epsg(4326)
    west, south, east, north = Transformer.from_crs(
        CITY_CRS, 4326, always_xy=True
    ).transform_bounds(X0 + 20, Y0 + 20, X0 + 120, Y0 + 120)
    after = ds[west:east, south:north]
    assert after['osm_polygon_id'].tolist() == before['osm_polygon_id'].tolist()
    ds.crs = CITY_CRS
    back = ds[X0 + 20 : X0 + 120, Y0 + 20 : Y0 + 120]
    torch.testing.assert_close(
        back['osm_polygon_pos'], before['osm_polygon_pos'], atol=1e-4, rtol=0
    )


def test_pickle_and_transforms(city_gpkg: Path) -> None:
    def scale(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sample['osm_point_x'] = sample['osm_point_x'] * 0
        return sample

    ds = OSMDataset(city_gpkg, transforms=scale)
    sample = ds[X0 : X0 + 100, Y0 : Y0 + 100]
    assert torch.all(sample['osm_point_x'] == 0)
    clone = pickle.loads(pickle.dumps(OSMDataset(city_gpkg)))
    assert len(clone.geometries) == len(ds.geometries)
    assert node_count(clone[X0 : X0 + 100, Y0 : Y0 + 100]) == node_count(sample)


def test_features_and_plot(city_gpkg: Path, city_raster: Path) -> None:
    osm = OSMDataset(city_gpkg)
    features = osm.features((slice(X0 + 30, X0 + 130), slice(Y0, Y0 + 100)))
    assert set(features.columns) >= {'row', 'type', 'tags', 'geometry'}
    assert features.crs == CITY_CRS
    assert shapely.covered_by(
        features.geometry.values, shapely.box(X0 + 30, Y0, X0 + 130, Y0 + 100)
    ).all()
    ds = Raster(city_raster.parent) & osm
    sample = ds[X0 : X0 + 100, Y0 : Y0 + 100]
    fig = osm.plot(sample, suptitle='test')
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].images) == 1
    assert isinstance(
        osm.plot(osm[X0 : X0 + 50, Y0 : Y0 + 50], show_titles=False), Figure
    )


def test_invalid_graph_mode(city_gpkg: Path) -> None:
    with pytest.raises(ValueError, match='graph_mode'):
        OSMDataset(city_gpkg, graph_mode='fast')  # ty: ignore[invalid-argument-type]


def test_induced_subgraph_matches_reference() -> None:
    # The vectorized induced subgraph equals a per-edge-type reference built from the
    # global relations.
    ds = OSMDataset(HELSINKI_PBF, crs=CRS.from_epsg(32635), res=1.0)
    rows_of = {t: np.flatnonzero(ds.kinds == k) for k, t in enumerate(NODE_TYPES)}
    edges = ds.builder.build_edges(*(ds.geometries[rows_of[t]] for t in NODE_TYPES))
    xmin, ymin, _, _ = ds.index.total_bounds
    multipart = 0
    for dx, dy in [(300, 400), (520, 910), (100, 1200)]:
        sample = ds[xmin + dx : xmin + dx + 150, ymin + dy : ymin + dy + 150]
        nodes_of: dict[str, dict[int, list[int]]] = {}
        for t in NODE_TYPES:
            nodes_of[t] = {}
            for node, row in enumerate(sample[f'osm_{t}_id'].tolist()):
                nodes_of[t].setdefault(row, []).append(node)
            multipart += sum(len(v) > 1 for v in nodes_of[t].values())
        for src_type, _, dst_type in EDGE_TYPES:
            index, attr = edges[src_type, 'to', dst_type]
            expected = set()
            for i, j, a in zip(
                *np.asarray(index).tolist(), np.asarray(attr).tolist(), strict=True
            ):
                src_row, dst_row = rows_of[src_type][i], rows_of[dst_type][j]
                src_nodes = nodes_of[src_type].get(src_row, [])
                dst_nodes = nodes_of[dst_type].get(dst_row, [])
                for s in src_nodes:
                    for d in dst_nodes:
                        if (
                            src_row != dst_row or s == d
                        ):  # self loops: each part to itself
                            expected.add((s, d, tuple(a)))
            name = f'osm_{src_type}_to_{dst_type}'
            got = [
                (s, d, tuple(a))
                for (s, d), a in zip(
                    sample[f'{name}_edge_index'].T.tolist(),
                    sample[f'{name}_edge_attr'].tolist(),
                    strict=True,
                )
            ]
            assert len(got) == len(set(got))
            assert set(got) == expected, (src_type, dst_type)
    assert multipart > 0  # the windows cut some features into several parts
