"""ALFF/fALFF flavours (AFNI 3dRSFC, C-PAC, xcp_d) against per-voxel references.

Each reference is written here, voxel by voxel with plain numpy/scipy, from the tool's own
definition: AFNI's closed-form quadratic detrend (get_quadratic_trend, thd_detrend.c), its
complex-FFT band-pass with mirrored bins (THD_bandpass_vectors, thd_bandpass.c) and 3dRSFC's
spectrum loop (3dRSFC.c); C-PAC's 3dBandpass + 3dTstat -stdev (CPAC/alff/alff.py); xcp_d's
compute_alff (standardise, scipy.signal.periodogram, argmin bins, [lo:hi] slice).
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.signal
import xarray as xr

import brainarr.metrics as bm
from brainarr.testing import make_bold, raise_if_dask_computes

CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 2, "y": 8, "z": 1},
]

F32 = np.float32


def afni_quadratic_detrend(v):
    """AFNI get_quadratic_trend: least-squares f0 + f1 i + f2 i^2 in closed form."""
    n = float(v.size)
    i = np.arange(v.size, dtype=float)
    x0, x1, x2 = v.sum(), (v * i).sum(), (v * i * i).sum()
    d = n * (n + 2.0) * (n + 1.0)
    f0 = (3.0 * (3.0 * n * n - 3.0 * n + 2.0) * x0 - 18.0 * (2.0 * n - 1.0) * x1 + 30.0 * x2) / d
    f1 = (
        -18.0 * (2.0 * n - 1.0) * x0
        + 12.0 * (2.0 * n - 1.0) * (8.0 * n - 11.0) * x1 / ((n - 1.0) * (n - 2.0))
        - 180.0 * x2 / (n - 2.0)
    ) / d
    f2 = (30.0 * x0 - 180.0 * x1 / (n - 2.0) + 180.0 * x2 / ((n - 1.0) * (n - 2.0))) / d
    return v - (f0 + f1 * i + f2 * i * i)


def afni_bandpass_ref(y, tr, low, high):
    """3dBandpass (no -ort): complex FFT of the zero-filled series, bins zeroed with their mirrors."""
    nt = y.size
    nfft = nt if nt % 2 == 0 else nt + 1
    nby2 = nfft // 2
    nhalf = nby2 - 1
    df = F32(1.0) / (F32(nfft) * F32(tr))
    qbot, qtop = np.rint(F32(low) / df), np.rint(F32(high) / df)
    jbot = int(qbot) if qbot < nhalf else 0
    jtop = int(qtop) if qtop < nhalf else nhalf
    z = np.fft.fft(y, nfft)
    z[0] = z[nby2] = 0
    if jbot >= 1:
        z[jbot] *= 0.5
        z[nfft - jbot] *= 0.5
        for jj in range(1, jbot):
            z[jj] = z[nfft - jj] = 0
    z[jtop] *= 0.5
    z[nfft - jtop] *= 0.5
    for jj in range(jtop + 1, nby2):
        z[jj] = z[nfft - jj] = 0
    return np.fft.ifft(z).real[:nt]


def reference_afni(values, mask, tr, low, high):
    nt = values.shape[-1]
    delf = F32(1.0 / float(F32(nt) * F32(tr)))
    ind_low, ind_high = int(np.rint(F32(low) / delf)), int(np.rint(F32(high) / delf))
    n_ny = (nt - 1) // 2 if nt % 2 else nt // 2
    alff = np.zeros(values.shape[:3])
    falff = np.zeros(values.shape[:3])
    for idx in np.ndindex(*values.shape[:3]):
        if not mask[idx]:
            continue
        y = afni_quadratic_detrend(values[idx].astype(float))
        s1 = np.fft.fft(afni_bandpass_ref(y, tr, low, high))
        s2 = np.fft.fft(y)
        numer = sum(abs(s1[m]) for m in range(1, n_ny) if ind_low <= m <= ind_high)
        denom = sum(abs(s2[m]) for m in range(1, n_ny))
        falff[idx] = numer / denom if denom > 1e-6 else 0.0
        alff[idx] = 2 * numer / np.sqrt(nt)
    return alff, falff


def reference_cpac(values, mask, tr, low, high):
    alff = np.zeros(values.shape[:3])
    falff = np.zeros(values.shape[:3])
    for idx in np.ndindex(*values.shape[:3]):
        if not mask[idx] or np.ptp(values[idx]) == 0:
            continue
        x = values[idx].astype(float)
        b = afni_bandpass_ref(afni_quadratic_detrend(x), tr, low, high)
        alff[idx] = np.std(scipy.signal.detrend(b, type="linear"), ddof=1)  # 3dTstat -stdev
        falff[idx] = alff[idx] / np.std(scipy.signal.detrend(x, type="linear"), ddof=1)
    return alff, falff


def reference_xcpd(values, mask, tr, low, high):
    """xcp_d compute_alff (no sample mask): low is its high_pass, high its low_pass."""
    alff = np.zeros(values.shape[:3])
    for idx in np.ndindex(*values.shape[:3]):
        if not mask[idx]:
            continue
        x = values[idx].astype(float)
        if np.nanstd(x) == 0:
            continue
        sd = np.nanstd(x)
        z = (x - np.nanmean(x)) / np.nanstd(x)
        freqs, power = scipy.signal.periodogram(z, 1 / tr, scaling="spectrum")
        lo = np.argmin(np.abs(freqs - low))
        hi = np.argmin(np.abs(freqs - high))
        alff[idx] = 2 * np.nanmean(np.sqrt(power)[lo:hi]) * sd
    return alff, None


REFERENCES = {"afni": reference_afni, "cpac": reference_cpac, "xcpd": reference_xcpd}
FLAVOURS = ["afni", "cpac", "xcpd"]


def check(out, ref_a, ref_f, mask_np):
    scale = np.abs(ref_a).max()
    np.testing.assert_allclose(out.alff.values, ref_a, rtol=1e-5, atol=1e-6 * scale)
    if ref_f is None:
        assert "falff" not in out
    else:
        np.testing.assert_allclose(out.falff.values, ref_f, rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(out.falff.values)) and out.falff.dtype == np.float32
    assert out.alff.dtype == np.float32
    assert np.all(out.alff.values[~mask_np] == 0)
    for var in out.data_vars.values():
        assert var.values[3, 3, 3] == 0  # constant voxel inside the mask


@pytest.mark.parametrize("flavour", FLAVOURS)
class TestFlavourReference:
    def test_reference(self, flavour, bold, values, mask, mask_np):
        out = bm.alff(bold, mask=mask, flavour=flavour)
        check(out, *REFERENCES[flavour](values, mask_np, 2.0, 0.01, 0.08), mask_np)

    def test_other_band_tr_and_odd_length(self, flavour, rng, mask, mask_np):
        # T = 41 (odd: AFNI zero-pads its band-pass by one and skips bin T // 2), TR = 0.8 s
        values = np.round(rng.standard_normal((7, 8, 9, 41)) * 3).astype(np.float32)
        values[3, 3, 3] = 2.0
        bold = make_bold(values, tr=0.8)
        out = bm.alff(bold, (0.02, 0.2), mask=mask, flavour=flavour)
        check(out, *REFERENCES[flavour](values, mask_np, 0.8, 0.02, 0.2), mask_np)

    def test_study_length(self, flavour, rng):
        # T = 230, TR = 2 s, the study's band; no mask, large offset (as raw BOLD)
        values = (1000 + 20 * rng.standard_normal((2, 3, 2, 230))).astype(np.float32)
        bold = make_bold(values)
        out = bm.alff(bold, flavour=flavour)
        ref_a, ref_f = REFERENCES[flavour](values, np.ones(values.shape[:3], bool), 2.0, 0.01, 0.08)
        np.testing.assert_allclose(out.alff.values, ref_a, rtol=1e-5)
        if ref_f is not None:
            np.testing.assert_allclose(out.falff.values, ref_f, rtol=1e-5)

    def test_lazy_and_chunks(self, flavour, bold, mask):
        expected = bm.alff(bold, mask=mask, flavour=flavour)
        for chunks in CHUNKINGS:
            with raise_if_dask_computes():
                lazy = bm.alff(bold.chunk(chunks), mask=mask, flavour=flavour)
            assert all(dask.is_dask_collection(v.data) for v in lazy.data_vars.values())
            assert lazy.alff.chunks == bold.chunk(chunks).isel(time=0).chunks
            xr.testing.assert_allclose(lazy.compute(), expected, rtol=1e-6, atol=1e-7)

    def test_cohort(self, flavour, cohort, mask):
        chunked = cohort.chunk({"subject": 1, "x": 4, "y": 3})
        with raise_if_dask_computes():
            out = bm.alff(chunked, mask=mask, flavour=flavour)
        assert out.alff.dims == ("subject", "x", "y", "z")
        computed = out.compute()
        for i in range(3):
            single = bm.alff(cohort.isel(subject=i), mask=mask, flavour=flavour)
            for var in single.data_vars:
                np.testing.assert_allclose(computed[var].values[i], single[var].values, rtol=1e-6)

    def test_metadata(self, flavour, bold, mask):
        out = bm.alff(bold, mask=mask, flavour=flavour)
        assert set(out.data_vars) == ({"alff"} if flavour == "xcpd" else {"alff", "falff"})
        for var in out.data_vars.values():
            assert var.attrs["flavour"] == flavour
            assert var.attrs["band"] == [0.01, 0.08]
            assert var.attrs["affine"] == bold.attrs["affine"]
            assert f"flavour='{flavour}'" in var.attrs["history"]
        assert out.alff.attrs["units"] == "arbitrary"


class TestFlavourDetails:
    def test_dpabi_is_default(self, bold, mask):
        default = bm.alff(bold, mask=mask)
        explicit = bm.alff(bold, mask=mask, flavour="dpabi")
        xr.testing.assert_identical(default.drop_attrs(), explicit.drop_attrs())
        assert default.alff.attrs["flavour"] == "dpabi"
        assert default.alff.attrs["n_fft"] == 64  # T = 40

    def test_study_bins(self, rng):
        # 230 volumes at TR = 2 s, 0.01-0.08 Hz (the numbers quoted in the docstring)
        bold = make_bold(rng.standard_normal((2, 2, 2, 230)).astype(np.float32))
        afni = bm.alff(bold, flavour="afni").alff.attrs
        assert afni["n_fft"] == 230 and afni["band_bins"] == [5, 37]
        assert afni["n_fft_bandpass"] == 230 and afni["bandpass_bins"] == [5, 37]
        assert bm.alff(bold, flavour="xcpd").alff.attrs["band_bins"] == [5, 36]
        assert bm.alff(bold, flavour="cpac").alff.attrs["bandpass_bins"] == [5, 37]

    def test_pure_sine_xcpd(self):
        # a unit sinusoid on bin 8 of T = 64: periodogram sqrt(P_8) = 1 / sqrt(2), 0 elsewhere, so
        # ALFF = 2 / sqrt(2) / n_bins (xcp_d removes the mean only; AFNI/C-PAC also remove a
        # quadratic trend, which takes part of any finite sinusoid: see the references above)
        t = np.arange(64)
        w = 2 * np.pi * 8 / 64
        values = np.broadcast_to(np.cos(w * t + w / 2), (2, 3, 4, 64)).astype(np.float32)
        out = bm.alff(make_bold(values, tr=2.0), flavour="xcpd").alff
        lo, hi = out.attrs["band_bins"]
        np.testing.assert_allclose(out.values, 2 / np.sqrt(2) / (hi - lo + 1), rtol=1e-5)

    def test_unknown_flavour(self, bold):
        with pytest.raises(ValueError, match=r"flavour must be one of 'dpabi', 'afni', 'cpac', 'xcpd'"):
            bm.alff(bold, flavour="spm")

    @pytest.mark.parametrize("flavour", ["afni", "cpac"])
    def test_band_too_narrow_for_afni(self, bold, flavour):
        with pytest.raises(ValueError, match="too narrow for AFNI's band-pass"):
            bm.alff(bold, (0.01, 0.02), flavour=flavour)

    def test_empty_band_xcpd(self, bold):
        with pytest.raises(ValueError, match=r"no FFT bin.*'xcpd'"):
            bm.alff(bold, (0.01, 0.011), flavour="xcpd")

    def test_nyquist(self, bold):
        with pytest.raises(ValueError, match="Nyquist"):
            bm.alff(bold, (0.01, 0.3), flavour="afni")
