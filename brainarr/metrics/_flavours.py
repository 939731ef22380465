"""Numpy kernels of the peer-tool flavours of ALFF/fALFF and ReHo (private).

Each function reproduces one tool's definition (AFNI ``3dRSFC``/``3dBandpass``/``3dReHo``,
C-PAC's ALFF workflow, xcp_d's ``compute_alff``), written from their source; the public
wrappers :func:`brainarr.metrics.alff` (``flavour=``) and :func:`brainarr.metrics.reho`
(``ties=``) document the formulas. Time is the last axis; no dask, no xarray. Series are
processed in double precision, one BLAS thread (reproducible whatever else runs).
"""

from __future__ import annotations

import functools

import numpy as np

from brainarr._core.blas import one_blas_thread
from brainarr.metrics._kernels import neighbour_offsets

__all__ = [
    "AFNI_MAX_FTOP",
    "afni_bandpass",
    "afni_bandpass_bins",
    "afni_nfft",
    "afni_rank_time",
    "afni_rsfc_bins",
    "alff_afni_kernel",
    "alff_cpac_kernel",
    "alff_xcpd_kernel",
    "gsl_sort_index",
    "neighbour_sum_block",
    "xcpd_band",
]

#: AFNI's ``ICOR_MAX_FTOP`` (3ddata.h): a high edge at or above it means "no low-pass".
AFNI_MAX_FTOP = 99999.0


# ---------------------------------------------------------------------------------------------
# frequency bins


def afni_nfft(n_time: int) -> int:
    """FFT length of AFNI's band-pass: the next even number ``>= n_time``.

    AFNI's ``csfft_nextup_even`` (csfft.c) returns this whenever the arbitrary-length FFT
    (``USE_FFTN``, compiled in since 2018) is available, which is the case in every current
    build; the powers of 2, 3 and 5 that ``3dBandpass -help`` mentions are the older rule.
    """
    n_time = int(n_time)
    return n_time + (n_time % 2)


def afni_bandpass_bins(n_time: int, tr: float, low: float, high: float) -> tuple[int, int, int]:
    """``(nfft, jbot, jtop)`` of AFNI's FFT band-pass (``THD_bandpass_vectors``, thd_bandpass.c).

    In single precision, as AFNI does: ``df = 1 / (nfft TR)``, ``jbot = rint(low / df)`` and
    ``jtop = rint(high / df)``, each replaced by the last bin below Nyquist
    (``nhalf = nfft / 2 - 1``; ``jbot`` by 0) when at or above it. ``jbot > 0 or jtop < nhalf``
    means that the series is filtered.
    """
    f32 = np.float32
    nfft = afni_nfft(n_time)
    nby2 = nfft // 2
    nhalf = nby2 - 1
    df = f32(1.0) / (f32(nfft) * f32(tr))
    qbot = float(np.rint(f32(low) / df))
    qtop = float(np.rint(f32(high) / df))
    jbot = int(qbot) if qbot < nhalf else 0
    jtop = int(qtop) if qtop < nhalf else nhalf
    if high >= AFNI_MAX_FTOP or jtop >= nby2:
        jtop = nhalf
    if jbot >= jtop + 1:
        jbot, jtop = 0, nhalf
    return nfft, jbot, jtop


def afni_rsfc_bins(n_time: int, tr: float, low: float, high: float) -> np.ndarray:
    """Bins ``m`` of the T-point spectrum that 3dRSFC sums into ALFF (``main``, 3dRSFC.c).

    ``delf = 1 / (T TR)`` (single precision), ``rint(low / delf) <= m <= rint(high / delf)``
    and ``1 <= m < T // 2`` (the DC bin and bin ``T // 2`` are never used).
    """
    f32 = np.float32
    n_time = int(n_time)
    delf = f32(1.0 / float(f32(n_time) * f32(tr)))
    lo = int(np.rint(f32(low) / delf))
    hi = int(np.rint(f32(high) / delf))
    lo = max(lo, 1)
    hi = min(hi, n_time // 2 - 1)
    if hi < lo:
        return np.zeros(0, dtype=np.intp)
    return np.arange(lo, hi + 1, dtype=np.intp)


def xcpd_band(n_time: int, tr: float, low: float, high: float) -> tuple[int, int]:
    """Slice ``[lo, hi)`` of the periodogram bins that xcp_d averages into ALFF.

    The bins are those of :func:`scipy.signal.periodogram` (``k / (T TR)``, ``k = 0 .. T // 2``);
    ``lo`` and ``hi`` are the bins closest to the low and high edge (the first one on a tie,
    as :func:`numpy.argmin`), and the slice excludes ``hi`` (``compute_alff``,
    xcp_d/utils/restingstate.py).
    """
    freqs = np.fft.rfftfreq(int(n_time), float(tr))
    lo = int(np.argmin(np.abs(freqs - float(low))))
    hi = int(np.argmin(np.abs(freqs - float(high))))
    return lo, hi


# ---------------------------------------------------------------------------------------------
# detrending and AFNI's band-pass


@functools.lru_cache(maxsize=32)
def _poly_basis(n_time: int, degree: int) -> np.ndarray:
    """Orthonormal basis ``(T, degree + 1)`` of the polynomials of ``degree`` in time (float64)."""
    t = np.linspace(-1.0, 1.0, n_time) if n_time > 1 else np.zeros(1)
    vander = np.vander(t, degree + 1, increasing=True)
    q, r = np.linalg.qr(vander)
    keep = np.abs(np.diag(r)) > 1e-12 * max(1.0, float(np.abs(r).max()))
    q = q[:, keep]
    q.setflags(write=False)
    return q


def _remove_poly(y: np.ndarray, degree: int) -> np.ndarray:
    """Remove the least-squares polynomial of ``degree`` along the last axis of 2-D ``y``, in place."""
    basis = _poly_basis(y.shape[-1], degree)
    with one_blas_thread():  # reproducible: see one_blas_thread
        y -= (y @ basis) @ basis.T
    return y


def afni_bandpass(y: np.ndarray, nfft: int, jbot: int, jtop: int) -> np.ndarray:
    """AFNI's FFT band-pass of detrended series ``y`` (rows), as ``THD_bandpass_vectors`` does it.

    The series are zero-padded to ``nfft`` and transformed; the DC and Nyquist bins are set to 0,
    the edge bins ``jbot`` (when ``>= 1``) and ``jtop`` are halved (the taper used without
    ``-ort``), the bins ``1 .. jbot - 1`` and ``jtop + 1 .. nfft / 2 - 1`` are set to 0 (with
    their negative frequencies, which keeps the result real); the inverse transform's first
    ``T`` samples are returned. When ``jbot == 0`` and ``jtop == nfft / 2 - 1`` AFNI does no FFT
    and ``y`` is returned unchanged (still holding its Nyquist component).
    """
    import scipy.fft

    n_time = y.shape[-1]
    nby2 = nfft // 2
    nhalf = nby2 - 1
    if not (jbot > 0 or jtop < nhalf):
        return y
    z = scipy.fft.rfft(y, n=nfft, axis=-1)
    z[:, 0] = 0.0
    z[:, nby2] = 0.0
    if jbot >= 1:
        z[:, jbot] *= 0.5
        z[:, 1:jbot] = 0.0
    z[:, jtop] *= 0.5
    z[:, jtop + 1 : nby2] = 0.0
    return scipy.fft.irfft(z, n=nfft, axis=-1)[:, :n_time]


def _select(x: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
    """The selection (or None) and the selected series as a float64 ``(n, T)`` copy."""
    lead = x.shape[:-1]
    n_time = x.shape[-1]
    sel = None if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), lead)
    series = x.reshape(-1, n_time) if sel is None else x[sel]
    return sel, np.array(series, dtype=np.float64)


def _scatter(values: np.ndarray, sel: np.ndarray | None, lead: tuple[int, ...]) -> np.ndarray:
    """Place per-series values in a float32 map of shape ``lead`` (0 where not selected)."""
    out = np.zeros(lead, np.float32)
    if sel is None:
        out[...] = values.reshape(lead)
    else:
        out[sel] = values
    return out


def _constant_rows(y: np.ndarray) -> np.ndarray:
    return np.all(y == y[:, :1], axis=-1)


def alff_afni_kernel(
    x: np.ndarray, mask: np.ndarray | None = None, *, nfft: int, jbot: int, jtop: int, bins: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ALFF and fALFF of AFNI ``3dRSFC`` (defaults: quadratic detrend, no ``-despike``/``-norm``).

    Parameters
    ----------
    x : numpy.ndarray (..., time)
    mask : numpy.ndarray of bool, optional
        Broadcastable to ``x.shape[:-1]``: only these series are analysed (the others get 0).
    nfft, jbot, jtop : int
        From :func:`afni_bandpass_bins`.
    bins : numpy.ndarray of int
        From :func:`afni_rsfc_bins`.

    Returns
    -------
    alff, falff : numpy.ndarray (...), float32
    """
    import scipy.fft

    x = np.asarray(x)
    lead = x.shape[:-1]
    n_time = x.shape[-1]
    sel, y = _select(x, mask)
    if y.shape[0] == 0:
        return np.zeros(lead, np.float32), np.zeros(lead, np.float32)
    constant = _constant_rows(y)
    _remove_poly(y, 2)
    band = afni_bandpass(y, nfft, jbot, jtop)
    numer = np.abs(scipy.fft.rfft(band, n=n_time, axis=-1)[:, bins]).sum(axis=-1)
    del band
    denom = np.abs(scipy.fft.rfft(y, n=n_time, axis=-1)[:, 1 : n_time // 2]).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(denom > 1e-6, numer / denom, 0.0)
    a = 2.0 * numer / np.sqrt(n_time)
    a[constant] = 0.0
    f[constant] = 0.0
    return _scatter(a, sel, lead), _scatter(f, sel, lead)


def _sd_linear(y: np.ndarray) -> np.ndarray:
    """AFNI ``3dTstat -stdev``: SD (ddof = 1) after removing mean and linear trend (rows, copied)."""
    r = _remove_poly(np.array(y, dtype=np.float64), 1)
    return np.sqrt(np.einsum("ij,ij->i", r, r) / (y.shape[-1] - 1))


def alff_cpac_kernel(
    x: np.ndarray, mask: np.ndarray | None = None, *, nfft: int, jbot: int, jtop: int
) -> tuple[np.ndarray, np.ndarray]:
    """ALFF and fALFF of C-PAC (``create_alff``): 3dBandpass, then 3dTstat -stdev.

    Parameters
    ----------
    x : numpy.ndarray (..., time)
    mask : numpy.ndarray of bool, optional
        Broadcastable to ``x.shape[:-1]``.
    nfft, jbot, jtop : int
        From :func:`afni_bandpass_bins`.

    Returns
    -------
    alff, falff : numpy.ndarray (...), float32
    """
    x = np.asarray(x)
    lead = x.shape[:-1]
    sel, y = _select(x, mask)
    if y.shape[0] == 0:
        return np.zeros(lead, np.float32), np.zeros(lead, np.float32)
    constant = _constant_rows(y)
    sd_raw = _sd_linear(y)
    _remove_poly(y, 2)
    band = afni_bandpass(y, nfft, jbot, jtop)
    a = _sd_linear(band)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(sd_raw > 0, a / sd_raw, 0.0)
    a[constant] = 0.0
    f[constant] = 0.0
    return _scatter(a, sel, lead), _scatter(f, sel, lead)


def alff_xcpd_kernel(x: np.ndarray, mask: np.ndarray | None = None, *, lo: int, hi: int) -> np.ndarray:
    """ALFF of xcp_d (``compute_alff`` without censoring).

    Parameters
    ----------
    x : numpy.ndarray (..., time)
    mask : numpy.ndarray of bool, optional
        Broadcastable to ``x.shape[:-1]``.
    lo, hi : int
        From :func:`xcpd_band` (bins ``lo .. hi - 1``).

    Returns
    -------
    numpy.ndarray (...), float32

    Notes
    -----
    xcp_d standardises the series (population SD), takes the square root of its
    ``scaling="spectrum"`` periodogram and multiplies the band mean back by the SD; the SD
    cancels, so this is computed from the demeaned series directly.
    """
    import scipy.fft

    x = np.asarray(x)
    lead = x.shape[:-1]
    n_time = x.shape[-1]
    sel, y = _select(x, mask)
    if y.shape[0] == 0:
        return np.zeros(lead, np.float32)
    constant = _constant_rows(y)
    y -= y.mean(axis=-1, keepdims=True)
    amp = np.abs(scipy.fft.rfft(y, n=n_time, axis=-1)[:, lo:hi]) / n_time
    del y
    # one-sided spectrum: every bin but DC (and Nyquist for even T) has its power doubled
    k = np.arange(lo, hi)
    gain = np.where((k >= 1) & (k <= (n_time - 1) // 2), np.sqrt(2.0), 1.0)
    a = 2.0 * (amp * gain).mean(axis=-1)
    a[constant] = 0.0
    return _scatter(a, sel, lead)


# ---------------------------------------------------------------------------------------------
# AFNI 3dReHo ranks


def gsl_sort_index(values: np.ndarray) -> np.ndarray:
    """Sorting permutation of each row as GSL's ``gsl_sort_vector_index`` (heapsort) gives it.

    Heapsort is not stable: the order of equal values is the one GSL's heap produces (heap
    children of node ``k`` at ``2k`` and ``2k + 1``, a sift stops when the moving value is
    ``>=`` the larger child). It matters to 3dReHo only where equal values keep distinct ranks
    (see :func:`afni_rank_time`). Vectorised over rows: one pass of the heap algorithm, each
    sift run on all rows at once.
    """
    values = np.asarray(values, dtype=np.float64)
    n_rows, n = values.shape
    p = np.tile(np.arange(n, dtype=np.intp), (n_rows, 1))
    if n_rows == 0 or n < 2:
        return p
    rows = np.arange(n_rows)

    def sift(last: int, start: int) -> None:
        k = np.full(n_rows, start, dtype=np.intp)
        moving = p[:, start].copy()
        v_moving = values[rows, moving]
        active = np.ones(n_rows, dtype=bool)
        while True:
            active &= k <= last // 2
            if not active.any():
                break
            r = rows[active]
            j = 2 * k[r]
            right = np.minimum(j + 1, last)
            v_j = values[r, p[r, j]]
            v_right = values[r, p[r, right]]
            step = (j < last) & (v_j < v_right)
            j = np.where(step, j + 1, j)
            v_j = np.where(step, v_right, v_j)
            go = ~(v_moving[r] >= v_j)
            r, j = r[go], j[go]
            active[:] = False
            active[r] = True
            p[r, k[r]] = p[r, j]
            k[r] = j
        p[rows, k] = moving

    last = n - 1
    for start in range(last // 2, -1, -1):
        sift(last, start)
    while last > 0:
        p[:, [0, last]] = p[:, [last, 0]]
        last -= 1
        sift(last, 0)
    return p


def afni_rank_time(x: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Time ranks and tie terms of each series as AFNI 3dReHo computes them.

    Parameters
    ----------
    x : numpy.ndarray (..., time)
    mask : numpy.ndarray of bool, optional
        Broadcastable to ``x.shape[:-1]``: only these series are ranked.

    Returns
    -------
    ranks : numpy.ndarray (..., time), float32
        Ranks 1..T (0 outside the mask).
    aux : numpy.ndarray (..., 2), float64
        ``aux[..., 0]``: the tie term :math:`\sum (t^3 - t)` over the tie runs that 3dReHo
        counts; ``aux[..., 1]``: 1 for a ranked (in-mask) series, else 0.

    Notes
    -----
    ``CalcRanksForReHo`` (src/ptaylor/rsfc.c) sorts the values (GSL heapsort, see
    :func:`gsl_sort_index`) and gives them ranks 1..T in that order; it then looks for ties
    in the sorted values *converted to int* (truncated toward zero), gives each run of equal
    integers the average of its ranks and adds :math:`t^3 - t` to the voxel's tie term. A run
    that reaches the largest value is never closed by that loop: it keeps its distinct ranks
    and is not counted. All three are reproduced here.
    """
    x = np.asarray(x)
    lead = x.shape[:-1]
    n_time = x.shape[-1]
    ranks = np.zeros(x.shape, np.float32)
    aux = np.zeros((*lead, 2), np.float64)
    sel, v = _select(x, mask)
    n = v.shape[0]
    if n == 0:
        return ranks, aux
    order = np.argsort(v, axis=-1, kind="stable")
    sv = np.take_along_axis(v, order, axis=-1)
    iv = np.trunc(sv)
    same = iv[:, 1:] == iv[:, :-1]  # (n, T - 1): sorted position m + 1 ties with m
    # the trailing run: positions from the last start of a run of equal integers to T - 1
    starts = np.ones((n, n_time), dtype=bool)
    starts[:, 1:] = ~same
    last_start = n_time - 1 - np.argmax(starts[:, ::-1], axis=-1)
    position = np.arange(n_time)
    trailing = position[None, :] >= last_start[:, None]
    # where the trailing run holds equal floats, their order (hence ranks) is GSL's heapsort's
    dup = np.zeros((n, n_time), dtype=bool)
    dup[:, 1:] = sv[:, 1:] == sv[:, :-1]
    redo = np.any(dup & trailing & (last_start[:, None] < n_time - 1), axis=-1)
    if redo.any():
        order[redo] = gsl_sort_index(v[redo])
    # average ranks of the closed runs (every run but the trailing one); ordinal elsewhere
    flat_starts = np.flatnonzero(starts)
    lengths = np.diff(np.append(flat_starts, starts.size))
    begin = flat_starts % n_time
    average = np.repeat(begin + (lengths + 1) / 2.0, lengths).reshape(n, n_time)
    sorted_ranks = np.where(trailing, position[None, :] + 1.0, average)
    row_of_run = flat_starts // n_time
    closed = (begin + lengths) < n_time
    tie = np.zeros(n, np.float64)
    np.add.at(tie, row_of_run[closed], lengths[closed].astype(np.float64) ** 3 - lengths[closed])
    out = np.empty((n, n_time), np.float32)
    np.put_along_axis(out, order, sorted_ranks.astype(np.float32), axis=-1)
    if sel is None:
        ranks[...] = out.reshape(x.shape)
        aux[..., 0] = tie.reshape(lead)
        aux[..., 1] = 1.0
    else:
        ranks[sel] = out
        aux[sel, 0] = tie
        aux[sel, 1] = 1.0
    return ranks, aux


def neighbour_sum_block(block: np.ndarray, neighbourhood: int) -> np.ndarray:
    """Sum of ``block`` over each voxel's 7-, 19- or 27-voxel neighbourhood (block with a halo).

    Parameters
    ----------
    block : numpy.ndarray (..., x, y, z, c)
        Values with a halo of one voxel on each spatial side (0 outside the array).
    neighbourhood : {7, 19, 27}

    Returns
    -------
    numpy.ndarray (..., x - 2, y - 2, z - 2, c), float64
    """
    block = np.asarray(block, dtype=np.float64)
    nx, ny, nz = (s - 2 for s in block.shape[-4:-1])
    out = np.zeros((*block.shape[:-4], nx, ny, nz, block.shape[-1]), np.float64)
    for dx, dy, dz in neighbour_offsets(neighbourhood):
        out += block[..., 1 + dx : 1 + dx + nx, 1 + dy : 1 + dy + ny, 1 + dz : 1 + dz + nz, :]
    return out
