# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Write ``_static/empty.inv``: a valid Sphinx inventory that lists no objects.

``conf.py`` gives every intersphinx project this file as a second location, so an
offline build (CI, air-gapped machines) loads the empty inventory instead of warning
that the project's ``objects.inv`` is unreachable. Run once with
``python docs/make_empty_inventory.py``; the output is committed.
"""

import zlib
from pathlib import Path

HEADER = (
    '# Sphinx inventory version 2\n'
    '# Project: offline placeholder\n'
    '# Version: 0\n'
    '# The remainder of this file is compressed using zlib.\n'
)


def main() -> None:
    """Write the empty inventory next to this script."""
    out = Path(__file__).parent / '_static' / 'empty.inv'
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(HEADER.encode() + zlib.compress(b''))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
