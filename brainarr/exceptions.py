"""Exceptions and warnings raised by brainarr.

Every exception subclasses both :class:`BrainarrError` and a builtin, so users can catch
either (``except ValueError`` keeps working). Messages name the file, subject or variable,
what was expected, what was found, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BrainarrError",
    "ChunkingError",
    "DataValidationError",
    "DimensionError",
    "GridMismatchError",
    "InputFileError",
    "MaskWarning",
    "MissingMetadataError",
    "ObliqueAffineWarning",
    "StoreError",
    "StoreLockedError",
]


class BrainarrError(Exception):
    """Base class of every brainarr exception."""


class GridMismatchError(BrainarrError, ValueError):
    """Arrays or subjects do not share one voxel grid, affine, TR or number of volumes."""


class DimensionError(BrainarrError, TypeError):
    """An array has the wrong number or names of dimensions."""


class MissingMetadataError(BrainarrError, ValueError):
    """Required metadata (TR, affine, a phenotype column) is missing or invalid."""


class ChunkingError(BrainarrError, ValueError):
    """An operation needs a chunk layout the input does not have."""


class DataValidationError(BrainarrError, ValueError):
    """Data values are unusable (NaN, Inf, constant voxels inside a mask, empty mask)."""


class StoreError(BrainarrError, OSError):
    """A cohort store cannot be read or written, or is not a brainarr store."""


class StoreLockedError(StoreError):
    """Another writer holds a cohort store's lock (a second ingest or run on the same store)."""


class InputFileError(BrainarrError, OSError):
    """An input file (NIfTI image, confounds or phenotype table) is unreadable, truncated or corrupt.

    The message names the file and the problem.
    """


class MaskWarning(UserWarning):
    """A mask is suspicious (for example it contains constant voxels)."""


class ObliqueAffineWarning(UserWarning):
    """The affine is not axis-aligned: spatial coordinates fall back to voxel indices."""
