from __future__ import annotations

import dask
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import brainarr.stats as bs
from brainarr.exceptions import DimensionError, MissingMetadataError
from brainarr.testing import raise_if_dask_computes

SHAPE = (7, 8, 9)


@pytest.fixture
def cohort(rng, maps_factory):
    n = 14
    values = rng.standard_normal((n, *SHAPE)) + 10.0
    values[:7, 2:4, 3:5, 4:6] += 1.5  # an effect in the patients
    values[3, 0, 0, 0] = 0.0  # zero for one subject: excluded
    values[:, 1, 1, 3] = 5.0  # constant: t = 0
    return maps_factory(values, seed=1)


@pytest.fixture
def mask():
    m = np.zeros(SHAPE, bool)
    m[:6, 1:, 2:8] = True
    m[0, 0, 0] = True
    from brainarr.testing import make_bold

    return make_bold(np.zeros(SHAPE)).astype(bool).copy(data=m)


def _design_frame(maps):
    return pd.DataFrame(
        {
            "group": (maps.group.values == "patient").astype(float),
            "intercept": 1.0,
            "age": maps.age.values,
            "sexM": (maps.sex.values == "M").astype(float),
        },
        index=maps.subject.values,
    )


class TestTtest2:
    def test_statsmodels_reference(self, cohort, mask):
        res = bs.ttest2(cohort, groups=("patient", "control"), mask=mask).compute()
        design = _design_frame(cohort)
        rng = np.random.default_rng(3)
        idx = np.argwhere(mask.values)
        picks = [tuple(i) for i in idx[rng.choice(len(idx), 12, replace=False)]] + [(2, 3, 4), (5, 1, 2)]
        for i, j, k in picks:
            y = cohort.values[:, i, j, k]
            if np.all(y == y[0]):
                continue
            fit = sm.OLS(y, design.to_numpy()).fit()
            np.testing.assert_allclose(res.t.values[i, j, k], fit.tvalues[0], rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(res.p.values[i, j, k], fit.pvalues[0], rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(res.beta.values[:, i, j, k], fit.params, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(res.residuals.values[:, i, j, k], fit.resid, atol=1e-9)
        assert res.attrs["dof"] == cohort.sizes["subject"] - 4
        assert res.attrs["contrast"] == "patient - control"
        assert res.attrs["regressors"] == ["group[patient]", "intercept", "age", "sex[M]"]

    def test_excluded_voxels(self, cohort, mask):
        res = bs.ttest2(cohort, groups=("patient", "control"), mask=mask).compute()
        # zero for one subject, constant, and outside the mask: t = 0, p = 1
        for ijk in [(0, 0, 0), (1, 1, 3), (6, 0, 0)]:
            assert res.t.values[ijk] == 0.0
            assert res.p.values[ijk] == 1.0
            np.testing.assert_allclose(res.residuals.values[(slice(None), *ijk)], 0, atol=1e-9)
        assert not res.analysed.values[0, 0, 0]
        assert res.analysed.values.sum() == mask.values.sum() - 1  # the constant voxel is analysed

    @pytest.mark.slow
    def test_nilearn_second_level(self, cohort, mask):
        from nilearn.glm.second_level import SecondLevelModel

        affine = np.asarray(cohort.attrs["affine"])
        imgs = [nib.Nifti1Image(cohort.values[s].astype(np.float64), affine) for s in range(cohort.sizes["subject"])]
        design = _design_frame(cohort).reset_index(drop=True)
        mask_img = nib.Nifti1Image(mask.values.astype(np.int8), affine)
        model = SecondLevelModel(mask_img=mask_img).fit(imgs, design_matrix=design)
        t_nl = np.asarray(model.compute_contrast("group", output_type="stat").get_fdata())
        res = bs.ttest2(cohort, groups=("patient", "control"), mask=mask).compute()
        ok = res.analysed.values & (res.t.values != 0)
        np.testing.assert_allclose(res.t.values[ok], t_nl[ok], rtol=1e-6, atol=1e-8)

    def test_glm_dataframe_equals_ttest2(self, cohort, mask):
        design = _design_frame(cohort).iloc[::-1]  # reordered to the maps' subjects
        res = bs.glm(cohort, design, [1, 0, 0, 0], mask=mask).compute()
        ref = bs.ttest2(cohort, groups=("patient", "control"), mask=mask).compute()
        np.testing.assert_allclose(res.t.values, ref.t.values, rtol=1e-10, atol=1e-12)
        assert list(res.regressor.values) == ["group", "intercept", "age", "sexM"]

    def test_center_only_changes_intercept(self, cohort):
        a = bs.ttest2(cohort).compute()
        b = bs.ttest2(cohort, center=True).compute()
        np.testing.assert_allclose(a.t.values, b.t.values, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a.beta.sel(regressor="age"), b.beta.sel(regressor="age"), atol=1e-10)
        assert a.attrs["contrast"] == "control - patient"  # default: sorted levels

    @pytest.mark.slow
    @pytest.mark.parametrize(
        "chunks",
        [
            {"subject": 1, "x": 3, "y": 5, "z": 4},
            {"subject": 1, "x": 2, "y": 8, "z": 7},
            {"subject": 5, "x": 7, "y": 3},
        ],
    )
    def test_lazy_and_chunk_invariant(self, cohort, mask, chunks, maps_factory):
        ref = bs.ttest2(cohort, mask=mask).compute()
        lazy_maps = cohort.copy(data=cohort.chunk(chunks).data)
        with raise_if_dask_computes():
            res = bs.ttest2(lazy_maps, mask=mask)
        for name in ("t", "p", "beta", "residuals"):
            assert dask.is_dask_collection(res[name].data), name
        assert res.t.chunks == lazy_maps.isel(subject=0).chunks
        assert res.residuals.chunks == lazy_maps.chunks
        out = res.compute()
        for name in ("t", "p", "beta", "residuals"):
            np.testing.assert_allclose(out[name].values, ref[name].values, rtol=1e-10, atol=1e-10)

    def test_metadata(self, cohort, mask):
        res = bs.ttest2(cohort, mask=mask)
        assert res.t.attrs["units"] == "1" and "long_name" in res.t.attrs
        assert res.p.attrs["long_name"].startswith("two-sided")
        assert res.attrs["affine"] == cohort.attrs["affine"]
        assert "brainarr.stats.glm.ttest2" in res.attrs["history"]
        assert "brainarr.stats.glm.ttest2" in res.t.attrs["history"]
        assert res.residuals.attrs["dof"] == res.attrs["dof"]
        assert res.t.dims == ("x", "y", "z") and res.beta.dims == ("regressor", "x", "y", "z")
        np.testing.assert_array_equal(res.x.values, cohort.x.values)

    def test_bad_inputs(self, cohort, mask):
        with pytest.raises(MissingMetadataError, match="'bmi'"):
            bs.ttest2(cohort, covariates=("bmi",))
        three = cohort.assign_coords(group=("subject", ["a", "b", "c"] * 4 + ["a", "b"]))
        with pytest.raises(ValueError, match="exactly two"):
            bs.ttest2(three)
        with pytest.raises(ValueError, match="'nope'"):
            bs.ttest2(cohort, groups=("patient", "nope"))
        with pytest.raises(DimensionError, match="expected"):
            bs.ttest2(cohort.isel(x=0))
        with pytest.raises(ValueError, match="contrast has 2 entries"):
            bs.glm(cohort, _design_frame(cohort), [1, 0])
        collinear = _design_frame(cohort).assign(dup=lambda d: d["age"] * 2)
        with pytest.raises(ValueError, match="rank deficient"):
            bs.glm(cohort, collinear, [1, 0, 0, 0, 0])
        with pytest.raises(TypeError, match="must be bool"):
            bs.ttest2(cohort, mask=mask.astype(int))
        nan_age = cohort.assign_coords(age=("subject", np.r_[np.nan, cohort.age.values[1:]]))
        with pytest.raises(ValueError, match="sub-00"):
            bs.ttest2(nan_age)


class TestTtoZ:
    def test_matches_scipy_and_is_stable(self):
        from scipy import stats

        t = np.array([-8.0, -2.5, 0.0, 1.0, 3.3, 40.0, 1e3])
        z = bs.t_to_z(t, 20)
        moderate = np.abs(t) < 10
        np.testing.assert_allclose(z[moderate], stats.norm.isf(stats.t.sf(t[moderate], 20)), rtol=1e-10, atol=1e-12)
        assert np.all(np.isfinite(z)) and z[-1] > z[-2] > 8  # no overflow to inf
        np.testing.assert_allclose(bs.t_to_z(-t, 20), -z)
