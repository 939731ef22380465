"""Amplitude of low-frequency fluctuations (ALFF) and its fractional variant (fALFF)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import TIME
from brainarr._core.fft import band_bins, next_pow2
from brainarr._core.validation import describe, get_tr
from brainarr.metrics._common import finish_map, prepare_bold, prepare_mask
from brainarr.metrics._flavours import (
    afni_bandpass_bins,
    afni_rsfc_bins,
    alff_afni_kernel,
    alff_cpac_kernel,
    alff_xcpd_kernel,
    xcpd_band,
)
from brainarr.metrics._kernels import alff_kernel

__all__ = ["ALFF_FLAVOURS", "alff"]

#: Values of ``flavour`` accepted by :func:`alff`.
ALFF_FLAVOURS = ("dpabi", "afni", "cpac", "xcpd")

ALFF_REFERENCES = (
    "Zang YF, He Y, Zhu CZ, et al. Altered baseline brain activity in children with ADHD revealed by "
    "resting-state functional MRI. Brain Dev 2007;29:83-91. doi:10.1016/j.braindev.2006.07.002; "
    "Zou QH, Zhu CZ, Yang Y, et al. An improved approach to detection of amplitude of low-frequency "
    "fluctuation (ALFF) for resting-state fMRI: fractional ALFF. J Neurosci Methods 2008;172:137-141. "
    "doi:10.1016/j.jneumeth.2008.04.012"
)


FLAVOUR_REFERENCES = {
    "dpabi": "",
    "afni": (
        "; Taylor PA, Saad ZS. FATCAT: (an efficient) Functional And Tractographic Connectivity "
        "Analysis Toolbox. Brain Connect 2013;3:523-535. doi:10.1089/brain.2013.0154 (AFNI 3dRSFC)"
    ),
    "cpac": (
        "; Craddock C, Sikka S, Cheung B, et al. Towards automated analysis of connectomes: the "
        "configurable pipeline for the analysis of connectomes (C-PAC). Front Neuroinform 2013. "
        "doi:10.3389/conf.fninf.2013.09.00042"
    ),
    "xcpd": (
        "; Mehta K, Salo T, Madison TJ, et al. XCP-D: a robust pipeline for the post-processing of "
        "fMRI data. Imaging Neurosci 2024;2:1-26. doi:10.1162/imag_a_00257"
    ),
}


@record_history
def alff(
    bold: xr.DataArray,
    band: tuple[float, float] = (0.01, 0.08),
    *,
    mask: xr.DataArray | None = None,
    tr: float | None = None,
    flavour: Literal["dpabi", "afni", "cpac", "xcpd"] = "dpabi",
) -> xr.Dataset:
    r"""ALFF and fALFF of every voxel, as RESTplus/DPABI (default), AFNI, C-PAC or xcp_d compute them.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        BOLD series, optionally with a leading ``subject`` dim. ``time`` must be one dask
        chunk. Each flavour expects the input its tool is given (see Notes).
    band : tuple of float, default (0.01, 0.08)
        Low and high edge of the band in Hz.
    mask : xarray.DataArray (x, y, z) of bool, optional
        Voxels to analyse; the maps are 0 outside it.
    tr : float, optional
        Repetition time in s; default ``bold.attrs["tr"]``.
    flavour : {"dpabi", "afni", "cpac", "xcpd"}, default "dpabi"
        Whose definition to compute: RESTplus/DPABI, AFNI ``3dRSFC``, C-PAC's ALFF workflow or
        xcp_d's ``compute_alff``. The four give different numbers for the same data (different
        scalings, detrending and band edges); see Notes.

    Returns
    -------
    xarray.Dataset
        ``alff`` and ``falff`` (``alff`` only for ``"xcpd"``: xcp_d has no fALFF), each
        ``(..., x, y, z)`` float32 with the spatial chunks of ``bold``; ``alff`` is in the
        units of ``bold``, ``falff`` is dimensionless (``"1"``). ``attrs["flavour"]`` and the
        parameters (``band``, ``tr``, FFT length and bins) are recorded on each variable.

    Raises
    ------
    ValueError
        If ``flavour`` is unknown, the band is empty (or, for ``"afni"`` and ``"cpac"``,
        narrower than AFNI's band-pass accepts: ``jtop <= jbot + 1``) for this number of time
        points and TR, or its high edge is above the Nyquist frequency :math:`1 / (2\,TR)`.
    DataValidationError
        If the BOLD holds NaN or Inf values (with the default ``data_validation="raise"``;
        raised when the chunk is computed).

    Notes
    -----
    For each voxel with series :math:`x_t`, :math:`t = 0 \dots T-1`, :math:`f_l, f_h` the band
    edges, :math:`X_k = \sum_t x_t e^{-2\pi i k t / N}` the unnormalised DFT of length
    :math:`N`. A constant voxel gives 0 in every flavour.

    **"dpabi"** (RESTplus/DPABI; ``y_alff_falff.m``; input: the unfiltered series):

    1. the mean and the least-squares linear trend are removed;
    2. the series is zero-padded to :math:`P`, the next power of two :math:`\ge T`;
    3. the amplitude spectrum is :math:`A_k = 2 |X_k| / T` (divided by :math:`T`, not
       :math:`P`);
    4. the band bins are :math:`\lceil f_l P\,TR \rceil \le k \le \lfloor f_h P\,TR \rfloor`
       (for TR = 2 s, T = 230, 0.01-0.08 Hz: :math:`P = 256`, bins 6 to 40);
    5. with :math:`B` the band bins,

       .. math::

          \mathrm{ALFF} = \frac{1}{|B|} \sum_{k \in B} A_k, \qquad
          \mathrm{fALFF} = \frac{\sum_{k \in B} A_k}{\sum_{k=1}^{P/2} A_k}

       (the Nyquist bin is included in the denominator, the DC bin is not); a non-finite
       fALFF becomes 0.

    **"afni"** (AFNI ``3dRSFC`` with its defaults; ``main`` in src/ptaylor/3dRSFC.c, band-pass
    ``THD_bandpass_vectors`` in src/thd_bandpass.c; input: the unfiltered series, usually
    regressed; ``-despike``, ``-ort``, ``-blur``, ``-norm`` are not reproduced):

    1. :math:`y` = :math:`x` minus its least-squares quadratic trend (``THD_quadratic_detrend``);
    2. :math:`b` = :math:`y` band-passed as ``3dBandpass`` does: zero-padded to
       :math:`N_f = T` rounded up to even, bins :math:`j_{bot} = \mathrm{rint}(f_l N_f TR)`
       to :math:`j_{top} = \mathrm{rint}(f_h N_f TR)` kept (single precision; a value at or
       beyond bin :math:`N_f/2 - 1` is replaced by that bin, :math:`j_{bot}` by 0), the edge
       bins halved, DC, Nyquist and all other bins zeroed, first :math:`T` samples of the
       inverse transform;
    3. no padding for the spectrum: :math:`B_m, Y_m` are the :math:`N = T` point DFTs of
       :math:`b, y`, bins :math:`M = \{m : 1 \le m < \lfloor T/2 \rfloor\}` (DC and bin
       :math:`\lfloor T/2 \rfloor` excluded, also for odd :math:`T`); band
       :math:`\mathrm{rint}(f_l T\,TR) \le m \le \mathrm{rint}(f_h T\,TR)` within :math:`M`;

       .. math::

          \mathrm{ALFF} = \frac{2}{\sqrt T} \sum_{m \in band} |B_m|, \qquad
          \mathrm{fALFF} = \frac{\sum_{m \in band} |B_m|}{\sum_{m \in M} |Y_m|}

       (a *sum* over the band, normalised by :math:`\sqrt T`; fALFF is 0 where the
       denominator is :math:`\le 10^{-6}`).

    **"cpac"** (C-PAC ``create_alff`` in CPAC/alff/alff.py; input: the nuisance-regressed,
    unfiltered series ``desc-denoisedNofilt_bold``; C-PAC's default band is 0.01-0.1 Hz): the
    series is band-passed by ``3dBandpass`` with its defaults (steps 1-2 of ``"afni"``), then
    ``3dTstat -stdev``, which removes the mean and linear trend and divides by :math:`T - 1`:

    .. math::

       \mathrm{ALFF} = \mathrm{SD}_{lin}(b), \qquad
       \mathrm{fALFF} = \mathrm{SD}_{lin}(b) / \mathrm{SD}_{lin}(x), \qquad
       \mathrm{SD}_{lin}(v) = \sqrt{\tfrac{1}{T-1} \sum_t (v_t - \hat v_t)^2}

    with :math:`\hat v` the least-squares line (fALFF's denominator is the raw series').

    **"xcpd"** (xcp_d ``compute_alff`` in xcp_d/utils/restingstate.py, without censoring;
    input: the denoised, band-pass filtered (and, after censoring, interpolated) series):
    :math:`z = (x - \bar x) / \sigma` with :math:`\sigma` the population SD (ddof = 0),
    :math:`P_k` its :func:`scipy.signal.periodogram` (``scaling="spectrum"``, :math:`N = T`, no
    padding, bins :math:`f_k = k / (T\,TR)`, :math:`k = 0 \dots \lfloor T/2 \rfloor`):
    :math:`P_k = c_k |Z_k|^2 / T^2` with :math:`c_k = 2` except :math:`c_0 = 1` (and
    :math:`c_{T/2} = 1` for even :math:`T`). With :math:`k_l, k_h` the bins closest to
    :math:`f_l, f_h` (the lower on a tie),

    .. math::

       \mathrm{ALFF} = 2 \sigma \frac{1}{k_h - k_l} \sum_{k = k_l}^{k_h - 1} \sqrt{P_k}
       = \frac{2}{T} \frac{1}{k_h - k_l} \sum_{k = k_l}^{k_h - 1} \sqrt{c_k} |X_k|

    (the bin :math:`k_h` is *not* included: xcp_d slices ``[k_l:k_h]``). xcp_d computes no
    fALFF. With censoring xcp_d uses a Lomb-Scargle periodogram of the kept volumes; that is
    not reproduced.

    For the study's 230 volumes at TR = 2 s and 0.01-0.08 Hz: DPABI uses bins 6-40 of 256,
    AFNI bins 5-37 of 230 (its band-pass keeps the same bins, edges halved), xcp_d bins 5-36
    of 230.
    Typical ratios to DPABI's ALFF are set by the scalings: AFNI's is about
    :math:`\sqrt T\,|band|` times larger, C-PAC's is an SD (a few times smaller), xcp_d's
    about :math:`\sqrt 2` times larger. Spectra are computed in double precision, for the
    in-mask voxels only; the maps are float32.

    References
    ----------
    Zang et al. 2007; Zou et al. 2008; the tool's reference (see ``attrs["references"]``).
    """
    func = "brainarr.metrics.alff"
    if flavour not in ALFF_FLAVOURS:
        raise ValueError(f"{func}: flavour must be one of {', '.join(map(repr, ALFF_FLAVOURS))}, got {flavour!r}")
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
    kernel, kwargs, params, n_out = _flavour_setup(flavour, func, bold, n_time, tr_s, low, high)
    # only the in-mask series are transformed (the mask travels with the chunks)
    inputs = (prepared,) if mask is None else (prepared, mask)
    maps = xr.apply_ufunc(
        kernel,
        *inputs,
        input_core_dims=[[TIME], []][: len(inputs)],
        output_core_dims=[[]] * n_out,
        kwargs=kwargs,
        dask="parallelized",
        output_dtypes=[np.float32] * n_out,
        keep_attrs=False,
    )
    maps = (maps,) if n_out == 1 else tuple(maps)
    maps = [finish_map(m.drop_vars(TIME, errors="ignore"), mask) for m in maps]
    params = {**params, "flavour": flavour}
    who = _FLAVOUR_NAMES[flavour]
    references = ALFF_REFERENCES + FLAVOUR_REFERENCES[flavour]
    a = set_metadata(
        maps[0],
        name="alff",
        long_name="amplitude of low-frequency fluctuations",
        units=str(bold.attrs.get("units", "1")),
        description=f"ALFF: {_ALFF_WHAT[flavour]} over {low:g}-{high:g} Hz ({who} definition)",
        references=references,
        **params,
    )
    out = {"alff": a}
    if n_out == 2:
        out["falff"] = set_metadata(
            maps[1],
            name="falff",
            long_name="fractional amplitude of low-frequency fluctuations",
            units="1",
            description=(
                f"fALFF: FFT amplitude sum over {low:g}-{high:g} Hz / sum over all non-DC bins"
                if flavour == "dpabi"
                else f"fALFF: {_FALFF_WHAT[flavour]} over {low:g}-{high:g} Hz ({who} definition)"
            ),
            references=references,
            **params,
        )
    return carry_attrs(bold, xr.Dataset(out))


_FLAVOUR_NAMES = {"dpabi": "RESTplus/DPABI", "afni": "AFNI 3dRSFC", "cpac": "C-PAC", "xcpd": "xcp_d"}

_ALFF_WHAT = {
    "dpabi": "mean FFT amplitude",
    "afni": "2 / sqrt(T) times the sum of FFT amplitudes of the 3dBandpass-filtered series",
    "cpac": "SD (linear detrend, ddof 1) of the 3dBandpass-filtered series",
    "xcpd": "2 x mean sqrt of the periodogram of the standardised series, times its SD",
}

_FALFF_WHAT = {
    "afni": "FFT amplitude sum of the filtered series / the unfiltered series' sum over all bins",
    "cpac": "SD of the filtered series / SD of the unfiltered series",
}


def _flavour_setup(flavour: str, func: str, bold: xr.DataArray, n_time: int, tr_s: float, low: float, high: float):
    """Kernel, its keyword arguments, the recorded parameters and the number of output maps."""
    base = {"band": [low, high], "tr": tr_s}

    def empty(resolution: float, n_fft: int) -> ValueError:
        return ValueError(
            f"{func}: no FFT bin of {describe(bold)} falls in {low}-{high} Hz for flavour {flavour!r} "
            f"({n_time} time points, TR {tr_s} s, frequency resolution {resolution:.4g} Hz, FFT length "
            f"{n_fft}); use a wider band or more time points"
        )

    if flavour == "dpabi":
        n_pad = next_pow2(n_time)
        bins = band_bins(low, high, n_pad, tr_s)
        if bins.size == 0:
            raise empty(1 / (n_pad * tr_s), n_pad)
        params = {**base, "n_fft": n_pad, "band_bins": [int(bins[0]), int(bins[-1])]}
        return alff_kernel, {"bins": bins, "n_pad": n_pad}, params, 2
    if flavour in ("afni", "cpac"):
        nfft, jbot, jtop = afni_bandpass_bins(n_time, tr_s, low, high)
        if jtop <= jbot + 1:
            raise ValueError(
                f"{func}: band {low}-{high} Hz is too narrow for AFNI's band-pass on {describe(bold)} "
                f"(bins {jbot}..{jtop} of {nfft}; AFNI needs jtop > jbot + 1 and otherwise ignores "
                "the filter); use a wider band or more time points"
            )
        filt = {"nfft": nfft, "jbot": jbot, "jtop": jtop}
        params = {**base, "n_fft_bandpass": nfft, "bandpass_bins": [jbot, jtop]}
        if flavour == "cpac":
            return alff_cpac_kernel, filt, params, 2
        bins = afni_rsfc_bins(n_time, tr_s, low, high)
        if bins.size == 0:
            raise empty(1 / (n_time * tr_s), n_time)
        params = {**params, "n_fft": n_time, "band_bins": [int(bins[0]), int(bins[-1])]}
        return alff_afni_kernel, {**filt, "bins": bins}, params, 2
    lo, hi = xcpd_band(n_time, tr_s, low, high)
    if hi <= lo:
        raise empty(1 / (n_time * tr_s), n_time)
    params = {**base, "n_fft": n_time, "band_bins": [lo, hi - 1]}
    return alff_xcpd_kernel, {"lo": lo, "hi": hi}, params, 1
