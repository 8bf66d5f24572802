# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Reading ``.osm.pbf``: GDAL's OSM driver (our default) against QuackOSM (DuckDB).

Both shipped extracts (Helsinki, Kouvola; OSM data (c) OpenStreetMap contributors,
ODbL), and Helsinki tiled 10 and 40 times side by side (with pyosmium, ids offset per
copy: region-sized files of 6.5 and 26 MB), are read into a GeoDataFrame by each reader
in a fresh subprocess, which reports its wall time and peak RSS above what the imports
take:

* GDAL: ``read_vector_file(path, None)`` (pyogrio, the ``points``, ``lines`` and
  ``multipolygons`` layers);
* QuackOSM: ``read_vector_file(path, None, pbf_reader='quackosm')``: QuackOSM in a child
  process (its cache ignored, so every run parses the file) writes GeoParquet, read back
  here. The child's own peak RSS (imports included) is reported beside the parent's.

QuackOSM is not a dependency: without it (and DuckDB's ``spatial`` extension, which
DuckDB downloads, or which the ``duckdb-extension-spatial`` wheel provides offline) its
rows say so. Ratios are against GDAL on the same file in the same run.

Usage: ``python benchmarks/pbf_readers.py [--repeat 3] [--copies 10 40] [--quick]``
(quick: the shipped extracts once each).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Literal, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, print_table

DATA = Path(__file__).resolve().parents[1] / 'torchgeo_geolink' / 'data'
EXTRACTS = ('helsinki', 'kouvola')
#: Added to every OSM id of copy k, times k, in a tiled file.
ID_STRIDE = 2**40


def tiled_pbf(copies: int, workdir: Path) -> Path:
    """Write (once) the Helsinki extract tiled *copies* times side by side as a PBF.

    Copy ``k`` is shifted east by ``k`` times the extract's width and its node, way and
    relation ids by ``k * ID_STRIDE`` (references follow), so every copy is a distinct,
    complete OSM dataset. Needs pyosmium.

    Args:
        copies: number of copies.
        workdir: folder of the generated files.

    Returns:
        The file.
    """
    import osmium

    path = workdir / f'helsinki_x{copies}.osm.pbf'
    if path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    src = str(DATA / 'helsinki.osm.pbf')
    lons = [n.location.lon for n in osmium.FileProcessor(src, osmium.osm.NODE)]
    width = (max(lons) - min(lons)) * 1.01
    partial = workdir / f'partial_{path.name}'
    # Nodes, then ways, then relations, as readers of PBF files expect.
    with osmium.SimpleWriter(str(partial), overwrite=True) as out:
        for k in range(copies):
            for n in osmium.FileProcessor(src, osmium.osm.NODE):
                location = osmium.osm.Location(
                    n.location.lon + k * width, n.location.lat
                )
                out.add_node(n.replace(id=n.id + k * ID_STRIDE, location=location))
        for k in range(copies):
            for w in osmium.FileProcessor(src, osmium.osm.WAY):
                refs = [r.ref + k * ID_STRIDE for r in w.nodes]
                out.add_way(w.replace(id=w.id + k * ID_STRIDE, nodes=refs))
        for k in range(copies):
            for r in osmium.FileProcessor(src, osmium.osm.RELATION):
                members = [(m.type, m.ref + k * ID_STRIDE, m.role) for m in r.members]
                out.add_relation(r.replace(id=r.id + k * ID_STRIDE, members=members))
    partial.rename(path)
    return path


def _rss() -> int:
    """Resident set size of this process now, in bytes (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def read(reader: Literal['gdal', 'quackosm'], path: Path) -> dict[str, float]:
    """Read one file with one reader in this process.

    Args:
        reader: ``'gdal'`` or ``'quackosm'``.
        path: the ``.osm.pbf`` file.

    Returns:
        Wall time, peak RSS above the RSS before the read, the peak RSS of a child
        process, and the number of features read.
    """
    warnings.simplefilter('ignore')
    # Both readers start from the same imports, so the peaks compare the reads alone.
    from torchgeo_geolink.datasets.osm_reader import read_vector_file

    before = _rss()
    start = time.perf_counter()
    frames = read_vector_file(str(path), None, pbf_reader=reader)
    seconds = time.perf_counter() - start
    features = sum(len(f) for f in frames)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        'seconds': seconds,
        'peak_rss': peak,
        'child_peak_rss': child,
        'features': features,
    }


def run(reader: str, path: Path) -> dict[str, float] | str:
    """Measure one reader on one file in a fresh subprocess.

    Args:
        reader: ``'gdal'`` or ``'quackosm'``.
        path: the file.

    Returns:
        The measurements, or why there are none.
    """
    out = subprocess.run(
        [sys.executable, __file__, '--read', reader, str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ['failed'])[-1]
        return last[:100]
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument(
        '--copies',
        type=int,
        nargs='*',
        default=[10, 40],
        help='also read the Helsinki extract tiled this many times (needs pyosmium)',
    )
    parser.add_argument('--quick', action='store_true', help='1 run each')
    parser.add_argument('--read', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read is not None:
        reader = cast(Literal['gdal', 'quackosm'], args.read[0])
        print(json.dumps(read(reader, Path(args.read[1]))))
        return
    if args.quick:
        args.repeat, args.copies = 1, []
    header('Reading .osm.pbf: GDAL (default) vs QuackOSM')
    files = {name: DATA / f'{name}.osm.pbf' for name in EXTRACTS}
    if args.copies:
        try:
            workdir = Path(tempfile.gettempdir()) / 'geolink_pbf_bench'
            for copies in args.copies:
                files[f'helsinki x{copies}'] = tiled_pbf(copies, workdir)
        except ImportError:
            print('pyosmium is not installed: no tiled files')
    rows = []
    for name, path in files.items():
        size = path.stat().st_size / 2**10
        best: dict[str, dict[str, float] | str] = {}
        for reader in ('gdal', 'quackosm'):
            runs = [run(reader, path) for _ in range(args.repeat)]
            failed = [r for r in runs if isinstance(r, str)]
            timed = [r for r in runs if isinstance(r, dict)]
            best[reader] = (
                failed[0] if failed else min(timed, key=lambda r: r['seconds'])
            )
        gdal = best['gdal']
        if isinstance(gdal, str):
            sys.exit(f'GDAL could not read {path}: {gdal}')
        for reader, r in best.items():
            if isinstance(r, str):
                rows.append([name, size, reader, r, '', '', '', '', ''])
                continue
            rows.append(
                [
                    name,
                    size,
                    reader,
                    r['features'],
                    r['seconds'],
                    r['seconds'] / gdal['seconds'],
                    r['peak_rss'] / 2**20,
                    r['peak_rss'] / gdal['peak_rss'],
                    r['child_peak_rss'] / 2**20 if reader == 'quackosm' else 0.0,
                ]
            )
    print_table(
        rows,
        [
            'extract',
            'file KiB',
            'reader',
            'features',
            'seconds (best)',
            'time vs GDAL',
            'peak RSS MiB above imports',
            'RSS vs GDAL',
            'child peak RSS MiB',
        ],
    )
    print(f'best of {args.repeat} fresh processes per reader and file')


if __name__ == '__main__':
    main()
