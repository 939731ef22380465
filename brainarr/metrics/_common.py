"""Input checks and layout helpers shared by the metric wrappers (private)."""

from __future__ import annotations

import dask
import numpy as np
import xarray as xr

from brainarr._core.dims import SPATIAL, TIME
from brainarr._core.options import OPTIONS
from brainarr._core.validation import check_dims, check_same_grid, check_time_chunk, describe
from brainarr.exceptions import DataValidationError, DimensionError

__all__ = ["finish_map", "prepare_bold", "prepare_mask", "spatial_first"]


def prepare_bold(bold: xr.DataArray, *, func: str) -> xr.DataArray:
    """Validate BOLD and transpose it to ``(..., x, y, z, time)``.

    Leading dims (``subject``) are kept in their order; time must be one chunk.
    """
    check_dims(bold, (*SPATIAL, TIME), func=func)
    check_time_chunk(bold, func=func)
    if bold.sizes[TIME] < 3:
        raise ValueError(f"{func}: {describe(bold)} has {bold.sizes[TIME]} time points; at least 3 are needed")
    lead = [d for d in bold.dims if d not in (*SPATIAL, TIME)]
    bold = bold.transpose(*lead, *SPATIAL, TIME)
    return _checked_finite(bold, func=func)


def _report_non_finite(block: np.ndarray, what: str, mode: str) -> np.ndarray:
    """Apply the ``data_validation`` mode ``mode`` if ``block`` holds NaN or Inf values."""
    finite = np.isfinite(block)
    if not finite.all():
        n_bad = int(block.size - np.count_nonzero(finite))
        message = (
            f"{what} contains {n_bad} NaN/Inf values (in a chunk of shape {block.shape}); "
            "metrics of those voxels and of their neighbours would be NaN. Fill or mask them first"
        )
        if mode == "raise":
            raise DataValidationError(message)
        if mode == "warn":
            import warnings

            warnings.warn(message, UserWarning, stacklevel=2)
        else:
            import logging

            logging.getLogger("brainarr").warning(message)
    return block


def _checked_finite(bold: xr.DataArray, *, func: str) -> xr.DataArray:
    """Check BOLD for NaN/Inf as the ``data_validation`` option says: lazily, chunk by chunk.

    The option in effect when the metric is called is the one applied when the data are read.
    """
    what = f"{func}: BOLD {describe(bold)}"
    mode = OPTIONS["data_validation"]
    data = bold.data
    if dask.is_dask_collection(data):
        checked = data.map_blocks(_report_non_finite, what, mode, dtype=data.dtype, meta=data._meta)
        return bold.copy(data=checked)
    _report_non_finite(np.asarray(data), what, mode)
    return bold


def prepare_mask(
    mask: xr.DataArray | None, like: xr.DataArray, *, func: str, name: str = "mask"
) -> xr.DataArray | None:
    """Check that ``mask`` is a bool ``(x, y, z)`` map on the grid of ``like``; return it ordered."""
    if mask is None:
        return None
    if not isinstance(mask, xr.DataArray):
        raise DimensionError(f"{func}: {name} must be a bool xarray.DataArray (x, y, z), got {type(mask).__name__}")
    check_dims(mask, SPATIAL, func=f"{func} ({name})", allowed_extra=False)
    if mask.dtype != bool:
        raise TypeError(
            f"{func}: {name} {describe(mask)} must be boolean, got dtype {mask.dtype}; "
            "threshold it first (e.g. `prob > 0.2`)"
        )
    check_same_grid(like, mask, names=(describe(like), f"{name} {describe(mask)}"), func=func)
    mask = mask.transpose(*SPATIAL)
    if not dask.is_dask_collection(mask.data) and not np.any(mask.values):
        # checked only when the mask is in memory: loading a lazy one here would be a hidden compute
        raise ValueError(f"{func}: {name} has no voxel ({describe(mask)} is all False)")
    # use the data's coordinates so that alignment never reindexes (grids already checked)
    return mask.assign_coords({d: like[d] for d in SPATIAL if d in like.coords})


def mask_numpy(mask: xr.DataArray, *, func: str) -> np.ndarray:
    """Return the mask as a numpy bool array (load it if it is dask-backed; a mask is small)."""
    data = mask.data
    if dask.is_dask_collection(data):
        data = data.compute()
    return np.asarray(data, dtype=bool)


def spatial_first(da: xr.DataArray, lead: list[str]) -> xr.DataArray:
    """Order an output map as ``(*lead, x, y, z)``."""
    return da.transpose(*lead, *SPATIAL)


def finish_map(da: xr.DataArray, mask: xr.DataArray | None) -> xr.DataArray:
    """Set voxels outside ``mask`` to 0 (lazily)."""
    if mask is None:
        return da
    return da.where(mask, da.dtype.type(0))
