"""Tests for the temporal preprocessing in brainarr.preprocess (discard to clean)."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import scipy.signal as sps
import xarray as xr
from nilearn import signal as nsignal

from brainarr import preprocess as pp
from brainarr._core.fft import band_bins, next_pow2
from brainarr.exceptions import ChunkingError, DataValidationError, GridMismatchError
from brainarr.testing import make_bold, raise_if_dask_computes

SHAPE = (5, 6, 7)
T = 60
TR = 2.0
CHUNKINGS = [{"x": 2}, {"x": (1, 4), "y": (4, 2), "z": 3}, {"y": 1, "z": (6, 1)}]


@pytest.fixture
def data(rng):
    values = 100 + rng.standard_normal((*SHAPE, T)) * 5
    values += np.linspace(0, 3, T)  # a drift
    values[0, 0, 0] = 42.0  # a constant voxel
    return values


@pytest.fixture
def conf(rng):
    c = rng.standard_normal((T, 4))
    return xr.DataArray(c, dims=("time", "confound"), coords={"confound": ["a", "b", "c", "d"]})


def as_2d(values):
    """(x, y, z, time) -> (time, voxels)."""
    return values.reshape(-1, values.shape[-1]).T


def check_lazy_and_chunks(func, bold, *args, **kwargs):
    """Dask results equal numpy results for several chunkings, and nothing computes early."""
    eager = func(bold, *args, **kwargs)
    assert not dask.is_dask_collection(eager.data)
    for chunks in CHUNKINGS:
        with raise_if_dask_computes():
            lazy = func(bold.chunk(chunks), *args, **kwargs)
        assert dask.is_dask_collection(lazy.data)
        assert lazy.chunks[:3] == bold.chunk(chunks).chunks[:3]
        np.testing.assert_allclose(lazy.values, eager.values, rtol=1e-10, atol=1e-10)
    return eager


def ideal_reference(y, low, high, tr):
    """Direct ideal filter on (time, voxels) with the full complex FFT."""
    n = y.shape[0]
    p = 1 << int(np.ceil(np.log2(n)))
    spec = np.fft.fft(y - y.mean(axis=0), n=p, axis=0)
    k = np.arange(p)
    lo = 0 if low is None else int(np.ceil(low * p * tr))
    hi = p // 2 if high is None else int(np.floor(high * p * tr))
    keep = ((k >= lo) & (k <= hi)) | ((p - k >= lo) & (p - k <= hi))
    spec[~keep] = 0
    return np.real(np.fft.ifft(spec, axis=0))[:n]


class TestDiscard:
    def test_values_and_time(self, data):
        bold = make_bold(data).chunk({"x": 2})
        with raise_if_dask_computes():
            out = pp.discard(bold, 5)
        assert out.sizes["time"] == T - 5
        np.testing.assert_array_equal(out.values, data[..., 5:])
        np.testing.assert_allclose(out.time.values, np.arange(T - 5) * TR)
        assert out.time.attrs["units"] == "s"
        assert out.attrs["discarded"] == 5
        assert "brainarr.preprocess.discard(n=5)" in out.attrs["history"]

    def test_confounds_too(self, conf):
        out = pp.discard(conf, 3)
        np.testing.assert_array_equal(out.values, conf.values[3:])

    @pytest.mark.parametrize("n", [-1, T, 2.5])
    def test_bad_n(self, data, n):
        with pytest.raises(ValueError, match=rf"0 <= n < {T}"):
            pp.discard(make_bold(data), n)


class TestDetrend:
    @pytest.mark.parametrize("order", [0, 1, 2])
    def test_against_polyfit(self, data, order):
        bold = make_bold(data)
        out = check_lazy_and_chunks(pp.detrend, bold, order)
        t = np.arange(T, dtype=float)
        y = as_2d(data)
        coef = np.polynomial.polynomial.polyfit(t, y, order)
        ref = y - np.polynomial.polynomial.polyval(t, coef).T
        np.testing.assert_allclose(as_2d(out.values), ref, atol=1e-9)
        np.testing.assert_allclose(out.values[0, 0, 0], 0, atol=1e-12)

    def test_float32_kept(self, data):
        out = pp.detrend(make_bold(data.astype(np.float32)))
        assert out.dtype == np.float32
        ref = pp.detrend(make_bold(data)).values
        np.testing.assert_allclose(out.values, ref, atol=2e-4)

    def test_time_chunks_refused(self, data):
        with pytest.raises(ChunkingError, match=r"\.chunk\(time=-1\)"):
            pp.detrend(make_bold(data).chunk({"time": 20}))


class TestRegress:
    def test_against_lstsq_per_voxel(self, data, conf):
        bold = make_bold(data)
        out = check_lazy_and_chunks(pp.regress, bold, conf)
        design = np.column_stack([conf.values, np.ones(T), np.arange(T)])
        for idx in [(0, 0, 0), (1, 2, 3), (4, 5, 6)]:
            y = data[idx]
            beta, *_ = np.linalg.lstsq(design, y, rcond=None)
            np.testing.assert_allclose(out.values[idx], y - design @ beta, atol=1e-9)

    def test_detrend_order_and_add_mean(self, data, conf):
        out = pp.regress(make_bold(data), conf, detrend=2, add_mean=True)
        t = np.arange(T)
        design = np.column_stack([conf.values, np.ones(T), t, t**2])
        y = as_2d(data)
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        ref = y - design @ beta + y.mean(axis=0)
        np.testing.assert_allclose(as_2d(out.values), ref, atol=1e-9)

    def test_collinear_confounds(self, data, conf):
        dup = xr.concat([conf, (2 * conf.sel(confound="a")).expand_dims(confound=["a2"])], "confound")
        dup = dup.transpose("time", "confound")
        out = pp.regress(make_bold(data), dup).values
        ref = pp.regress(make_bold(data), conf).values
        np.testing.assert_allclose(out, ref, atol=1e-9)

    def test_subject_dim_with_own_confounds(self, rng, data):
        data2 = data + rng.standard_normal(data.shape)
        bold = xr.concat([make_bold(data), make_bold(data2)], dim="subject").assign_coords(subject=["p1", "c1"])
        bold = bold.chunk({"subject": 1, "x": 3})
        confs = rng.standard_normal((2, T, 3))
        cda = xr.DataArray(
            dsa.from_array(confs, chunks=(1, T, 3)),
            dims=("subject", "time", "confound"),
            coords={"subject": ["p1", "c1"], "confound": ["u", "v", "w"]},
        )
        with raise_if_dask_computes():
            out = pp.regress(bold, cda)
        assert out.dims == bold.dims
        for s, vals in enumerate([data, data2]):
            design = np.column_stack([confs[s], np.ones(T), np.arange(T)])
            y = as_2d(vals)
            beta, *_ = np.linalg.lstsq(design, y, rcond=None)
            np.testing.assert_allclose(as_2d(out.values[s]), y - design @ beta, atol=1e-9)

    def test_mask(self, data, conf):
        maskv = np.zeros(SHAPE, bool)
        maskv[1:4, 2:5, :] = True
        mask = make_bold(maskv, name="mask")
        out = check_lazy_and_chunks(pp.regress, make_bold(data), conf, mask=mask)
        full = pp.regress(make_bold(data), conf).values
        np.testing.assert_allclose(out.values[maskv], full[maskv], atol=1e-12)
        assert np.all(out.values[~maskv] == 0)

    def test_accepts_dataframe(self, data, conf):
        df = conf.to_pandas()
        np.testing.assert_allclose(
            pp.regress(make_bold(data), df).values, pp.regress(make_bold(data), conf).values, atol=1e-12
        )

    def test_metadata(self, data, conf):
        bold = make_bold(data)
        out = pp.regress(bold, conf)
        assert out.name == "bold"
        for key in ("affine", "tr", "units", "source"):
            assert out.attrs[key] == bold.attrs[key]
        xr.testing.assert_identical(out.time, bold.time)
        assert "brainarr.preprocess.regress(confounds=<DataArray>, detrend=1" in out.attrs["history"]

    def test_wrong_length(self, data, conf):
        with pytest.raises(GridMismatchError, match=rf"confounds .* have {T - 2} time points .* has {T} volumes"):
            pp.regress(make_bold(data), conf.isel(time=slice(2, None)))

    def test_nan_confound_named(self, data, conf):
        bad = conf.copy()
        bad[7, 2] = np.nan
        with pytest.raises(DataValidationError, match=r"column\(s\) \['c'\] \(first bad time index 7"):
            pp.regress(make_bold(data), bad)

    def test_nan_in_lazy_confounds_named_at_compute(self, data, conf):
        bad = conf.copy()
        bad[0, 1] = np.inf
        out = pp.regress(make_bold(data).chunk({"x": 2}), bad.chunk())
        with pytest.raises(DataValidationError, match=r"\['b'\]"):
            out.compute()


class TestBandpass:
    @pytest.mark.parametrize(("low", "high"), [(0.01, 0.08), (None, 0.1), (0.05, None), (0.01, 0.25)])
    def test_ideal_against_numpy_fft(self, data, low, high):
        out = check_lazy_and_chunks(pp.bandpass, make_bold(data), low, high)
        np.testing.assert_allclose(as_2d(out.values), ideal_reference(as_2d(data), low, high, TR), atol=1e-9)
        assert out.attrs["band"] == [low, high]

    def test_ideal_band_edges_restplus_bins(self):
        # P = 256, TR = 2, 0.01-0.08 Hz: bins 6..40 kept (SEMANTICS.md); bins 5 and 41 removed
        n = np.arange(256)
        waves = {k: np.cos(2 * np.pi * k * n / 256 + 0.3) for k in (5, 6, 40, 41, 100)}
        x = sum(waves.values()).reshape(1, 1, 1, 256)
        out = pp.bandpass(make_bold(x), 0.01, 0.08).values[0, 0, 0]
        np.testing.assert_allclose(out, waves[6] + waves[40], atol=1e-10)

    def test_band_bins_helper(self):
        assert next_pow2(230) == 256
        assert next_pow2(256) == 256
        assert next_pow2(1) == 1
        np.testing.assert_array_equal(band_bins(0.01, 0.08, 256, 2.0), np.arange(6, 41))
        np.testing.assert_array_equal(band_bins(None, None, 8, 2.0), np.arange(5))
        assert band_bins(0.045, 0.06, 16, 2.0).size == 0

    @pytest.mark.parametrize(("low", "high"), [(0.01, 0.08), (0.02, None), (None, 0.1)])
    def test_butterworth_against_nilearn(self, data, low, high):
        out = check_lazy_and_chunks(pp.bandpass, make_bold(data), low, high, method="butterworth")
        ref = nsignal.butterworth(as_2d(data).copy(), sampling_rate=1 / TR, low_pass=high, high_pass=low, copy=True)
        np.testing.assert_allclose(as_2d(out.values), ref, atol=1e-8)

    def test_butterworth_against_scipy_per_voxel(self, data):
        out = pp.bandpass(make_bold(data), 0.01, 0.08, method="butterworth", order=3).values
        sos = sps.butter(3, [0.01, 0.08], btype="bandpass", output="sos", fs=0.5)
        ref = sps.sosfiltfilt(sos, data[2, 3, 4])
        np.testing.assert_allclose(out[2, 3, 4], ref, atol=1e-8)

    def test_subject_dim(self, rng, data):
        other = rng.standard_normal(data.shape)
        bold = xr.concat([make_bold(data), make_bold(other)], dim="subject").chunk({"subject": 1, "z": 4})
        with raise_if_dask_computes():
            out = pp.bandpass(bold, 0.01, 0.1)
        assert out.dims == ("subject", "x", "y", "z", "time")
        np.testing.assert_allclose(as_2d(out.values[1]), ideal_reference(as_2d(other), 0.01, 0.1, TR), atol=1e-9)

    def test_float32(self, data):
        out = pp.bandpass(make_bold(data.astype(np.float32)), 0.01, 0.08)
        assert out.dtype == np.float32
        np.testing.assert_allclose(
            as_2d(out.values),
            ideal_reference(as_2d(data.astype(np.float32)).astype(float), 0.01, 0.08, TR),
            atol=2e-4,
        )

    def test_above_nyquist(self, data):
        with pytest.raises(ValueError, match=r"high cut-off 0.3 Hz is above the Nyquist frequency 0.25 Hz"):
            pp.bandpass(make_bold(data), 0.01, 0.3)

    def test_butterworth_at_nyquist(self, data):
        with pytest.raises(ValueError, match=r"needs high < Nyquist"):
            pp.bandpass(make_bold(data), 0.01, 0.25, method="butterworth")

    def test_low_not_below_high(self, data):
        with pytest.raises(ValueError, match=r"low cut-off \(0.08 Hz\) must be below the high cut-off \(0.01 Hz\)"):
            pp.bandpass(make_bold(data), 0.08, 0.01)

    def test_too_few_volumes_for_low(self, rng):
        bold = make_bold(rng.standard_normal((2, 3, 4, 40)))
        with pytest.raises(ValueError, match=r"too few volumes .* 40 volumes x TR 2 s = 80 s .* at least 50 volumes"):
            pp.bandpass(bold, 0.01, 0.08)

    def test_too_few_volumes_no_bin(self, rng):
        bold = make_bold(rng.standard_normal((2, 3, 4, 12)))
        with pytest.raises(ValueError, match=r"too few volumes .* 12 volumes \(padded to 16\) .* no FFT bin"):
            pp.bandpass(bold, 0.045, 0.06)

    def test_too_few_volumes_butterworth(self, rng):
        bold = make_bold(rng.standard_normal((2, 3, 4, 30)))
        with pytest.raises(ValueError, match=r"30 volumes, but .* pads 33 samples"):
            pp.bandpass(bold, 0.02, 0.08, method="butterworth")

    def test_missing_tr(self, data):
        bold = make_bold(data)
        del bold.attrs["tr"]
        with pytest.raises(ValueError, match=r"no repetition time"):
            pp.bandpass(bold, 0.01, 0.08)


class TestClean:
    @pytest.mark.parametrize("detrend", [True, False])
    def test_nilearn_order_matches_nilearn(self, data, conf, detrend):
        out = check_lazy_and_chunks(
            pp.clean,
            make_bold(data),
            conf,
            filter="butterworth",
            order="nilearn",
            detrend=1 if detrend else None,
        )
        ref = nsignal.clean(
            as_2d(data).copy(),
            confounds=conf.values,
            detrend=detrend,
            standardize=None,
            standardize_confounds=True,
            filter="butterworth",
            low_pass=0.08,
            high_pass=0.01,
            t_r=TR,
        )
        np.testing.assert_allclose(as_2d(out.values), ref, atol=1e-8)

    def test_nilearn_order_without_confounds(self, data):
        out = pp.clean(make_bold(data), filter="butterworth", order="nilearn", low=None, high=0.1)
        ref = nsignal.clean(
            as_2d(data).copy(), detrend=True, standardize=None, filter="butterworth", low_pass=0.1, t_r=TR
        )
        np.testing.assert_allclose(as_2d(out.values), ref, atol=1e-8)

    def test_restplus_order_step_by_step(self, rng, conf):
        values = rng.standard_normal((*SHAPE, T + 4)) + 50
        conf_full = xr.DataArray(rng.standard_normal((T + 4, 4)), dims=("time", "confound"))
        out = check_lazy_and_chunks(pp.clean, make_bold(values), conf_full, discard=4)
        y = as_2d(values)[4:]
        design = np.column_stack([conf_full.values[4:], np.ones(T), np.arange(T)])
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        ref = ideal_reference(y - design @ beta, 0.01, 0.08, TR)
        np.testing.assert_allclose(as_2d(out.values), ref, atol=1e-9)
        np.testing.assert_allclose(out.time.values, np.arange(T) * TR)

    def test_confounds_already_discarded(self, rng):
        values = rng.standard_normal((*SHAPE, T + 4))
        c = rng.standard_normal((T + 4, 2))
        a = pp.clean(make_bold(values), c, discard=4).values
        b = pp.clean(make_bold(values), c[4:], discard=4).values
        np.testing.assert_allclose(a, b, atol=1e-12)

    def test_no_filter_is_regress(self, data, conf):
        a = pp.clean(make_bold(data), conf, filter=None).values
        b = pp.regress(make_bold(data), conf).values
        np.testing.assert_allclose(a, b, atol=1e-10)

    def test_subject_dim_and_mask(self, rng, data, conf):
        bold = xr.concat([make_bold(data), make_bold(data[::-1])], dim="subject").chunk({"subject": 1, "y": 4})
        maskv = np.ones(SHAPE, bool)
        maskv[0] = False
        with raise_if_dask_computes():
            out = pp.clean(bold, conf, mask=make_bold(maskv))
        ref = pp.clean(make_bold(data[::-1]), conf).values
        np.testing.assert_allclose(out.values[1][maskv], ref[maskv], atol=1e-10)
        assert np.all(out.values[:, 0] == 0)

    def test_metadata(self, data, conf):
        bold = make_bold(data)
        bold.attrs["history"] = "loaded"
        out = pp.clean(bold, conf, discard=2)
        assert out.name == "bold"
        for key in ("affine", "tr", "units", "source"):
            assert out.attrs[key] == bold.attrs[key]
        assert out.attrs["band"] == [0.01, 0.08]
        assert out.attrs["history"].splitlines()[0] == "loaded"
        assert "brainarr.preprocess.clean(confounds=<DataArray>, discard=2" in out.attrs["history"]
        np.testing.assert_allclose(out.time.values, np.arange(T - 2) * TR)

    def test_errors_propagate(self, data, conf):
        with pytest.raises(ValueError, match=r"above the Nyquist"):
            pp.clean(make_bold(data), conf, high=0.3)
        with pytest.raises(ValueError, match=r"order must be 'restplus' or 'nilearn'"):
            pp.clean(make_bold(data), conf, order="spm")


class TestSliceTiming:
    def test_sinusoid_known_phase(self):
        n_slices, n_time, tr, f = 6, 120, 2.0, 0.05
        times = np.arange(n_slices) * tr / n_slices  # ascending
        t = np.arange(n_time) * tr
        values = np.empty((2, 3, n_slices, n_time))
        for s in range(n_slices):
            values[:, :, s] = np.sin(2 * np.pi * f * (t + times[s]))
        bold = make_bold(values, tr=tr).chunk({"z": (2, 4), "x": 1})
        with raise_if_dask_computes():
            out = pp.slice_timing(bold, order="ascending", ref="first")
        expected = np.sin(2 * np.pi * f * t)  # every slice now sampled at the first slice's time
        # the finite series is extended by a line (as SPM does): exact away from both ends
        inner = slice(30, n_time - 30)
        np.testing.assert_allclose(out.values[..., inner], np.broadcast_to(expected[inner], (2, 3, 6, 60)), atol=2e-3)
        # a shift in the wrong direction would be off by the full amplitude
        assert np.abs(out.values[0, 0, 5, inner] - expected[inner]).max() < 2e-3
        assert out.attrs["slice_time_ref"] == 0.0
        np.testing.assert_allclose(out.attrs["slice_times"], times)

    def test_explicit_times_and_middle_ref(self):
        n_time, tr, f = 100, 2.0, 0.03
        times = np.array([1.5, 0.0, 1.0, 0.5])
        t = np.arange(n_time) * tr
        values = np.stack([np.sin(2 * np.pi * f * (t + ts)) for ts in times])[None, None]
        out = pp.slice_timing(make_bold(values, tr=tr), times)
        ref_time = 0.75
        expected = np.sin(2 * np.pi * f * (t + ref_time))
        np.testing.assert_allclose(out.values[0, 0, :, 25:-25], np.broadcast_to(expected[25:-25], (4, 50)), atol=2e-3)

    def test_zero_shift_is_identity(self, rng):
        values = rng.standard_normal((2, 3, 4, 30))
        out = pp.slice_timing(make_bold(values), np.zeros(4), ref=0.0)
        np.testing.assert_allclose(out.values, values, atol=1e-12)

    @pytest.mark.parametrize(
        ("order", "n", "first_slices"),
        [
            ("ascending", 5, [0, 1, 2]),
            ("descending", 5, [4, 3, 2]),
            ("interleaved", 6, [0, 2, 4, 1]),
            ("interleaved_siemens", 6, [1, 3, 5, 0]),
            ("interleaved_siemens", 5, [0, 2, 4, 1]),
        ],
    )
    def test_named_orders(self, rng, order, n, first_slices):
        values = rng.standard_normal((2, 3, n, 30))
        out = pp.slice_timing(make_bold(values), order=order)
        acquisition = np.argsort(out.attrs["slice_times"], kind="stable")
        assert acquisition[: len(first_slices)].tolist() == first_slices

    def test_lazy_and_chunk_invariant(self, data):
        check_lazy_and_chunks(pp.slice_timing, make_bold(data), order="interleaved")

    def test_bad_slice_times(self, rng):
        bold = make_bold(rng.standard_normal((2, 3, 4, 30)))
        with pytest.raises(ValueError, match=r"3 slice times given but .* has 4 slices along 'z'"):
            pp.slice_timing(bold, [0, 0.5, 1.0])
        with pytest.raises(ValueError, match=r"exactly one of"):
            pp.slice_timing(bold)
