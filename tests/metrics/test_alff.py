from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.signal
import xarray as xr

import brainarr.metrics as bm
from brainarr.exceptions import ChunkingError, DimensionError, GridMismatchError, MissingMetadataError
from brainarr.testing import make_bold, raise_if_dask_computes

CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 2, "y": 8, "z": 1},
]


def reference_alff(values, mask, tr, low, high):
    """Per-voxel loop: scipy detrend, zero-padded numpy FFT, bins chosen by their frequency."""
    nt = values.shape[-1]
    n_pad = 1
    while n_pad < nt:
        n_pad *= 2
    freqs = np.arange(n_pad) / (n_pad * tr)
    band = np.flatnonzero((freqs >= low) & (freqs <= high) & (np.arange(n_pad) <= n_pad // 2))
    alff = np.zeros(values.shape[:3])
    falff = np.zeros(values.shape[:3])
    for idx in np.ndindex(*values.shape[:3]):
        if not mask[idx] or np.ptp(values[idx]) == 0:
            continue  # outside the mask or constant: 0 (SEMANTICS.md: non-finite fALFF -> 0)
        series = scipy.signal.detrend(values[idx].astype(np.float64), type="linear")
        amp = 2 * np.abs(np.fft.fft(series, n_pad)) / nt
        alff[idx] = amp[band].mean()
        total = amp[1 : n_pad // 2 + 1].sum()
        falff[idx] = amp[band].sum() / total if total > 0 else 0.0
    return alff, falff


class TestAlff:
    def test_reference(self, bold, values, mask, mask_np):
        out = bm.alff(bold, mask=mask)
        ref_a, ref_f = reference_alff(values, mask_np, 2.0, 0.01, 0.08)
        np.testing.assert_allclose(out.alff.values, ref_a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.falff.values, ref_f, rtol=1e-5, atol=1e-6)
        # hard cases: constant voxels give 0, not NaN; 0 outside the mask
        assert out.alff.values[3, 3, 3] == 0 and out.falff.values[3, 3, 3] == 0
        assert np.all(out.alff.values[~mask_np] == 0)
        assert np.all(np.isfinite(out.falff.values))
        assert out.alff.dtype == np.float32 and out.falff.dtype == np.float32

    def test_reference_other_band_and_tr(self, values, mask, mask_np):
        bold = make_bold(values, tr=0.8)
        out = bm.alff(bold, (0.02, 0.2), mask=mask)
        ref_a, ref_f = reference_alff(values, mask_np, 0.8, 0.02, 0.2)
        np.testing.assert_allclose(out.alff.values, ref_a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.falff.values, ref_f, rtol=1e-5, atol=1e-6)

    def test_study_bins(self, rng):
        # T = 230, TR = 2 s: P = 256 and bins 6..40 (SEMANTICS.md)
        bold = make_bold(rng.standard_normal((2, 3, 4, 230)).astype(np.float32))
        out = bm.alff(bold)
        assert out.alff.attrs["n_fft"] == 256
        assert out.alff.attrs["band_bins"] == [6, 40]
        series = bold.values[1, 2, 3].astype(float)
        series = scipy.signal.detrend(series)
        amp = 2 * np.abs(np.fft.fft(series, 256)) / 230
        np.testing.assert_allclose(out.alff.values[1, 2, 3], amp[6:41].mean(), rtol=1e-5)
        np.testing.assert_allclose(out.falff.values[1, 2, 3], amp[6:41].sum() / amp[1:129].sum(), rtol=1e-5)

    def test_no_mask_sine(self):
        # a pure sinusoid on bin 8 of P = 64 (T = 64), phased so that it has no linear trend
        # (sum_t t cos(w t + w / 2) = 0): amplitude 1 on that bin only
        t = np.arange(64)
        w = 2 * np.pi * 8 / 64
        values = np.broadcast_to(np.cos(w * t + w / 2), (2, 3, 4, 64)).astype(np.float32)
        out = bm.alff(make_bold(values, tr=2.0), (0.01, 0.08))
        bins = np.arange(np.ceil(0.01 * 128), np.floor(0.08 * 128) + 1)
        np.testing.assert_allclose(out.alff.values, 1.0 / bins.size, rtol=1e-5)
        np.testing.assert_allclose(out.falff.values, 1.0, rtol=1e-5)

    def test_lazy_and_chunks(self, bold, mask):
        chunked = bold.chunk({"x": 3, "y": 5, "z": 4, "time": -1})
        with raise_if_dask_computes():
            out = bm.alff(chunked, mask=mask)
        assert dask.is_dask_collection(out.alff.data) and dask.is_dask_collection(out.falff.data)
        assert out.alff.chunks == ((3, 3, 1), (5, 3), (4, 4, 1))
        assert out.falff.chunks == out.alff.chunks

    @pytest.mark.parametrize("chunks", CHUNKINGS)
    def test_chunk_invariance(self, bold, mask, chunks):
        expected = bm.alff(bold, mask=mask)
        actual = bm.alff(bold.chunk(chunks), mask=mask).compute()
        xr.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)

    def test_cohort(self, cohort, mask):
        chunked = cohort.chunk({"subject": 1, "x": 4, "y": 3})
        with raise_if_dask_computes():
            out = bm.alff(chunked, mask=mask)
        assert out.alff.dims == ("subject", "x", "y", "z")
        assert out.alff.chunks == ((1, 1, 1), (4, 3), (3, 3, 2), (9,))
        computed = out.compute()
        for i in range(3):
            single = bm.alff(cohort.isel(subject=i), mask=mask)
            np.testing.assert_allclose(computed.alff.values[i], single.alff.values, rtol=1e-6)
            np.testing.assert_allclose(computed.falff.values[i], single.falff.values, rtol=1e-6)

    def test_metadata(self, bold, mask):
        bold.attrs["history"] = "earlier step"
        out = bm.alff(bold, (0.01, 0.08), mask=mask)
        assert set(out.data_vars) == {"alff", "falff"}
        assert out.alff.attrs["units"] == "arbitrary"
        assert out.falff.attrs["units"] == "1"
        assert "amplitude" in out.alff.attrs["long_name"]
        assert out.alff.attrs["band"] == [0.01, 0.08]
        for obj in (out, out.alff, out.falff):
            assert obj.attrs["affine"] == bold.attrs["affine"]
            assert obj.attrs["tr"] == 2.0
            lines = obj.attrs["history"].splitlines()
            assert lines[0] == "earlier step"
            assert "brainarr.metrics.alff.alff(" in lines[-1]
        assert "Zou" in out.falff.attrs["references"]

    def test_transposed_input(self, bold, mask):
        expected = bm.alff(bold, mask=mask)
        actual = bm.alff(bold.transpose("time", "z", "x", "y"), mask=mask.transpose("y", "z", "x"))
        xr.testing.assert_allclose(actual, expected)


class TestAlffErrors:
    def test_time_chunked(self, bold):
        with pytest.raises(ChunkingError, match=r"synthetic has 4 chunks along 'time'.*\.chunk\(time=-1\)"):
            bm.alff(bold.chunk(time=10))

    def test_missing_tr(self, bold):
        del bold.attrs["tr"]
        with pytest.raises(MissingMetadataError, match="tr"):
            bm.alff(bold)
        out = bm.alff(bold, tr=2.0)  # explicit TR works
        assert out.alff.attrs["tr"] == 2.0

    def test_empty_band(self, bold):
        with pytest.raises(ValueError, match=r"no FFT bin.*synthetic.*40 time points"):
            bm.alff(bold, (0.01, 0.011))

    def test_bad_band(self, bold):
        with pytest.raises(ValueError, match="band"):
            bm.alff(bold, (0.08, 0.01))

    def test_mask_grid(self, bold, mask):
        with pytest.raises(GridMismatchError, match=r"mask.*x has 7 vs 6"):
            bm.alff(bold, mask=mask.isel(x=slice(0, 6)))

    def test_mask_not_bool(self, bold, mask):
        with pytest.raises(TypeError, match=r"mask.*boolean.*float"):
            bm.alff(bold, mask=mask.astype(float))

    def test_missing_time(self, bold):
        with pytest.raises(DimensionError, match=r"missing \['time'\]"):
            bm.alff(bold.isel(time=0, drop=True))
