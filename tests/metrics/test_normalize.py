from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
from brainarr.exceptions import DimensionError, GridMismatchError
from brainarr.testing import raise_if_dask_computes

CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 7, "y": 8, "z": 9},
]


@pytest.fixture
def metric(bold, mask, rng):
    values = rng.gamma(2.0, 1.0, size=bold.shape[:3]).astype(np.float32)
    values[2, 2, 2] = 0.0  # a zero inside the mask still counts in the statistics
    m = xr.DataArray(values, dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")}, name="alff")
    m.attrs.update({"affine": bold.attrs["affine"], "tr": 2.0, "units": "arbitrary", "long_name": "ALFF"})
    return m


class TestNormalize:
    @pytest.mark.parametrize("method", ["mean", "z"])
    def test_reference(self, metric, mask, mask_np, method):
        mask_np = mask_np.copy()
        mask_np[2, 2, 2] = True
        mask = mask.copy(data=mask_np)
        inside = metric.values[mask_np].astype(np.float64)
        assert 0.0 in inside
        if method == "mean":
            expected = np.where(mask_np, metric.values / inside.mean(), 0.0)
        else:
            expected = np.where(mask_np, (metric.values - inside.mean()) / inside.std(ddof=1), 0.0)
        out = bm.normalize(metric, mask, method=method)
        np.testing.assert_allclose(out.values, expected, rtol=1e-6, atol=1e-6)
        assert out.dtype == np.float32
        assert out.name == ("malff" if method == "mean" else "zalff")
        if method == "z":
            np.testing.assert_allclose(out.values[mask_np].mean(), 0, atol=1e-6)
            np.testing.assert_allclose(out.values[mask_np].std(ddof=1), 1, rtol=1e-5)

    def test_lazy_stats(self, metric, mask):
        chunked = metric.chunk({"x": 3, "y": 5})
        with raise_if_dask_computes():
            out = bm.normalize(chunked, mask, method="z")
        assert dask.is_dask_collection(out.data)
        assert out.chunks == ((3, 3, 1), (5, 3), (9,))

    @pytest.mark.parametrize("chunks", CHUNKINGS)
    def test_chunk_invariance(self, metric, mask, chunks):
        expected = bm.normalize(metric, mask, method="z")
        actual = bm.normalize(metric.chunk(chunks), mask, method="z").compute()
        xr.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)

    def test_cohort_per_subject(self, metric, mask, mask_np):
        # statistics are per subject (and per seed), not pooled
        stacked = xr.concat([metric, 3 * metric + 1], dim="subject").chunk({"subject": 1})
        with raise_if_dask_computes():
            out = bm.normalize(stacked, mask, method="mean")
        assert out.dims == ("subject", "x", "y", "z")
        assert out.chunks[0] == (1, 1)
        computed = out.values
        for i, m in enumerate((metric.values, 3 * metric.values + 1)):
            expected = np.where(mask_np, m / m[mask_np].astype(np.float64).mean(), 0)
            np.testing.assert_allclose(computed[i], expected, rtol=1e-6)

    def test_zero_mean_gives_zero(self, metric, mask):
        out = bm.normalize(metric * 0, mask, method="mean")
        assert np.all(out.values == 0)

    def test_metadata(self, metric, mask):
        metric.attrs["history"] = "made by alff"
        out = bm.normalize(metric, mask, method="z")
        assert out.attrs["units"] == "1"
        assert out.attrs["long_name"] == "z-normalised ALFF"
        assert out.attrs["affine"] == metric.attrs["affine"]
        lines = out.attrs["history"].splitlines()
        assert lines[0] == "made by alff" and "brainarr.metrics.normalize.normalize(" in lines[1]
        assert "method='z'" in lines[1]


class TestNormalizeErrors:
    def test_method(self, metric, mask):
        with pytest.raises(ValueError, match="method must be 'mean' or 'z', got 'median'"):
            bm.normalize(metric, mask, method="median")

    def test_mask_required(self, metric):
        with pytest.raises(DimensionError, match="mask"):
            bm.normalize(metric, None)

    def test_grid(self, metric, mask):
        with pytest.raises(GridMismatchError, match="z has 9 vs 8"):
            bm.normalize(metric, mask.isel(z=slice(1, None)))

    def test_dims(self, metric, mask):
        with pytest.raises(DimensionError, match="missing \\['z'\\]"):
            bm.normalize(metric.isel(z=0, drop=True), mask)
