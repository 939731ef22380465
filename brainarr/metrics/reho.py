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
from brainarr.metrics._flavours import afni_rank_time, neighbour_sum_block
from brainarr.metrics._kernels import kendall_w_block, rank_time

__all__ = ["REHO_TIES", "reho"]

REHO_REFERENCES = (
    "Zang Y, Jiang T, Lu Y, He Y, Tian L. Regional homogeneity approach to fMRI data analysis. "
    "NeuroImage 2004;22:394-400. doi:10.1016/j.neuroimage.2003.12.030; "
    "Kendall MG, Babington Smith B. The problem of m rankings. Ann Math Stat 1939;10:275-287"
)

AFNI_REHO_REFERENCES = (
    "; Kendall MG, Gibbons JD. Rank Correlation Methods. 5th ed. London: Edward Arnold; 1990; "
    "Taylor PA, Saad ZS. FATCAT: (an efficient) Functional And Tractographic Connectivity Analysis "
    "Toolbox. Brain Connect 2013;3:523-535. doi:10.1089/brain.2013.0154 (AFNI 3dReHo)"
)

#: Values of ``ties`` accepted by :func:`reho`.
REHO_TIES = ("dpabi", "afni")


def _halo_map(block_func, data, neighbourhood: int, out_last: int, dtype):
    """Apply ``block_func(block_with_halo, neighbourhood)`` to ``(..., x, y, z, c)`` data.

    A halo of one voxel (0 outside the array) is exchanged between dask chunks
    (``map_overlap``) or padded for numpy input; the result has ``out_last`` entries on the
    last axis and the spatial chunks of ``data``.
    """
    ndim = data.ndim
    spatial_axes = (ndim - 4, ndim - 3, ndim - 2)
    if isinstance(data, dsa.Array):
        depth = {ax: (1 if ax in spatial_axes else 0) for ax in range(ndim)}
        return dsa.map_overlap(
            block_func,
            data,
            depth=depth,
            boundary=0,
            trim=False,
            chunks=(*data.chunks[:-1], (out_last,)),
            dtype=dtype,
            meta=np.array((), dtype=dtype),
            neighbourhood=neighbourhood,
        )
    pad = [(0, 0)] * ndim
    for ax in spatial_axes:
        pad[ax] = (1, 1)
    return block_func(np.pad(data, pad), neighbourhood)


def _w_afni(ranks, aux, neighbourhood: int, n_time: int):
    """3dReHo's tie-corrected W from its ranks and ``aux = [tie term, in mask]`` per voxel."""
    w0 = _w_from_ranks(ranks, neighbourhood)  # 12 S / (K^2 (T^3 - T))
    sums = _halo_map(neighbour_sum_block, aux, neighbourhood, 2, np.float64)
    tie_sum, k = sums[..., 0], sums[..., 1]
    n3 = float(n_time) ** 3 - n_time
    # 12 S / (K^2 (T^3 - T) - K sum(T_v)) = w0 K (T^3 - T) / (K (T^3 - T) - sum(T_v))
    lib = dsa if isinstance(w0, dsa.Array) else np
    with np.errstate(divide="ignore", invalid="ignore"):
        w = lib.where(k > 0, w0 * (k * n3) / (k * n3 - tie_sum), 0.0)
    return w.astype(np.float32)


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
    ties: Literal["dpabi", "afni"] = "dpabi",
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
        neighbours that exist (as AFNI ``3dReHo`` does); ``"zero"`` sets them to 0 as DPABI
        does.
    ties : {"dpabi", "afni"}, default "dpabi"
        How tied values are ranked and corrected for: ``"dpabi"``: average ranks, no
        correction (RESTplus/DPABI); ``"afni"``: AFNI ``3dReHo``'s ranks and tie-corrected W
        (also xcp_d's volumetric ReHo, which runs ``3dReHo -nneigh 27``); see Notes.

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

    With ``ties="afni"`` (``3dReHo -mask``; ``CalcRanksForReHo`` and ``ReHoIt`` in
    src/ptaylor/rsfc.c of AFNI), W has Kendall and Gibbons' tie correction,

    .. math::

       W = \frac{12 \sum_t (R_t - \bar R)^2}{K^2 (T^3 - T) - K \sum_{v} T_v}, \qquad
       T_v = \sum_{g} (t_g^3 - t_g) ,

    with :math:`T_v` summed over the :math:`K` in-mask voxels of the neighbourhood and
    :math:`t_g` the sizes of the tie groups of voxel :math:`v`, but with 3dReHo's own ranks:

    - the values are sorted (GSL heapsort) and ranked 1..T in that order; ties are looked
      for in the sorted values *truncated to integers* (3dReHo stores them in an ``int``
      array), so values that differ but have the same integer part are tied: on data in
      percent-signal or standardised units (fluctuations of order 1) most values are tied,
      and the tie correction is large;
    - each run of equal integers gets its average rank and adds :math:`t^3 - t` to
      :math:`T_v`, except the run holding the largest values, which 3dReHo's loop never
      closes: it keeps distinct ranks (in heapsort order where values are equal) and is not
      counted in :math:`T_v` (a constant voxel thus gets ranks 1..T);
    - the neighbourhoods are the same spheres (radius 1.9, 1.7, 1.1 voxels: 27, 19, 7
      voxels), truncated at the array border and restricted to the mask; in-mask constant
      voxels are included.

    Without ties (integer parts all distinct) both settings give the same W. The tie terms
    and the in-mask counts are summed over the neighbourhood with the same one-voxel halo,
    so the result does not depend on the chunking either.

    References
    ----------
    Zang et al. 2004; Kendall and Babington Smith 1939 (see ``attrs["references"]``).
    """
    func = "brainarr.metrics.reho"
    if neighbourhood not in (7, 19, 27):
        raise ValueError(f"{func}: neighbourhood must be 7, 19 or 27, got {neighbourhood!r}")
    if edge not in ("truncate", "zero"):
        raise ValueError(f"{func}: edge must be 'truncate' or 'zero', got {edge!r}")
    if ties not in REHO_TIES:
        raise ValueError(f"{func}: ties must be 'dpabi' or 'afni', got {ties!r}")
    if mask is None:
        raise DimensionError(f"{func}: a bool mask (x, y, z) is required")
    prepared = prepare_bold(bold, func=func)
    mask = prepare_mask(mask, prepared, func=func)
    lead = [d for d in prepared.dims if d not in (*SPATIAL, TIME)]
    if ties == "dpabi":
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
        w = _w_from_ranks(ranks.data, neighbourhood)
    else:
        aux_dim = "reho_aux"
        ranks, aux = xr.apply_ufunc(
            afni_rank_time,
            prepared,
            mask,
            input_core_dims=[[TIME], []],
            output_core_dims=[[TIME], [aux_dim]],
            dask="parallelized",
            output_dtypes=[np.float32, np.float64],
            dask_gufunc_kwargs={"output_sizes": {aux_dim: 2}},
            keep_attrs=False,
        )
        ranks = ranks.transpose(*lead, *SPATIAL, TIME)
        aux = aux.transpose(*lead, *SPATIAL, aux_dim)
        w = _w_afni(ranks.data, aux.data, neighbourhood, prepared.sizes[TIME])
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
        description=(
            f"Kendall's W over {neighbourhood}-voxel neighbourhoods within the mask"
            + ("" if ties == "dpabi" else ", AFNI 3dReHo ranks and tie correction")
        ),
        references=REHO_REFERENCES + ("" if ties == "dpabi" else AFNI_REHO_REFERENCES),
        neighbourhood=int(neighbourhood),
        edge=edge,
        ties=ties,
    )
    return carry_attrs(bold, out)
