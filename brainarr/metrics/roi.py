r"""Atlas ROI analyses: mean ROI time series (flox) and ROI-to-ROI correlation matrices.

The RESTplus/DPABI "ROI signals" and "ROI correlation" outputs (``ROISignals_*``,
``ROICorrelation_*``, ``ROICorrelation_FisherZ_*`` of ``y_ExtractROISignal``) as labelled,
lazy xarray objects: :func:`roi_timeseries` reduces the voxels of every atlas label with
:func:`flox.xarray.xarray_reduce` (one grouped reduction over the flattened spatial dims, the
labels fixed in advance so that the graph and its output do not depend on the data), and
:func:`roi_connectivity` correlates the ROI series of each subject.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import dask
import numpy as np
import pandas as pd
import xarray as xr

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.blas import one_blas_thread
from brainarr._core.dims import SPATIAL, TIME
from brainarr._core.validation import check_dims, check_same_grid, describe
from brainarr.exceptions import ChunkingError, DimensionError
from brainarr.metrics._common import _checked_finite, prepare_mask
from brainarr.metrics._kernels import FISHER_CLIP

__all__ = ["REGION", "ROI", "ROI_I", "ROI_J", "roi_connectivity", "roi_timeseries"]

#: Dim of the ROIs of a time series (its values are the atlas labels).
ROI = "roi"
#: Row and column dims of a ROI-to-ROI matrix.
ROI_I = "roi_i"
ROI_J = "roi_j"
#: Coordinate holding the region names (``region_i``/``region_j`` on a matrix).
REGION = "region"

#: A ROI series whose centred sum of squares is below ``T * (tol * max|x|)**2`` is constant.
_CONSTANT_TOL = 1e-10


# ----------------------------------------------------------------------------- kernels


def roi_correlation_kernel(x: np.ndarray, *, fisher: bool) -> np.ndarray:
    """Pearson r (or Fisher z) between the columns of ``x``: ``(..., time, roi) -> (..., roi, roi)``.

    Rows and columns of a constant or non-finite ROI series are NaN (the diagonal too). The
    diagonal of the other ROIs is 1 for r and 0 for z. The matrix is exactly symmetric and
    the product runs on one BLAS thread (the same bits on every run). float64.
    """
    x = np.asarray(x, dtype=np.float64)
    n_time = x.shape[-2]
    xc = x - x.mean(axis=-2, keepdims=True)
    ss = np.einsum("...ti,...ti->...i", xc, xc)
    with np.errstate(invalid="ignore"):
        scale = np.abs(x).max(axis=-2)
        ok = np.isfinite(ss) & np.isfinite(scale) & (ss > n_time * (_CONSTANT_TOL * scale) ** 2)
    norm = np.sqrt(np.where(ok, ss, 1.0))
    zs = np.where(ok[..., None, :], xc / norm[..., None, :], 0.0)
    with one_blas_thread():
        r = np.matmul(np.swapaxes(zs, -1, -2), zs)
    r = np.clip(r, -1.0, 1.0)
    r = np.triu(r, 1)
    r = r + np.swapaxes(r, -1, -2)  # exactly symmetric, 0 on the diagonal
    if fisher:
        r = np.arctanh(np.clip(r, -1.0 + FISHER_CLIP, 1.0 - FISHER_CLIP))
    else:
        idx = np.arange(r.shape[-1])
        r[..., idx, idx] = 1.0
    bad = ~(ok[..., :, None] & ok[..., None, :])
    r[bad] = np.nan
    return r


# ----------------------------------------------------------------------------- labels


def _flag_names(atlas: xr.DataArray) -> dict[int, str] | None:
    """``{label: name}`` from the CF ``flag_values``/``flag_meanings`` attrs, or None."""
    values = atlas.attrs.get("flag_values")
    meanings = atlas.attrs.get("flag_meanings")
    if values is None or meanings is None:
        return None
    values = np.atleast_1d(np.asarray(values)).tolist()
    meanings = str(meanings).split()
    if len(values) != len(meanings):
        raise ValueError(
            f"atlas {describe(atlas)}: flag_values has {len(values)} entries but flag_meanings {len(meanings)}"
        )
    return {int(v): m for v, m in zip(values, meanings, strict=True)}


def _as_labels(values: Sequence, *, func: str) -> list[int]:
    out = []
    for v in values:
        try:
            integral = not isinstance(v, (bool, np.bool_, str, bytes)) and float(v).is_integer()
        except (TypeError, ValueError):
            integral = False
        if not integral:
            raise ValueError(f"{func}: labels must be integers, got {v!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{func}: the list of labels is empty")
    if 0 in out:
        raise ValueError(f"{func}: label 0 is the background and cannot be a ROI; drop it from labels")
    if len(set(out)) != len(out):
        dup = sorted({v for v in out if out.count(v) > 1})
        raise ValueError(f"{func}: labels {dup} are given more than once")
    return out


def _roi_labels(
    atlas: xr.DataArray, labels: Sequence[int] | Mapping[int, str] | None, *, func: str
) -> tuple[list[int], list[str] | None]:
    """The ROI labels (in output order) and their names (None when unknown)."""
    flags = _flag_names(atlas)
    if labels is not None and hasattr(labels, "items"):
        items = list(labels.items())
        values = _as_labels([k for k, _ in items], func=func)
        return values, [str(n) for _, n in items]
    if labels is not None:
        if isinstance(labels, (str, bytes)):
            raise TypeError(f"{func}: labels must be a sequence of integer labels or a {{label: name}} mapping")
        values = _as_labels(list(labels), func=func)
        if flags is None:
            return values, None
        unknown = [v for v in values if v not in flags]
        if unknown:
            raise ValueError(
                f"{func}: labels {unknown} are not regions of atlas {describe(atlas)} (its flag_values); "
                f"it has {len(flags)} labels from {min(flags)} to {max(flags)}"
            )
        return values, [flags[v] for v in values]
    if flags is not None:
        values = _as_labels([v for v in flags if v != 0], func=func)
        return values, [flags[v] for v in values]
    # no names and no labels: the atlas's own values (a small integer map; loaded if lazy)
    data = atlas.data.compute() if dask.is_dask_collection(atlas.data) else np.asarray(atlas.data)
    present = np.unique(data[np.isfinite(data)] if data.dtype.kind == "f" else data)
    present = present[present != 0]
    if present.size == 0:
        raise ValueError(f"{func}: atlas {describe(atlas)} has no labelled voxel (every value is 0)")
    return _as_labels(present.tolist(), func=func), None


def _prepare_atlas(atlas: xr.DataArray, like: xr.DataArray, *, func: str) -> xr.DataArray:
    if not isinstance(atlas, xr.DataArray):
        raise DimensionError(f"{func}: atlas must be an integer xarray.DataArray (x, y, z), got {type(atlas).__name__}")
    check_dims(atlas, SPATIAL, func=f"{func} (atlas)", allowed_extra=False)
    if atlas.dtype.kind not in "iuf":
        raise TypeError(
            f"{func}: atlas {describe(atlas)} must hold integer labels, got dtype {atlas.dtype}"
            + ("; for one region pass `mask.astype(int)`" if atlas.dtype == bool else "")
        )
    check_same_grid(like, atlas, names=(describe(like), f"atlas {describe(atlas)}"), func=func)
    atlas = atlas.transpose(*SPATIAL)
    return atlas.assign_coords({d: like[d] for d in SPATIAL if d in like.coords})


# ----------------------------------------------------------------------------- public


@record_history
def roi_timeseries(
    bold: xr.DataArray,
    atlas: xr.DataArray,
    *,
    labels: Sequence[int] | Mapping[int, str] | None = None,
    method: Literal["mean"] = "mean",
    mask: xr.DataArray | None = None,
) -> xr.DataArray:
    r"""Mean BOLD series of every atlas region (RESTplus/DPABI "ROI signals").

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        BOLD, optionally with a leading ``subject`` dim; any chunking.
    atlas : xarray.DataArray (x, y, z), integer
        Label image on the grid of ``bold`` (e.g. :func:`brainarr.datasets.aal`); 0 is the
        background. Its CF attrs ``flag_values``/``flag_meanings`` name the regions.
    labels : sequence of int or mapping {int: str}, optional
        The ROIs, in output order; a mapping also names them. Default: the atlas's
        ``flag_values`` (in their order), or else every non-zero value of the atlas (sorted;
        a dask-backed atlas is then computed once to find them).
    method : {"mean"}, default "mean"
        The ROI signal: the mean over the ROI's voxels (the only one RESTplus/DPABI offers).
    mask : xarray.DataArray (x, y, z) of bool, optional
        Brain mask: only the ROI voxels inside it are averaged.

    Returns
    -------
    xarray.DataArray (..., time, roi), float64
        Named ``roi_signals``, units of ``bold``. ``roi`` holds the labels; coordinates
        ``region`` (names, when known) and ``n_voxels`` (voxels averaged, int, lazy for a
        dask atlas or mask). Lazy when ``bold`` is, with ``time`` and ``roi`` in one chunk.

    Raises
    ------
    ValueError
        Labels that are not integers, repeated, 0, or (for an atlas with ``flag_values``)
        not regions of the atlas.

    Notes
    -----
    For ROI :math:`k` with voxels :math:`S_k` (inside the mask),
    :math:`s_{k,t} = \frac{1}{|S_k|} \sum_{v \in S_k} x_{v,t}`: the same definition as the
    seed series of :func:`brainarr.metrics.seed_fc` and DPABI's ``y_ExtractROISignal``
    (``mean(AllVolume(:, MaskROI == label), 2)`` after applying the brain mask). Computed in
    float64 with :func:`flox.xarray.xarray_reduce` (``func="mean"``, ``method="map-reduce"``,
    ``expected_groups`` the labels), so the graph is built without looking at the data; atlas
    values that are not among the labels (0, other regions) are ignored. NaN/Inf in ``bold``
    are reported as the ``data_validation`` option says (DPABI sets them to 0 first).

    A ROI with no voxel (inside the mask) gets an all-NaN series and ``n_voxels = 0``, so every
    subject and atlas gives the same ``roi`` dim. DPABI leaves such labels out (it lists the
    labels present in the masked atlas) unless they are selected explicitly, when it gives a
    NaN series too. :func:`roi_connectivity` turns a NaN series into NaN rows and columns.
    """
    func = "brainarr.metrics.roi_timeseries"
    if method != "mean":
        raise ValueError(f"{func}: method must be 'mean' (the RESTplus/DPABI ROI signal), got {method!r}")
    check_dims(bold, (*SPATIAL, TIME), func=func)
    lead = [d for d in bold.dims if d not in (*SPATIAL, TIME)]
    prepared = _checked_finite(bold.transpose(*lead, *SPATIAL, TIME), func=func)
    atlas = _prepare_atlas(atlas, prepared, func=func)
    mask = prepare_mask(mask, prepared, func=func)
    values, names = _roi_labels(atlas, labels, func=func)

    by = atlas if mask is None else atlas.where(mask, 0)
    by = by.rename(ROI).drop_attrs(deep=False)
    groups = pd.Index(sorted(values), name=ROI)
    data = prepared.astype(np.float64).drop_attrs(deep=False)
    from flox.xarray import xarray_reduce

    # "map-reduce" always: flox 0.11's automatic choice picks "blockwise" when space is one
    # chunk, which fails for a multi-dim reduction with ``time`` split into chunks
    reduce = {"expected_groups": (groups,), "dim": SPATIAL, "method": "map-reduce", "keep_attrs": False}
    series = xarray_reduce(data, by, func="mean", fill_value=np.nan, **reduce)
    counts = xarray_reduce(xr.ones_like(by, dtype=np.int64).rename("n_voxels"), by, func="sum", fill_value=0, **reduce)
    order = [groups.get_loc(v) for v in values]
    if order != list(range(len(values))):
        series, counts = series.isel({ROI: order}), counts.isel({ROI: order})
    # the non-spatial coordinates (time, subject phenotypes) as they were, attrs included
    series = series.assign_coords({k: v for k, v in prepared.coords.items() if not set(v.dims) & set(SPATIAL)})
    series = series.transpose(*lead, TIME, ROI)
    if dask.is_dask_collection(series.data):
        # rechunk the data only (DataArray.chunk would also turn numpy coordinates into dask)
        series = series.copy(data=series.data.rechunk({series.get_axis_num(TIME): -1, series.get_axis_num(ROI): -1}))
    coords: dict[Hashable, xr.Variable] = {
        ROI: xr.Variable(ROI, np.asarray(values, dtype=np.int64), {"long_name": "atlas label"}),
        "n_voxels": xr.Variable(ROI, counts.data.astype(np.int64), {"long_name": "voxels averaged"}),
    }
    if names is not None:
        coords[REGION] = xr.Variable(ROI, np.asarray(names, dtype=str), {"long_name": "region name"})
    series = series.assign_coords(coords)
    series = set_metadata(
        series,
        name="roi_signals",
        long_name="mean BOLD series of the ROI voxels",
        units=str(bold.attrs.get("units", "1")),
        description="mean over the voxels of each atlas label"
        + (" inside the mask" if mask is not None else "")
        + "; NaN for a ROI without voxel",
        atlas=str(atlas.attrs.get("source", atlas.name if atlas.name is not None else "atlas")),
    )
    return carry_attrs(bold, series)


def _check_one_chunk(ts: xr.DataArray, *, func: str) -> None:
    if not dask.is_dask_collection(ts.data):
        return
    chunks = dict(zip(ts.dims, ts.data.chunks, strict=True))
    split = [d for d in (TIME, ROI) if len(chunks[d]) > 1]
    if split:
        raise ChunkingError(
            f"{func} needs each subject's whole (time, roi) series in one chunk, but {describe(ts)} is split "
            f"along {split}; rechunk with `.chunk(time=-1, roi=-1)` (the ROI series are small)"
        )


@record_history
def roi_connectivity(timeseries: xr.DataArray, *, fisher: bool = True) -> xr.DataArray:
    r"""ROI-to-ROI functional connectivity: Pearson r (or its Fisher z) between ROI series.

    Parameters
    ----------
    timeseries : xarray.DataArray (..., time, roi)
        ROI series, e.g. from :func:`roi_timeseries`; optionally with a leading ``subject``
        dim (its coordinates are kept). ``time`` and ``roi`` one chunk each.
    fisher : bool, default True
        Return Fisher z = artanh(r) instead of r.

    Returns
    -------
    xarray.DataArray (..., roi_i, roi_j), float64
        Named ``roi_zfc`` (z) or ``roi_fc`` (r), units ``"1"``, symmetric. ``roi_i`` and
        ``roi_j`` hold the ROI labels, ``region_i``/``region_j`` the names when the input has a
        ``region`` coordinate. Lazy when ``timeseries`` is, one chunk over ``roi_i, roi_j``.

    Notes
    -----
    .. math::

       r_{ij} = \frac{\sum_t (s_{i,t} - \bar s_i)(s_{j,t} - \bar s_j)}
                {\sqrt{\sum_t (s_{i,t} - \bar s_i)^2 \sum_t (s_{j,t} - \bar s_j)^2}}, \qquad
       z_{ij} = \operatorname{artanh}(\operatorname{clip}(r_{ij}, -1 + \epsilon, 1 - \epsilon))

    as DPABI's ``corrcoef(ROISignals)`` and ``0.5 * log((1 + r) ./ (1 - r))``, with
    :math:`\epsilon = 10^{-7}` (:data:`~brainarr.metrics._kernels.FISHER_CLIP`, as
    :func:`~brainarr.metrics.seed_fc`; :math:`|z| \le 8.4`).

    - Diagonal: r = 1 (as ``corrcoef``); z = 0 (DPABI writes artanh(1) = Inf there, and the
      DPABI authors' group scripts set it to 0 before any statistics; brainarr never emits Inf).
    - A constant ROI series (centred sum of squares below :math:`T (10^{-10} \max_t |s_t|)^2`)
      or a NaN one (a ROI without voxel) has no correlation: its row and column are NaN,
      diagonal included (``corrcoef`` gives NaN there too). Seed maps differ on purpose
      (:func:`~brainarr.metrics.seed_fc` gives 0 for a constant seed); a NaN edge is left out
      of :func:`brainarr.stats.roi_ttest2`.
    """
    func = "brainarr.metrics.roi_connectivity"
    check_dims(timeseries, (TIME, ROI), func=func)
    if timeseries.sizes[TIME] < 3:
        raise ValueError(
            f"{func}: {describe(timeseries)} has {timeseries.sizes[TIME]} time points; at least 3 are needed"
        )
    _check_one_chunk(timeseries, func=func)
    lead = [d for d in timeseries.dims if d not in (TIME, ROI)]
    ts = timeseries.transpose(*lead, TIME, ROI)
    n_roi = ts.sizes[ROI]
    kept = {k: v for k, v in ts.coords.items() if ROI not in v.dims and TIME not in v.dims}
    plain = xr.DataArray(ts.data, dims=ts.dims, coords=kept)
    out = xr.apply_ufunc(
        roi_correlation_kernel,
        plain,
        input_core_dims=[[TIME, ROI]],
        output_core_dims=[[ROI_I, ROI_J]],
        kwargs={"fisher": bool(fisher)},
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {ROI_I: n_roi, ROI_J: n_roi}},
        keep_attrs=False,
    )
    labels = ts[ROI].values if ROI in ts.coords else np.arange(1, n_roi + 1)
    coords: dict[Hashable, xr.Variable] = {
        ROI_I: xr.Variable(ROI_I, labels, {"long_name": "atlas label (rows)"}),
        ROI_J: xr.Variable(ROI_J, labels, {"long_name": "atlas label (columns)"}),
    }
    if REGION in ts.coords and ts[REGION].dims == (ROI,):
        names = np.asarray(ts[REGION].values)
        coords["region_i"] = xr.Variable(ROI_I, names, {"long_name": "region name (rows)"})
        coords["region_j"] = xr.Variable(ROI_J, names, {"long_name": "region name (columns)"})
    out = out.assign_coords(coords)
    common = {"fisher_clip": FISHER_CLIP}
    if fisher:
        out = set_metadata(
            out,
            name="roi_zfc",
            long_name="ROI-to-ROI functional connectivity (Fisher z)",
            units="1",
            description="Fisher z = artanh(r) of the Pearson r between ROI series, r clipped to +-(1 - 1e-7); "
            "diagonal 0; NaN rows/columns for constant or empty ROIs",
            **common,
        )
    else:
        out = set_metadata(
            out,
            name="roi_fc",
            long_name="ROI-to-ROI functional connectivity (Pearson r)",
            units="1",
            description="Pearson r between ROI series; diagonal 1; NaN rows/columns for constant or empty ROIs",
            **common,
        )
    return carry_attrs(timeseries, out)
