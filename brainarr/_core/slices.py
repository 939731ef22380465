r"""Acquisition timing of EPI series: named slice orders, slice times and the header's TR.

A 2-D EPI volume is acquired one slice at a time, so slice :math:`i` of a volume that
starts at :math:`n\,TR` is sampled at :math:`n\,TR + t_i`. The named orders below spread the
slices evenly over the repetition time: the slice acquired :math:`r`-th (rank :math:`r`,
0-based) has :math:`t_i = r\,TR / n`. Slice indices are 0-based along the slice axis of
the image, as BIDS ``SliceTiming``.

The repetition time itself is read from the NIfTI header (``pixdim[4]`` in the unit of
``xyzt_units``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

__all__ = [
    "SLICE_ORDERS",
    "TIME_UNIT_SECONDS",
    "SliceOrder",
    "acquisition_order",
    "header_time_unit",
    "header_tr",
    "slice_times",
]

#: Named slice orders understood by :func:`slice_times`.
SLICE_ORDERS = ("ascending", "descending", "interleaved", "interleaved_siemens")

SliceOrder = Literal["ascending", "descending", "interleaved", "interleaved_siemens"]

#: Seconds per unit of a NIfTI header's time unit ("unknown" is taken as seconds).
TIME_UNIT_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6, "unknown": 1.0}


def _prefix(func: str | None) -> str:
    return f"{func}: " if func else ""


def acquisition_order(order: str, n_slices: int, *, func: str | None = None) -> np.ndarray:
    """Return the 0-based slice indices in the order the slices are acquired.

    Parameters
    ----------
    order : {"ascending", "descending", "interleaved", "interleaved_siemens"}
        Named order. ``"ascending"``: 0, 1, 2, ...; ``"descending"``: n-1, ..., 0;
        ``"interleaved"``: 0, 2, 4, ..., then 1, 3, 5, ... (1, 3, 5, ..., then 2, 4, ... in
        1-based counting: SPM's and DPABI's interleaved bottom-up order, GE and Philips);
        ``"interleaved_siemens"``: as ``"interleaved"`` for odd ``n``, and for even ``n``
        1, 3, 5, ..., then 0, 2, 4, ... (the Siemens rule: even slices first in 1-based
        counting when the number of slices is even).
    n_slices : int
        Number of slices, at least 1.
    func : str, optional
        Name of the calling function, for error messages.

    Returns
    -------
    numpy.ndarray (n_slices,) of int
        ``out[r]`` is the index of the slice acquired ``r``-th.

    Raises
    ------
    ValueError
        If ``order`` is not one of :data:`SLICE_ORDERS` or ``n_slices`` is not a positive
        integer.

    Examples
    --------
    >>> acquisition_order("interleaved_siemens", 6)
    array([1, 3, 5, 0, 2, 4])
    """
    if isinstance(n_slices, bool) or int(n_slices) != n_slices or n_slices < 1:
        raise ValueError(f"{_prefix(func)}n_slices must be a positive integer, got {n_slices!r}")
    n = int(n_slices)
    if order == "ascending":
        return np.arange(n)
    if order == "descending":
        return np.arange(n)[::-1]
    if order == "interleaved" or (order == "interleaved_siemens" and n % 2 == 1):
        return np.concatenate([np.arange(0, n, 2), np.arange(1, n, 2)])
    if order == "interleaved_siemens":
        return np.concatenate([np.arange(1, n, 2), np.arange(0, n, 2)])
    names = ", ".join(repr(o) for o in SLICE_ORDERS)
    raise ValueError(f"{_prefix(func)}order must be one of {names}, got {order!r}")


def slice_times(order: str, n_slices: int, tr: float, *, func: str | None = None) -> np.ndarray:
    r"""Return the acquisition time of each slice for a named order spread evenly over the TR.

    Parameters
    ----------
    order : {"ascending", "descending", "interleaved", "interleaved_siemens"}
        Named order (see :func:`acquisition_order`).
    n_slices : int
        Number of slices, at least 1.
    tr : float
        Repetition time in s.
    func : str, optional
        Name of the calling function, for error messages.

    Returns
    -------
    numpy.ndarray (n_slices,), float64, units s
        ``out[i]`` is the time of slice ``i`` from the start of the volume, indexed like the
        image's slice axis (as BIDS ``SliceTiming``).

    Raises
    ------
    ValueError
        If ``order`` is unknown, ``n_slices`` is not a positive integer or ``tr`` is not a
        positive finite number.

    Notes
    -----
    The slice of rank :math:`r` in :func:`acquisition_order` is acquired at
    :math:`t = r\,TR/n` (no gap at the end of the TR; SPM's ``TA = TR - TR/n``).

    Examples
    --------
    >>> slice_times("interleaved", 5, 2.0)
    array([0. , 1.2, 0.4, 1.6, 0.8])
    """
    seq = acquisition_order(order, n_slices, func=func)
    tr = float(tr)
    if not (np.isfinite(tr) and tr > 0):
        raise ValueError(f"{_prefix(func)}tr must be a positive number of seconds, got {tr!r}")
    n = seq.size
    times = np.empty(n)
    times[seq] = np.arange(n) * tr / n
    return times


def header_time_unit(header: Any) -> str:
    """Return a NIfTI header's time unit: "sec", "msec", "usec" or "unknown".

    Parameters
    ----------
    header : nibabel.Nifti1Header or mapping-like header
        Anything indexable by ``"xyzt_units"``; headers without that field (Analyze) give
        "unknown".

    Returns
    -------
    str
        The unit of bits 3-5 of ``xyzt_units`` (NIfTI-1: 8 s, 16 ms, 24 us); other codes
        (Hz, ppm, rad/s) and unreadable fields give "unknown".
    """
    try:
        code = int(np.asarray(header["xyzt_units"]).item()) & 0x38
    except (KeyError, TypeError, ValueError):
        return "unknown"
    return {8: "sec", 16: "msec", 24: "usec"}.get(code, "unknown")


def header_tr(header: Any) -> float | None:
    """Return the repetition time in s stored in a NIfTI header, or None when it has none.

    Parameters
    ----------
    header : nibabel.Nifti1Header
        Header with ``get_zooms()`` and ``xyzt_units`` (NIfTI-1 or NIfTI-2).

    Returns
    -------
    float or None
        ``pixdim[4]`` converted from the header's time unit to s ("unknown" taken as s),
        given as the shortest decimal that round-trips its float32 storage (0.8, not
        0.800000011920929); None for a 3-D header, a non-finite or non-positive value, or a
        header whose dims cannot be read.

    Examples
    --------
    >>> import nibabel as nib
    >>> h = nib.Nifti1Header()
    >>> h.set_data_shape((2, 2, 2, 5))
    >>> h.set_zooms((3.0, 3.0, 3.0, 800.0))
    >>> h.set_xyzt_units(xyz="mm", t="msec")
    >>> header_tr(h)
    0.8
    """
    try:
        zooms = header.get_zooms()
    except Exception:  # a hostile pixdim/dim: no usable TR
        return None
    if len(zooms) < 4:
        return None
    unit = header_time_unit(header)
    with np.errstate(all="ignore"):
        value = np.float32(zooms[3])
        if not np.isfinite(value):
            return None
        stored = float(np.format_float_positional(value, unique=True))
        tr = stored * TIME_UNIT_SECONDS.get(unit, 1.0)
    return tr if np.isfinite(tr) and tr > 0 else None
