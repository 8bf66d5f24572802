# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""``tag_keys``: embed only the tags with chosen keys, keeping every feature."""

from pathlib import Path

import geopandas as gpd
import shapely
import torch

from torchgeo_geolink.datasets import OSMDataset


def write(path: Path) -> Path:
    frame = gpd.GeoDataFrame(
        {
            'building': ['yes', None, 'yes'],
            'name': ['Kallio library', 'Mannerheimintie', None],
            'addr:street': ['Viides linja', None, None],
            'highway': [None, 'primary', None],
        },
        geometry=[
            shapely.box(0, 0, 10, 10),
            shapely.LineString([(0, 20), (30, 20)]),
            shapely.box(20, 0, 25, 5),
        ],
        crs='EPSG:3067',
    )
    frame.to_file(path, driver='GPKG')
    return path


def test_tag_keys_keep_features_and_drop_other_tags(tmp_path: Path) -> None:
    path = write(tmp_path / 'osm.gpkg')
    every = OSMDataset(path)
    some = OSMDataset(path, tag_keys=['building', 'highway'])
    assert len(some.geometries) == len(every.geometries) == 3
    by_geometry = {
        shapely.to_wkt(g): dict(t)
        for g, t in zip(some.geometries, some.tags, strict=True)
    }
    assert by_geometry[shapely.to_wkt(shapely.box(0, 0, 10, 10))] == {'building': 'yes'}
    assert {'highway': 'primary'} in by_geometry.values()
    # the named, addressed building now embeds exactly like the anonymous one
    rows = [i for i, t in enumerate(some.tags) if dict(t) == {'building': 'yes'}]
    assert len(rows) == 2
    embeddings = some.embeddings
    torch.testing.assert_close(embeddings[rows[0]], embeddings[rows[1]])
    full = every.embeddings
    full_rows = [i for i, t in enumerate(every.tags) if 'building' in t]
    assert not torch.allclose(full[full_rows[0]], full[full_rows[1]])
