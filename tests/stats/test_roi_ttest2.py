"""Tests of brainarr.stats.roi_ttest2 against statsmodels OLS and Benjamini-Hochberg by hand."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import statsmodels.api as sm
import xarray as xr
from scipy import stats

import brainarr.metrics as bm
import brainarr.stats as bs
from brainarr.exceptions import DataValidationError, DimensionError, MissingMetadataError
from brainarr.testing import make_bold, raise_if_dask_computes

N_SUBJECTS = 14
LABELS = [2, 5, 6, 11, 40, 41]
NAMES = ["A", "B", "C", "D", "E", "F"]


def _matrices(seed=0, *, effect=(1, 4, 1.5), nan_edge=(0, 2), chunks=None):
    """Symmetric (subject, roi_i, roi_j) matrices with a planted group effect on one edge."""
    rng = np.random.default_rng(seed)
    n, r = N_SUBJECTS, len(LABELS)
    group = np.array(["patient"] * 7 + ["control"] * 7)
    age = rng.uniform(20, 70, n)
    sex = np.array(["M", "F"] * 7)
    z = rng.standard_normal((n, r, r)) * 0.3
    z = (z + np.swapaxes(z, 1, 2)) / 2 + 0.01 * age[:, None, None]
    i, j, size = effect
    z[group == "patient", i, j] += size
    z[group == "patient", j, i] += size
    idx = np.arange(r)
    z[:, idx, idx] = 0.0
    if nan_edge is not None:
        a, b = nan_edge
        z[3, a, b] = z[3, b, a] = np.nan  # e.g. a constant ROI in subject 3
    data = z if chunks is None else dsa.from_array(z, chunks=chunks)
    coords = {
        "subject": [f"sub-{k:02d}" for k in range(n)],
        "roi_i": LABELS,
        "roi_j": LABELS,
        "region_i": ("roi_i", NAMES),
        "region_j": ("roi_j", NAMES),
        "group": ("subject", group),
        "age": ("subject", age),
        "sex": ("subject", sex),
    }
    return xr.DataArray(data, dims=("subject", "roi_i", "roi_j"), coords=coords, name="roi_zfc")


def _bh(p):
    """Benjamini-Hochberg by hand: q_(k) = min_{m >= k} p_(m) n / m."""
    p = np.asarray(p, float)
    n = p.size
    order = np.argsort(p)
    q = np.empty(n)
    running = 1.0
    for rank in range(n, 0, -1):
        k = order[rank - 1]
        running = min(running, p[k] * n / rank)
        q[k] = running
    return q


def _statsmodels(m):
    """t and p of the group column for every upper-triangle edge without NaN (statsmodels OLS)."""
    z = m.values
    g = (m["group"].values == "patient").astype(float)
    x = np.column_stack([g, np.ones_like(g), m["age"].values, (m["sex"].values == "M").astype(float)])
    out = {}
    for i, j in zip(*np.triu_indices(len(LABELS), 1), strict=True):
        y = z[:, i, j]
        if not np.all(np.isfinite(y)):
            continue
        fit = sm.OLS(y, x).fit()
        out[(i, j)] = (fit.tvalues[0], fit.pvalues[0], fit.df_resid)
    return out


class TestRoiTtest2:
    def test_reference(self):
        m = _matrices()
        res = bs.roi_ttest2(m, groups=("patient", "control"))
        assert set(res.data_vars) == {"t", "p", "p_fdr", "significant", "analysed"}
        assert res["t"].dims == ("roi_i", "roi_j")
        ref = _statsmodels(m)
        tested = sorted(ref)
        for (i, j), (t, p, dof) in ref.items():
            np.testing.assert_allclose(res["t"].values[i, j], t, rtol=1e-9)
            np.testing.assert_allclose(res["p"].values[i, j], p, rtol=1e-9)
            assert res.attrs["dof"] == dof
        # BH over the tested edges, each once: scipy and by hand
        p_edges = np.array([ref[e][1] for e in tested])
        q = np.array([res["p_fdr"].values[e] for e in tested])
        np.testing.assert_allclose(q, stats.false_discovery_control(p_edges, method="bh"), rtol=1e-9)
        np.testing.assert_allclose(q, _bh(p_edges), rtol=1e-9)
        assert res.attrs["n_edges"] == 15 and len(tested) == 14
        assert res["significant"].values[1, 4] and res["t"].values[1, 4] > 0
        np.testing.assert_array_equal(res["significant"].values, res["analysed"].values & (res["p_fdr"].values < 0.05))

    def test_symmetric_diagonal_and_untested(self):
        res = bs.roi_ttest2(_matrices(), groups=("patient", "control"))
        for v in ("t", "p", "p_fdr", "significant", "analysed"):
            np.testing.assert_array_equal(res[v].values, res[v].values.T)
        np.testing.assert_array_equal(np.diag(res["t"].values), 0.0)
        np.testing.assert_array_equal(np.diag(res["p_fdr"].values), 1.0)
        assert not np.diag(res["analysed"].values).any()
        # the edge that is NaN for one subject is not tested
        assert not res["analysed"].values[0, 2]
        assert res["t"].values[0, 2] == 0.0 and res["p"].values[0, 2] == 1.0 and res["p_fdr"].values[0, 2] == 1.0

    def test_coords_and_attrs(self):
        res = bs.roi_ttest2(_matrices(), groups=("patient", "control"), alpha=0.01)
        assert res["roi_i"].values.tolist() == LABELS
        assert res["region_j"].values.tolist() == NAMES
        assert res.attrs["contrast"] == "patient - control"
        assert res.attrs["groups"] == ["patient", "control"]
        assert res.attrs["regressors"] == ["group[patient]", "intercept", "age", "sex[M]"]
        assert res.attrs["alpha"] == 0.01
        assert "brainarr.stats.roi.roi_ttest2(" in res.attrs["history"]
        assert res["t"].attrs["dof"] == res.attrs["dof"]

    def test_default_groups_reverse_sign(self):
        a = bs.roi_ttest2(_matrices(), groups=("patient", "control"))
        b = bs.roi_ttest2(_matrices())  # sorted: control - patient
        np.testing.assert_allclose(a["t"].values, -b["t"].values, atol=1e-12)

    @pytest.mark.parametrize("chunks", [(1, 6, 6), (5, 2, 3), (14, (1, 5), (4, 2))])
    def test_lazy_and_chunk_invariance(self, chunks):
        expected = bs.roi_ttest2(_matrices(), groups=("patient", "control"))
        lazy = _matrices(chunks=chunks)
        with raise_if_dask_computes():
            res = bs.roi_ttest2(lazy, groups=("patient", "control"))
        for v in res.data_vars.values():
            assert dask.is_dask_collection(v.data)
        xr.testing.assert_allclose(res.compute(), expected, rtol=1e-10, atol=1e-12)

    def test_same_design_checks_as_ttest2(self):
        m = _matrices()
        with pytest.raises(MissingMetadataError, match=r"brainarr.stats.roi_ttest2: .*no subject coordinate 'iq'"):
            bs.roi_ttest2(m, covariates=("iq",))
        with pytest.raises(MissingMetadataError, match="did you mean 'patient'"):
            bs.roi_ttest2(m, groups=("Patient", "control"))
        bad = m.assign_coords(age=("subject", np.full(N_SUBJECTS, 30.0)))
        with pytest.raises(DataValidationError, match="covariate 'age' is constant"):
            bs.roi_ttest2(bad)

    def test_bad_matrices(self):
        m = _matrices()
        with pytest.raises(DimensionError):
            bs.roi_ttest2(m.isel(subject=0))
        with pytest.raises(DimensionError, match="not square"):
            bs.roi_ttest2(m.isel(roi_j=slice(0, 4)))
        with pytest.raises(DimensionError, match="not the same ROIs"):
            bs.roi_ttest2(m.assign_coords(roi_j=LABELS[::-1]))
        with pytest.raises(ValueError, match="alpha"):
            bs.roi_ttest2(m, alpha=1.5)

    def test_end_to_end(self):
        """BOLD -> ROI series -> Fisher z -> edge t: lazy until computed, effect found."""
        rng = np.random.default_rng(3)
        shape, nt = (6, 7, 5), 60
        atlas_np = np.zeros(shape, np.int16)
        atlas_np[:3, :4] = 1
        atlas_np[3:, :4] = 2
        atlas_np[:3, 4:] = 7
        atlas_np[3:, 4:] = 9
        group = np.array(["patient"] * 6 + ["control"] * 6)
        subjects = []
        for s in range(12):
            common = rng.standard_normal(nt)
            v = rng.standard_normal((*shape, nt)) * 3
            v[atlas_np == 1] += common
            v[atlas_np == 2] += common * (3.0 if group[s] == "patient" else 0.0)
            subjects.append(v.astype(np.float32))
        bold = make_bold(subjects[0])
        cohort = xr.concat([bold.copy(data=v) for v in subjects], dim="subject").chunk({"subject": 1, "x": 4})
        # phenotype coordinates stay numpy (as in a cohort store); only the data are lazy
        cohort = cohort.assign_coords(
            subject=[f"s{k}" for k in range(12)], group=("subject", group), age=("subject", rng.uniform(20, 60, 12))
        )
        atlas = xr.DataArray(atlas_np, dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")})
        with raise_if_dask_computes():
            z = bm.roi_connectivity(bm.roi_timeseries(cohort, atlas))
            res = bs.roi_ttest2(z, groups=("patient", "control"), covariates=("age",))
        res = res.compute()
        assert res["significant"].sel(roi_i=1, roi_j=2) and res["t"].sel(roi_i=1, roi_j=2) > 0
        assert int(res["significant"].sum()) <= 4
