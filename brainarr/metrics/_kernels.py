"""Pure numpy kernels of the metrics (time is the last axis; no dask, no xarray).

Each kernel is tested on its own against a direct implementation; the labelled wrappers in
the public modules line up chunks and call these through ``apply_ufunc``, ``map_overlap``
or a blockwise graph.
"""

from __future__ import annotations

import itertools

import numpy as np

from brainarr._core.blas import one_blas_thread
from brainarr._core.docs import docfiller

__all__ = [
    "FISHER_CLIP",
    "alff_kernel",
    "degree_band",
    "degree_block",
    "degree_histogram",
    "degree_upper",
    "detrend_linear",
    "fisher_z",
    "kendall_w_block",
    "leading_eigenvector",
    "lfcd_block",
    "neighbour_offsets",
    "pearson_with_seeds",
    "rank_time",
    "sparsity_band",
    "sparsity_pass2",
    "sparsity_pass3",
    "sparsity_select",
    "target_edges",
    "zero_constant_rows",
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


def _selected(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``mask`` broadcast to ``shape`` (the leading axes of a block), or None for all."""
    if mask is None:
        return None
    return np.broadcast_to(np.asarray(mask, dtype=bool), shape)


def _trend_basis(n_time: int) -> np.ndarray:
    """Orthonormal basis ``(T, 2)`` of the constant and the linear trend (float64)."""
    t = np.arange(n_time, dtype=np.float64)
    t -= t.mean()
    basis = [np.full(n_time, 1.0 / np.sqrt(n_time))]
    denom = float(t @ t)
    if denom > 0:
        basis.append(t / np.sqrt(denom))
    return np.stack(basis, axis=1)


def alff_kernel(
    x: np.ndarray, mask: np.ndarray | None = None, *, bins: np.ndarray, n_pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """ALFF and fALFF of each series along the last axis, RESTplus/DPABI style.

    Parameters
    ----------
    x : numpy.ndarray (..., time)
        Series.
    mask : numpy.ndarray of bool, optional
        Broadcastable to ``x.shape[:-1]``: only these series are analysed (the others get 0).
    bins : numpy.ndarray of int
        0-based FFT bins of the band (see ``brainarr._core.fft.band_bins``).
    n_pad : int
        FFT length (next power of two of the number of time points).

    Returns
    -------
    alff, falff : numpy.ndarray (...), float32

    Notes
    -----
    Only the selected series are copied (once, to float64); the mean and the linear trend are
    removed as a projection on an orthonormal basis of both (two thin matrix products, with
    one BLAS thread so that the result does not depend on the thread count), and the real FFT
    of the zero-padded series is taken with :func:`scipy.fft.rfft`.
    """
    import scipy.fft

    x = np.asarray(x)
    lead = x.shape[:-1]
    n_time = x.shape[-1]
    sel = _selected(mask, lead)
    alff = np.zeros(lead, np.float32)
    falff = np.zeros(lead, np.float32)
    series = x.reshape(-1, n_time) if sel is None else x[sel]
    if series.shape[0] == 0 or bins.size == 0:
        return alff, falff
    y = np.array(series, dtype=np.float64)
    basis = _trend_basis(n_time)
    with one_blas_thread():  # reproducible: see one_blas_thread
        y -= (y @ basis) @ basis.T
    amp = np.abs(scipy.fft.rfft(y, n=n_pad, axis=-1))  # the scale 2 / T cancels in fALFF
    del y
    band_sum = amp[:, bins].sum(axis=-1)
    total = amp[:, 1 : n_pad // 2 + 1].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = band_sum / total
    # a constant series has no spectrum (the projection leaves rounding noise): 0, 0
    constant = np.all(series == series[:, :1], axis=-1)
    f = np.where(np.isfinite(f) & ~constant, f, 0.0)
    a = np.where(constant, 0.0, band_sum * (2.0 / n_time / bins.size))
    if sel is None:
        alff[...] = a.reshape(lead)
        falff[...] = f.reshape(lead)
    else:
        alff[sel] = a
        falff[sel] = f
    return alff, falff


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks ``1..T`` of each row of a 2-D array, ties averaged (float32)."""
    n_time = x.shape[-1]
    order = np.argsort(x, axis=-1)
    ordered = np.take_along_axis(x, order, axis=-1)
    new = np.empty(x.shape, bool)  # True where a run of equal values starts
    new[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=new[:, 1:])
    if new.all():
        sorted_ranks = np.broadcast_to(np.arange(1, n_time + 1, dtype=np.float32), x.shape)
    else:
        starts = np.flatnonzero(new)
        lengths = np.diff(np.append(starts, x.size))
        # a run from position p of length L holds ranks p + 1 .. p + L: average p + (L + 1) / 2
        average = (starts % n_time) + (lengths + 1) / 2.0
        sorted_ranks = np.repeat(average.astype(np.float32), lengths).reshape(x.shape)
    out = np.empty(x.shape, np.float32)
    np.put_along_axis(out, order, sorted_ranks, axis=-1)
    return out


def rank_time(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Ranks ``1..T`` along the last axis, ties getting the average of their ranks (float32).

    With ``mask`` (broadcastable to ``x.shape[:-1]``), only the series where it is True are
    ranked; the others are 0. Ranks come from one ``argsort`` per series; runs of equal
    values get the mean of their positions (as :func:`scipy.stats.rankdata` with
    ``method="average"``).
    """
    x = np.asarray(x)
    n_time = x.shape[-1]
    if mask is None:
        if x.size == 0:
            return np.zeros(x.shape, np.float32)
        return _average_ranks(x.reshape(-1, n_time)).reshape(x.shape)
    sel = np.broadcast_to(np.asarray(mask, dtype=bool), x.shape[:-1])
    out = np.zeros(x.shape, np.float32)
    if sel.any():
        out[sel] = _average_ranks(x[sel])
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
    inside = ranks[..., 0] > 0  # (..., x, y, z): a voxel is in the mask iff its ranks are > 0
    centre = inside[..., 1 : 1 + nx, 1 : 1 + ny, 1 : 1 + nz]
    w = np.zeros(centre.shape, np.float64)
    # Only the in-mask centres are summed: gather their neighbours' rows from the flat
    # (voxel, time) array, one offset at a time (a neighbour is a fixed flat-index offset away)
    flat = np.ascontiguousarray(ranks).reshape(-1, n_time)
    inside_flat = inside.reshape(-1)
    padded = ranks.shape[:-1]
    where = np.nonzero(centre)
    index = np.ravel_multi_index((*where[:-3], *(a + 1 for a in where[-3:])), padded)
    n = index.size
    if n:
        strides = (padded[-2] * padded[-1], padded[-1], 1)
        # Ranks are multiples of 1/2 and their sums stay far below 2**23, so float32 sums are exact.
        total = np.zeros((n, n_time), np.float32)
        buf = np.empty((n, n_time), np.float32)
        count = np.zeros(n, np.float32)
        for d in neighbour_offsets(neighbourhood):
            idx = index + sum(a * b for a, b in zip(d, strides, strict=True))
            np.take(flat, idx, axis=0, out=buf)
            total += buf
            count += inside_flat[idx]
        k = count.astype(np.float64)
        # every in-mask series has mean rank (T + 1) / 2, so the mean of R_t is K (T + 1) / 2 (exact)
        total -= (count * np.float32((n_time + 1) / 2))[:, None]
        s = np.einsum("ij,ij->i", total, total, dtype=np.float64)
        w[where] = 12.0 * s / (k**2 * (float(n_time) ** 3 - n_time))
    return w.astype(np.float32)[..., None]


def _standardize(x: np.ndarray) -> np.ndarray:
    """Centre along the last axis and divide by the root sum of squares; constant rows -> 0."""
    xc = x - x.mean(axis=-1, keepdims=True)
    norm = np.sqrt(np.sum(xc * xc, axis=-1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(norm > 0, xc / norm, 0.0)
    return out


def pearson_with_seeds(x: np.ndarray, seeds: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson r between each series of ``x`` and each seed series.

    Parameters
    ----------
    x : numpy.ndarray (..., time)
        Voxel series.
    seeds : numpy.ndarray (..., seed, time)
        Seed series, broadcastable against ``x`` on the leading axes.
    mask : numpy.ndarray of bool, optional
        Broadcastable to ``x.shape[:-1]``: only these series are correlated (the others get 0).

    Returns
    -------
    numpy.ndarray (..., seed), float32
        r; 0 where either series is constant.

    Notes
    -----
    For each distinct set of seeds (usually one per subject), the selected voxel series are
    gathered once into a ``(n, T)`` float64 matrix, centred and normalised in place, and
    multiplied with the standardised seeds in a single matrix product (one BLAS thread, see
    :func:`one_blas_thread`: the same bits whatever else runs).
    """
    x = np.asarray(x)
    seeds = np.asarray(seeds)
    n_time = x.shape[-1]
    n_seed = seeds.shape[-2]
    lead = np.broadcast_shapes(x.shape[:-1], seeds.shape[:-2])
    x = np.broadcast_to(x, (*lead, n_time))
    s_lead = (1,) * (len(lead) - (seeds.ndim - 2)) + seeds.shape[:-2]
    sn = _standardize(np.asarray(seeds, dtype=np.float64)).reshape(*s_lead, n_seed, n_time)
    sel = _selected(mask, lead)
    # the seeds vary along the leading axes up to ``k`` only: loop over those, one GEMM each
    varying = [i for i, size in enumerate(s_lead) if size != 1]
    k = varying[-1] + 1 if varying else 0
    out = np.zeros((*lead, n_seed), np.float32)
    for idx in np.ndindex(*lead[:k]):
        xs = x[idx].reshape(-1, n_time)
        rs = out[idx].reshape(-1, n_seed)
        keep = None if sel is None else sel[idx].reshape(-1)
        rows = np.array(xs if keep is None else xs[keep], dtype=np.float64)
        if rows.shape[0] == 0:
            continue
        rows -= rows.mean(axis=-1, keepdims=True)
        norm = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        seed_block = sn[tuple(min(i, s - 1) for i, s in zip(idx, s_lead, strict=False))].reshape(n_seed, n_time)
        with one_blas_thread():  # reproducible: see one_blas_thread
            r = rows @ seed_block.T
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(norm[:, None] > 0, r / norm[:, None], 0.0)
        r = np.clip(r, -1.0, 1.0)
        if keep is None:
            rs[...] = r
        else:
            rs[keep] = r
        if not np.shares_memory(rs, out):
            out[idx] = rs.reshape(out[idx].shape)
    return out


def fisher_z(r: np.ndarray) -> np.ndarray:
    """Fisher z = arctanh(r) with r clipped to ``+-(1 - FISHER_CLIP)`` (always finite), float32."""
    r = np.clip(np.asarray(r, dtype=np.float64), -1.0 + FISHER_CLIP, 1.0 - FISHER_CLIP)
    return np.arctanh(r).astype(np.float32)


#: Parameter descriptions shared by the degree kernels.
_fill_dc = docfiller(
    {
        "z_all": "z_all : numpy.ndarray (N, time), float32\n    All standardised rows.",
        "threshold": "threshold : float\n    Correlations strictly above it count.",
        "absolute": "absolute : bool\n    Threshold and sum ``|r|`` instead of ``r``.",
    }
)


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """z-score each row (ddof=1) and divide by sqrt(T - 1), so that row dot products are r.

    Constant rows become 0. Returns float32.
    """
    return _standardize(np.asarray(x, dtype=np.float64)).astype(np.float32)


@_fill_dc
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
    %(z_all)s
    %(threshold)s
    %(absolute)s

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


#: Columns per tile of :func:`degree_upper`: a ``rows x DEGREE_TILE`` float32 tile (and its
#: 0/1 edge indicator) stays in a core's L2 cache while it is thresholded and reduced.
DEGREE_TILE = 256


def _reduce_tile(g: np.ndarray, e: np.ndarray, threshold: float, absolute: bool) -> None:
    """Turn a tile of correlations into edge weights (``g``) and 0/1 edges (``e``), in place."""
    if absolute:
        np.abs(g, out=g)
    np.greater(g, np.float32(threshold), out=e)
    np.multiply(g, e, out=g)


@_fill_dc
def degree_upper(
    rows: np.ndarray,
    start: int,
    z_all: np.ndarray,
    threshold: float,
    absolute: bool,
    *,
    tile: int = DEGREE_TILE,
) -> np.ndarray:
    r"""Degree contributions of the pairs ``(i, j)`` with ``i`` in a row block and ``j >= start``.

    The correlation matrix is symmetric, so each pair needs computing once: the task of row
    block :math:`[s, e)` computes the correlations of its rows with the columns
    :math:`j \ge s` only, tile by tile (a ``rows x tile`` float32 product that stays in cache,
    thresholded and reduced in place before the next one), and credits each edge to both
    ends. Summing the outputs of all row blocks gives every voxel's degree.

    Parameters
    ----------
    rows : numpy.ndarray (n, time), float32
        Standardised rows ``z[start:start + n]`` (see :func:`zscore_rows`).
    start : int or numpy.ndarray of int
        Global index of the first row (or the global indices of the rows: the first is used).
    %(z_all)s
    %(threshold)s
    %(absolute)s
    tile : int, default :data:`DEGREE_TILE`
        Columns per tile.

    Returns
    -------
    numpy.ndarray (1, N, 2), float64
        Column 0: edge counts; column 1: edge weights, credited to both ends of each pair
        computed here (self-pairs excluded). Within the block's own columns :math:`[s, e)`
        both orders of each pair are computed, so those are credited to the row only.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    z_all = np.asarray(z_all, dtype=np.float32)
    n = rows.shape[0]
    n_all = z_all.shape[0]
    start = int(np.asarray(start).ravel()[0]) if np.ndim(start) else int(start)
    out = np.zeros((1, n_all, 2), np.float64)
    if n == 0:
        return out
    stop = start + n
    width = max(1, min(int(tile), n_all - start))
    buf = np.empty((2, n, width), np.float32)  # correlations / weights, and 0/1 edges
    # the block's own columns first (credited to rows only), then the columns after it
    edges = sorted({*range(start, stop, width), *range(stop, n_all, width), n_all})
    with one_blas_thread():
        _upper_tiles(rows, start, z_all, edges, buf, threshold, absolute, out)
    return out


def _upper_tiles(rows, start, z_all, edges, buf, threshold, absolute, out) -> None:
    """The tile loop of :func:`degree_upper` (accumulates into ``out``)."""
    n = rows.shape[0]
    stop = start + n
    ones_c = np.ones(buf.shape[-1], np.float32)
    ones_r = np.ones(n, np.float32)
    row_acc = np.zeros((2, n), np.float64)
    for c0, c1 in itertools.pairwise(edges):
        w = c1 - c0
        b = buf[:, :, :w]
        g, e = b[0], b[1]
        np.matmul(rows, z_all[c0:c1].T, out=g)
        _reduce_tile(g, e, threshold, absolute)
        if c0 < stop:
            own = np.arange(max(c0, start), min(c1, stop))
            e[own - start, own - c0] = 0.0
            g[own - start, own - c0] = 0.0
        row_acc += np.matmul(b, ones_c[:w])
        if c0 >= stop:
            col = np.matmul(ones_r, b)  # (2, w)
            out[0, c0:c1, 0] += col[1]
            out[0, c0:c1, 1] += col[0]
    out[0, start:stop, 0] += row_acc[1]
    out[0, start:stop, 1] += row_acc[0]


def zero_constant_rows(degrees: np.ndarray, z_all: np.ndarray) -> np.ndarray:
    """Set the degrees of constant voxels (all-zero standardised rows) to 0."""
    out = np.array(degrees, dtype=np.float64, copy=True)
    out[~np.any(z_all != 0, axis=1)] = 0.0
    return out


class _ProductBudgetSpent(Exception):
    """Raised inside a matrix product once the allowed number of products has been made."""


def _leading_lanczos(matvec, n: int, *, max_iter: int, tol: float) -> tuple[np.ndarray, bool]:
    """Leading eigenvector of a symmetric operator with at most ``max_iter`` products.

    Implicitly restarted Lanczos (:func:`scipy.sparse.linalg.eigsh`, ``which="LA"``) from the
    constant vector. If it has not converged after ``max_iter`` products, the Rayleigh-Ritz
    vector of the space spanned by the vectors multiplied so far (all in the Krylov space of
    the start vector, which holds the power iterate of one product fewer) is returned.
    """
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

    seen: list[np.ndarray] = []
    images: list[np.ndarray] = []

    def counted(v: np.ndarray) -> np.ndarray:
        if len(seen) >= max_iter:
            raise _ProductBudgetSpent
        v = np.array(v, dtype=np.float64).ravel()  # a copy: eigsh reuses its buffer
        w = matvec(v)
        seen.append(v)
        images.append(w)
        return w

    op = LinearOperator((n, n), matvec=counted, dtype=np.float64)
    try:
        _, vec = eigsh(op, k=1, which="LA", v0=np.ones(n), ncv=min(n, 20), tol=tol, maxiter=max_iter)
        found, converged = vec[:, 0], True
    except (_ProductBudgetSpent, ArpackNoConvergence, ArpackError):
        found, converged = None, False
    # the constant start vector (eigsh's first product) may itself be an eigenvector, e.g. of a
    # graph without edges, where any vector is one: of a matrix >= 0, a positive eigenvector is
    # the leading one, which power iteration from it would return
    if seen and np.std(seen[0]) == 0:
        start = seen[0] / np.linalg.norm(seen[0])
        first = images[0]
        if np.linalg.norm(first - (start @ first) * start) <= 1e-12 * np.linalg.norm(first):
            return start, True
    if converged:
        return found, True
    u, sv, vt = np.linalg.svd(np.stack(seen, axis=1), full_matrices=False)
    keep = sv > sv[0] * 1e-10
    u, coef = u[:, keep], vt[keep].T / sv[keep]  # u = seen @ coef
    h = u.T @ (np.stack(images, axis=1) @ coef)
    _, y = np.linalg.eigh((h + h.T) / 2)
    return u @ y[:, -1], False


def leading_eigenvector(
    z_all: np.ndarray,
    *,
    threshold: float | None,
    binary: bool,
    block_size: int,
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """Leading eigenvector of the (thresholded) correlation graph, without an N x N matrix.

    Parameters
    ----------
    z_all : numpy.ndarray (N, time), float32
        Standardised rows (see :func:`zscore_rows`); all-zero rows are constant voxels and
        are left out of the graph (their centrality is 0).
    threshold : float or None
        ``None``: the fast ECM matrix ``(R + 1) / 2`` (all pairs, no threshold), applied as
        ``(Z (Z^T v) + sum(v)) / 2`` without forming any block, by power iteration. Otherwise
        the adjacency ``A_ij = r_ij`` (or 1 if ``binary``) where ``r_ij > threshold``,
        ``j != i``, applied block by block (``block_size`` rows at a time, one GEMM each per
        product), by Lanczos iteration (:func:`scipy.sparse.linalg.eigsh`).
    binary : bool
        Binary instead of weighted adjacency (thresholded graph only).
    block_size : int
        Rows per block of the thresholded product.
    max_iter : int
        Maximum number of products with the matrix.
    tol : float
        Power iteration: stop when the largest change of the unit-norm vector is below
        ``tol``. Lanczos: relative accuracy of the eigenvalue (``eigsh``'s ``tol``).

    Returns
    -------
    numpy.ndarray (N, 1), float64
        Unit L2-norm, non-negative eigenvector (0 for constant voxels).

    Warns
    -----
    RuntimeWarning
        If the iteration did not converge in ``max_iter`` products.

    Notes
    -----
    The fast ECM matrix has a dominant eigenvalue (about N / 2) far above the others, so power
    iteration converges in a few products; Lanczos needs at least ``ncv`` = 20 (measured for
    N = 6,726 on the 6 mm grid: power iteration 0.06-0.1 s, ``eigsh`` 0.4 s, the same vector
    to 1e-11). A thresholded graph has no such gap: power iteration had not converged after
    200 products (0.22 from the exact eigenvector, 152 s) where ``eigsh`` converged in 61
    (9e-7, 39 s) (``benchmarks/metrics.py ec``).
    """
    import warnings

    n_all = z_all.shape[0]
    valid = np.any(z_all != 0, axis=1)
    z = np.ascontiguousarray(z_all[valid], dtype=np.float32)
    n = z.shape[0]
    out = np.zeros((n_all, 1), np.float64)
    if n == 0:
        return out
    if threshold is None:
        z64 = z.astype(np.float64)
        v = np.full(n, 1.0 / np.sqrt(n))
        converged = False
        for _ in range(max_iter):
            w = 0.5 * (z64 @ (z64.T @ v) + v.sum())
            w /= np.linalg.norm(w)  # > 0: every entry of the matrix is >= 0 and v > 0
            delta = np.max(np.abs(w - v))
            v = w
            if delta < tol:
                converged = True
                break
    else:

        def matvec(v: np.ndarray) -> np.ndarray:
            w = v.copy()  # A + I: the same eigenvectors, and never 0 (a graph without edges)
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

        if n == 1:
            v, converged = np.ones(1), True
        else:
            v, converged = _leading_lanczos(matvec, n, max_iter=max_iter, tol=tol)
        v = np.abs(v) / np.linalg.norm(v)
    if not converged:
        warnings.warn(
            f"eigenvector centrality did not converge in {max_iter} iterations (products with the matrix)",
            RuntimeWarning,
            stacklevel=2,
        )
    out[valid, 0] = np.abs(v)
    return out


# --------------------------------------------------------------------------------------------
# Degree centrality at a sparsity: the exact k-th largest correlation without an N x N matrix
# --------------------------------------------------------------------------------------------

#: Bins of the first-pass histogram of the correlations: bin ``m`` (1 ... B) holds
#: :math:`r \in ((m-1)/B, m/B]`, bin 0 :math:`r \le 0` and bin ``B + 1`` :math:`r > 1` (float
#: rounding). ``ceil(r * B)`` is exact in float32 (B is a power of two), so binning and the
#: band tests ``lo < r <= hi`` of the later passes agree bit for bit.
SPARSITY_BINS = 2**16

#: Sub-bins per first-pass bin in the fallback second pass, each ``2**-34`` wide: one float32
#: value each for :math:`r \ge 2^{-11}`.
SPARSITY_SUB_BINS = 2**18
SPARSITY_SUB_SCALE = float(SPARSITY_BINS * SPARSITY_SUB_BINS)

#: A band holding at most this many pairs is collected as (i, j, r) triples (12 bytes each)
#: in the second pass; a larger one is resolved by a sub-histogram and a third pass instead.
SPARSITY_BAND_LIMIT = 2**22

#: Fields of the band description returned by :func:`sparsity_band`.
_BAND_ALL, _BAND_PAIRS, _BAND_SUB = 0.0, 1.0, 2.0

#: Rows of int32 bin indices gathered before one ``bincount`` (bounded buffer).
_HIST_FLUSH = 2**18


def _pair_tiles(rows: np.ndarray, start: int, z_all: np.ndarray, tile: int, absolute: bool):
    """Yield ``(c0, g)``: tiles of r (or |r|) of ``rows`` with the columns ``j >= start``.

    Entries with ``j <= i`` (global indices) are set to 0, so each unordered pair appears
    once, in the row of its smaller index. The caller holds :func:`one_blas_thread`. The
    tile geometry is that of :func:`degree_upper`, so every pass computes the same bits.
    """
    n = rows.shape[0]
    n_all = z_all.shape[0]
    stop = start + n
    width = max(1, min(int(tile), n_all - start))
    buf = np.empty((n, width), np.float32)
    edges = sorted({*range(start, stop, width), *range(stop, n_all, width), n_all})
    row_ids = start + np.arange(n)
    for c0, c1 in itertools.pairwise(edges):
        g = buf[:, : c1 - c0]
        np.matmul(rows, z_all[c0:c1].T, out=g)
        if absolute:
            np.abs(g, out=g)
        if c0 < stop:
            g[(c0 + np.arange(c1 - c0))[None, :] <= row_ids[:, None]] = 0.0
        yield c0, g


def _as_rows(rows, start, z_all):
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    z_all = np.asarray(z_all, dtype=np.float32)
    start = int(np.asarray(start).ravel()[0]) if np.ndim(start) else int(start)
    return rows, start, z_all


def degree_histogram(
    rows: np.ndarray,
    start: int,
    z_all: np.ndarray,
    absolute: bool,
    *,
    bins: int = SPARSITY_BINS,
    tile: int = DEGREE_TILE,
) -> np.ndarray:
    r"""Histogram of the correlations of the pairs ``i < j`` with ``i`` in a row block.

    Parameters
    ----------
    rows, start, z_all, absolute
        As for :func:`degree_upper`.
    bins : int, default :data:`SPARSITY_BINS`
        ``B``: bin ``m = ceil(r B)`` clipped to ``[0, B + 1]`` (0: :math:`r \le 0`).
    tile : int
        Columns per tile.

    Returns
    -------
    numpy.ndarray (1, B + 2), int64
        Pair counts per bin; integers, so the sum over the blocks is exact in any order.
        Bins 1 ... B + 1 count each positive pair once; bin 0 also holds the block's own
        pairs with ``j <= i`` (set to 0), so only ``hist[1:]`` is meaningful.
    """
    rows, start, z_all = _as_rows(rows, start, z_all)
    hist = np.zeros(bins + 2, np.int64)
    n = rows.shape[0]
    if n == 0:
        return hist[None]
    scale = np.float32(bins)
    pending = np.empty(_HIST_FLUSH + n * max(1, min(int(tile), z_all.shape[0] - start)), np.int32)
    used = 0
    with one_blas_thread():
        for _, g in _pair_tiles(rows, start, z_all, tile, absolute):
            np.multiply(g, scale, out=g)
            np.ceil(g, out=g)
            np.clip(g, 0, bins + 1, out=g)
            np.copyto(pending[used : used + g.size].reshape(g.shape), g, casting="unsafe")
            used += g.size
            if used >= _HIST_FLUSH:
                hist += np.bincount(pending[:used], minlength=bins + 2)
                used = 0
    if used:
        hist += np.bincount(pending[:used], minlength=bins + 2)
    return hist[None]


def degree_band(
    rows: np.ndarray,
    start: int,
    z_all: np.ndarray,
    absolute: bool,
    edge_lo: float,
    edge_hi: float = np.inf,
    *,
    collect: tuple[float, float, str] | None = None,
    tile: int = DEGREE_TILE,
) -> tuple[np.ndarray, tuple | np.ndarray | None]:
    r"""Degrees of the edges ``edge_lo < r <= edge_hi`` among the pairs ``i < j``, ``i`` in a row block.

    Parameters
    ----------
    rows, start, z_all, absolute
        As for :func:`degree_upper`.
    edge_lo, edge_hi : float
        Edge interval (compared in float32; ``edge_hi = inf``: no upper bound).
    collect : (lo, hi, mode), optional
        Also gather the pairs with ``lo < r <= hi``: ``mode="pairs"`` returns them as
        ``(i, j, r)`` arrays (global indices, int32, and float32 r); ``mode="sub"`` returns
        their histogram in sub-bins ``q = ceil((r - lo) * SPARSITY_SUB_SCALE)`` (int64,
        length ``SPARSITY_SUB_BINS + 1``, ``q`` clipped to ``[1, SPARSITY_SUB_BINS]``).
    tile : int
        Columns per tile.

    Returns
    -------
    degrees : numpy.ndarray (1, N, 2), float64
        Edge counts and weights credited to both ends of each pair.
    collected : tuple of arrays, numpy.ndarray or None
        See ``collect``.
    """
    rows, start, z_all = _as_rows(rows, start, z_all)
    n = rows.shape[0]
    n_all = z_all.shape[0]
    out = np.zeros((1, n_all, 2), np.float64)
    pieces: list = []
    sub = None
    if collect is not None and collect[2] == "sub":
        sub = np.zeros(SPARSITY_SUB_BINS + 1, np.int64)
    if n == 0:
        return out, (_concat_pairs(pieces) if collect is not None and sub is None else sub)
    e_lo = np.float32(edge_lo)
    e_hi = np.float32(edge_hi)
    width = max(1, min(int(tile), n_all - start))
    e_buf = np.empty((2, n, width), np.float32)
    band = np.empty((2, n, width), bool)
    ones_c = np.ones(width, np.float32)
    ones_r = np.ones(n, np.float32)
    row_acc = np.zeros((2, n), np.float64)
    with one_blas_thread():
        for c0, g in _pair_tiles(rows, start, z_all, tile, absolute):
            w = g.shape[1]
            b = e_buf[:, :, :w]
            if collect is not None:
                bd, tmp = band[0, :, :w], band[1, :, :w]
                np.greater(g, np.float32(collect[0]), out=bd)
                np.less_equal(g, np.float32(collect[1]), out=tmp)
                bd &= tmp
                if bd.any():
                    ii, jj = np.nonzero(bd)
                    vals = g[ii, jj]
                    if sub is None:
                        pieces.append(((ii + start).astype(np.int32), (jj + c0).astype(np.int32), vals.copy()))
                    else:
                        q = np.ceil((vals.astype(np.float64) - collect[0]) * SPARSITY_SUB_SCALE)
                        q = np.clip(q, 1, SPARSITY_SUB_BINS).astype(np.int64)
                        sub += np.bincount(q, minlength=SPARSITY_SUB_BINS + 1)
            np.greater(g, e_lo, out=b[1])
            if np.isfinite(e_hi):
                np.less_equal(g, e_hi, out=b[0])
                b[1] *= b[0]
            np.multiply(g, b[1], out=b[0])
            row_acc += np.matmul(b, ones_c[:w])
            col = np.matmul(ones_r, b)  # (2, w)
            out[0, c0 : c0 + w, 0] += col[1]
            out[0, c0 : c0 + w, 1] += col[0]
    out[0, start : start + n, 0] += row_acc[1]
    out[0, start : start + n, 1] += row_acc[0]
    if collect is None:
        return out, None
    return out, (_concat_pairs(pieces) if sub is None else sub)


def _concat_pairs(pieces: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not pieces:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    return tuple(np.concatenate(p) for p in zip(*pieces, strict=True))  # type: ignore[return-value]


def target_edges(n_voxels: int, sparsity: float) -> int:
    """Number of edges kept at ``sparsity`` percent: ``floor(N (N - 1) / 2 * s / 100)`` as 3dDegreeCentrality."""
    n_pairs = int(n_voxels) * (int(n_voxels) - 1) // 2
    return int(n_pairs * float(sparsity) / 100.0)


def sparsity_band(hist: np.ndarray, k: int, limit: int = SPARSITY_BAND_LIMIT) -> np.ndarray:
    """The first-pass bin holding the ``k``-th largest positive correlation.

    Parameters
    ----------
    hist : numpy.ndarray (B + 2,), int64
        Summed :func:`degree_histogram` of all row blocks.
    k : int
        Target number of edges (>= 1).
    limit : int
        Largest band collected pair by pair (else: the sub-histogram fallback).

    Returns
    -------
    numpy.ndarray (5,), float64
        ``[mode, m, k_rem, n_positive, n_above]``: mode 0 (``k >= n_positive``: every
        positive pair is an edge), 1 (collect the band's pairs) or 2 (sub-histogram); ``m``
        the bin; ``k_rem = k - n_above`` the rank of the target within the bin (1-based,
        from the top); ``n_above`` the pairs in the bins above ``m``.

    Warns
    -----
    RuntimeWarning
        If fewer than ``k`` pairs have r > 0 (3dDegreeCentrality warns alike).
    """
    hist = np.asarray(hist, dtype=np.int64).ravel()
    n_pos = int(hist[1:].sum())
    if k >= n_pos:
        if k > n_pos:
            import warnings

            warnings.warn(
                f"degree centrality: sparsity asks for {k} edges but only {n_pos} pairs have r > 0; "
                "all of them are kept",
                RuntimeWarning,
                stacklevel=2,
            )
        return np.array([_BAND_ALL, 0, 0, n_pos, 0], np.float64)
    from_top = np.cumsum(hist[::-1])[::-1]  # from_top[m] = pairs in bins >= m
    m = int(np.flatnonzero(from_top >= k)[-1])
    above = int(from_top[m + 1]) if m + 1 < hist.size else 0
    mode = _BAND_PAIRS if hist[m] <= limit else _BAND_SUB
    return np.array([mode, m, k - above, n_pos, above], np.float64)


def _band_edges(m: int, bins: int = SPARSITY_BINS) -> tuple[float, float]:
    """``(lo, hi)`` of first-pass bin ``m >= 1``: r in ``(lo, hi]`` (hi = inf for the last)."""
    if m > bins:
        return 1.0, np.inf
    return (m - 1) / bins, m / bins


def sparsity_pass2(rows, start, z_all, band, absolute, *, tile: int = DEGREE_TILE):
    """Second pass: degrees above the band, and the band's pairs (or sub-histogram)."""
    mode, m = float(band[0]), int(band[1])
    if mode == _BAND_ALL:
        return degree_band(rows, start, z_all, absolute, 0.0, tile=tile)
    lo, hi = _band_edges(m)
    kind = "pairs" if mode == _BAND_PAIRS else "sub"
    return degree_band(rows, start, z_all, absolute, hi, collect=(lo, hi, kind), tile=tile)


def _float32_below(x: float) -> float:
    """The largest float32 <= ``x``."""
    f = np.float32(x)
    if float(f) > x:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def sparsity_select(band: np.ndarray, collected: list, n_all: int) -> tuple[float, np.ndarray, np.ndarray]:
    """The threshold from the band, and the degrees of the band's edges.

    Parameters
    ----------
    band : numpy.ndarray (5,)
        :func:`sparsity_band`.
    collected : list
        The second outputs of :func:`sparsity_pass2`, in row-block order.
    n_all : int
        Number of voxels.

    Returns
    -------
    tau : numpy.ndarray (), float64
        The threshold: the edges are the pairs with ``r > tau`` (float32 comparison); with
        mode 1, ``tau`` is the float32 just below the ``k``-th largest r, so every pair tied
        with it is kept.
    extra : numpy.ndarray (N, 2), float64
        Degrees of the band's edges (mode 1; zeros otherwise).
    third : numpy.ndarray (3,), float64
        ``[run, lo, hi]``: whether the third pass (:func:`sparsity_pass3`) counts the edges
        ``lo < r <= hi`` (mode 2 only).
    """
    tau, extra, third = _select(band, collected, n_all)
    return np.asarray(tau, np.float64), extra, third


def _select(band, collected, n_all):
    mode, m, k_rem = float(band[0]), int(band[1]), int(band[2])
    extra = np.zeros((n_all, 2), np.float64)
    third = np.zeros(3, np.float64)
    if mode == _BAND_ALL:
        return 0.0, extra, third
    lo, hi = _band_edges(m)
    if mode == _BAND_PAIRS:
        ii, jj, vals = _concat_pairs([c for c in collected if c[0].size])
        if vals.size == 0:  # only if the passes disagreed on a bit (they compute the same tiles)
            return _float32_below(hi), extra, third
        r_k = np.sort(vals)[vals.size - min(k_rem, vals.size)]
        keep = vals >= r_k
        ii, jj, w = ii[keep], jj[keep], vals[keep].astype(np.float64)
        extra[:, 0] = np.bincount(ii, minlength=n_all) + np.bincount(jj, minlength=n_all)
        extra[:, 1] = np.bincount(ii, weights=w, minlength=n_all) + np.bincount(jj, weights=w, minlength=n_all)
        return float(np.nextafter(r_k, np.float32(-np.inf))), extra, third
    sub = np.zeros(SPARSITY_SUB_BINS + 1, np.int64)
    for c in collected:
        sub += c
    from_top = np.cumsum(sub[::-1])[::-1]
    q = int(np.flatnonzero(from_top >= k_rem)[-1])
    tau = _float32_below(lo + (q - 1) / SPARSITY_SUB_SCALE)
    third[:] = (1.0, tau, hi)
    return tau, extra, third


def sparsity_pass3(rows, start, z_all, selected, absolute, *, tile: int = DEGREE_TILE) -> np.ndarray:
    """Third pass (sub-histogram fallback only): degrees of the edges within the band."""
    third = selected[2]
    if third[0] == 0:  # a read-only view of one zero: no memory
        return np.broadcast_to(np.zeros((1, 1, 1)), (1, np.shape(z_all)[0], 2))
    return degree_band(rows, start, z_all, absolute, float(third[1]), float(third[2]), tile=tile)[0]


# --------------------------------------------------------------------------------------------
# Local functional connectivity density (region growing from each seed)
# --------------------------------------------------------------------------------------------

#: Weighted LFCD is summed in fixed point (``round(r * 2**40)`` as int64): an exact integer
#: sum, the same in any order (the region of a seed may be grown in any order).
LFCD_FIXED_POINT = 2.0**40

#: Seed-voxel pairs whose correlation is computed at once (bounds the gathered rows).
_LFCD_PAIRS = 8192


def _pair_correlation(z_all: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of the rows ``a[p]`` and ``b[p]``: exact float64 products, a pairwise sum per row.

    Each value depends on its two rows only (not on the other pairs, their number or their
    order), so a region grows the same way in any block of seeds.
    """
    out = np.empty(a.size, np.float64)
    for s in range(0, a.size, _LFCD_PAIRS):
        e = min(s + _LFCD_PAIRS, a.size)
        prod = np.multiply(z_all[a[s:e]], z_all[b[s:e]], dtype=np.float64)
        out[s:e] = prod.sum(axis=1)
    return out


def lfcd_block(
    start: np.ndarray,
    z_all: np.ndarray,
    lookup: np.ndarray,
    position: np.ndarray,
    deltas: np.ndarray,
    threshold: float,
    *,
    batch: int | None = None,
    frontier: int = 2**16,
) -> np.ndarray:
    r"""Binary and weighted LFCD of a block of seeds by vectorised region growing.

    Parameters
    ----------
    start : numpy.ndarray (n,), int
        Global row indices of the seeds (a contiguous block).
    z_all : numpy.ndarray (N, time), float32
        All standardised in-mask rows (:func:`zscore_rows`; constant voxels are all-zero rows).
    lookup : numpy.ndarray (P,), int
        Row index of each voxel of the grid padded by one voxel on every side (flattened, C
        order), -1 outside the mask (the padding included).
    position : numpy.ndarray (N,), int
        Flat index in the padded grid of each row.
    deltas : numpy.ndarray (K,), int
        Flat offsets of the neighbours (6, 18 or 26).
    threshold : float
        A voxel joins the seed's region if its r with the seed is strictly above it.
    batch : int, optional
        Seeds grown together (default: ``clip(2**22 // N, 1, 256)``, so the ``batch x N``
        "seen" matrix stays under 4 MiB).
    frontier : int, default 65536
        Largest number of region voxels expanded in one step.

    Returns
    -------
    numpy.ndarray (n, 2), float64
        Number of voxels of the seed's region (seed excluded) and the sum of their r with
        the seed (fixed point, :data:`LFCD_FIXED_POINT`).

    Notes
    -----
    For each seed ``s`` the region is grown from ``s``: the neighbours of every region voxel
    are tested once each, and join the region when :math:`r(s, v) > \tau` (r with the seed,
    not with the voxel they were reached from). The result is the connected component of
    ``s`` in :math:`\{s\} \cup \{v : r(s, v) > \tau\}`, whatever the order of growth.
    """
    seeds = np.asarray(start, dtype=np.int64).ravel()
    z_all = np.asarray(z_all, dtype=np.float32)
    lookup = np.asarray(lookup).ravel()
    position = np.asarray(position, dtype=np.int64).ravel()
    deltas = np.asarray(deltas, dtype=np.int64).ravel()
    n_all = z_all.shape[0]
    out = np.zeros((seeds.size, 2), np.float64)
    if seeds.size == 0 or n_all == 0:
        return out
    size = int(batch) if batch else int(min(max(2**22 // n_all, 1), 256))
    thr = float(threshold)
    for b0 in range(0, seeds.size, size):
        batch_seeds = seeds[b0 : b0 + size]
        nb = batch_seeds.size
        seen = np.zeros((nb, n_all), bool)
        seen[np.arange(nb), batch_seeds] = True
        count = np.zeros(nb, np.int64)
        weight = np.zeros(nb, np.int64)
        queue_s = np.arange(nb, dtype=np.int64)  # (batch seed, region voxel) pairs to expand
        queue_v = batch_seeds.copy()
        while queue_s.size:
            fs, fv = queue_s[:frontier], queue_v[:frontier]
            queue_s, queue_v = queue_s[frontier:], queue_v[frontier:]
            cand = lookup[position[fv][:, None] + deltas[None, :]]
            cs = np.broadcast_to(fs[:, None], cand.shape)
            ok = cand >= 0
            cs, cv = cs[ok], cand[ok].astype(np.int64)
            fresh = ~seen[cs, cv]
            key = np.unique(cs[fresh] * n_all + cv[fresh])
            if key.size == 0:
                continue
            cs, cv = key // n_all, key % n_all
            seen[cs, cv] = True
            r = _pair_correlation(z_all, batch_seeds[cs], cv)
            hit = r > thr
            cs, cv, r = cs[hit], cv[hit], r[hit]
            count += np.bincount(cs, minlength=nb)
            np.add.at(weight, cs, np.rint(r * LFCD_FIXED_POINT).astype(np.int64))
            queue_s = np.concatenate([queue_s, cs])
            queue_v = np.concatenate([queue_v, cv])
        out[b0 : b0 + nb, 0] = count
        out[b0 : b0 + nb, 1] = weight / LFCD_FIXED_POINT
    return out
