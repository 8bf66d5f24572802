# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""The demo's synthetic imagery: an RGB image and a land-use raster painted from OSM."""

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.enums
import rasterio.features
import shapely
from numpy.typing import NDArray
from rasterio.transform import Affine, from_origin
from scipy import ndimage

from .demo_landuse import DEMO_CLASSES, landuse_class

__all__ = ('render_demo',)

#: Ground color (RGB) and texture strength of each class of :data:`DEMO_CLASSES`.
_GROUND = np.array(
    [
        [150, 146, 138],  # other: pavement
        [176, 162, 140],  # residential: yards, light gravel
        [132, 134, 140],  # commercial: gray concrete
        [168, 158, 128],  # civic: sand
        [120, 104, 90],  # railway: ballast
        [92, 138, 70],  # green: grass
        [40, 72, 110],  # water
    ],
    dtype=np.float32,
)
_TEXTURE = np.array([10, 12, 10, 12, 16, 22, 6], dtype=np.float32)

#: Road width (meters) and color by ``highway`` value; minor ways are painted first,
#: major ones on top.
_ROADS: tuple[tuple[frozenset[str], float, tuple[int, int, int]], ...] = (
    (frozenset({'path', 'track', 'trail', 'bridleway'}), 1.5, (170, 150, 120)),
    (
        frozenset(
            {'footway', 'cycleway', 'steps', 'pedestrian', 'corridor', 'platform'}
        ),
        2.5,
        (196, 190, 180),
    ),
    (frozenset({'service', 'living_street', 'construction'}), 4.0, (95, 95, 98)),
    (frozenset({'residential', 'unclassified', 'road'}), 7.0, (80, 80, 84)),
    (frozenset({'tertiary', 'tertiary_link'}), 9.0, (72, 72, 76)),
    (frozenset({'secondary', 'secondary_link'}), 11.0, (66, 66, 70)),
    (
        frozenset(
            {
                'primary',
                'primary_link',
                'trunk',
                'trunk_link',
                'motorway',
                'motorway_link',
            }
        ),
        14.0,
        (60, 60, 64),
    ),
)
_PAVED_AREA = (188, 184, 176)
_ROOFS = np.array(
    [
        [120, 66, 56],
        [150, 82, 62],
        [98, 96, 100],
        [70, 72, 78],
        [160, 156, 150],
        [110, 120, 104],
        [132, 110, 92],
    ],
    dtype=np.float32,
)


def _burn(
    shapes: NDArray[Any] | Sequence[shapely.Geometry],
    values: Sequence[int] | int,
    out: NDArray[np.int32],
    transform: Affine,
) -> None:
    """Rasterize shapes into *out* in place (later shapes overwrite earlier ones).

    Args:
        shapes: geometries in the raster CRS.
        values: one value per shape, or one for all.
        out: the raster to write into.
        transform: its affine transform.
    """
    if len(shapes) == 0:
        return
    vals = [values] * len(shapes) if isinstance(values, int) else list(values)
    pairs = [
        (g, v)
        for g, v in zip(shapes, vals, strict=True)
        if g is not None and not g.is_empty
    ]
    if pairs:
        rasterio.features.rasterize(
            pairs,
            out=out,
            transform=transform,
            merge_alg=rasterio.enums.MergeAlg.replace,
        )


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], cell: float
) -> NDArray[np.float32]:
    """Zero-mean, unit-variance noise varying smoothly over about *cell* pixels.

    Args:
        rng: random generator.
        shape: ``(H, W)`` of the result.
        cell: feature size in pixels.

    Returns:
        float32 ``(H, W)`` noise.
    """
    coarse = rng.standard_normal(
        (int(np.ceil(shape[0] / cell)) + 3, int(np.ceil(shape[1] / cell)) + 3)
    )
    fine = ndimage.zoom(coarse, cell, order=3, mode='reflect', grid_mode=True)[
        : shape[0], : shape[1]
    ]
    return ((fine - fine.mean()) / (fine.std() + 1e-6)).astype(np.float32)


def _feature_hash(geom: shapely.Geometry) -> int:
    """A stable per-feature integer from the geometry's coordinates.

    It is used for per-building colors.

    Args:
        geom: the geometry.

    Returns:
        A non-negative integer, identical across runs and platforms.
    """
    return zlib.crc32(np.round(shapely.get_coordinates(geom)[:4], 2).tobytes())


def render_demo(
    geometries: NDArray[np.object_],
    tags: Sequence[dict[str, str]],
    bounds: tuple[float, float, float, float],
    res: float = 1.0,
    seed: int = 0,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], Affine]:
    """Paint an RGB image and a land-use label raster from OSM features.

    The image is synthetic: ground color and texture by land-use class (grass with tree
    clumps in parks and woods, rippled water, ballast on railway land), paved areas,
    roads buffered to a width by ``highway`` class, railways with rails and tram tracks,
    and buildings with per-building roof colors and a cast shadow; then low-frequency
    illumination changes, sensor noise and a slight blur. The label raster holds the
    :func:`landuse_class` of the smallest land-use area covering each pixel (0 where
    there is none).

    Args:
        geometries: single-part feature geometries in a projected CRS (meters).
        tags: normalized tags of each feature.
        bounds: ``(xmin, ymin, xmax, ymax)`` of the rasters in the same CRS.
        res: pixel size in CRS units.
        seed: seed of the texture and noise.

    Returns:
        ``(3, H, W)`` uint8 image, ``(H, W)`` uint8 labels and the rasters' affine
        transform.

    .. versionadded:: 0.1
    """
    xmin, ymin, xmax, ymax = bounds
    width, height = round((xmax - xmin) / res), round((ymax - ymin) / res)
    transform = from_origin(xmin, ymax, res, res)
    shape = (height, width)
    rng = np.random.default_rng(seed)
    geoms = np.asarray(geometries, dtype=object)
    types = shapely.get_type_id(geoms)
    is_area = types == shapely.GeometryType.POLYGON
    is_line = types == shapely.GeometryType.LINESTRING

    # Land use: larger areas first so that smaller, more specific ones are painted over
    # them.
    area_rows = np.flatnonzero(is_area)
    classes = np.array(
        [landuse_class(tags[r]) for r in area_rows.tolist()], dtype=np.int64
    )
    lu_rows, lu_classes = area_rows[classes > 0], classes[classes > 0]
    order = np.argsort(-shapely.area(geoms[lu_rows]), kind='stable')
    labels = np.zeros(shape, dtype=np.int32)
    _burn(geoms[lu_rows[order]], lu_classes[order].tolist(), labels, transform)
    woods = [
        r
        for r in lu_rows.tolist()
        if tags[r].get('leisure') in {'park', 'garden'}
        or tags[r].get('natural') in {'wood', 'scrub'}
        or tags[r].get('landuse') == 'forest'
    ]
    wooded = np.zeros(shape, dtype=np.int32)
    _burn(geoms[woods], 1, wooded, transform)

    # Ground: class color modulated by class-specific texture.
    texture = (
        _smooth_noise(rng, shape, 6.0) * 0.6
        + rng.standard_normal(shape).astype(np.float32) * 0.4
    )
    image = _GROUND[labels].transpose(2, 0, 1) + _TEXTURE[labels][None] * texture[None]
    green = labels == DEMO_CLASSES.index('green')
    trees = (
        ndimage.gaussian_filter(
            (rng.random(shape) < 0.012).astype(np.float32), 2.0 / res
        )
        * 40
    )
    canopy = np.clip(trees, 0, 1) * ((wooded > 0) & green)
    image = (
        image * (1 - 0.45 * canopy[None])
        + np.array([30, 70, 30], np.float32)[:, None, None] * 0.45 * canopy
    )
    water = labels == DEMO_CLASSES.index('water')
    ripple = (
        np.sin(np.arange(height, dtype=np.float32)[:, None] * 1.3 * res + texture * 2)
        * 6
    )
    image += (ripple * water)[None]

    def paint(
        mask: NDArray[np.bool_], color: Sequence[float], jitter: float = 6.0
    ) -> None:
        """Overwrite the masked pixels with a color and some noise."""
        noise = rng.standard_normal((3, int(mask.sum()))).astype(np.float32) * jitter
        image[:, mask] = np.asarray(color, np.float32)[:, None] + noise

    # Paved areas (squares, parkings, platforms).
    paved_rows = [
        r
        for r in np.flatnonzero(is_area).tolist()
        if tags[r].get('amenity') == 'parking'
        or 'highway' in tags[r]
        or tags[r].get('railway') == 'platform'
    ]
    paved = np.zeros(shape, dtype=np.int32)
    _burn(geoms[paved_rows], 1, paved, transform)
    paint(paved > 0, _PAVED_AREA)

    # Roads by class, minor first.
    line_rows = np.flatnonzero(is_line)
    highway = np.array(
        [tags[r].get('highway', '') for r in line_rows.tolist()], dtype=object
    )
    for values, road_width, color in _ROADS:
        rows = line_rows[np.isin(highway, list(values))]
        if len(rows) == 0:
            continue
        road = np.zeros(shape, dtype=np.int32)
        _burn(
            shapely.buffer(geoms[rows], road_width / 2, cap_style='flat'),
            1,
            road,
            transform,
        )
        paint(road > 0, color, 5.0)

    # Railways: ballast bed with dark rails; tram tracks as thin dark lines on the
    # street.
    railway = np.array(
        [tags[r].get('railway', '') for r in line_rows.tolist()], dtype=object
    )
    rails = line_rows[
        np.isin(railway, ['rail', 'light_rail', 'narrow_gauge', 'subway', 'preserved'])
    ]
    trams = line_rows[railway == 'tram']
    bed = np.zeros(shape, dtype=np.int32)
    _burn(shapely.buffer(geoms[rails], 2.5, cap_style='flat'), 1, bed, transform)
    paint(bed > 0, (112, 96, 84), 8.0)
    track = np.zeros(shape, dtype=np.int32)
    _burn(
        shapely.buffer(geoms[np.concatenate([rails, trams])], 0.6, cap_style='flat'),
        1,
        track,
        transform,
    )
    paint(track > 0, (46, 42, 40), 4.0)

    # Buildings: shadow cast to the south-east, then roofs with one color per building.
    building_rows = np.array(
        [r for r in np.flatnonzero(is_area).tolist() if 'building' in tags[r]],
        dtype=np.int64,
    )
    roof_ids = np.zeros(shape, dtype=np.int32)
    _burn(
        geoms[building_rows],
        list(range(1, len(building_rows) + 1)),
        roof_ids,
        transform,
    )
    shift = max(1, round(3.0 / res))
    shadow = np.zeros(shape, dtype=bool)
    shadow[shift:, shift:] = roof_ids[:-shift, :-shift] > 0
    image[:, shadow & (roof_ids == 0)] *= 0.55
    palette_index = np.array(
        [_feature_hash(geoms[r]) % len(_ROOFS) for r in building_rows], dtype=np.int64
    )
    roof_color = np.concatenate([np.zeros((1, 3), np.float32), _ROOFS[palette_index]])
    roof = roof_ids > 0
    roof_noise = (
        _smooth_noise(rng, shape, 3.0) * 5
        + rng.standard_normal(shape).astype(np.float32) * 4
    )
    image[:, roof] = roof_color[roof_ids[roof]].T + roof_noise[roof][None]

    # Illumination, sensor noise and optics.
    light = 1 + 0.06 * _smooth_noise(rng, shape, 150.0)
    image = (
        image * light[None] + rng.standard_normal((3, *shape)).astype(np.float32) * 3.0
    )
    image = ndimage.gaussian_filter(image, sigma=(0, 0.6, 0.6))
    out = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return out, labels.astype(np.uint8), transform
