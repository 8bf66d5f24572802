# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""OSM tag parsing, GeoLink tag strings and log-frequency key weights."""

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np

__all__ = ('KeyWeights', 'normalize_key', 'parse_hstore', 'parse_label', 'tag_strings')

# One `"key"=>"value"` item of an hstore string; both sides may hold backslash-escaped
# characters.
_HSTORE_ITEM = re.compile(
    r'"((?:[^"\\]|\\.)*)"\s*=>\s*(NULL|"((?:[^"\\]|\\.)*)")', re.DOTALL
)
_HSTORE_UNESCAPE = re.compile(r'\\(.)', re.DOTALL)


def normalize_key(key: str) -> str:
    """Write an OSM key the way GeoLink does (``:`` as a space, stripped).

    Args:
        key: An OSM tag key, e.g. ``'addr:street'``.

    Returns:
        The GeoLink key, e.g. ``'addr street'``.

    .. versionadded:: 0.1
    """
    return key.strip().replace(':', ' ')


def parse_label(label: str) -> dict[str, str]:
    """Parse a GeoLink label ``'k:v;k:v'`` into a mapping.

    The key is the text before the first ``:`` (GeoLink writes keys holding ``:`` with a
    space instead), the value everything after it. An entry without ``:`` becomes a key
    with an empty value; empty entries are skipped; a repeated key keeps its last value.

    Args:
        label: The label, e.g. ``'landuse:grass;golf:tee'``.

    Returns:
        The tags, e.g. ``{'landuse': 'grass', 'golf': 'tee'}``.

    .. versionadded:: 0.1
    """
    tags: dict[str, str] = {}
    for entry in label.split(';'):
        if not entry.strip():
            continue
        key, _, value = entry.partition(':')
        key = normalize_key(key)
        if key:
            tags[key] = value.strip()
    return tags


def parse_hstore(text: str) -> dict[str, str]:
    """Parse an hstore string, as in the ``other_tags`` column of GDAL's OSM driver.

    Args:
        text: E.g. ``'"name"=>"Kauppatori","addr:street"=>"Pohjoisesplanadi 1"'``;
            ``NULL`` values are dropped, backslash escapes are resolved.

    Returns:
        The tags with their original keys (not yet normalized).

    Raises:
        ValueError: If ``text`` holds something that is not a sequence of
            ``"key"=>"value"`` items.

    .. versionadded:: 0.1
    """
    text = text.strip()
    escaped = '\\' in text
    if not escaped and text[:1] == text[-1:] == '"':
        # Without escapes every quote delimits: split on the delimiters, and keep the
        # result when each item is exactly one quoted key and one quoted value.
        items = text[1:-1].split('","')
        if text.count('"') == 4 * len(items):
            try:  # dict() refuses an item that does not split in two
                return dict(item.split('"=>"') for item in items)
            except ValueError:
                pass
    tags: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _HSTORE_ITEM.match(text, position)
        if match is None:
            msg = f'not an hstore string at character {position}: {text[position : position + 40]!r}'
            raise ValueError(msg)
        key, raw, value = match.groups()
        if raw != 'NULL':
            if escaped:
                key = _HSTORE_UNESCAPE.sub(r'\1', key)
                value = _HSTORE_UNESCAPE.sub(r'\1', value)
            tags[key] = value
        position = match.end()
        while position < len(text) and text[position] in ', \t\n':
            position += 1
    return tags


@functools.cache
def _shipped_counts() -> dict[str, float]:
    """Read the key-frequency table shipped with the package (once per process).

    Returns:
        Key -> count.
    """
    text = (
        files('torchgeo_geolink')
        .joinpath('data', 'tag_key_frequency.json')
        .read_text('utf-8')
    )
    return json.loads(text)


def tag_strings(tags: Mapping[str, str]) -> list[str]:
    """GeoLink tag strings of one feature: ``'key:value'``.

    A tag with an empty value is written as its key alone (as an entry without ``:`` of
    a label would be).

    Args:
        tags: The feature's tags.

    Returns:
        One string per tag, in the mapping's order.

    .. versionadded:: 0.1
    """
    out = []
    for key, value in tags.items():
        key = normalize_key(key)
        out.append(f'{key}:{value}' if value else key)
    return out


class KeyWeights:
    """GeoLink's per-key tag weights: ``ln(count[key])`` from a key-frequency table.

    Frequent keys are up-weighted (log frequency, not IDF). A key missing from the table
    counts as 1, hence weight 0, like a key seen once: it only contributes when every
    tag of a feature has weight 0, in which case the node embedding falls back to the
    plain mean (the reference meant this but crashes on unknown keys, bug B13).

    .. versionadded:: 0.1
    """

    def __init__(self, counts: Mapping[str, float]) -> None:
        """Initialize from a key -> count mapping.

        Args:
            counts: Occurrence count of each key (keys written GeoLink-style, ``:`` as a
                space).

        Raises:
            ValueError: If a count is below 1 or not finite.
        """
        weights: dict[str, float] = {}
        for key, count in counts.items():
            count = float(count)
            if not math.isfinite(count) or count < 1:
                msg = (
                    f'key frequency of {key!r} must be a finite count >= 1, got {count}'
                )
                raise ValueError(msg)
            key = normalize_key(key)
            # Keys equal after normalization (the shipped table has 'note' and 'note '):
            # keep the larger count.
            weights[key] = max(weights.get(key, 0.0), math.log(count))
        self._weights = weights

    @classmethod
    def from_json(cls, path: str | Path | None = None) -> 'KeyWeights':
        """Load a ``{key: count}`` JSON table.

        Args:
            path: The JSON file; None loads the table shipped with the package (2,790
                keys, from the official GeoLink release, derived from OpenStreetMap
                data, ODbL).

        Returns:
            The key weights.
        """
        if path is None:
            text = (
                files('torchgeo_geolink')
                .joinpath('data', 'tag_key_frequency.json')
                .read_text('utf-8')
            )
        else:
            text = Path(path).read_text('utf-8')
        return cls(json.loads(text))

    @classmethod
    @functools.cache
    def _shipped(cls) -> 'KeyWeights':
        """Return the shipped table's weights, built once per process.

        Returns:
            The key weights.
        """
        return cls(_shipped_counts())

    def __len__(self) -> int:
        """Return the number of keys in the table.

        Returns:
            The number of keys.
        """
        return len(self._weights)

    def weight(self, key: str) -> float:
        """Return the weight of one key.

        Args:
            key: An OSM key (normalized on the fly).

        Returns:
            ``ln(count)``, or 0 for unknown keys.
        """
        return self._weights.get(normalize_key(key), 0.0)

    def __call__(self, keys: Iterable[str]) -> np.ndarray:
        """Return the weights of many keys.

        Args:
            keys: OSM keys.

        Returns:
            float64 array of weights.
        """
        get = self._weights.get
        return np.fromiter((get(normalize_key(k), 0.0) for k in keys), dtype=np.float64)

    def for_strings(self, tags: Sequence[str]) -> np.ndarray:
        """Return the weights of GeoLink tag strings, looked up by their key.

        Args:
            tags: Tag strings such as ``'highway:service'``.

        Returns:
            float64 array of weights.
        """
        return self(t.partition(':')[0] for t in tags)
