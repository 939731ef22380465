"""Seed-based functional connectivity: Pearson r and Fisher z of a seed's mean series."""

from __future__ import annotations

from collections.abc import Sequence

import dask
import numpy as np
import xarray as xr
from xarray.core import options as xr_options

from brainarr import datasets
from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import SEED, SPATIAL, TIME
from brainarr._core.validation import check_dims, check_same_grid, describe
from brainarr.exceptions import DimensionError
from brainarr.metrics._common import finish_map, prepare_bold, prepare_mask
from brainarr.metrics._kernels import FISHER_CLIP, fisher_z, pearson_with_seeds

__all__ = ["seed_fc"]

#: ``xr.set_options`` keywords that keep :func:`xarray.dot` on numpy's einsum (where xarray
#: would use ``opt_einsum`` when it is installed).
_NUMPY_EINSUM = {"use_opt_einsum": False} if "use_opt_einsum" in xr_options.OPTIONS else {}

FC_REFERENCES = (
    "Biswal B, Yetkin FZ, Haughton VM, Hyde JS. Functional connectivity in the motor cortex of "
    "resting human brain using echo-planar MRI. Magn Reson Med 1995;34:537-541. "
    "doi:10.1002/mrm.1910340409"
)


def _seed_masks(seeds, bold: xr.DataArray, *, func: str) -> xr.DataArray:
    """Turn the accepted seed specifications into a bool DataArray (seed, x, y, z)."""
    if isinstance(seeds, str) or (
        isinstance(seeds, Sequence) and not isinstance(seeds, xr.DataArray) and all(isinstance(s, str) for s in seeds)
    ):
        names = [seeds] if isinstance(seeds, str) else list(seeds)
        if not names:
            raise ValueError(f"{func}: the list of seed region names is empty")
        atlas = datasets.aal(like=bold.isel({TIME: 0}, drop=True))
        return datasets.regions(atlas, names)
    if not isinstance(seeds, xr.DataArray):
        raise DimensionError(
            f"{func}: seeds must be a bool DataArray (seed, x, y, z) or (x, y, z), or a list of AAL "
            f"region names; got {type(seeds).__name__}"
        )
    if SEED not in seeds.dims:
        check_dims(seeds, SPATIAL, func=f"{func} (seeds)", allowed_extra=False)
        name = str(seeds.name) if seeds.name is not None else "seed"
        seeds = seeds.expand_dims({SEED: [name]})
    check_dims(seeds, (SEED, *SPATIAL), func=f"{func} (seeds)", allowed_extra=False)
    if seeds.dtype != bool:
        raise TypeError(f"{func}: seeds {describe(seeds)} must be boolean, got dtype {seeds.dtype}")
    check_same_grid(bold, seeds, names=(describe(bold), f"seeds {describe(seeds)}"), func=func)
    return seeds.transpose(SEED, *SPATIAL)


@record_history
def seed_fc(
    bold: xr.DataArray,
    seeds: xr.DataArray | str | Sequence[str],
    *,
    mask: xr.DataArray | None = None,
) -> xr.Dataset:
    r"""Correlation of every voxel with the mean series of each seed region.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        Preprocessed BOLD, optionally with a leading ``subject`` dim; ``time`` one chunk.
    seeds : xarray.DataArray (seed, x, y, z) or (x, y, z) of bool, or str or list of str
        Seed masks (e.g. from :func:`brainarr.datasets.regions` or
        :func:`brainarr.datasets.spheres`), a single mask, or AAL region names (the AAL atlas
        is then resampled onto the grid of ``bold``).
    mask : xarray.DataArray (x, y, z) of bool, optional
        Brain mask: seed voxels outside it are ignored, and the maps are 0 outside it.

    Returns
    -------
    xarray.Dataset
        ``fc``: Pearson r, ``(seed, ..., x, y, z)`` float32, units ``"1"``;
        ``zfc``: Fisher z of ``fc``, same dims; ``seed_series``: the seeds' mean series
        ``(seed, ..., time)`` float64. The maps keep the spatial chunks of ``bold``.

    Raises
    ------
    ValueError
        If a seed has no voxel (inside the mask) - checked when the seed masks are in memory.

    Notes
    -----
    The seed series is the mean of the raw series of the seed's voxels (inside the mask):
    :math:`s_t = \frac{1}{|S|} \sum_{v \in S} x_{v,t}`. For each voxel,

    .. math::

       r = \frac{\sum_t (x_t - \bar x)(s_t - \bar s)}
                {\sqrt{\sum_t (x_t - \bar x)^2 \sum_t (s_t - \bar s)^2}}, \qquad
       z = \operatorname{artanh}(\operatorname{clip}(r, -1 + \epsilon, 1 - \epsilon))

    with :math:`\epsilon = 10^{-7}` (so :math:`|z| \le 8.4`). DPABI does not clip and gives
    an infinite z where :math:`r = 1` (e.g. a one-voxel seed correlated with itself);
    brainarr never emits inf or NaN. A constant voxel (or seed) gives :math:`r = z = 0`. The
    seed mean is a reduction over all spatial chunks; it stays part of the lazy graph.

    References
    ----------
    Biswal et al. 1995 (see ``attrs["references"]``).
    """
    func = "brainarr.metrics.seed_fc"
    prepared = prepare_bold(bold, func=func)
    mask = prepare_mask(mask, prepared, func=func)
    masks = _seed_masks(seeds, prepared, func=func)
    masks = masks.assign_coords({d: prepared[d] for d in SPATIAL if d in prepared.coords})
    if mask is not None:
        masks = masks & mask
    counts = masks.sum(dim=list(SPATIAL))
    if not dask.is_dask_collection(counts.data):
        empty = [str(s) for s, c in zip(masks[SEED].values, np.asarray(counts.data), strict=True) if c == 0]
        if empty:
            raise ValueError(
                f"{func}: seed(s) {empty} have no voxel"
                + (" inside the mask" if mask is not None else "")
                + f" on the grid of {describe(bold)}"
            )
    # The boolean masks go into the graph as they are (1 byte per voxel and seed, not 8 for
    # float weights): the sum over the seed's voxels is divided by the count afterwards.
    # numpy's own einsum, not opt_einsum's BLAS tensordot (used when installed), whose
    # rounding would depend on the BLAS thread count: the same bits on every run
    with xr.set_options(**_NUMPY_EINSUM):
        series = xr.dot(masks, prepared.astype(np.float64), dim=list(SPATIAL)) / counts
    lead = [d for d in prepared.dims if d not in (*SPATIAL, TIME)]
    series = series.transpose(*lead, SEED, TIME)
    if dask.is_dask_collection(series.data):
        series = series.chunk({SEED: -1, TIME: -1})
    inputs = (prepared, series) if mask is None else (prepared, series, mask)
    r = xr.apply_ufunc(
        pearson_with_seeds,
        *inputs,
        input_core_dims=[[TIME], [SEED, TIME], []][: len(inputs)],
        output_core_dims=[[SEED]],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {SEED: masks.sizes[SEED]}},
        keep_attrs=False,
    )
    r = r.transpose(SEED, *lead, *SPATIAL)
    r = finish_map(r, mask)
    z = xr.apply_ufunc(fisher_z, r, dask="parallelized", output_dtypes=[np.float32], keep_attrs=False)
    common = {"references": FC_REFERENCES, "fisher_clip": FISHER_CLIP}
    r = set_metadata(
        r,
        name="fc",
        long_name="seed functional connectivity (Pearson r)",
        units="1",
        description="Pearson correlation with the mean series of the seed",
        **common,
    )
    z = set_metadata(
        z,
        name="zfc",
        long_name="seed functional connectivity (Fisher z)",
        units="1",
        description="Fisher z = artanh(r), r clipped to +-(1 - 1e-7)",
        **common,
    )
    series = set_metadata(
        series.transpose(SEED, *lead, TIME),
        name="seed_series",
        long_name="mean BOLD series of the seed voxels",
        units=str(bold.attrs.get("units", "1")),
    )
    out = xr.Dataset({"fc": r, "zfc": z, "seed_series": series})
    out = out.assign_coords({"seed_n_voxels": counts})
    return carry_attrs(bold, out)
