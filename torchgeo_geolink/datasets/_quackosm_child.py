# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Child process of :func:`torchgeo_geolink.datasets.pbf_quackosm.read_pbf_quackosm`.

Run as a script: ``python _quackosm_child.py PBF RESULT WORKDIR [REGION_WKT]``. It
converts the file to GeoParquet with QuackOSM and imports nothing of this package.
"""

import sys

import shapely


def convert(path: str, result: str, work: str, region: str) -> None:
    """Convert one ``.osm.pbf`` file to GeoParquet with QuackOSM.

    Args:
        path: the file.
        result: the GeoParquet to write.
        work: QuackOSM's working folder.
        region: WKT of the region to keep, in WGS 84, or empty for all.
    """
    import quackosm

    try:  # offline, the wheel of DuckDB's spatial extension; online DuckDB fetches it
        import duckdb_extensions
    except ImportError:
        pass
    else:
        duckdb_extensions.import_extension('spatial')
    quackosm.convert_pbf_to_parquet(
        path,
        geometry_filter=shapely.from_wkt(region) if region else None,
        result_file_path=result,
        working_directory=work,
        ignore_cache=True,
        verbosity_mode='silent',
    )


if __name__ == '__main__':
    convert(*sys.argv[1:5])
