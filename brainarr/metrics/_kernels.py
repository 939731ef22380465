"""Pure numpy kernels of the metrics (time is the last axis; no dask, no xarray).

Each kernel is tested on its own against a direct implementation; the labelled wrappers in
the public modules line up chunks and call these through ``apply_ufunc``, ``map_overlap``
or a blockwise graph.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.stats

__all__ = [
    "FISHER_CLIP",
    "alff_kernel",
    "degree_block",
    "detrend_linear",
    "eigenvector_power",
    "fisher_z",
    "kendall_w_block",
    "neighbour_offsets",
    "pearson_with_seeds",
    "rank_time",
    "zscore_rows",
]

#: Correlations are clipped to ``+-(1 - FISHER_CLIP)`` before the Fisher transform.
FISHER_CLIP = 1e-7


def detrend_linear(x: np.ndarray) -> np.ndarray:
    """Remove the mean and the least-squares linear trend along the last axis (float64)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    t = np.arange(n, dtype=np.float64)
    t -= t.mean()
    xc = x - x.mean(axis=-1, keepdims=True)
    denom = float(t @ t)
    if denom == 0:
        return xc
    slope = (xc @ t) / denom
    return xc - slope[..., None] * t


def alff_kernel(x: np.ndarray, bins: np.ndarray, n_pad: int) -> tuple[np.ndarray, np.ndarray]:
    """ALFF and fALFF of each series along the last axis, RESTplus/DPABI style.

    Parameters
    ----------
    x : numpy.ndarray (..., time)
        Series.
    bins : numpy.ndarray of int
        0-based FFT bins of the band (see ``brainarr._core.fft.band_bins``).
    n_pad : int
        FFT length (next power of two of the number of time points).

    Returns
    -------
    alff, falff : numpy.ndarray (...), float32
    """
    n_time = x.shape[-1]
    y = detrend_linear(x)
    amp = 2.0 * np.abs(np.fft.rfft(y, n=n_pad, axis=-1)) / n_time
    band = amp[..., bins]
    band_sum = band.sum(axis=-1)
    alff = band.mean(axis=-1) if bins.size else np.zeros(x.shape[:-1])
    total = amp[..., 1 : n_pad // 2 + 1].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        falff = band_sum / total
    falff = np.where(np.isfinite(falff), falff, 0.0)
    return alff.astype(np.float32), falff.astype(np.float32)


def rank_time(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Ranks ``1..T`` along the last axis, ties getting the average of their ranks (float32).

    With ``mask`` (broadcastable to ``x.shape[:-1]``), only the series where it is True are
    ranked; the others are 0.
    """
    if mask is None:
        if x.size == 0:
            return np.zeros(x.shape, np.float32)
        return scipy.stats.rankdata(x, axis=-1, method="average").astype(np.float32)
    sel = np.broadcast_to(np.asarray(mask, dtype=bool), x.shape[:-1])
    out = np.zeros(x.shape, np.float32)
    if sel.any():
        out[sel] = scipy.stats.rankdata(x[sel], axis=-1, method="average")
    return out


def neighbour_offsets(neighbourhood: int) -> list[tuple[int, int, int]]:
    """Offsets ``(dx, dy, dz)`` of a 7-, 19- or 27-voxel neighbourhood (centre included)."""
    offsets = []
    for d in itertools.product((-1, 0, 1), repeat=3):
        n_nonzero = sum(v != 0 for v in d)
        if neighbourhood == 27 or (neighbourhood == 19 and n_nonzero <= 2) or (neighbourhood == 7 and n_nonzero <= 1):
            offsets.append(d)
    if len(offsets) != neighbourhood:
        raise ValueError(f"neighbourhood must be 7, 19 or 27, got {neighbourhood!r}")
    return offsets


def kendall_w_block(ranks: np.ndarray, neighbourhood: int) -> np.ndarray:
    """Kendall's W of each voxel with its in-mask neighbours, on a block with a 1-voxel halo.

    Parameters
    ----------
    ranks : numpy.ndarray (..., x, y, z, time)
        Time ranks (1..T) of in-mask voxels and 0 for voxels outside the mask, including a
        halo of one voxel on each spatial side (outside the array the halo is 0).
    neighbourhood : {7, 19, 27}
        Neighbourhood size.

    Returns
    -------
    numpy.ndarray (..., x - 2, y - 2, z - 2, time=1), float32
        W for the interior voxels (0 outside the mask); the singleton time axis is kept so
        that the block keeps the input's number of dimensions.
    """
    ranks = np.asarray(ranks)
    n_time = ranks.shape[-1]
    nx, ny, nz = (s - 2 for s in ranks.shape[-4:-1])
    lead = ranks.shape[:-4]
    inside = ranks[..., 0] > 0  # (..., x, y, z): a voxel is in the mask iff its ranks are > 0
    # Ranks are multiples of 1/2 and their sums stay far below 2**23, so float32 sums are exact.
    total = np.zeros((*lead, nx, ny, nz, n_time), np.float32)
    count = np.zeros((*lead, nx, ny, nz), np.float32)
    for dx, dy, dz in neighbour_offsets(neighbourhood):
        sl = (..., slice(1 + dx, 1 + dx + nx), slice(1 + dy, 1 + dy + ny), slice(1 + dz, 1 + dz + nz))
        total += ranks[(*sl, slice(None))]
        count += inside[sl]
    centre = inside[..., 1 : 1 + nx, 1 : 1 + ny, 1 : 1 + nz]
    w = np.zeros(centre.shape, np.float64)
    k = count[centre].astype(np.float64)
    # every in-mask series has mean rank (T + 1) / 2, so the mean of R_t is K (T + 1) / 2 (exact)
    dev = total[centre] - (count[centre] * np.float32((n_time + 1) / 2))[:, None]
    s = np.square(dev, dtype=np.float64).sum(axis=-1)
    w[centre] = 12.0 * s / (k**2 * (float(n_time) ** 3 - n_time))
    return w.astype(np.float32)[..., None]


def _standardize(x: np.ndarray) -> np.ndarray:
    """Centre along the last axis and divide by the root sum of squares; constant rows -> 0."""
    xc = x - x.mean(axis=-1, keepdims=True)
    norm = np.sqrt(np.sum(xc * xc, axis=-1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(norm > 0, xc / norm, 0.0)
    return out


def pearson_with_seeds(x: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Pearson r between each series of ``x`` and each seed series.

    Parameters
    ----------
    x : numpy.ndarray (..., time)
        Voxel series.
    seeds : numpy.ndarray (..., seed, time)
        Seed series, broadcastable against ``x`` on the leading axes.

    Returns
    -------
    numpy.ndarray (..., seed), float32
        r; 0 where either series is constant.
    """
    xn = _standardize(np.asarray(x, dtype=np.float64))
    sn = _standardize(np.asarray(seeds, dtype=np.float64))
    r = np.einsum("...t,...st->...s", xn, sn)
    return np.clip(r, -1.0, 1.0).astype(np.float32)


def fisher_z(r: np.ndarray) -> np.ndarray:
    """Fisher z = arctanh(r) with r clipped to ``+-(1 - FISHER_CLIP)`` (always finite), float32."""
    r = np.clip(np.asarray(r, dtype=np.float64), -1.0 + FISHER_CLIP, 1.0 - FISHER_CLIP)
    return np.arctanh(r).astype(np.float32)


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """z-score each row (ddof=1) and divide by sqrt(T - 1), so that row dot products are r.

    Constant rows become 0. Returns float32.
    """
    return _standardize(np.asarray(x, dtype=np.float64)).astype(np.float32)


def degree_block(
    rows: np.ndarray, row_index: np.ndarray, z_all: np.ndarray, threshold: float, absolute: bool
) -> np.ndarray:
    """Binary and weighted degree of a block of rows against all rows (one float32 GEMM).

    Parameters
    ----------
    rows : numpy.ndarray (n, time), float32
        Standardised rows of this block (see :func:`zscore_rows`).
    row_index : numpy.ndarray (n,), int
        Global indices of these rows in ``z_all`` (used to exclude each row's self-correlation).
    z_all : numpy.ndarray (N, time), float32
        All standardised rows.
    threshold : float
        Correlations strictly above it count.
    absolute : bool
        Threshold and sum ``|r|`` instead of ``r``.

    Returns
    -------
    numpy.ndarray (n, 2), float64
        Column 0: binary degree (count); column 1: weighted degree (sum of r).
    """
    n = rows.shape[0]
    out = np.zeros((n, 2), np.float64)
    if n == 0:
        return out
    g = rows @ z_all.T
    if absolute:
        np.abs(g, out=g)
    g[np.arange(n), np.asarray(row_index)] = -np.inf
    if threshold >= 0:
        # in place, two passes: g <- max(g - threshold, 0) is > 0 exactly on the edges, and
        # sum_j r_ij over the edges = sum_j max(r_ij - threshold, 0) + threshold * count
        thr = np.float32(threshold)
        np.subtract(g, thr, out=g)
        np.maximum(g, np.float32(0), out=g)
        count = np.count_nonzero(g, axis=1)
        out[:, 0] = count
        out[:, 1] = g.sum(axis=1).astype(np.float64) + float(thr) * count
    else:
        keep = g > threshold
        out[:, 0] = keep.sum(axis=1)
        out[:, 1] = np.where(keep, g, np.float32(0)).sum(axis=1, dtype=np.float64)
    constant = ~np.any(rows != 0, axis=1)
    out[constant] = 0.0
    return out


def eigenvector_power(
    z_all: np.ndarray,
    *,
    threshold: float | None,
    binary: bool,
    block_size: int,
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """Leading eigenvector of the (thresholded) correlation graph by power iteration.

    Parameters
    ----------
    z_all : numpy.ndarray (N, time), float32
        Standardised rows (see :func:`zscore_rows`); all-zero rows are constant voxels and
        are left out of the graph (their centrality is 0).
    threshold : float or None
        ``None``: the fast ECM matrix ``(R + 1) / 2`` (all pairs, no threshold), applied as
        ``(Z (Z^T v) + sum(v)) / 2`` without forming any block. Otherwise the adjacency
        ``A_ij = r_ij`` (or 1 if ``binary``) where ``r_ij > threshold``, ``j != i``, applied
        block by block (``block_size`` rows at a time, one GEMM each per iteration).
    binary : bool
        Binary instead of weighted adjacency (thresholded graph only).
    block_size : int
        Rows per block of the thresholded matvec.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Stop when the largest change of the unit-norm vector is below ``tol``.

    Returns
    -------
    numpy.ndarray (N, 1), float64
        Unit L2-norm, non-negative eigenvector (0 for constant voxels).

    Warns
    -----
    RuntimeWarning
        If the iteration did not converge in ``max_iter`` steps.
    """
    import warnings

    n_all = z_all.shape[0]
    valid = np.any(z_all != 0, axis=1)
    z = np.ascontiguousarray(z_all[valid], dtype=np.float32)
    n = z.shape[0]
    out = np.zeros((n_all, 1), np.float64)
    if n == 0:
        return out

    def matvec(v: np.ndarray) -> np.ndarray:
        if threshold is None:
            return 0.5 * (z.astype(np.float64) @ (z.T.astype(np.float64) @ v) + v.sum())
        w = v.copy()  # the shift A + I keeps the iteration from oscillating; same eigenvector
        v32 = v.astype(np.float32)
        for start in range(0, n, block_size):
            g = z[start : start + block_size] @ z.T
            rows = np.arange(g.shape[0])
            g[rows, start + rows] = -np.inf
            keep = g > threshold
            if binary:
                w[start : start + block_size] += keep.astype(np.float32) @ v32
            else:
                w[start : start + block_size] += np.where(keep, g, np.float32(0)) @ v32
        return w

    v = np.full(n, 1.0 / np.sqrt(n))
    converged = False
    for _ in range(max_iter):
        w = matvec(v)
        norm = np.linalg.norm(w)
        if norm == 0:
            v = np.zeros(n)
            converged = True
            break
        w /= norm
        delta = np.max(np.abs(w - v))
        v = w
        if delta < tol:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"eigenvector centrality did not converge in {max_iter} iterations (last change {delta:.3g})",
            RuntimeWarning,
            stacklevel=2,
        )
    out[valid, 0] = np.abs(v)
    return out
