from __future__ import annotations

import math

import dask
import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr

import brainarr.stats as bs
from brainarr.exceptions import MissingMetadataError
from brainarr.testing import make_bold, raise_if_dask_computes

TABLE = {
    6: 1.5423138,
    7: 1.3757105,
    8: 1.2842680,
    20: 1.0674553,
    21: 1.0632924,
    26: 1.0483053,
    51: 1.0219834,
    61: 1.0180339,
    301: 1.0033865,
    501: 1.0020191,
}


def _smoothest_loops(res, mask, dof_factor):
    """Direct transcription of FSL smoothest's loop (as in SEMANTICS.md), voxel by voxel."""
    n = res.shape[0]
    nx, ny, nz = mask.shape
    u = np.zeros_like(res)
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                r = res[:, i, j, k]
                sd = r.std(ddof=1)
                if sd > 0:
                    u[:, i, j, k] = (r - r.mean()) / sd
    ss = [0.0, 0.0, 0.0]
    s2 = [0.0, 0.0, 0.0]
    for i in range(1, nx):
        for j in range(1, ny):
            for k in range(1, nz):
                if not (mask[i, j, k] and mask[i - 1, j, k] and mask[i, j - 1, k] and mask[i, j, k - 1]):
                    continue
                for d, (a, b, c) in enumerate([(i - 1, j, k), (i, j - 1, k), (i, j, k - 1)]):
                    for s in range(n):
                        ss[d] += u[s, i, j, k] * u[s, a, b, c]
                        s2[d] += (u[s, i, j, k] ** 2 + u[s, a, b, c] ** 2) / 2
    sig2 = []
    for d in range(3):
        ratio = min(ss[d], 0.99999999 * s2[d]) / s2[d]
        sig2.append(-1 / (4 * math.log(abs(ratio))))
    fwhm = [math.sqrt(8 * math.log(2) * v) for v in sig2]
    dlh = (sig2[0] * sig2[1] * sig2[2]) ** -0.5 / math.sqrt(8) * math.sqrt(dof_factor)
    return fwhm, dlh


def _residual_maps(values, dof):
    base = make_bold(values[0], affine=np.diag([-2.0, 3.0, 4.0, 1.0]))
    da = xr.DataArray(
        values,
        dims=("subject", "x", "y", "z"),
        coords={"subject": np.arange(values.shape[0]), "x": base.x, "y": base.y, "z": base.z},
        name="residuals",
        attrs={"affine": base.attrs["affine"], "dof": dof, "source": "synthetic"},
    )
    return da


@pytest.fixture
def smooth_case(rng):
    n = 9
    vals = np.stack([ndi.gaussian_filter(rng.standard_normal((9, 10, 11)), 1.2) for _ in range(n)])
    vals[:, 4, 4, 4] = 0.0  # a constant voxel inside the mask
    mask = np.zeros((9, 10, 11), bool)
    mask[1:8, 2:10, 1:9] = True
    mask[3, 5, 5] = False  # a hole
    res = _residual_maps(vals, dof=n - 3)
    m = xr.DataArray(mask, dims=("x", "y", "z"), coords={d: res[d] for d in ("x", "y", "z")})
    return res, m


class TestSmallDofFactor:
    def test_dpabi_formula(self):
        # integer dof: 2 L(dof + 1) - L(dof)
        assert bs.small_dof_factor(20) == pytest.approx(2 * 1.0632924 - 1.0674553, rel=1e-12)
        assert bs.small_dof_factor(7) == pytest.approx(2 * 1.2842680 - 1.3757105, rel=1e-12)
        # between table points: L is linear between 51 and 61
        lin = {d: 1.0219834 + (1.0180339 - 1.0219834) * (d - 51) / 10 for d in (59, 60)}
        assert bs.small_dof_factor(59) == pytest.approx(2 * lin[60] - lin[59], rel=1e-12)
        # non-integer dof
        lin = {d: 1.0674553 + (1.0632924 - 1.0674553) * (d - 20) for d in (20, 21)}
        assert bs.small_dof_factor(20.25) == pytest.approx((lin[21] - lin[20]) * 1.25 + lin[21], rel=1e-12)

    def test_plain_interpolation_and_limits(self):
        assert bs.small_dof_factor(26, dpabi=False) == pytest.approx(TABLE[26])
        assert bs.small_dof_factor(23.5, dpabi=False) == pytest.approx(TABLE[21] + (TABLE[26] - TABLE[21]) / 2)
        assert bs.small_dof_factor(5) == 1.1 == bs.small_dof_factor(3, dpabi=False)
        assert bs.small_dof_factor(800) == pytest.approx(1 + 1.0321 / 800)
        with pytest.raises(ValueError, match="positive"):
            bs.small_dof_factor(0)


class TestSmoothness:
    def test_against_loops(self, smooth_case):
        res, mask = smooth_case
        out = bs.smoothness(res, mask).compute()
        fwhm_vox, dlh = _smoothest_loops(res.values, mask.values, bs.small_dof_factor(6))
        np.testing.assert_allclose(out.fwhm_voxels.values, fwhm_vox, rtol=1e-10)
        np.testing.assert_allclose(out.fwhm.values, np.array(fwhm_vox) * [2.0, 3.0, 4.0], rtol=1e-10)
        np.testing.assert_allclose([out.fwhm_x, out.fwhm_y, out.fwhm_z], out.fwhm.values, rtol=1e-12)
        assert float(out.dlh) == pytest.approx(dlh, rel=1e-10)
        assert float(out.resels) == pytest.approx(np.prod(fwhm_vox), rel=1e-10)
        assert int(out.volume) == mask.values.sum()
        plain = bs.smoothness(res, mask, dpabi=False).compute()
        assert float(plain.dlh) == pytest.approx(dlh / math.sqrt(bs.small_dof_factor(6)) * math.sqrt(1.5423138))

    @pytest.mark.slow
    def test_known_fwhm(self, rng):
        fwhm_true = 2.5  # voxels
        sigma = fwhm_true / math.sqrt(8 * math.log(2))
        vals = np.stack([ndi.gaussian_filter(rng.standard_normal((40, 36, 32)), sigma) for _ in range(12)])
        res = _residual_maps(vals, dof=10)
        mask = xr.DataArray(np.zeros((40, 36, 32), bool), dims=("x", "y", "z"))
        mask[6:-6, 6:-6, 6:-6] = True
        out = bs.smoothness(res, mask.assign_coords({d: res[d] for d in "xyz"})).compute()
        np.testing.assert_allclose(out.fwhm_voxels.values, fwhm_true, rtol=0.1)

    @pytest.mark.slow
    @pytest.mark.parametrize(
        "chunks",
        [{"subject": 1, "x": 4, "y": 3}, {"subject": 2, "x": 5, "y": 10, "z": 7}, {"subject": 1, "z": 2}],
    )
    def test_lazy_chunk_invariant(self, smooth_case, chunks):
        res, mask = smooth_case
        ref = bs.smoothness(res, mask).compute()
        lazy = res.copy(data=res.chunk(chunks).data)
        with raise_if_dask_computes():
            out = bs.smoothness(lazy, mask.chunk({"x": 3}))
        assert all(dask.is_dask_collection(v.data) for v in out.data_vars.values())
        assert out.dlh.shape == ()
        xr.testing.assert_allclose(out.compute().drop_attrs(), ref.drop_attrs(), rtol=1e-10)

    def test_metadata_and_errors(self, smooth_case):
        res, mask = smooth_case
        out = bs.smoothness(res, mask)
        assert out.fwhm_x.attrs["units"] == "mm" and out.fwhm_voxels.attrs["units"] == "voxel"
        assert out.attrs["dof"] == 6 and out.attrs["small_dof_factor"] == bs.small_dof_factor(6)
        assert "brainarr.stats.smoothness.smoothness" in out.attrs["history"]
        assert out.attrs["affine"] == res.attrs["affine"]
        no_dof = res.copy()
        no_dof.attrs = {"affine": res.attrs["affine"]}
        with pytest.raises(MissingMetadataError, match="dof"):
            bs.smoothness(no_dof, mask)
        with pytest.raises(TypeError, match="bool"):
            bs.smoothness(res, mask.astype(float))
        with pytest.raises(ValueError, match="different grids"):
            bs.smoothness(res, mask.isel(x=slice(1, None)))
