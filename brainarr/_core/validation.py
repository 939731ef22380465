"""Input validation shared by every layer: dims, chunks, TR, affine, grids, data checks."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable

import numpy as np
import xarray as xr

from brainarr._core.dims import SPATIAL, TIME
from brainarr._core.options import OPTIONS
from brainarr.exceptions import (
    ChunkingError,
    DataValidationError,
    DimensionError,
    GridMismatchError,
    MissingMetadataError,
)

__all__ = [
    "MISSING_MARKERS",
    "check_dims",
    "check_same_grid",
    "check_time_chunk",
    "data_problem",
    "describe",
    "get_affine",
    "get_tr",
]

logger = logging.getLogger("brainarr")

#: Table cells that mean "missing" (BIDS writes ``n/a``; the others are spreadsheet and pandas
#: spellings), compared after stripping whitespace and lower-casing.
MISSING_MARKERS = frozenset({"", "n/a", "na", "n.a.", "nan", "-nan", "null", "none", "<na>", "#n/a", "-", "?"})


def describe(obj: xr.DataArray | xr.Dataset) -> str:
    """Name an object for an error message: its ``source`` file if known, else its name."""
    source = obj.attrs.get("source")
    name = getattr(obj, "name", None)
    if source:
        return f"{source!s}"
    return repr(name) if name is not None else f"the {type(obj).__name__}"


def check_dims(da: xr.DataArray, required: Iterable[str], *, func: str, allowed_extra: bool = True) -> None:
    """Raise :class:`DimensionError` unless ``da`` has every dim in ``required``.

    Parameters
    ----------
    da : xarray.DataArray
        The input.
    required : iterable of str
        Dims that must be present.
    func : str
        Name of the calling function, for the message.
    allowed_extra : bool, default True
        Whether other dims (``subject``, ``seed``) may be present.
    """
    if not isinstance(da, xr.DataArray):
        raise DimensionError(f"{func} expects an xarray.DataArray, got {type(da).__name__}")
    required = tuple(required)
    missing = [d for d in required if d not in da.dims]
    extra = [d for d in da.dims if d not in required]
    if missing or (extra and not allowed_extra):
        raise DimensionError(
            f"{func}: {describe(da)} has dims {da.dims}; expected {required}"
            + (" (plus optional leading dims such as 'subject')" if allowed_extra else "")
            + (f"; missing {missing}" if missing else "")
            + ("" if allowed_extra or not extra else f"; unexpected {extra}")
        )


def check_time_chunk(da: xr.DataArray, *, func: str) -> None:
    """Raise :class:`ChunkingError` if ``time`` is split over several dask chunks."""
    if da.chunks is None or TIME not in da.dims:
        return
    nchunks = len(da.chunksizes[TIME])
    if nchunks > 1:
        raise ChunkingError(
            f"{func} needs each voxel's whole time series in one chunk, but {describe(da)} "
            f"has {nchunks} chunks along 'time'; rechunk with `.chunk(time=-1)` or "
            "`brainarr.rechunk_for_metrics(obj)`"
        )


def get_tr(da: xr.DataArray | xr.Dataset, tr: float | None = None, *, func: str) -> float:
    """Return the repetition time in seconds from ``tr`` or ``attrs["tr"]``.

    Raises
    ------
    MissingMetadataError
        If neither gives a finite positive number.
    """
    value = tr if tr is not None else da.attrs.get("tr")
    if value is None:
        raise MissingMetadataError(
            f"{func}: {describe(da)} has no repetition time (attrs['tr']); pass tr=... in seconds"
        )
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise MissingMetadataError(f"{func}: repetition time of {describe(da)} must be positive, got {value}")
    return value


def get_affine(da: xr.DataArray | xr.Dataset, *, func: str) -> np.ndarray:
    """Return ``attrs["affine"]`` as a 4 x 4 float array, or raise :class:`MissingMetadataError`."""
    if "affine" not in da.attrs:
        raise MissingMetadataError(f"{func}: {describe(da)} has no 'affine' attribute (voxel-to-MNI matrix, 4 x 4)")
    affine = np.asarray(da.attrs["affine"], dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise MissingMetadataError(f"{func}: affine of {describe(da)} must be a finite 4 x 4 matrix")
    return affine


def check_same_grid(
    a: xr.DataArray | xr.Dataset,
    b: xr.DataArray | xr.Dataset,
    *,
    names: tuple[str, str],
    func: str,
    atol: float = 1e-4,
) -> None:
    """Raise :class:`GridMismatchError` unless ``a`` and ``b`` share shape and coordinates in space."""
    for dim in SPATIAL:
        if dim not in a.dims or dim not in b.dims:
            continue
        if a.sizes[dim] != b.sizes[dim]:
            raise GridMismatchError(
                f"{func}: {names[0]} and {names[1]} are on different grids: "
                f"{dim} has {a.sizes[dim]} vs {b.sizes[dim]} voxels; resample one onto the other"
            )
        ca, cb = np.asarray(a[dim].values, float), np.asarray(b[dim].values, float)
        if not np.allclose(ca, cb, atol=atol):
            worst = float(np.max(np.abs(ca - cb)))
            raise GridMismatchError(
                f"{func}: {names[0]} and {names[1]} are on different grids: "
                f"{dim} coordinates differ by up to {worst:g} mm"
            )


def data_problem(message: str, *, category: type[Warning] | None = None) -> None:
    """Report a data-quality problem as the ``data_validation`` option asks.

    ``"raise"`` raises :class:`DataValidationError`, ``"warn"`` warns (``category`` or
    ``UserWarning``), ``"log"`` logs a warning on the ``brainarr`` logger.
    """
    mode = OPTIONS["data_validation"]
    if mode == "raise":
        raise DataValidationError(message)
    if mode == "warn":
        warnings.warn(message, category or UserWarning, stacklevel=3)
    else:
        logger.warning(message)
