"""Amplitude of low-frequency fluctuations (ALFF) and its fractional variant (fALFF)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import TIME
from brainarr._core.fft import band_bins, next_pow2
from brainarr._core.validation import describe, get_tr
from brainarr.metrics._common import finish_map, prepare_bold, prepare_mask
from brainarr.metrics._kernels import alff_kernel

__all__ = ["alff"]

ALFF_REFERENCES = (
    "Zang YF, He Y, Zhu CZ, et al. Altered baseline brain activity in children with ADHD revealed by "
    "resting-state functional MRI. Brain Dev 2007;29:83-91. doi:10.1016/j.braindev.2006.07.002; "
    "Zou QH, Zhu CZ, Yang Y, et al. An improved approach to detection of amplitude of low-frequency "
    "fluctuation (ALFF) for resting-state fMRI: fractional ALFF. J Neurosci Methods 2008;172:137-141. "
    "doi:10.1016/j.jneumeth.2008.04.012"
)


@record_history
def alff(
    bold: xr.DataArray,
    band: tuple[float, float] = (0.01, 0.08),
    *,
    mask: xr.DataArray | None = None,
    tr: float | None = None,
) -> xr.Dataset:
    r"""ALFF and fALFF of every voxel, exactly as RESTplus/DPABI compute them.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        BOLD series (usually not band-pass filtered), optionally with a leading ``subject``
        dim. ``time`` must be one dask chunk.
    band : tuple of float, default (0.01, 0.08)
        Low and high edge of the band in Hz.
    mask : xarray.DataArray (x, y, z) of bool, optional
        Voxels to analyse; the maps are 0 outside it.
    tr : float, optional
        Repetition time in s; default ``bold.attrs["tr"]``.

    Returns
    -------
    xarray.Dataset
        ``alff`` and ``falff``, each ``(..., x, y, z)`` float32 with the spatial chunks of
        ``bold``; ``alff`` is in the units of ``bold``, ``falff`` is dimensionless (``"1"``).

    Raises
    ------
    ValueError
        If the band is empty for this number of time points and TR, or its high edge is
        above the Nyquist frequency :math:`1 / (2\,TR)`.
    DataValidationError
        If the BOLD holds NaN or Inf values (with the default ``data_validation="raise"``;
        raised when the chunk is computed).

    Notes
    -----
    For each voxel with series :math:`x_t`, :math:`t = 0 \dots T-1`:

    1. the mean and the least-squares linear trend are removed;
    2. the series is zero-padded to :math:`P`, the next power of two :math:`\ge T`;
    3. the amplitude spectrum is :math:`A_k = 2 |X_k| / T` (divided by :math:`T`, not
       :math:`P`);
    4. the band bins are :math:`\lceil f_{low} P\,TR \rceil \le k \le \lfloor f_{high} P\,TR \rfloor`
       (for TR = 2 s, T = 230, 0.01-0.08 Hz: :math:`P = 256`, bins 6 to 40);
    5. with :math:`B` the band bins,

       .. math::

          \mathrm{ALFF} = \frac{1}{|B|} \sum_{k \in B} A_k, \qquad
          \mathrm{fALFF} = \frac{\sum_{k \in B} A_k}{\sum_{k=1}^{P/2} A_k}

       (the Nyquist bin is included in the denominator, the DC bin is not); a non-finite
       fALFF (a constant voxel) becomes 0.

    This is what RESTplus/DPABI compute. AFNI's ``3dRSFC`` is built on ``3dBandPass``: it
    runs that program's processing (by default removing a quadratic rather than a linear
    trend) and takes the fALFF denominator from the same series without the band-pass, with
    its own FFT length and scaling (Taylor et al. 2012, appendix), so its values are not
    expected to equal these. The spectrum here is computed in double precision, for the
    in-mask voxels only; the maps are float32.

    References
    ----------
    Zang et al. 2007; Zou et al. 2008 (see ``attrs["references"]``).
    """
    func = "brainarr.metrics.alff"
    prepared = prepare_bold(bold, func=func)
    mask = prepare_mask(mask, prepared, func=func)
    tr_s = get_tr(bold, tr, func=func)
    low, high = (float(v) for v in band)
    if not 0 <= low < high:
        raise ValueError(f"{func}: band must be (low, high) with 0 <= low < high in Hz, got {band!r}")
    nyquist = 1.0 / (2.0 * tr_s)
    if high > nyquist * (1 + 1e-9):
        raise ValueError(
            f"{func}: band high edge {high:g} Hz of {describe(bold)} is above the Nyquist frequency "
            f"{nyquist:g} Hz (TR = {tr_s:g} s); use a high edge of at most {nyquist:g} Hz"
        )
    n_time = prepared.sizes[TIME]
    n_pad = next_pow2(n_time)
    bins = band_bins(low, high, n_pad, tr_s)
    if bins.size == 0:
        raise ValueError(
            f"{func}: no FFT bin of {describe(bold)} falls in {low}-{high} Hz "
            f"({n_time} time points, TR {tr_s} s, frequency resolution {1 / (n_pad * tr_s):.4g} Hz); "
            "use a wider band or more time points"
        )
    # only the in-mask series are transformed (the mask travels with the chunks)
    inputs = (prepared,) if mask is None else (prepared, mask)
    a, f = xr.apply_ufunc(
        alff_kernel,
        *inputs,
        input_core_dims=[[TIME], []][: len(inputs)],
        output_core_dims=[[], []],
        kwargs={"bins": bins, "n_pad": n_pad},
        dask="parallelized",
        output_dtypes=[np.float32, np.float32],
        keep_attrs=False,
    )
    a = finish_map(a.drop_vars(TIME, errors="ignore"), mask)
    f = finish_map(f.drop_vars(TIME, errors="ignore"), mask)
    params = {"band": [low, high], "tr": tr_s, "n_fft": n_pad, "band_bins": [int(bins[0]), int(bins[-1])]}
    a = set_metadata(
        a,
        name="alff",
        long_name="amplitude of low-frequency fluctuations",
        units=str(bold.attrs.get("units", "1")),
        description=f"ALFF: mean FFT amplitude over {low:g}-{high:g} Hz (RESTplus/DPABI definition)",
        references=ALFF_REFERENCES,
        **params,
    )
    f = set_metadata(
        f,
        name="falff",
        long_name="fractional amplitude of low-frequency fluctuations",
        units="1",
        description=f"fALFF: FFT amplitude sum over {low:g}-{high:g} Hz / sum over all non-DC bins",
        references=ALFF_REFERENCES,
        **params,
    )
    out = xr.Dataset({"alff": a, "falff": f})
    return carry_attrs(bold, out)
