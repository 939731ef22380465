"""Regional homogeneity (ReHo): Kendall's coefficient of concordance of neighbouring voxels."""

from __future__ import annotations

from typing import Literal

import dask.array as dsa
import numpy as np
import xarray as xr

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import SPATIAL, TIME
from brainarr.exceptions import DimensionError
from brainarr.metrics._common import prepare_bold, prepare_mask
from brainarr.metrics._kernels import kendall_w_block, rank_time

__all__ = ["reho"]

REHO_REFERENCES = (
    "Zang Y, Jiang T, Lu Y, He Y, Tian L. Regional homogeneity approach to fMRI data analysis. "
    "NeuroImage 2004;22:394-400. doi:10.1016/j.neuroimage.2003.12.030; "
    "Kendall MG, Babington Smith B. The problem of m rankings. Ann Math Stat 1939;10:275-287"
)


def _w_from_ranks(ranks: np.ndarray | dsa.Array, neighbourhood: int) -> np.ndarray | dsa.Array:
    """Kendall's W map from masked ranks ``(..., x, y, z, time)``; returns ``(..., x, y, z)``."""
    ndim = ranks.ndim
    spatial_axes = (ndim - 4, ndim - 3, ndim - 2)
    if isinstance(ranks, dsa.Array):
        depth = {ax: (1 if ax in spatial_axes else 0) for ax in range(ndim)}
        out_chunks = (*ranks.chunks[:-1], (1,))
        w = dsa.map_overlap(
            kendall_w_block,
            ranks,
            depth=depth,
            boundary=0,
            trim=False,
            chunks=out_chunks,
            dtype=np.float32,
            meta=np.array((), dtype=np.float32),
            neighbourhood=neighbourhood,
        )
        return w[..., 0]
    pad = [(0, 0)] * ndim
    for ax in spatial_axes:
        pad[ax] = (1, 1)
    return kendall_w_block(np.pad(ranks, pad), neighbourhood)[..., 0]


@record_history
def reho(
    bold: xr.DataArray,
    mask: xr.DataArray,
    *,
    neighbourhood: Literal[7, 19, 27] = 27,
    edge: Literal["truncate", "zero"] = "truncate",
) -> xr.DataArray:
    r"""Regional homogeneity: Kendall's W of each voxel's series with its in-mask neighbours.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        Preprocessed (usually band-pass filtered) BOLD, optionally with a leading ``subject``
        dim; ``time`` must be one dask chunk. No filtering or detrending is done here.
    mask : xarray.DataArray (x, y, z) of bool
        Voxels to analyse; only in-mask neighbours count.
    neighbourhood : {7, 19, 27}, default 27
        27: the 3 x 3 x 3 cube; 19: the cube without its 8 corners; 7: the centre and its 6
        face neighbours.
    edge : {"truncate", "zero"}, default "truncate"
        Voxels on the outermost slices of the array: ``"truncate"`` computes them with the
        neighbours that exist; ``"zero"`` sets them to 0 as DPABI does.

    Returns
    -------
    xarray.DataArray (..., x, y, z), float32
        ``reho`` (units ``"1"``), 0 outside the mask, with the spatial chunks of ``bold``.

    Notes
    -----
    Each voxel's series is ranked over time (1..T, ties get the average of their ranks).
    For an in-mask voxel with :math:`K` in-mask voxels in its neighbourhood (itself
    included), with :math:`R_t` the sum of their ranks at time :math:`t`,

    .. math::

       W = \frac{12 \sum_t (R_t - \bar R)^2}{K^2 (T^3 - T)} ,

    without a tie correction, as in RESTplus/DPABI (Zang et al. 2004). :math:`K = 1` gives
    :math:`W = 1` for a series without ties. The ranks are computed once per dask chunk, for
    the in-mask voxels only (out-of-mask voxels get rank 0, which is how the kernel knows they
    do not count); the neighbourhood sums come from 7, 19 or 27 shifted copies of the rank
    block, exchanged between chunks with a halo of one voxel (``dask.array.map_overlap``), so
    the result does not depend on the chunking. Rank sums are exact in float32 (multiples of
    1/2 well below :math:`2^{23}`) and :math:`S` is accumulated in float64.

    DPABI leaves the outermost slices of the array at 0; brainarr by default computes them
    with the truncated neighbourhood (``edge="zero"`` reproduces DPABI). In practice brain
    masks do not reach the array border, so both agree.

    References
    ----------
    Zang et al. 2004; Kendall and Babington Smith 1939 (see ``attrs["references"]``).
    """
    func = "brainarr.metrics.reho"
    if neighbourhood not in (7, 19, 27):
        raise ValueError(f"{func}: neighbourhood must be 7, 19 or 27, got {neighbourhood!r}")
    if edge not in ("truncate", "zero"):
        raise ValueError(f"{func}: edge must be 'truncate' or 'zero', got {edge!r}")
    if mask is None:
        raise DimensionError(f"{func}: a bool mask (x, y, z) is required")
    prepared = prepare_bold(bold, func=func)
    mask = prepare_mask(mask, prepared, func=func)
    lead = [d for d in prepared.dims if d not in (*SPATIAL, TIME)]
    ranks = xr.apply_ufunc(
        rank_time,
        prepared,
        mask,
        input_core_dims=[[TIME], []],
        output_core_dims=[[TIME]],
        dask="parallelized",
        output_dtypes=[np.float32],
        keep_attrs=False,
    ).transpose(*lead, *SPATIAL, TIME)
    data = ranks.data
    w = _w_from_ranks(data, neighbourhood)
    out = xr.DataArray(
        w,
        dims=(*lead, *SPATIAL),
        coords={k: v for k, v in prepared.coords.items() if TIME not in v.dims},
    )
    if edge == "zero":
        border = np.zeros(tuple(prepared.sizes[d] for d in SPATIAL), dtype=bool)
        border[1:-1, 1:-1, 1:-1] = True
        out = out.where(xr.DataArray(border, dims=SPATIAL), np.float32(0))
    out = set_metadata(
        out,
        name="reho",
        long_name="regional homogeneity (Kendall's W)",
        units="1",
        description=f"Kendall's W over {neighbourhood}-voxel neighbourhoods within the mask",
        references=REHO_REFERENCES,
        neighbourhood=int(neighbourhood),
        edge=edge,
    )
    return carry_attrs(bold, out)
