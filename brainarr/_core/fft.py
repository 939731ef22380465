"""Frequency-domain helpers shared by the ideal band-pass filter and ALFF/fALFF.

RESTplus and DPABI zero-pad each series to the next power of two ``P >= T`` and select the
FFT bins ``k`` (0-based, bin ``k`` has frequency ``k / (P * TR)``) with
``ceil(low * P * TR) <= k <= floor(high * P * TR)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["band_bins", "next_pow2"]


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
