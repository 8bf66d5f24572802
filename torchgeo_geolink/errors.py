# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Exception types raised by torchgeo-geolink.

Every error names what failed (the file, the feature, the checkpoint key) and what is
wrong, so that a bad input is reported where it enters, not as a stack trace from deep
inside a dependency.
"""

__all__ = (
    'CheckpointError',
    'GeoLinkError',
    'InvalidFeatureError',
    'OSMFileError',
    'PredictionError',
    'PreparedDataError',
    'RasterFileError',
    'TagEncoderMismatchError',
    'TagEncoderWeightsNotFoundError',
    'TileError',
)


class GeoLinkError(Exception):
    """Base class of all torchgeo-geolink errors.

    .. versionadded:: 0.1
    """


class OSMFileError(GeoLinkError):
    """An OSM vector file is missing, unreadable, corrupt, empty or lacks a CRS.

    .. versionadded:: 0.1
    """


class InvalidFeatureError(GeoLinkError):
    """A feature's geometry or tags cannot be used (and could not be repaired).

    .. versionadded:: 0.1
    """


class TagEncoderMismatchError(GeoLinkError):
    """OSM graphs embedded with one tag encoder are fed to weights trained with another.

    .. versionadded:: 0.1
    """


class TagEncoderWeightsNotFoundError(GeoLinkError):
    """The weights of a text model used to embed OSM tags are not available locally.

    .. versionadded:: 0.1
    """


class CheckpointError(GeoLinkError):
    """A model checkpoint cannot be read or does not match the model it is loaded into.

    .. versionadded:: 0.1
    """


class PredictionError(GeoLinkError):
    """A prediction lacks what is needed to georeference or write it.

    .. versionadded:: 0.1
    """


class PreparedDataError(GeoLinkError):
    """A prepared tile corpus is incomplete, corrupt or was made with other settings.

    .. versionadded:: 0.1
    """


class RasterFileError(GeoLinkError):
    """A raster file cannot be read where a window needs it (e.g. it is truncated).

    .. versionadded:: 0.1
    """


class TileError(GeoLinkError):
    """A file of a tile-format dataset is missing, unreadable or malformed.

    .. versionadded:: 0.1
    """
