# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Shared benchmark helpers: timing, a plain-text table and a machine/version header."""

import datetime
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

__all__ = ('header', 'print_table', 'timeit')

_PACKAGES = (
    'torchgeo-geolink',
    'torch',
    'torchgeo',
    'torch-geometric',
    'shapely',
    'geopandas',
    'numpy',
    'scipy',
)


def timeit(fn: Callable[[], object], repeat: int = 3, warmup: int = 0) -> float:
    """Time a function.

    Args:
        fn: The function to call.
        repeat: Timed calls.
        warmup: Untimed calls first.

    Returns:
        The median wall time of the timed calls, in seconds.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    """Print a Markdown table.

    Args:
        rows: Table rows (floats are shown with 4 significant digits).
        headers: Column names.
    """
    cells = [
        [f'{c:.4g}' if isinstance(c, float) else str(c) for c in row] for row in rows
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
        for i, h in enumerate(headers)
    ]
    print(
        '| '
        + ' | '.join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
        + ' |'
    )
    print('|' + '|'.join('-' * (w + 1) + ':' for w in widths) + '|')
    for row in cells:
        print(
            '| '
            + ' | '.join(c.rjust(w) for c, w in zip(row, widths, strict=True))
            + ' |'
        )


def header(title: str) -> None:
    """Print the benchmark title, date, machine and package versions.

    Args:
        title: What is measured.
    """
    versions = []
    for package in _PACKAGES:
        try:
            versions.append(f'{package} {importlib.metadata.version(package)}')
        except importlib.metadata.PackageNotFoundError:
            continue
    print(f'# {title}')
    print(
        f'{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {platform.platform()}; '
        f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; Python {platform.python_version()}'
    )
    print('; '.join(versions))
    print()
