"""Mean- and z-normalisation of metric maps within a mask (the m*/z* maps of RESTplus/DPABI)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from brainarr._core.attrs import carry_attrs, record_history
from brainarr._core.dims import SPATIAL
from brainarr._core.validation import check_dims, describe
from brainarr.exceptions import DimensionError
from brainarr.metrics._common import prepare_mask

__all__ = ["normalize"]


@record_history
def normalize(
    map: xr.DataArray,
    mask: xr.DataArray,
    *,
    method: Literal["mean", "z"] = "mean",
) -> xr.DataArray:
    r"""Divide a map by its mask mean ("m" variant) or z-score it within the mask ("z" variant).

    Parameters
    ----------
    map : xarray.DataArray (..., x, y, z)
        A metric map (ALFF, ReHo, DC, FC...), optionally with leading ``subject``/``seed``
        dims; the statistics are taken separately for each of their entries.
    mask : xarray.DataArray (x, y, z) of bool
        The voxels over which mean and standard deviation are taken.
    method : {"mean", "z"}, default "mean"
        ``"mean"``: :math:`m / \bar m`; ``"z"``: :math:`(m - \bar m) / s`.

    Returns
    -------
    xarray.DataArray (..., x, y, z), float32
        Named ``"m" + name`` or ``"z" + name`` (``malff``, ``zalff``...), dimensionless,
        0 outside the mask; same chunks as ``map``. The per-map mean and standard deviation
        stay lazy (one 0-d reduction per map, computed with the result).

    Notes
    -----
    With :math:`M` the set of mask voxels (all of them, also those where the map is 0, as in
    RESTplus/DPABI),

    .. math::

       \bar m = \frac{1}{|M|}\sum_{v \in M} m_v, \qquad
       s = \sqrt{\frac{1}{|M| - 1}\sum_{v \in M} (m_v - \bar m)^2} .

    The statistics are accumulated in double precision. A map whose mask mean (or standard
    deviation) is 0 gives non-finite values, which become 0.
    """
    func = "brainarr.metrics.normalize"
    check_dims(map, SPATIAL, func=func)
    if method not in ("mean", "z"):
        raise ValueError(f"{func}: method must be 'mean' or 'z', got {method!r}")
    if mask is None:
        raise DimensionError(f"{func}: a bool mask (x, y, z) is required to normalise {describe(map)}")
    mask = prepare_mask(mask, map, func=func)
    values = map.astype(np.float64).where(mask)
    mean = values.mean(dim=list(SPATIAL), skipna=True)
    if method == "mean":
        out = map / mean
        prefix, long_prefix = "m", "mean-normalised"
    else:
        std = values.std(dim=list(SPATIAL), ddof=1, skipna=True)
        out = (map - mean) / std
        prefix, long_prefix = "z", "z-normalised"
    out = out.where(np.isfinite(out) & mask, 0.0).astype(np.float32)
    out = out.transpose(*map.dims)
    name = str(map.name) if map.name is not None else "map"
    out.name = prefix + name
    base_long = map.attrs.get("long_name", name)
    out.attrs = {
        "long_name": f"{long_prefix} {base_long}",
        "units": "1",
        "description": (
            f"{name} divided by its mean over the mask"
            if method == "mean"
            else f"{name} minus its mean over the mask, divided by its standard deviation (ddof=1)"
        ),
        "normalization": method,
    }
    for key in ("references", "band", "neighbourhood", "threshold"):
        if key in map.attrs:
            out.attrs[key] = map.attrs[key]
    return carry_attrs(map, out)
