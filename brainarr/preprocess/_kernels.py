"""Numpy kernels for time-series preprocessing (time on the last axis, pure functions).

Every temporal operation in this package (polynomial detrending, confound regression, ideal
and Butterworth filtering) is linear in the data, so it is represented by a ``T x T``
matrix ``M`` acting on each voxel's series, ``y = M x``. Chains of steps multiply their
matrices once; a chunk of voxels is then processed with a single matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.signal as sp_signal

from brainarr._core.blas import one_blas_thread
from brainarr._core.fft import band_bins, next_pow2
from brainarr.exceptions import DataValidationError

__all__ = [
    "apply_matrix",
    "butterworth_matrix",
    "design_residual_matrix",
    "ideal_filter",
    "ideal_matrix",
    "polynomial_basis",
    "residual_matrix",
]


def polynomial_basis(n_time: int, order: int) -> np.ndarray:
    """Columns ``1, t, t^2, ... t^order`` on ``t`` scaled to ``[-1, 1]`` (float64, ``(T, order+1)``)."""
    t = np.linspace(-1.0, 1.0, n_time) if n_time > 1 else np.zeros(1)
    return np.vander(t, order + 1, increasing=True)


def residual_matrix(design: np.ndarray, *, rcond: float = 1e-10) -> np.ndarray:
    """Residual-forming matrix ``I - U U^T`` of a design ``(T, p)`` (float64 ``(T, T)``).

    ``U`` spans the column space of the design (left singular vectors of the column-scaled
    design with singular values above ``rcond`` times the largest), so collinear or
    all-zero columns are handled like a pseudo-inverse would.
    """
    n_time = design.shape[0]
    if design.shape[1] == 0:
        return np.eye(n_time)
    scale = np.max(np.abs(design), axis=0)
    scale[scale == 0] = 1.0
    u, s, _ = np.linalg.svd(design / scale, full_matrices=False)
    keep = s > rcond * s.max() if s.size and s.max() > 0 else np.zeros(s.shape, bool)
    u = u[:, keep]
    return np.eye(n_time) - u @ u.T


def check_finite_confounds(conf: np.ndarray, names: Sequence[str]) -> None:
    """Raise :class:`DataValidationError` naming the first confound with NaN or Inf values."""
    bad = ~np.isfinite(conf)
    if bad.any():
        cols = np.flatnonzero(bad.reshape(-1, conf.shape[-1]).any(axis=0))
        which = [str(names[c]) if c < len(names) else str(c) for c in cols]
        rows = np.flatnonzero(bad.reshape(-1, conf.shape[-2], conf.shape[-1])[..., cols[0]].any(axis=0))
        raise DataValidationError(
            f"confounds contain NaN or infinite values in column(s) {which} "
            f"(first bad time index {int(rows[0])} of {which[0]!r}); fill or drop them "
            "(read_confounds_tsv sets the first row of derivative columns to 0)"
        )


def design_residual_matrix(
    conf: np.ndarray, *, detrend: int, names: Sequence[str] = (), intercept: bool = True
) -> np.ndarray:
    """Residual-forming matrices for designs ``[confounds, 1, t, ..., t^detrend]``.

    Parameters
    ----------
    conf : ndarray (..., T, C)
        Confounds; leading dims (subjects) give one matrix each.
    detrend : int
        Polynomial order added to the design (``-1`` or ``None``: no polynomial).
    names : sequence of str
        Confound names for error messages.
    intercept : bool
        Whether to add the constant column even when ``detrend < 0``.

    Returns
    -------
    ndarray (..., T, T), float64
    """
    conf = np.asarray(conf, dtype=np.float64)
    check_finite_confounds(conf, names)
    n_time = conf.shape[-2]
    order = detrend if detrend is not None and detrend >= 0 else (0 if intercept else -1)
    poly = polynomial_basis(n_time, order) if order >= 0 else np.zeros((n_time, 0))
    out = np.empty((*conf.shape[:-2], n_time, n_time))
    for idx in np.ndindex(*conf.shape[:-2]):
        out[idx] = residual_matrix(np.concatenate([conf[idx], poly], axis=1))
    return out


def ideal_filter(x: np.ndarray, low: float | None, high: float | None, tr: float) -> np.ndarray:
    """RESTplus/DPABI ideal band-pass of series along the last axis (reference kernel).

    Demean, zero-pad to the next power of two ``P``, keep the FFT bins
    ``ceil(low P TR) .. floor(high P TR)`` and their mirrored negative frequencies, zero
    all others, inverse FFT and keep the first ``T`` samples.
    """
    x = np.asarray(x)
    dtype = np.result_type(x.dtype, np.float32)
    n_time = x.shape[-1]
    n_pad = next_pow2(n_time)
    xc = x - x.mean(axis=-1, keepdims=True)
    spec = np.fft.rfft(xc, n=n_pad, axis=-1)
    keep = np.zeros(n_pad // 2 + 1, dtype=bool)
    keep[band_bins(low, high, n_pad, tr)] = True
    spec[..., ~keep] = 0
    return np.fft.irfft(spec, n=n_pad, axis=-1)[..., :n_time].astype(dtype, copy=False)


def ideal_matrix(n_time: int, low: float | None, high: float | None, tr: float) -> np.ndarray:
    """The ideal band-pass as a ``(T, T)`` matrix ``F`` with ``y = F x`` (float64)."""
    # row i of ideal_filter(I) is the response to the unit impulse at i: column i of F
    return ideal_filter(np.eye(n_time), low, high, tr).T


def butterworth_sos(low: float | None, high: float | None, tr: float, order: int) -> np.ndarray:
    """Second-order sections of the Butterworth filter nilearn designs for these cut-offs."""
    fs = 1.0 / tr
    if low is not None and high is not None:
        return sp_signal.butter(order, [low, high], btype="band", output="sos", fs=fs)
    if low is not None:
        return sp_signal.butter(order, low, btype="high", output="sos", fs=fs)
    return sp_signal.butter(order, high, btype="low", output="sos", fs=fs)


def butterworth_padlen(sos: np.ndarray) -> int:
    """Default edge padding of :func:`scipy.signal.sosfiltfilt` for ``sos``."""
    ntaps = 2 * len(sos) + 1
    ntaps -= min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * ntaps


def butterworth_matrix(n_time: int, low: float | None, high: float | None, tr: float, order: int) -> np.ndarray:
    """Zero-phase Butterworth (``sosfiltfilt``, odd padding) as a ``(T, T)`` matrix (float64).

    Odd extension and forward-backward filtering are linear in the series, so filtering the
    identity's columns gives the exact matrix of the operation.
    """
    sos = butterworth_sos(low, high, tr, order)
    return sp_signal.sosfiltfilt(sos, np.eye(n_time), axis=0, padtype="odd")


def apply_matrix(
    x: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray | None = None,
    add_mean: bool = False,
) -> np.ndarray:
    """Apply ``y = M x`` to every series of ``x`` along the last axis.

    Parameters
    ----------
    x : ndarray (..., T)
        Series (float32 stays float32: the product runs in the input precision).
    matrix : ndarray (..., T_out, T)
        One matrix, or one per leading index (it broadcasts against ``x``'s leading dims;
        typically one per subject).
    mask : ndarray of bool, optional
        Broadcasts against ``x.shape[:-1]``; series outside are returned as 0 and skipped.
    add_mean : bool
        Add each series' mean (of the input) back to the output.

    Returns
    -------
    ndarray (..., T_out)
    """
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    mask_shape = () if mask is None else np.shape(mask)
    lead = np.broadcast_shapes(x.shape[:-1], matrix.shape[:-2], mask_shape)
    n_out = matrix.shape[-2]
    out = np.zeros((*lead, n_out), dtype=dtype)
    xb = np.broadcast_to(x, (*lead, x.shape[-1]))
    mb = None if mask is None else np.broadcast_to(np.asarray(mask, bool), lead)
    # left-pad the matrix's leading shape to len(lead); loop only over axes where it varies
    mat = matrix.reshape((1,) * (len(lead) - (matrix.ndim - 2)) + matrix.shape)
    vary = [i for i, size in enumerate(mat.shape[:-2]) if size > 1]
    for combo in np.ndindex(*[lead[i] for i in vary]):
        sel: list = [slice(None)] * len(lead)
        msel: list = [0] * len(lead)
        for i, c in zip(vary, combo, strict=True):
            sel[i] = msel[i] = c
        m = np.asarray(mat[tuple(msel)], dtype=np.float64)
        target = out[tuple(sel)]  # a view: written in place
        xs = xb[tuple(sel)]
        keep = None if mb is None else mb[tuple(sel)]
        flat = xs.reshape(-1, x.shape[-1]) if keep is None else xs[keep]
        # centre first (mean accumulated in double precision): M (x - c) + (M 1) c is exact
        # for any c, and float32 products of centred data lose far less precision
        centre = flat.mean(axis=-1, dtype=np.float64, keepdims=True).astype(dtype)
        with one_blas_thread():  # the same bits whatever BLAS's default thread count
            res = (flat - centre) @ m.T.astype(dtype)
        res += centre * m.sum(axis=1).astype(dtype)
        if add_mean:
            res += centre
        if keep is None:
            target[...] = res.reshape(target.shape)
        else:
            target[keep] = res
    return out
