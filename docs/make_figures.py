# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Regenerate the figures of the documentation (committed under ``docs/_static``).

``make docs`` does not run this: the PNGs are committed. Run
``python docs/make_figures.py`` after changing the plotting code or a tutorial. It draws
the concept figures with the library's own plotting functions and runs each tutorial
script with ``plt.show`` replaced by "save the current figure as
``_static/tutorials/<script>_<n>.png``", the names ``docs/conf.py`` shows after the n-th
``plt.show()``.

Usage: ``python docs/make_figures.py [--skip-tutorials]``.
"""

import argparse
import runpy
from pathlib import Path

import matplotlib

matplotlib.use('Agg')

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import torch
from rasterio.features import rasterize
from rasterio.transform import from_bounds
from shapely.geometry import LineString, Point, box

from torchgeo_geolink.osm import OSMGraphBuilder
from torchgeo_geolink.visualization import plot_graph

DOCS = Path(__file__).resolve().parent
STATIC = DOCS / '_static'

#: A small synthetic scene (meters, EPSG:3067) with every relation of the GeoLink graph.
BOUNDS = (0.0, 0.0, 200.0, 200.0)
SCENE = [
    (box(20, 20, 120, 120), 'leisure:park'),
    (box(40, 40, 70, 70), 'building:yes'),  # covered by the park
    (box(120, 40, 160, 80), 'building:retail'),  # touches the park
    (box(150, 70, 190, 110), 'building:yes'),  # overlaps the retail building
    (box(130, 130, 180, 180), 'landuse:residential'),
    (LineString([(0, 95), (200, 95)]), 'highway:primary'),  # crosses the park
    (
        LineString([(125, 0), (125, 200)]),
        'highway:residential',
    ),  # crosses the primary road
    (
        LineString([(125, 190), (190, 190)]),
        'highway:service',
    ),  # touches the residential road
    (Point(90, 60), 'amenity:bench'),  # within the park
    (Point(125, 190), 'highway:bus_stop'),  # on the service road's end
    (Point(155, 155), 'shop:bakery'),  # within the residential area
    (Point(175, 20), 'amenity:post_box'),
]
COLORS = {
    'leisure': (166, 219, 160),
    'building': (190, 174, 212),
    'landuse': (253, 218, 172),
}


def scene_image(frame: gpd.GeoDataFrame, size: int = 256) -> torch.Tensor:
    """Rasterize the scene's polygons and lines into a map-like RGB image.

    Args:
        frame: the scene, one feature per row with a ``label`` column.
        size: image side in pixels.

    Returns:
        ``(3, size, size)`` uint8 image.
    """
    transform = from_bounds(*BOUNDS, size, size)
    image = np.full((3, size, size), 245, dtype=np.uint8)
    for geometry, label in zip(frame.geometry, frame['label']):
        key = label.split(':')[0]
        if geometry.geom_type == 'Point':
            continue
        shape = geometry if geometry.geom_type == 'Polygon' else geometry.buffer(2.5)
        color = COLORS.get(key, (120, 120, 120))
        mask = rasterize([shape], out_shape=(size, size), transform=transform).astype(
            bool
        )
        for c in range(3):
            image[c][mask] = color[c]
    return torch.from_numpy(image)


def graph_figure() -> None:
    """Draw the synthetic scene's graph, colored by edge type and by relation."""
    frame = gpd.GeoDataFrame(
        {'label': [label for _, label in SCENE]},
        geometry=[g for g, _ in SCENE],
        crs='EPSG:3067',
    )
    graph = OSMGraphBuilder()(frame, BOUNDS)
    image = scene_image(frame)
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.2), layout='constrained')
    plot_graph(
        image, graph, ax=axes[0], show_positions=True, title='edges by type (src → dst)'
    )
    plot_graph(
        image, graph, ax=axes[1], color_by='relation', title='edges by spatial relation'
    )
    out = STATIC / 'graph_relations.png'
    figure.savefig(out, dpi=110)
    plt.close(figure)
    print(f'wrote {out}')


def tutorial_figures() -> None:
    """Run every tutorial, saving the figure shown by each ``plt.show()``."""
    out = STATIC / 'tutorials'
    out.mkdir(parents=True, exist_ok=True)
    for script in sorted((DOCS / 'tutorials').glob('[0-9]*.py')):
        for old in out.glob(f'{script.stem}_*.png'):
            old.unlink()
        count = 0

        def save(*args: object, _stem: str = script.stem, **kwargs: object) -> None:
            nonlocal count
            count += 1
            path = out / f'{_stem}_{count}.png'
            plt.gcf().savefig(path, dpi=90)
            plt.close('all')
            print(f'wrote {path}')

        show = plt.show
        plt.show = save  # ty: ignore[invalid-assignment]
        try:
            runpy.run_path(str(script), run_name='__main__')
        finally:
            plt.show = show
            plt.close('all')


def main() -> None:
    """Parse the command line and draw the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--skip-tutorials', action='store_true', help='only draw the concept figures'
    )
    args = parser.parse_args()
    graph_figure()
    if not args.skip_tutorials:
        tutorial_figures()


if __name__ == '__main__':
    main()
