"""Frequency-domain helpers shared by filtering, ALFF/fALFF and slice-timing correction.

RESTplus and DPABI zero-pad each series to the next power of two ``P >= T`` and select the
FFT bins ``k`` (0-based, bin ``k`` has frequency ``k / (P * TR)``) with
``ceil(low * P * TR) <= k <= floor(high * P * TR)``.

:func:`fourier_shift` resamples series at a fraction of a sample later or earlier, the
kernel of slice-timing correction (and of simulating slice-timed acquisitions).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["band_bins", "fourier_shift", "next_pow2"]


def next_pow2(n: int) -> int:
    """Return the smallest power of two greater than or equal to ``n``.

    Parameters
    ----------
    n : int
        A positive length (number of time points).

    Returns
    -------
    int
        ``2 ** ceil(log2(n))`` (``1`` for ``n = 1``).

    Examples
    --------
    >>> next_pow2(230)
    256
    >>> next_pow2(256)
    256
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"next_pow2 needs a positive length, got {n}")
    return 1 << (n - 1).bit_length()


def band_bins(low: float | None, high: float | None, n_pad: int, tr: float) -> np.ndarray:
    r"""Return the 0-based FFT bins of a frequency band, RESTplus/DPABI style.

    Parameters
    ----------
    low, high : float or None
        Band edges in Hz. ``low=None`` means 0 (the DC bin is then included);
        ``high=None`` means the Nyquist frequency ``1 / (2 TR)``.
    n_pad : int
        FFT length ``P`` (usually ``next_pow2(T)``).
    tr : float
        Repetition time in seconds.

    Returns
    -------
    numpy.ndarray of int
        The bins ``k`` with ``ceil(low P TR) <= k <= floor(high P TR)``, clipped to
        ``0 .. P // 2``; empty when no bin falls in the band.

    Notes
    -----
    Bin ``k`` has frequency :math:`f_k = k / (P \, TR)`, so the band is

    .. math:: \lceil f_{low} P \, TR \rceil \le k \le \lfloor f_{high} P \, TR \rfloor .

    The products are evaluated in double precision exactly as RESTplus/DPABI do (no
    tolerance), so the same bins are selected as in their code.

    Examples
    --------
    >>> band_bins(0.01, 0.08, 256, 2.0)[[0, -1]]
    array([ 6, 40])
    """
    n_pad = int(n_pad)
    half = n_pad // 2
    lo = 0 if low is None else math.ceil(float(low) * n_pad * tr)
    hi = half if high is None else math.floor(float(high) * n_pad * tr)
    lo = max(lo, 0)
    hi = min(hi, half)
    if hi < lo:
        return np.zeros(0, dtype=np.intp)
    return np.arange(lo, hi + 1, dtype=np.intp)


def fourier_shift(x: np.ndarray, shifts: float | np.ndarray) -> np.ndarray:
    r"""Resample each series a fraction of a sample later with a Fourier phase shift.

    Parameters
    ----------
    x : numpy.ndarray (..., T)
        Series, time on the last axis, sampled every TR.
    shifts : float or numpy.ndarray broadcasting to ``x.shape[:-1]``
        Shift in samples (a time in s divided by TR): the output at sample ``n`` estimates
        the input at ``n + shift``. Positive values read later samples.

    Returns
    -------
    numpy.ndarray (..., T)
        Shifted series in the floating dtype of ``x`` (float32 stays float32; integers give
        float64). Computed in double precision.

    Notes
    -----
    As SPM's ``spm_slice_timing`` (Sladky et al. 2011), each series is extended to
    :math:`P` = next power of two :math:`\ge 2T` samples by a straight line from its last
    value back to its first, so that its periodic extension has no jump:

    .. math:: e_{T-1+j} = x_{T-1} + (x_0 - x_{T-1}) \frac{j}{P - T + 1}, \quad j = 1, \dots, P - T.

    Its discrete Fourier transform :math:`E_k` is multiplied by
    :math:`e^{2 \pi i k s / P}` for :math:`0 \le k < P/2` (with the conjugate factor on the
    negative frequencies) and the Nyquist bin :math:`k = P/2` by :math:`\cos(\pi s)`, the
    real part of its factor, so that the result stays real; the inverse transform's first
    :math:`T` samples are returned. For an integer ``s`` this is exactly a circular shift
    of the extended series.

    References
    ----------
    Sladky R., Friston K. J., Troestl J., Cunnington R., Moser E., Windischberger C. (2011).
    Slice-timing effects and their correction in functional MRI. NeuroImage 58(2), 588-594.

    Examples
    --------
    One sample later; the last value comes from the line back to the first sample:

    >>> fourier_shift(np.array([0.0, 1.0, 2.0, 3.0, 2.0, 1.0]), 1.0).round(3)
    array([1.   , 2.   , 3.   , 2.   , 1.   , 0.909])
    """
    x = np.asarray(x)
    dtype = np.result_type(x.dtype, np.float32)
    n_time = x.shape[-1]
    n_pad = next_pow2(2 * n_time)
    ext = np.empty((*x.shape[:-1], n_pad), dtype=np.float64)
    ext[..., :n_time] = x
    n_fill = n_pad - n_time
    frac = np.arange(1, n_fill + 1) / (n_fill + 1)
    first = x[..., :1].astype(np.float64)
    last = x[..., -1:].astype(np.float64)
    ext[..., n_time:] = last + (first - last) * frac
    spec = np.fft.rfft(ext, axis=-1)
    k = np.arange(n_pad // 2 + 1)
    s = np.asarray(shifts, dtype=np.float64)[..., None]
    phase = np.exp(2j * np.pi * k * s / n_pad)
    phase[..., -1] = np.cos(np.pi * s[..., 0])
    return np.fft.irfft(spec * phase, n=n_pad, axis=-1)[..., :n_time].astype(dtype, copy=False)
