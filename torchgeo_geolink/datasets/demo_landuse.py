# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Land-use classes of the embedded demo, derived from OpenStreetMap tags."""

__all__ = ('DEMO_CLASSES', 'DEMO_WITHHELD_KEYS', 'landuse_class')

#: Classes of the land-use label raster (value = position). ``other`` is any area
#: without one of the land uses below (streets, squares, untagged blocks). Derived from
#: OSM ``landuse``/``leisure``/``natural``/``water`` tags (see :func:`landuse_class`).
DEMO_CLASSES = (
    'other',
    'residential',
    'commercial',
    'civic',
    'railway',
    'green',
    'water',
)

#: OSM tag keys that carry the land-use labels: withhold them from the graph
#: (``OSMDataset(drop_keys=...)``) when the labels are the target of a downstream task,
#: so the OSM input does not contain the answer.
DEMO_WITHHELD_KEYS = ('landuse', 'leisure', 'natural', 'water')

_GREEN_LANDUSE = frozenset(
    {
        'grass',
        'meadow',
        'forest',
        'recreation_ground',
        'cemetery',
        'village_green',
        'allotments',
        'orchard',
        'flowerbed',
        'greenfield',
        'plant_nursery',
    }
)
_GREEN_LEISURE = frozenset(
    {
        'park',
        'garden',
        'pitch',
        'playground',
        'golf_course',
        'nature_reserve',
        'dog_park',
        'recreation_ground',
    }
)
_GREEN_NATURAL = frozenset(
    {'wood', 'scrub', 'heath', 'grassland', 'wetland', 'tree_row'}
)
_WATER_LANDUSE = frozenset({'basin', 'reservoir'})
_WATER_NATURAL = frozenset({'water', 'bay', 'strait'})
_CIVIC_LANDUSE = frozenset(
    {'civil', 'education', 'institutional', 'religious', 'military'}
)
_COMMERCIAL_LANDUSE = frozenset({'commercial', 'retail', 'office'})


def landuse_class(tags: dict[str, str]) -> int:
    """Land-use class of an OSM area (index into :data:`DEMO_CLASSES`).

    Rules, first match wins: water (``natural`` water/bay/strait, ``landuse``
    basin/reservoir, any ``water`` tag), green (``leisure``
    park/garden/pitch/playground/..., ``landuse`` grass/meadow/forest/cemetery/...,
    ``natural`` wood/scrub/heath/grassland/wetland), railway (``landuse=railway``),
    residential (``landuse=residential``), commercial (``landuse``
    commercial/retail/office), civic (``landuse``
    civil/education/institutional/religious/military); anything else is 0 (``other``).

    Args:
        tags: normalized OSM tags of the feature.

    Returns:
        The class index, 0 when the feature is not a land-use area.

    .. versionadded:: 0.1
    """
    landuse = tags.get('landuse', '')
    natural = tags.get('natural', '')
    if natural in _WATER_NATURAL or landuse in _WATER_LANDUSE or 'water' in tags:
        return DEMO_CLASSES.index('water')
    if (
        tags.get('leisure', '') in _GREEN_LEISURE
        or landuse in _GREEN_LANDUSE
        or natural in _GREEN_NATURAL
    ):
        return DEMO_CLASSES.index('green')
    if landuse == 'railway':
        return DEMO_CLASSES.index('railway')
    if landuse == 'residential':
        return DEMO_CLASSES.index('residential')
    if landuse in _COMMERCIAL_LANDUSE:
        return DEMO_CLASSES.index('commercial')
    if landuse in _CIVIC_LANDUSE:
        return DEMO_CLASSES.index('civic')
    return 0
