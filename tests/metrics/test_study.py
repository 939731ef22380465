from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.ndimage
import xarray as xr

import brainarr.metrics as bm
from brainarr.testing import raise_if_dask_computes

SIGMA_6MM = 6.0 / np.sqrt(8 * np.log(2)) / 3.0  # voxels of 3 mm


def ref_smooth(values):
    return scipy.ndimage.gaussian_filter(values.astype(np.float64), SIGMA_6MM, mode="reflect", truncate=4.0)


def ref_normalize(values, mask, method):
    inside = values[mask].astype(np.float64)
    if method == "mean":
        return np.where(mask, values / inside.mean(), 0.0)
    return np.where(mask, (values - inside.mean()) / inside.std(ddof=1), 0.0)


@pytest.fixture
def metric(bold, mask_np, rng):
    values = np.where(mask_np, rng.gamma(3.0, 1.0, size=mask_np.shape), 0).astype(np.float32)
    m = xr.DataArray(values, dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")}, name="dc_binary")
    m.attrs.update({"affine": bold.attrs["affine"], "tr": 2.0, "long_name": "degree centrality (binary)"})
    return m


class TestSmoothNormalize:
    @pytest.mark.parametrize("method", ["mean", "z"])
    def test_reference_smooth_first(self, metric, mask, mask_np, method):
        out = bm.smooth_normalize(metric, mask, fwhm=6.0, method=method)
        expected = ref_normalize(ref_smooth(metric.values), mask_np, method)
        np.testing.assert_allclose(out.values, expected, rtol=1e-5, atol=1e-5)
        assert out.name == ("sm" if method == "mean" else "sz") + "dc_binary"

    def test_reference_normalize_first(self, metric, mask, mask_np):
        out = bm.smooth_normalize(metric, mask, method="z", order="normalize_first")
        expected = ref_smooth(ref_normalize(metric.values, mask_np, "z"))
        np.testing.assert_allclose(out.values, expected, rtol=1e-5, atol=1e-5)
        assert np.any(out.values[~mask_np] != 0)  # smoothing spreads outside the mask

    @pytest.mark.parametrize("chunks", [{"x": 4, "y": 5}, {"x": (5, 2), "z": (4, 5)}, {"y": 8}])
    def test_lazy_chunk_invariance(self, metric, mask, chunks):
        expected = bm.smooth_normalize(metric, mask, method="z")
        with raise_if_dask_computes():
            out = bm.smooth_normalize(metric.chunk(chunks), mask, method="z")
        assert dask.is_dask_collection(out.data)
        xr.testing.assert_allclose(out.compute(), expected, rtol=1e-5, atol=1e-6)

    def test_metadata_and_errors(self, metric, mask):
        out = bm.smooth_normalize(metric, mask, fwhm=4.0, method="mean", name="dc_binary_sm")
        assert out.name == "dc_binary_sm" and out.attrs["fwhm"] == 4.0 and out.attrs["units"] == "1"
        assert out.attrs["order"] == "smooth_first"
        assert out.attrs["affine"] == metric.attrs["affine"]
        assert "brainarr.metrics.study.smooth_normalize(" in out.attrs["history"].splitlines()[-1]
        with pytest.raises(ValueError, match="order must be"):
            bm.smooth_normalize(metric, mask, order="backwards")


class TestVariants:
    def test_smreho(self, bold, mask, mask_np):
        out = bm.smreho(bold.chunk({"x": 4, "y": 5}), mask)
        reho = bm.reho(bold, mask).values
        expected = ref_normalize(ref_smooth(reho), mask_np, "mean")
        np.testing.assert_allclose(out.values, expected, rtol=1e-5, atol=1e-5)
        assert out.name == "smreho"

    def test_alff_variants(self, bold, mask, mask_np):
        maps = bm.alff(bold, mask=mask)
        out = bm.alff_variants(maps, mask)
        assert set(out.data_vars) == {"malff", "zalff", "mfalff", "zfalff"}
        np.testing.assert_allclose(
            out.zfalff.values, ref_normalize(maps.falff.values, mask_np, "z"), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(out.malff.values, ref_normalize(maps.alff.values, mask_np, "mean"), rtol=1e-5)

    def test_dc_variants(self, bold, mask, mask_np):
        dc = bm.degree_centrality(bold, mask)
        out = bm.dc_variants(dc, mask)
        assert set(out.data_vars) == {"dc_binary_sm", "dc_binary_sz", "dc_weighted_sm", "dc_weighted_sz"}
        expected = ref_normalize(ref_smooth(dc.dc_weighted.values), mask_np, "z")
        np.testing.assert_allclose(out.dc_weighted_sz.values, expected, rtol=1e-5, atol=1e-5)


class TestStudyMetrics:
    def test_cohort_lazy(self, cohort, mask, mask_np):
        left = mask.copy(data=np.indices(mask.shape)[0] < 3)
        seeds = xr.concat([left, ~left], dim="seed").assign_coords(seed=["left", "right"])
        clean = cohort.chunk({"subject": 1, "x": 4})
        with raise_if_dask_computes():
            out = bm.study_metrics(clean, clean, mask, seeds=seeds.rename("seeds"))
        expected_vars = {
            "alff",
            "falff",
            "malff",
            "zalff",
            "mfalff",
            "zfalff",
            "reho",
            "smreho",
            "fc",
            "zfc",
            "seed_series",
            "dc_binary",
            "dc_weighted",
            "dc_binary_sm",
            "dc_binary_sz",
            "dc_weighted_sm",
            "dc_weighted_sz",
        }
        assert set(out.data_vars) == expected_vars
        for name in expected_vars - {"seed_series"}:
            assert dask.is_dask_collection(out[name].data), name
            assert out[name].dims[-4:] == ("subject", "x", "y", "z"), name
        assert out.reho.chunks == ((1, 1, 1), (4, 3), (8,), (9,))
        assert "brainarr.metrics.study.study_metrics(" in out.attrs["history"]
        computed = out.compute()
        one = cohort.isel(subject=1)
        np.testing.assert_allclose(
            computed.smreho.values[1],
            ref_normalize(ref_smooth(bm.reho(one, mask).values), mask_np, "mean"),
            rtol=1e-5,
            atol=1e-5,
        )
        np.testing.assert_allclose(computed.dc_binary.values[1], bm.degree_centrality(one, mask).dc_binary.values)
        for name in expected_vars:
            assert np.all(np.isfinite(computed[name].values)), name
