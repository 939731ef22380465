"""Temporal preprocessing of BOLD series: discard, detrend, slice timing, regression, filtering."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import dask
import numpy as np
import pandas as pd
import xarray as xr

from brainarr._core import slices
from brainarr._core.attrs import carry_attrs, record_history
from brainarr._core.dims import CONFOUND, SPATIAL, TIME
from brainarr._core.fft import band_bins, fourier_shift, next_pow2
from brainarr._core.slices import SliceOrder
from brainarr._core.validation import (
    check_dims,
    check_same_grid,
    check_time_chunk,
    describe,
    get_tr,
)
from brainarr.exceptions import DataValidationError, DimensionError, GridMismatchError
from brainarr.preprocess import _kernels as K

__all__ = ["bandpass", "clean", "detrend", "discard", "regress", "slice_timing"]

_T_OUT = "time_out"
_T_IN = "time_in"


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def _float_dtype(da: xr.DataArray) -> np.dtype:
    return da.dtype if np.issubdtype(da.dtype, np.floating) else np.dtype(np.float64)


def _check_bold(bold: xr.DataArray, func: str) -> None:
    check_dims(bold, [TIME], func=func)
    check_time_chunk(bold, func=func)


def _restore(out: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """Put ``out`` in ``like``'s dim order with its coords, name and attrs."""
    out = out.transpose(*like.dims)
    out = out.assign_coords({k: v for k, v in like.coords.items() if set(v.dims) <= set(out.dims)})
    out.name = like.name
    out.attrs = dict(like.attrs)
    carry_attrs(like, out)
    return out


def _as_mask(mask: xr.DataArray | None, bold: xr.DataArray, func: str) -> xr.DataArray | None:
    if mask is None:
        return None
    check_dims(mask, SPATIAL, func=func, allowed_extra=False)
    check_same_grid(bold, mask, names=("bold", "mask"), func=func)
    return (mask != 0).drop_vars([c for c in mask.coords if c not in SPATIAL])


def _apply_time_matrix(
    bold: xr.DataArray,
    matrix: xr.DataArray,
    *,
    mask: xr.DataArray | None,
    add_mean: bool = False,
) -> xr.DataArray:
    """Apply ``(…, time_out, time_in)`` matrices to every voxel series (one GEMM per chunk)."""
    dtype = _float_dtype(bold)
    args = [bold, matrix]
    core = [[TIME], [_T_OUT, _T_IN]]
    if mask is not None:
        args.append(mask)
        core.append([])

    def kernel(x, m, msk=None):
        return K.apply_matrix(x, m, msk, add_mean=add_mean)

    out = xr.apply_ufunc(
        kernel,
        *args,
        input_core_dims=core,
        output_core_dims=[[_T_OUT]],
        dask="parallelized",
        output_dtypes=[dtype],
        dask_gufunc_kwargs={"output_sizes": {_T_OUT: bold.sizes[TIME]}},
        keep_attrs=False,
    )
    return _restore(out.rename({_T_OUT: TIME}), bold)


def _matrix_da(matrix: np.ndarray) -> xr.DataArray:
    return xr.DataArray(matrix, dims=(_T_OUT, _T_IN))


def _confounds_da(confounds, n_time: int, *, func: str, bold: xr.DataArray) -> xr.DataArray:
    """Confounds as a DataArray ``(..., time, confound)`` of length ``n_time``."""
    if isinstance(confounds, pd.DataFrame):
        confounds = xr.DataArray(
            confounds.to_numpy(dtype=float), dims=(TIME, CONFOUND), coords={CONFOUND: list(confounds.columns)}
        )
    elif isinstance(confounds, np.ndarray):
        arr = confounds[:, None] if confounds.ndim == 1 else confounds
        if arr.ndim != 2:
            raise DimensionError(f"{func}: confounds array must be (time, confound), got shape {confounds.shape}")
        names = [f"c{i}" for i in range(arr.shape[1])]
        confounds = xr.DataArray(arr, dims=(TIME, CONFOUND), coords={CONFOUND: names})
    if not isinstance(confounds, xr.DataArray):
        raise DimensionError(
            f"{func}: confounds must be a DataArray (time, confound), a DataFrame or an array, "
            f"got {type(confounds).__name__}"
        )
    if confounds.ndim == 1 and TIME in confounds.dims:
        confounds = confounds.expand_dims(CONFOUND, axis=-1)
    check_dims(confounds, [TIME, CONFOUND], func=func)
    if confounds.sizes[TIME] != n_time:
        raise GridMismatchError(
            f"{func}: confounds {describe(confounds)} have {confounds.sizes[TIME]} time points but "
            f"{describe(bold)} has {n_time} volumes; discard the same volumes from both "
            "(brainarr.preprocess.discard works on confounds too)"
        )
    extra = [d for d in confounds.dims if d not in (TIME, CONFOUND)]
    for d in extra:
        if d not in bold.dims:
            raise DimensionError(f"{func}: confounds have dim {d!r} that bold lacks (bold dims {bold.dims})")
    confounds = confounds.transpose(*extra, TIME, CONFOUND)
    # time is matched by position, never by label
    confounds = confounds.drop_vars([c for c in confounds.coords if TIME in confounds[c].dims])
    if CONFOUND not in confounds.coords:
        confounds = confounds.assign_coords({CONFOUND: [f"c{i}" for i in range(confounds.sizes[CONFOUND])]})
    if not dask.is_dask_collection(confounds.data):
        names = [str(n) for n in confounds[CONFOUND].values]
        K.check_finite_confounds(np.asarray(confounds.data, float), names)
    else:
        # confounds are small: one chunk per subject
        confounds = confounds.chunk({TIME: -1, CONFOUND: -1})
    return confounds


def _confound_matrix(confounds: xr.DataArray, builder, **kwargs) -> xr.DataArray:
    """Lazily build one ``(time_out, time_in)`` matrix per subject from the confounds."""
    names = [str(n) for n in confounds[CONFOUND].values]
    n_time = confounds.sizes[TIME]

    def kernel(conf):
        out = np.empty((*conf.shape[:-2], n_time, n_time))
        for idx in np.ndindex(*conf.shape[:-2]):
            out[idx] = builder(conf[idx], names=names, **kwargs)
        return out

    mat = xr.apply_ufunc(
        kernel,
        confounds.drop_vars(CONFOUND),
        input_core_dims=[[TIME, CONFOUND]],
        output_core_dims=[[_T_OUT, _T_IN]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {_T_OUT: n_time, _T_IN: n_time}},
    )
    return mat


def _check_regressors(bold: xr.DataArray, *, n_confounds: int, detrend: int | None, intercept: bool, func: str) -> None:
    """Refuse a nuisance model with at least as many regressors as volumes (from shapes only).

    Such a model fits every series exactly: the residuals are all zero and every metric
    computed from them is meaningless.
    """
    n_time = bold.sizes[TIME]
    n_trend = 0 if detrend is None else int(detrend)
    n_mean = 1 if (intercept or detrend is not None) else 0
    total = n_confounds + n_mean + n_trend
    if total < n_time:
        return
    terms = ([f"{n_confounds} confound column(s)"] if n_confounds else []) + (["an intercept"] if n_mean else [])
    terms += [f"{n_trend} polynomial trend term(s) (detrend={detrend})"] if n_trend else []
    discarded = int(bold.attrs.get("discarded", 0))
    left = f" left after discarding {discarded}" if discarded else ""
    raise DataValidationError(
        f"{func}: {total} regressors ({', '.join(terms)}) for {n_time} volumes{left} of {describe(bold)}: with "
        "at least as many regressors as volumes the residuals are all zero; use fewer confounds (e.g. the 6 "
        "motion parameters instead of friston24), a lower detrend order, or discard fewer volumes"
    )


def _check_band(
    low: float | None, high: float | None, tr: float, n_time: int, method: str, order: int, func: str
) -> None:
    nyquist = 1.0 / (2.0 * tr)
    for name, value in (("low", low), ("high", high)):
        if value is not None and (not np.isfinite(value) or value < 0):
            raise ValueError(f"{func}: {name} cut-off must be a non-negative frequency in Hz, got {value}")
    if low is None and high is None:
        raise ValueError(f"{func}: give low and/or high (Hz); both are None")
    if high is not None and (high > nyquist or (method == "butterworth" and high >= nyquist)):
        raise ValueError(
            f"{func}: high cut-off {high} Hz is above the Nyquist frequency {nyquist:g} Hz "
            f"(TR = {tr:g} s)" + ("; the Butterworth filter needs high < Nyquist" if high == nyquist else "")
        )
    if low is not None and low >= nyquist:
        raise ValueError(f"{func}: low cut-off {low} Hz is at or above the Nyquist frequency {nyquist:g} Hz")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"{func}: low cut-off ({low} Hz) must be below the high cut-off ({high} Hz)")
    duration = n_time * tr
    if low is not None and low > 0 and duration < 1.0 / low:
        need = math.ceil(1.0 / (low * tr))
        raise ValueError(
            f"{func}: too few volumes for the band: {n_time} volumes x TR {tr:g} s = {duration:g} s is "
            f"shorter than one period of the low cut-off {low} Hz ({1.0 / low:g} s); "
            f"need at least {need} volumes"
        )
    if method == "ideal":
        n_pad = next_pow2(n_time)
        if band_bins(low, high, n_pad, tr).size == 0:
            raise ValueError(
                f"{func}: too few volumes for the band: with {n_time} volumes (padded to {n_pad}) and "
                f"TR {tr:g} s the frequency resolution is {1 / (n_pad * tr):g} Hz and no FFT bin lies "
                f"in {low}-{high} Hz; use more volumes or a wider band"
            )
    elif method == "butterworth":
        padlen = K.butterworth_padlen(K.butterworth_sos(low, high, tr, order))
        if n_time <= padlen:
            raise ValueError(
                f"{func}: too few volumes for a Butterworth filter of order {order}: {n_time} volumes, "
                f"but zero-phase filtering (sosfiltfilt) pads {padlen} samples and needs more than "
                f"{padlen}"
            )
    else:
        raise ValueError(f"{func}: method must be 'ideal' or 'butterworth', got {method!r}")


def _filter_matrix(n_time, low, high, tr, method, order) -> np.ndarray:
    if method == "ideal":
        return K.ideal_matrix(n_time, low, high, tr)
    return K.butterworth_matrix(n_time, low, high, tr, order)


# ----------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------
@record_history
def discard(bold: xr.DataArray, n: int) -> xr.DataArray:
    """Drop the first ``n`` volumes (or rows of a confounds table).

    Parameters
    ----------
    bold : xarray.DataArray (..., time)
        BOLD series or confounds ``(..., time, confound)``.
    n : int
        Number of leading volumes to drop, ``0 <= n < T``.

    Returns
    -------
    xarray.DataArray
        Lazy slice with ``T - n`` time points; the ``time`` coordinate restarts at 0 s on the
        first kept volume (``time - time[n]``); attrs kept, ``discarded`` (count) added.
    """
    check_dims(bold, [TIME], func="discard")
    n_time = bold.sizes[TIME]
    if int(n) != n or not 0 <= n < n_time:
        raise ValueError(f"discard: n must be an integer with 0 <= n < {n_time} (volumes of {describe(bold)}), got {n}")
    n = int(n)
    out = bold.isel({TIME: slice(n, None)})
    if TIME in bold.coords:
        t = bold[TIME]
        new = t.values[n:] - t.values[n]
        out = out.assign_coords({TIME: (TIME, new, dict(t.attrs))})
    out.attrs = dict(bold.attrs)
    out.attrs["discarded"] = int(bold.attrs.get("discarded", 0)) + n
    return out


@record_history
def detrend(bold: xr.DataArray, order: int = 1, *, mask: xr.DataArray | None = None) -> xr.DataArray:
    r"""Remove a polynomial trend from every voxel's series by least squares.

    Parameters
    ----------
    bold : xarray.DataArray (..., time)
        BOLD with ``time`` in one chunk.
    order : int, default 1
        Polynomial order (0: remove the mean; 1: mean and linear trend).
    mask : xarray.DataArray (x, y, z) of bool, optional
        Only in-mask voxels are processed; others are 0.

    Returns
    -------
    xarray.DataArray
        Residuals, same dims, coords, chunks and floating dtype as ``bold``.

    Notes
    -----
    With :math:`X = [1, t, \dots, t^p]` (``t`` scaled to [-1, 1]), the residuals are
    :math:`r = (I - X X^+) y`; the mean is removed too.
    """
    if int(order) != order or order < 0:
        raise ValueError(f"detrend: order must be a non-negative integer, got {order}")
    _check_bold(bold, "detrend")
    n_time = bold.sizes[TIME]
    _check_regressors(bold, n_confounds=0, detrend=int(order), intercept=True, func="detrend")
    matrix = K.residual_matrix(K.polynomial_basis(n_time, int(order)))
    return _apply_time_matrix(bold, _matrix_da(matrix), mask=_as_mask(mask, bold, "detrend"))


@record_history
def slice_timing(
    bold: xr.DataArray,
    slice_times: Sequence[float] | np.ndarray | None = None,
    *,
    order: SliceOrder | None = None,
    ref: float | Literal["first", "middle"] = "middle",
    slice_axis: Literal["x", "y", "z"] = "z",
    tr: float | None = None,
) -> xr.DataArray:
    r"""Correct slice acquisition times by a Fourier phase shift of each slice's series.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        BOLD in acquisition space (slices along ``slice_axis``), ``time`` in one chunk.
    slice_times : sequence of float, optional
        Acquisition time in s of each slice, from the start of the volume, indexed like
        ``bold[slice_axis]`` (as BIDS ``SliceTiming``). Give this or ``order``.
    order : {"ascending", "descending", "interleaved", "interleaved_siemens"}, optional
        Named order with slices equally spaced over the TR (slice ``i`` of ``n`` acquired at
        ``rank(i) * TR / n``). Indices are 0-based along ``slice_axis``:
        ``"ascending"`` 0, 1, 2, ...; ``"descending"`` n-1, ..., 0; ``"interleaved"``
        0, 2, 4, ..., then 1, 3, 5, ... (odd slices first in 1-based counting, GE/Philips);
        ``"interleaved_siemens"`` as ``"interleaved"`` for odd ``n``, for even ``n``
        1, 3, 5, ..., then 0, 2, 4, ... (even slices first in 1-based counting).
    ref : float or {"first", "middle"}, default "middle"
        Reference time in s within the TR that every slice is shifted to; ``"first"`` is the
        earliest slice time, ``"middle"`` is halfway between the earliest and latest (as
        fMRIPrep's default ``slice_time_ref = 0.5``).
    slice_axis : {"x", "y", "z"}, default "z"
        Dim along which slices were acquired.
    tr : float, optional
        Repetition time in s; defaults to ``attrs["tr"]``.

    Returns
    -------
    xarray.DataArray
        Same dims, coords, chunks and floating dtype; attrs ``slice_times`` and
        ``slice_time_ref`` (s) added. Volume ``n`` then represents time ``n TR + ref``.

    Notes
    -----
    A slice acquired at :math:`t_s` is resampled at :math:`t_s + \delta`, with
    :math:`\delta = \mathrm{ref} - t_s` (:math:`\delta / TR` samples), by multiplying
    its spectrum by :math:`e^{2 \pi i k \delta / (P \, TR)}` after extending the series to
    :math:`P` = next power of two :math:`\ge 2T` with a line from the last sample to the
    first, so that its periodic extension is continuous (the scheme of SPM's
    ``spm_slice_timing``, Sladky et al. 2011).

    References
    ----------
    Sladky R. et al. (2011). Slice-timing effects and their correction in functional MRI.
    NeuroImage 58(2), 588-594.
    """
    _check_bold(bold, "slice_timing")
    check_dims(bold, [slice_axis], func="slice_timing")
    tr = get_tr(bold, tr, func="slice_timing")
    n_slices = bold.sizes[slice_axis]
    if (slice_times is None) == (order is None):
        raise ValueError("slice_timing: give exactly one of slice_times (s, per slice) or order (a named order)")
    if slice_times is None:
        times = slices.slice_times(order, n_slices, tr, func="slice_timing")
    else:
        times = np.asarray(slice_times, dtype=float).ravel()
        if times.size != n_slices:
            raise ValueError(
                f"slice_timing: {times.size} slice times given but {describe(bold)} has {n_slices} "
                f"slices along {slice_axis!r}"
            )
        if not np.all(np.isfinite(times)) or times.min() < 0 or times.max() >= tr:
            raise ValueError(
                f"slice_timing: slice times must lie in [0, TR = {tr:g}) s, got {times.min():g}..{times.max():g}"
            )
    if ref == "first":
        ref_time = float(times.min())
    elif ref == "middle":
        ref_time = float(times.min() + 0.5 * (times.max() - times.min()))
    else:
        ref_time = float(ref)
        if not 0 <= ref_time < tr:
            raise ValueError(f"slice_timing: ref must be in [0, TR = {tr:g}) s, got {ref_time}")
    shifts = xr.DataArray((ref_time - times) / tr, dims=(slice_axis,))
    out = xr.apply_ufunc(
        fourier_shift,
        bold,
        shifts,
        input_core_dims=[[TIME], []],
        output_core_dims=[[TIME]],
        dask="parallelized",
        output_dtypes=[_float_dtype(bold)],
    )
    out = _restore(out, bold)
    out.attrs["slice_times"] = times.tolist()
    out.attrs["slice_time_ref"] = ref_time
    return out


@record_history
def regress(
    bold: xr.DataArray,
    confounds,
    *,
    detrend: int | None = 1,
    add_mean: bool = False,
    mask: xr.DataArray | None = None,
) -> xr.DataArray:
    r"""Regress confounds (and a polynomial trend) out of every voxel's series.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        BOLD, ``time`` in one chunk; a leading ``subject`` dim is allowed.
    confounds : xarray.DataArray (..., time, confound) or pandas.DataFrame or ndarray
        Regressors with the same number of time points as ``bold`` (matched by position);
        with a ``subject`` dim, one design per subject.
    detrend : int or None, default 1
        Polynomial order added to the design (1: intercept and linear trend, as RESTplus);
        0: intercept only; None: intercept only as well (an intercept is always included).
    add_mean : bool, default False
        Add each voxel's temporal mean (of the input series, before regression) back to the
        residuals, as RESTplus/DPABI do when their "add mean back" option is on.
    mask : xarray.DataArray (x, y, z) of bool, optional
        Only in-mask voxels are processed; others are 0.

    Returns
    -------
    xarray.DataArray
        Residuals, same dims, coords, chunks and floating dtype as ``bold``.

    Raises
    ------
    GridMismatchError
        If the confounds and ``bold`` have different numbers of time points.
    DataValidationError
        If a confound contains NaN or Inf (the message names the column; for dask-backed
        confounds this is raised when the result is computed), or if the design has at least
        as many columns (confounds, intercept, trend terms) as ``bold`` has volumes.

    Notes
    -----
    With one design :math:`X = [C, 1, t, \dots, t^d]` (``t`` scaled to [-1, 1], columns
    scaled to unit maximum) shared by all voxels, the ordinary least-squares residuals are
    :math:`r = R y` with the residual-forming matrix :math:`R = I - U U^T`, :math:`U` the
    left singular vectors of :math:`X` with non-negligible singular values (so collinear
    regressors behave like a pseudo-inverse). Each chunk of voxels is processed as a single
    matrix product :math:`Y R^T` in the input's precision (series are centred in double
    precision first).
    """
    _check_bold(bold, "regress")
    conf = _confounds_da(confounds, bold.sizes[TIME], func="regress", bold=bold)
    order = 0 if detrend is None else int(detrend)
    _check_regressors(bold, n_confounds=conf.sizes[CONFOUND], detrend=order, intercept=True, func="regress")
    matrix = _confound_matrix(conf, K.design_residual_matrix, detrend=order)
    return _apply_time_matrix(bold, matrix, mask=_as_mask(mask, bold, "regress"), add_mean=add_mean)


@record_history
def bandpass(
    bold: xr.DataArray,
    low: float | None,
    high: float | None,
    *,
    method: Literal["ideal", "butterworth"] = "ideal",
    order: int = 5,
    tr: float | None = None,
    mask: xr.DataArray | None = None,
) -> xr.DataArray:
    r"""Band-pass (or high-/low-pass) filter every voxel's series.

    Parameters
    ----------
    bold : xarray.DataArray (..., time)
        BOLD, ``time`` in one chunk.
    low, high : float or None
        Cut-offs in Hz; ``low=None`` gives a low-pass, ``high=None`` a high-pass filter.
    method : {"ideal", "butterworth"}, default "ideal"
        ``"ideal"``: the RESTplus/DPABI FFT filter. ``"butterworth"``: zero-phase
        Butterworth filter of ``order`` as :func:`nilearn.signal.butterworth`.
    order : int, default 5
        Butterworth order (nilearn's default).
    tr : float, optional
        Repetition time in s; defaults to ``attrs["tr"]``.
    mask : xarray.DataArray (x, y, z) of bool, optional
        Only in-mask voxels are processed; others are 0.

    Returns
    -------
    xarray.DataArray
        Filtered series, same dims, coords, chunks and floating dtype; attrs ``band`` (Hz).

    Raises
    ------
    ValueError
        If a cut-off is above the Nyquist frequency, ``low >= high``, or there are too few
        volumes for the band (the series is shorter than one period of ``low``, no FFT bin
        falls in the band, or the Butterworth edge padding is longer than the series).

    Notes
    -----
    ``"ideal"`` (SEMANTICS.md): each series is demeaned (not detrended), zero-padded to
    :math:`P` = next power of two :math:`\ge T`, Fourier transformed; bins
    :math:`\lceil f_{low} P\,TR \rceil \le k \le \lfloor f_{high} P\,TR \rfloor` and their
    mirrored negative frequencies are kept, all others zeroed; the inverse transform's first
    :math:`T` samples are returned. With ``low=None`` the DC bin is kept, but the series was
    demeaned so the output has zero mean.

    ``"butterworth"``: second-order sections of ``scipy.signal.butter(order, [low, high],
    btype="band", fs=1/TR)`` applied forward and backward by ``scipy.signal.sosfiltfilt``
    with odd extension of its default length, exactly as nilearn 0.14.

    Both filters are linear, so they are applied as one :math:`T \times T` matrix per chunk.
    """
    _check_bold(bold, "bandpass")
    tr = get_tr(bold, tr, func="bandpass")
    n_time = bold.sizes[TIME]
    _check_band(low, high, tr, n_time, method, order, "bandpass")
    matrix = _filter_matrix(n_time, low, high, tr, method, order)
    out = _apply_time_matrix(bold, _matrix_da(matrix), mask=_as_mask(mask, bold, "bandpass"))
    out.attrs["band"] = [low, high]
    return out


def _n_rows(confounds) -> int | None:
    if isinstance(confounds, xr.DataArray):
        return confounds.sizes.get(TIME)
    shape = np.shape(confounds)
    return shape[0] if shape else None


def _restplus_builder(conf, *, names, detrend, filt):
    residual = K.design_residual_matrix(conf, detrend=detrend, names=names)
    return filt @ residual


def _nilearn_builder(conf, *, names, detrend_matrix, filt):
    K.check_finite_confounds(conf, names)
    conf_f = filt @ (detrend_matrix @ conf)
    conf_f = conf_f - conf_f.mean(axis=0)
    residual = K.residual_matrix(conf_f)
    return residual @ filt @ detrend_matrix


@record_history
def clean(
    bold: xr.DataArray,
    confounds=None,
    *,
    discard: int = 0,
    detrend: int | None = 1,
    low: float | None = 0.01,
    high: float | None = 0.08,
    filter: Literal["ideal", "butterworth"] | None = "ideal",
    order: Literal["restplus", "nilearn"] = "restplus",
    butterworth_order: int = 5,
    tr: float | None = None,
    mask: xr.DataArray | None = None,
) -> xr.DataArray:
    r"""Discard, detrend, regress confounds and band-pass filter, as RESTplus or nilearn.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        BOLD, ``time`` in one chunk.
    confounds : xarray.DataArray (..., time, confound) or DataFrame or ndarray, optional
        Regressors with as many rows as ``bold`` has volumes (before or after discarding;
        when they match the length before, the same rows are dropped).
    discard : int, default 0
        Leading volumes to drop first.
    detrend : int or None, default 1
        Polynomial order removed with the confounds (RESTplus) or before filtering
        (nilearn order; nilearn only has linear detrending, ``detrend=1``). None: only the
        mean (RESTplus) or nothing (nilearn, like ``detrend=False``).
    low, high : float or None, default 0.01, 0.08
        Band in Hz; both None: no filtering.
    filter : {"ideal", "butterworth"} or None, default "ideal"
        Filter type (see :func:`bandpass`); None: no filtering.
    order : {"restplus", "nilearn"}, default "restplus"
        Order of the steps (see Notes).
    butterworth_order : int, default 5
        Order of the Butterworth filter.
    tr : float, optional
        Repetition time in s; defaults to ``attrs["tr"]``.
    mask : xarray.DataArray (x, y, z) of bool, optional
        Only in-mask voxels are processed; others are 0.

    Returns
    -------
    xarray.DataArray
        Cleaned series with ``T - discard`` volumes, same dims, chunks and floating dtype.

    Raises
    ------
    DataValidationError
        If the nuisance model (confound columns, intercept and trend terms) has at least as
        many regressors as the ``T - discard`` volumes left (known from the shapes, so lazy
        inputs stay lazy).

    Notes
    -----
    ``order="restplus"``: discard, then regress :math:`[C, 1, t, \dots, t^d]` out of every
    series (:math:`R`), then filter (:math:`F`): :math:`y = F R x`.

    ``order="nilearn"`` (:func:`nilearn.signal.clean` 0.14 with ``standardize=False``):
    detrend signals and confounds (:math:`D`), filter both (:math:`F`), then project the
    series onto the orthogonal complement of the demeaned filtered confounds
    (:math:`R_f`, no intercept): :math:`y = R_f F D x`. Filtering the confounds with the
    signal keeps the two steps orthogonal (Lindquist et al. 2019).

    Every step is linear, so the whole chain is one :math:`T \times T` matrix per subject,
    applied to each chunk of voxels as a single matrix product.

    References
    ----------
    Lindquist M. A. et al. (2019). Modular preprocessing pipelines can reintroduce
    artifacts into fMRI data. Human Brain Mapping 40(8), 2358-2376.
    """
    _check_bold(bold, "clean")
    if order not in ("restplus", "nilearn"):
        raise ValueError(f"clean: order must be 'restplus' or 'nilearn', got {order!r}")
    n_before = bold.sizes[TIME]
    if discard:
        bold = _discard_volumes(bold, discard)
    n_time = bold.sizes[TIME]
    conf = None
    if confounds is not None:
        if discard and _n_rows(confounds) == n_before:
            if isinstance(confounds, xr.DataArray):
                confounds = confounds.isel({TIME: slice(discard, None)})
            elif isinstance(confounds, pd.DataFrame):
                confounds = confounds.iloc[discard:]
            else:
                confounds = np.asarray(confounds)[discard:]
        conf = _confounds_da(confounds, n_time, func="clean", bold=bold)
    n_confounds = 0 if conf is None else conf.sizes[CONFOUND]
    _check_regressors(bold, n_confounds=n_confounds, detrend=detrend, intercept=order == "restplus", func="clean")
    filtering = filter is not None and (low is not None or high is not None)
    if filtering:
        tr = get_tr(bold, tr, func="clean")
        _check_band(low, high, tr, n_time, filter, butterworth_order, "clean")
        filt = _filter_matrix(n_time, low, high, tr, filter, butterworth_order)
    else:
        filt = np.eye(n_time)
    if order == "restplus":
        d = 0 if detrend is None else int(detrend)
        if conf is None:
            matrix = _matrix_da(filt @ K.residual_matrix(K.polynomial_basis(n_time, d)))
        else:
            matrix = _confound_matrix(conf, _restplus_builder, detrend=d, filt=filt)
    else:
        if detrend is None:
            dmat = np.eye(n_time)
        else:
            dmat = K.residual_matrix(K.polynomial_basis(n_time, int(detrend)))
        if conf is None:
            matrix = _matrix_da(filt @ dmat)
        else:
            matrix = _confound_matrix(conf, _nilearn_builder, detrend_matrix=dmat, filt=filt)
    out = _apply_time_matrix(bold, matrix, mask=_as_mask(mask, bold, "clean"))
    if filtering:
        out.attrs["band"] = [low, high]
    return out


_discard_volumes = discard.__wrapped__
