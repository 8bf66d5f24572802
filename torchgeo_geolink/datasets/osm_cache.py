# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""On-disk cache of prepared OSM stores, shared by DataLoader workers and DDP ranks.

An entry is a folder of ``.npy`` arrays (memory-mapped when opened) and a ``meta.json``,
named by a key that hashes the content of the files read, every reading option, the
dataset CRS, the tag encoder's identity, the key weights and the graph mode. The first
process that needs an entry builds it (rank 0 when ``RANK`` is set; others wait for it
and map it); a lock file keeps two processes from building the same entry.
"""

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import OSMFileError
from .osm_store import STORE_VERSION, OSMStore

__all__ = ('cache_key', 'file_digest', 'open_or_build')

#: Extra files read with a shapefile (their content is part of the key).
_SHAPEFILE_SIDECARS = ('.dbf', '.shx', '.prj', '.cpg')
#: Seconds between two looks for an entry another process builds.
POLL_SECONDS = 0.2


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE2b digest of a file's content (and of a shapefile's sidecar files).

    Args:
        path: the file.

    Returns:
        The hex digest.

    .. versionadded:: 0.1
    """
    digest = hashlib.blake2b(digest_size=16)
    path = Path(path)
    parts = [path]
    if path.suffix.lower() == '.shp':
        parts += [
            p
            for ext in _SHAPEFILE_SIDECARS
            for p in (path.with_suffix(ext), path.with_suffix(ext.upper()))
            if p.is_file()
        ]
    for part in parts:
        digest.update(part.name.encode('utf-8'))
        with part.open('rb') as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def cache_key(files: list[str], options: Mapping[str, Any]) -> str:
    """Key of a cache entry.

    Args:
        files: the files read.
        options: everything else that changes the store (JSON-serializable).

    Returns:
        A hex key.

    .. versionadded:: 0.1
    """
    payload = {
        'version': STORE_VERSION,
        'files': [(os.path.abspath(f), file_digest(f)) for f in files],
        'options': options,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]


def _is_builder() -> bool:
    """Tell whether this process may build entries (not a DDP rank other than 0).

    Returns:
        True unless ``RANK`` names a rank other than 0.
    """
    return os.environ.get('RANK', '0') == '0'


def _wait(entry: Path, lock: Path | None, timeout: float) -> bool:
    """Wait for another process to finish an entry.

    Args:
        entry: the entry folder.
        lock: the lock file of its builder (None: wait for the entry only).
        timeout: seconds to wait at most.

    Returns:
        True when the entry is ready, False when its builder gave up (the lock vanished
        without an entry).

    Raises:
        OSMFileError: if the entry is not ready after *timeout* seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (entry / 'meta.json').is_file():
            return True
        if lock is not None and not lock.exists():
            return (entry / 'meta.json').is_file()
        time.sleep(POLL_SECONDS)
    msg = (
        f'{entry}: no OSM store after waiting {timeout:.0f} s for the process that builds it'
        + (f' (remove {lock} if that process died)' if lock is not None else '')
    )
    raise OSMFileError(msg)


def open_or_build(
    root: str | os.PathLike[str],
    key: str,
    build: Callable[[], OSMStore],
    load: Callable[[Path], OSMStore],
    timeout: float = 7200.0,
) -> tuple[OSMStore, bool]:
    """Open a cache entry, building it first if no process has.

    Args:
        root: the cache folder.
        key: the entry's key (see :func:`cache_key`).
        build: builds the store when the entry is missing (its result is saved).
        load: opens an existing entry.
        timeout: seconds to wait for another process that builds the entry.

    Returns:
        The store and whether it was built by this call.

    Raises:
        OSMFileError: if the entry cannot be written or another builder does not finish
            in time.

    .. versionadded:: 0.1
    """
    root = Path(root)
    entry = root / key
    if (entry / 'meta.json').is_file():
        return load(entry), False
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSMFileError(
            f'{root}: cannot create the OSM cache folder ({err})'
        ) from err
    if not _is_builder():
        _wait(entry, None, timeout)
        return load(entry), False
    lock = root / f'{key}.lock'
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _wait(entry, lock, timeout):
                return load(entry), False
            continue  # the other builder failed: try to build it here
        break
    try:
        os.write(fd, str(os.getpid()).encode())
        if (
            entry / 'meta.json'
        ).is_file():  # finished between our first look and the lock
            return load(entry), False
        store = build()
        store.save(entry)
        return store, True
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)
