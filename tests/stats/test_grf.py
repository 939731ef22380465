from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import brainarr.stats as bs
from brainarr.exceptions import MissingMetadataError
from brainarr.testing import make_bold

SHAPE = (20, 22, 18)


def _k_reference(z, n, dlh, pc):
    """Friston et al. (1994) D = 3, written out; k searched upwards from 1."""
    em = n * (2 * math.pi) ** -2 * dlh * (z * z - 1) * math.exp(-z * z / 2)
    en = n * (1 - stats.norm.cdf(z))
    beta = (math.gamma(2.5) * em / en) ** (2 / 3)
    k = 1
    while 1 - math.exp(-em * math.exp(-beta * k ** (2 / 3))) >= pc:
        k += 1
    return k


def _result(t, dof=30, residuals=None):
    base = make_bold(t)
    ds = xr.Dataset({"t": base.rename("t")}, attrs={"dof": dof, "affine": base.attrs["affine"], "contrast": "a - b"})
    if residuals is not None:
        ds["residuals"] = xr.DataArray(
            residuals, dims=("subject", "x", "y", "z"), attrs={"dof": dof, "affine": base.attrs["affine"]}
        )
    return ds


@pytest.fixture
def planted():
    t = np.zeros(SHAPE)
    t[3:7, 4:8, 5:8] = 5.0  # 48 voxels, positive
    t[12:15, 10:14, 9:12] = -4.5  # 36 voxels, negative
    t[17, 2, 2] = 6.0  # single voxel: too small
    t[10, 18, 15] = t[11, 19, 16] = 4.0  # diagonal pair: one cluster with 26-connectivity only
    mask = make_bold(np.ones(SHAPE, bool))
    mask[0] = False
    return t, mask.astype(bool)


class TestThresholds:
    @pytest.mark.parametrize(
        ("voxel_p", "cluster_p", "two_tailed", "fwhm"),
        [(0.01, 0.05, True, 8.0), (0.001, 0.05, False, (6.0, 7.0, 9.0)), (0.05, 0.01, True, 12.0)],
    )
    def test_against_formulas(self, planted, voxel_p, cluster_p, two_tailed, fwhm):
        t, mask = planted
        out = bs.grf(_result(t), mask=mask, voxel_p=voxel_p, cluster_p=cluster_p, two_tailed=two_tailed, fwhm=fwhm)
        pv = voxel_p / 2 if two_tailed else voxel_p
        pc = cluster_p / 2 if two_tailed else cluster_p
        z = stats.norm.ppf(1 - pv)
        f = np.broadcast_to(fwhm, 3) / 3.0
        sig2 = (f / math.sqrt(8 * math.log(2))) ** 2
        dlh = np.prod(sig2) ** -0.5 / math.sqrt(8)
        n = int(mask.values.sum())
        assert out.attrs["z_threshold"] == pytest.approx(z, rel=1e-12)
        assert out.attrs["dlh"] == pytest.approx(dlh, rel=1e-10)
        assert out.attrs["cluster_size"] == _k_reference(z, n, dlh, pc)
        assert out.attrs["n_voxels"] == n
        assert bs.cluster_size_threshold(z=z, n_voxels=n, dlh=dlh, cluster_p=pc) == _k_reference(z, n, dlh, pc)

    def test_study_like_numbers(self):
        # 3 mm grid, ~50000 GM voxels, FWHM 6-8 mm: k is tens to hundreds of voxels
        z = stats.norm.isf(0.005)
        dlh = (4 * math.log(2)) ** 1.5 / (7.0 / 3) ** 3
        k = bs.cluster_size_threshold(z=z, n_voxels=50000, dlh=dlh, cluster_p=0.005)
        assert k == _k_reference(z, 50000, dlh, 0.005)
        p = bs.grf_cluster_p(np.array([k - 1, k]), z=z, n_voxels=50000, dlh=dlh)
        assert p[0] >= 0.005 > p[1]

    def test_smoothness_from_residuals(self, planted, rng):
        t, mask = planted
        import scipy.ndimage as ndi

        res = np.stack([ndi.gaussian_filter(rng.standard_normal(SHAPE), 1.0) for _ in range(8)])
        result = _result(t, dof=6, residuals=res)
        out = bs.grf(result, mask=mask)
        sm = bs.smoothness(result["residuals"], mask, dof=6).compute()
        np.testing.assert_allclose(out.attrs["fwhm"], sm.fwhm.values, rtol=1e-12)
        assert out.attrs["dlh"] == pytest.approx(float(sm.dlh), rel=1e-12)


class TestClusters:
    def test_two_tailed(self, planted):
        t, mask = planted
        out = bs.grf(_result(t), mask=mask, voxel_p=0.01, cluster_p=0.05, fwhm=4.0)
        k = out.attrs["cluster_size"]
        assert 2 < k <= 36
        assert list(out.cluster_id.values) == [1, -1]
        assert list(out.cluster_size.values) == [48, 36]
        assert list(out.cluster_peak_t.values) == [5.0, -4.5]
        assert (out.cluster.values == -1).sum() == 36 and np.all(out.t.values[out.cluster.values == -1] == -4.5)
        assert out.t.values[17, 2, 2] == 0  # too small
        expected = np.where(np.isin(out.cluster.values, [1, -1]), t, 0)
        np.testing.assert_array_equal(out.t.values, expected)
        pc = bs.grf_cluster_p(
            np.array([48, 36]),
            z=out.attrs["z_threshold"],
            n_voxels=out.attrs["n_voxels"],
            dlh=out.attrs["dlh"],
        )
        np.testing.assert_allclose(out.cluster_p.values, 2 * pc, rtol=1e-12)
        assert np.all(out.cluster_p.values < 0.05)
        np.testing.assert_allclose(out.zstat.values[4, 5, 6], stats.norm.isf(stats.t.sf(5.0, 30)), rtol=1e-10)
        assert np.all(out.zstat.values[0] == 0)  # outside the mask

    def test_one_tailed_ignores_negative(self, planted):
        t, mask = planted
        out = bs.grf(_result(t), mask=mask, two_tailed=False, fwhm=4.0)
        assert np.all(out.cluster.values >= 0) and np.all(out.t.values >= 0)
        assert out.attrs["z_threshold"] == pytest.approx(stats.norm.isf(0.01))

    @pytest.mark.parametrize(("connectivity", "joined"), [(26, True), (18, False), (6, False)])
    def test_connectivity(self, planted, connectivity, joined):
        # the corner-touching pair is one 2-voxel cluster with 26-connectivity only; k = 2 here
        t, mask = planted
        out = bs.grf(
            _result(t),
            mask=mask,
            voxel_p=0.01,
            cluster_p=0.999,
            fwhm=3.0,
            connectivity=connectivity,
            two_tailed=False,
        )
        assert out.attrs["cluster_size"] == 2
        a, b = int(out.cluster.values[10, 18, 15]), int(out.cluster.values[11, 19, 16])
        if joined:
            assert a == b != 0
        else:
            assert a == b == 0

    def test_metadata_and_errors(self, planted):
        t, mask = planted
        out = bs.grf(_result(t), mask=mask, fwhm=4.0)
        assert "brainarr.stats.grf.grf" in out.attrs["history"]
        assert out.t.attrs["units"] == "1" and out.cluster.dtype == np.int32
        assert out.attrs["fwhm"] == [4.0, 4.0, 4.0]
        with pytest.raises(MissingMetadataError, match="residuals"):
            bs.grf(_result(t), mask=mask)
        with pytest.raises(ValueError, match="voxel_p"):
            bs.grf(_result(t), mask=mask, voxel_p=1.5, fwhm=4.0)
        no_dof = _result(t)
        del no_dof.attrs["dof"]
        with pytest.raises(MissingMetadataError, match="dof"):
            bs.grf(no_dof, mask=mask, fwhm=4.0)
        with pytest.raises(ValueError, match="connectivity"):
            bs.grf(_result(t), mask=mask, fwhm=4.0, connectivity=8)

    @pytest.mark.slow
    def test_end_to_end_with_ttest2(self, rng, maps_factory):
        vals = rng.standard_normal((16, 12, 13, 14)) + 20
        vals[:8, 3:7, 3:7, 3:7] += 3.0
        vals[:8, 8:11, 8:11, 9:12] -= 3.0
        maps = maps_factory(vals, chunks={"subject": 1, "x": 5})
        res = bs.ttest2(maps, groups=("patient", "control"))
        mask = xr.ones_like(maps.isel(subject=0, drop=True), dtype=bool).compute()
        out = bs.grf(res, mask=mask, voxel_p=0.001, cluster_p=0.05)
        assert (out.cluster_peak_t > 0).any() and (out.cluster_peak_t < 0).any()
        neg = out.cluster_id.values[out.cluster_peak_t.values < 0][0]
        assert out.cluster_peak_t.sel(cluster_id=neg) < 0
        assert np.all(out.t.values[out.cluster.values == neg] < 0)
