"""Catalogue of bad analysis settings: study configuration, group designs, nuisance models.

Each row: the input, the call, the exception expected and what its message must name (the
key, subject, group or covariate, the problem and what to do). The positive controls below
show that valid inputs next to each refusal still give the numbers of an independent
least-squares reference.

Semantics documented by these tests:

* Group labels are compared exactly: a requested group without subjects (``"Patient"`` for
  ``"patient"``) is refused with the labels present, their counts and the closest label; a
  label with surrounding whitespace is refused, in the configuration and in the data.
* A text covariate that is mostly numbers (``"4o"`` among ages) or that is all numbers with
  nearly one value per subject is refused, as are missing values (NaN, None, ``"n/a"``), a
  constant covariate, a covariate collinear with the group or the other covariates and a
  design without residual degrees of freedom.
* A subject whose map is zero or non-finite everywhere in the mask, or constant over it, is a
  :class:`DataValidationError` naming the subject: at once for numpy maps, when the result is
  computed for dask-backed maps (the functions stay lazy).
* A nuisance model with at least as many regressors as volumes is refused by
  ``preprocess.regress`` / ``clean`` / ``detrend`` from the shapes alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from brainarr import preprocess, stats
from brainarr.config import ConfigError, StudyConfig
from brainarr.exceptions import DataValidationError, MissingMetadataError
from brainarr.testing import BadInput, check_bad_input, make_bold, make_maps, raise_if_dask_computes

N = 12
SHAPE = (5, 6, 7)
GROUP = np.array(["patient", "control"] * (N // 2), dtype=object)
AGE = 20.0 + 3.0 * np.arange(N) + np.r_[0.4, -1.1, 2.0, 0.3, -0.7, 1.9, 0.0, -2.2, 1.4, 0.8, -0.5, 1.1]
SEX = np.array(["M", "F", "F", "M", "M", "F", "F", "M", "M", "F", "M", "F"], dtype=object)


# ----------------------------------------------------------------------------- builders


def _values(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, *SHAPE)) + 10.0


def _maps(values=None, *, chunks=None, **coords) -> xr.DataArray:
    base = {"group": GROUP, "age": AGE, "sex": SEX}
    base.update(coords)
    return make_maps(_values() if values is None else values, chunks=chunks, **base)


def _mask() -> xr.DataArray:
    m = np.zeros(SHAPE, bool)
    m[1:4, 1:5, 1:6] = True
    return make_bold(m)


def _with(values: np.ndarray, index: int, fill: float) -> np.ndarray:
    out = values.copy()
    out[index] = fill
    return out


def _replace(array: np.ndarray, index: int, value) -> np.ndarray:
    out = np.asarray(array, dtype=object).copy()
    out[index] = value
    return out


def _ttest(maps, **kw):
    kw.setdefault("groups", ("patient", "control"))
    kw.setdefault("covariates", ("age", "sex"))
    return stats.ttest2(maps, mask=_mask(), **kw)


def _config(text: str):
    return lambda t: StudyConfig.from_toml_string(text)


def _bold(n_time: int = 30, chunks=None) -> xr.DataArray:
    return make_bold(shape=(3, 4, 5, n_time), chunks=chunks)


def _confounds(n_time: int, n_conf: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(rng.standard_normal((n_time, n_conf)), columns=[f"c{i}" for i in range(n_conf)])


def _lazy_clean(t):
    conf = xr.DataArray(_confounds(30, 28).to_numpy(), dims=("time", "confound")).chunk()
    with raise_if_dask_computes():
        return preprocess.clean(_bold(30, chunks={"x": 2}), conf, filter=None, low=None, high=None)


# ----------------------------------------------------------------------------- catalogue

CASES: dict[str, BadInput] = {
    # --- study configuration
    "config-band-three-numbers": BadInput(
        _config("[preprocess]\nband = [0.01, 0.08, 0.1]\n"),
        ConfigError,
        (r"preprocess\.band = \[0\.01, 0\.08, 0\.1\] is invalid", "two frequencies", "low < high"),
    ),
    "config-band-nan": BadInput(
        _config("[preprocess]\nband = [0.01, nan]\n"), ConfigError, (r"preprocess\.band", "finite number")
    ),
    "config-grf-scalar": BadInput(
        _config("[group]\ngrf = 0.05\n"), ConfigError, (r"group\.grf must be a table", "0.05")
    ),
    "config-grf-family-scalar": BadInput(
        _config("[group.grf]\ndc = 0.05\n"), ConfigError, (r"group\.grf\.dc must be a table", "voxel_p", "0.05")
    ),
    "config-group-scalar": BadInput(_config("group = 3\n"), ConfigError, (r"^group must be a table", "3")),
    "config-permutation-boolean": BadInput(
        _config("[group]\npermutation = true\n"), ConfigError, (r"group\.permutation must be a table", "True")
    ),
    "config-discard-table": BadInput(
        _config("[preprocess]\ndiscard = {a = 1}\n"),
        ConfigError,
        (r"preprocess\.discard = \{'a': 1\} is invalid", "an integer"),
    ),
    "config-smooth-fwhm-zero": BadInput(
        _config("[metrics]\nsmooth_fwhm = 0\n"),
        ConfigError,
        (r"metrics\.smooth_fwhm = 0\.0 is invalid", "positive FWHM", "no smoothing"),
    ),
    "config-duplicate-seeds": BadInput(
        _config("[metrics]\nseeds = ['Postcentral_L', 'Precentral_R', 'Postcentral_L']\n"),
        ConfigError,
        (r"metrics\.seeds", r"\['Postcentral_L'\] appear more than once"),
    ),
    "config-duplicate-families": BadInput(
        _config("[metrics]\nfamilies = ['alff', 'dc', 'alff']\n"),
        ConfigError,
        (r"metrics\.families", r"\['alff'\] appear more than once"),
    ),
    "config-duplicate-confounds": BadInput(
        _config("[preprocess]\nconfounds = ['csf', 'friston24', 'csf']\n"),
        ConfigError,
        (r"preprocess\.confounds", r"\['csf'\] appear more than once"),
    ),
    "config-duplicate-covariates": BadInput(
        _config("[group]\ncovariates = ['age', 'sex', 'age']\n"),
        ConfigError,
        (r"group\.covariates", r"\['age'\] appear more than once"),
    ),
    "config-duplicate-permutation-families": BadInput(
        _config("[group.permutation]\nfamilies = ['dc', 'dc']\n"),
        ConfigError,
        (r"group\.permutation\.families", r"\['dc'\] appear more than once"),
    ),
    "config-identical-groups": BadInput(
        _config("[group]\ngroups = ['patient', 'patient']\n"),
        ConfigError,
        (r"group\.groups = \['patient', 'patient'\] is invalid", "two different"),
    ),
    "config-empty-group-label": BadInput(
        _config("[group]\ngroups = ['patient', '']\n"), ConfigError, (r"group\.groups", "empty string")
    ),
    "config-group-label-whitespace": BadInput(
        _config("[group]\ngroups = ['patient ', 'control']\n"),
        ConfigError,
        (r"group\.groups", "'patient ' has leading or trailing whitespace", "compared exactly", "write 'patient'"),
    ),
    "config-covariate-is-group": BadInput(
        _config("[group]\ncovariates = ['age', 'group']\n"),
        ConfigError,
        (r"group\.covariates", "group.by = 'group'", "own covariate"),
    ),
    "config-dc-threshold-negative": BadInput(
        _config("[metrics]\ndc_threshold = -0.2\n"),
        ConfigError,
        (r"metrics\.dc_threshold = -0\.2 is invalid", "0 <= r < 1", "connect almost every pair"),
    ),
    "config-boolean-for-number": BadInput(
        _config("[preprocess]\nmask_threshold = true\n"),
        ConfigError,
        (r"preprocess\.mask_threshold = True is invalid", "a number"),
    ),
    "config-infinite-number": BadInput(
        _config("[preprocess]\nmax_rotation = inf\n"),
        ConfigError,
        (r"preprocess\.max_rotation = inf is invalid", "finite number"),
    ),
    "config-negative-permutation-seed": BadInput(
        _config("[group.permutation]\nseed = -1\n"),
        ConfigError,
        (r"group\.permutation\.seed = -1 is invalid", "non-negative"),
    ),
    # --- groups
    "ttest2-wrong-case-groups": BadInput(
        lambda t: _ttest(_maps(), groups=("Patient", "Control")),
        MissingMetadataError,
        (
            r"brainarr\.stats\.ttest2",
            "group 'Patient'",
            "has no subject",
            r"\{'control': 6, 'patient': 6\}",
            "did you mean 'patient'",
        ),
    ),
    "ttest2-one-subject-in-group": BadInput(
        lambda t: _ttest(_maps(group=np.array(["patient"] + ["control"] * (N - 1), dtype=object))),
        MissingMetadataError,
        ("group 'patient' has 1 subject", "sub-00", "at least 2 per group", r"'control': 11"),
    ),
    "ttest2-group-label-whitespace": BadInput(
        lambda t: _ttest(_maps(group=_replace(GROUP, 2, "patient "))),
        MissingMetadataError,
        ("'group'", "whitespace", r"sub-02 \('patient '\)", "compared exactly", "strip them"),
    ),
    "ttest2-groups-argument-whitespace": BadInput(
        lambda t: _ttest(_maps(), groups=(" patient", "control")),
        MissingMetadataError,
        ("group ' patient'", "whitespace", "'patient': 6"),
    ),
    "permutation-wrong-case-groups": BadInput(
        lambda t: stats.permutation(_maps(), groups=("patient", "Control"), n_perm=10),
        MissingMetadataError,
        (r"brainarr\.stats\.permutation", "group 'Control'", "has no subject", "did you mean 'control'"),
    ),
    "demographics-wrong-case-groups": BadInput(
        lambda t: stats.demographics(_maps(), groups=("PATIENT", "control"), variables=["age"]),
        MissingMetadataError,
        (r"brainarr\.stats\.demographics", "group 'PATIENT'", "did you mean 'patient'"),
    ),
    # --- covariates
    "ttest2-covariate-nan": BadInput(
        lambda t: _ttest(_maps(age=_with(AGE, 5, np.nan))),
        MissingMetadataError,
        ("covariate 'age' is missing", r"sub-05 \(nan\)", "fill them"),
    ),
    "ttest2-covariate-none-in-text": BadInput(
        lambda t: _ttest(_maps(sex=_replace(SEX, 7, None))),
        MissingMetadataError,
        ("covariate 'sex' is missing", r"sub-07 \((None|nan)\)"),
    ),
    "ttest2-covariate-na-text-among-numbers": BadInput(
        lambda t: _ttest(_maps(age=_replace(AGE, 3, "n/a "))),
        MissingMetadataError,
        ("covariate 'age' is missing", r"sub-03 \('n/a '\)"),
    ),
    "ttest2-covariate-typo-among-numbers": BadInput(
        lambda t: _ttest(_maps(age=_replace(AGE.astype(str), 4, "4o"))),
        MissingMetadataError,
        ("covariate 'age' is stored as text", "11 of 12 values are numbers", r"sub-04 \('4o'\)", "correct them"),
    ),
    "ttest2-covariate-numbers-as-text": BadInput(
        lambda t: _ttest(_maps(age=AGE.astype(str))),
        MissingMetadataError,
        ("covariate 'age' is stored as text", "every value is a number", "12 different values", "store it as numbers"),
    ),
    "ttest2-covariate-level-case-clash": BadInput(
        lambda t: _ttest(_maps(sex=_replace(SEX, 9, "f"))),
        MissingMetadataError,
        ("covariate 'sex'", "differ only in case", r"\['F', 'f'\]", r"sub-09 \('f'\)"),
    ),
    "ttest2-covariate-constant": BadInput(
        lambda t: _ttest(_maps(sex=np.array(["F"] * N, dtype=object))),
        DataValidationError,
        ("covariate 'sex' is constant", "'F' for all 12 subjects", "drop it"),
    ),
    "ttest2-covariate-collinear-with-group": BadInput(
        lambda t: _ttest(_maps(sex=np.where(GROUP == "patient", "M", "F").astype(object))),
        DataValidationError,
        (
            r"covariate 'sex' \(columns \['sex\[M\]'\]\) is collinear with \['group\[patient\]'\]",
            "rank 3 < 4",
            r"patient: \{'M': 6\}; control: \{'F': 6\}",
            "drop 'sex'",
        ),
    ),
    "ttest2-covariates-collinear": BadInput(
        lambda t: _ttest(_maps(bmi=2.0 * AGE + 1.0), covariates=("age", "bmi")),
        DataValidationError,
        ("covariate 'bmi'", r"collinear with \['intercept', 'age'\]", "rank 3 < 4"),
    ),
    "ttest2-no-residual-dof": BadInput(
        lambda t: _ttest(_maps(site=np.array([f"site{i:02d}" for i in range(N)], dtype=object)), covariates=("site",)),
        DataValidationError,
        ("12 subjects", r"\{'control': 6, 'patient': 6\}", "13 regressors", "leave -1 residual degrees of freedom"),
    ),
    "ttest2-covariate-is-group": BadInput(
        lambda t: _ttest(_maps(), covariates=("age", "group")),
        MissingMetadataError,
        (r"covariates \['age', 'group'\]", "none of them 'group'"),
    ),
    # --- subject maps
    "ttest2-all-zero-subject": BadInput(
        lambda t: _ttest(_maps(_with(_values(), 4, 0.0))),
        DataValidationError,
        (r"brainarr\.stats\.ttest2", "sub-04", "zero or non-finite", "every voxel of the mask", "leave them out"),
    ),
    "ttest2-constant-subject": BadInput(
        lambda t: _ttest(_maps(_with(_values(), 6, 3.5))),
        DataValidationError,
        ("sub-06", r"\(3\.5\)", "constant over the mask"),
    ),
    "ttest2-all-nan-subject-lazy": BadInput(
        lambda t: _ttest(_maps(_with(_values(), 2, np.nan), chunks={"subject": 1, "x": 2})).t.compute(),
        DataValidationError,
        (r"brainarr\.stats\.ttest2", "sub-02", "zero or non-finite"),
    ),
    "grf-all-zero-subject-lazy": BadInput(
        lambda t: stats.grf(_ttest(_maps(_with(_values(), 9, 0.0), chunks={"subject": 1})), mask=_mask()),
        DataValidationError,
        (r"brainarr\.stats\.ttest2", "sub-09", "zero or non-finite"),
    ),
    "permutation-all-zero-subject-lazy": BadInput(
        lambda t: stats.permutation(
            _maps(_with(_values(), 1, 0.0), chunks={"subject": 1}), groups=("patient", "control"), n_perm=10
        ).compute(),
        DataValidationError,
        (r"brainarr\.stats\.permutation", "sub-01", "zero or non-finite"),
    ),
    "grf-residuals-without-variance": BadInput(
        lambda t: stats.grf(
            xr.Dataset(
                {"t": make_bold(np.zeros(SHAPE)), "residuals": make_maps(np.zeros((N, *SHAPE)))},
                attrs={"dof": 9, "affine": make_bold(np.zeros(SHAPE)).attrs["affine"]},
            ),
            mask=_mask(),
        ),
        DataValidationError,
        (r"brainarr\.stats\.grf", "smoothness of the residuals could not be estimated", "no variance", "fwhm="),
    ),
    # --- nuisance regression
    "regress-regressors-equal-volumes": BadInput(
        lambda t: preprocess.regress(_bold(20), _confounds(20, 18), detrend=1),
        DataValidationError,
        (
            r"^regress: 20 regressors",
            "18 confound column",
            "an intercept",
            r"detrend=1",
            "for 20 volumes",
            "residuals are all zero",
            "fewer confounds",
        ),
    ),
    "clean-discard-leaves-too-few-volumes": BadInput(
        lambda t: preprocess.clean(_bold(40), _confounds(40, 26), discard=12, filter=None, low=None, high=None),
        DataValidationError,
        (r"^clean: 28 regressors", "26 confound column", "for 28 volumes left after discarding 12", "discard fewer"),
    ),
    "clean-lazy-too-many-regressors": BadInput(
        _lazy_clean,
        DataValidationError,
        (r"^clean: 30 regressors", "28 confound column", "for 30 volumes"),
    ),
    "detrend-order-too-high": BadInput(
        lambda t: preprocess.detrend(_bold(3), order=2),
        DataValidationError,
        (r"^detrend: 3 regressors", r"2 polynomial trend term\(s\)", "for 3 volumes"),
    ),
}


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(case_id, tmp_path):
    check_bad_input(CASES[case_id], tmp_path)


# ----------------------------------------------------------------------------- positive controls


def _reference_t(maps: xr.DataArray, columns: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """t of the first column by numpy least squares, voxel by voxel, on a hand-built design."""
    x = np.column_stack(columns)
    y = np.asarray(maps.values, float).reshape(maps.sizes["subject"], -1)
    ok = mask.ravel() & np.all((y != 0) & np.isfinite(y), axis=0)
    y = np.where(np.isfinite(y), y, 0.0)
    beta, _, _, _ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    dof = x.shape[0] - x.shape[1]
    var = np.linalg.inv(x.T @ x)[0, 0]
    t = beta[0] / np.sqrt((resid**2).sum(0) / dof * var)
    return np.where(ok, t, 0.0).reshape(maps.shape[1:])


def _dummies(values, levels) -> list[np.ndarray]:
    values = np.asarray(values).astype(str)
    return [(values == level).astype(float) for level in levels[1:]]


CONTROLS = {
    # beside wrong-case / missing groups: the study's labels, both orders of the contrast
    "exact-labels": ({}, ("age", "sex"), lambda m: [AGE, *_dummies(SEX, ["F", "M"])]),
    # beside "fewer than 2 subjects": 2 patients are enough
    "two-subjects-in-a-group": (
        {"group": np.array(["patient"] * 2 + ["control"] * (N - 2), dtype=object)},
        ("age",),
        lambda m: [AGE],
    ),
    # beside "text that is numbers": text labels that look like numbers but have few levels
    "numeric-looking-categorical": (
        {"site": np.array(["1", "1", "2", "2"] * (N // 4), dtype=object)},
        ("age", "site"),
        lambda m: [AGE, *_dummies(m.site.values, ["1", "2"])],
    ),
    # beside "collinear": nearly but not exactly collinear covariates
    "nearly-collinear": (
        {"bmi": 2.0 * AGE + 1.0 + np.r_[0.3, -0.2, 0.1, 0.0, 0.4, -0.3, 0.2, -0.1, 0.0, 0.1, -0.4, 0.2]},
        ("age", "bmi"),
        lambda m: [AGE, m.bmi.values],
    ),
    # beside "no residual dof": exactly one residual degree of freedom
    "one-residual-dof": (
        {"site": np.array([f"s{k}" for k in (0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8)], dtype=object)},
        ("age", "site"),
        lambda m: [AGE, *_dummies(m.site.values, sorted(set(m.site.values)))],
    ),
    # beside "constant covariate": a covariate with two values
    "two-valued-covariate": (
        {"handed": np.array(["R"] * (N - 3) + ["L"] * 3, dtype=object)},
        ("handed",),
        lambda m: _dummies(m.handed.values, ["L", "R"]),
    ),
}


@pytest.mark.parametrize("control", list(CONTROLS))
def test_valid_design_matches_least_squares(control):
    coords, covariates, columns = CONTROLS[control]
    maps = _maps(**coords)
    res = _ttest(maps, covariates=covariates).compute()
    group = (np.asarray(maps.group.values) == "patient").astype(float)
    ref = _reference_t(maps, [group, np.ones(N), *columns(maps)], _mask().values)
    assert res.attrs["dof"] == N - 2 - len(columns(maps))
    np.testing.assert_allclose(res.t.values, ref, rtol=1e-9, atol=1e-12)


def test_valid_subject_maps_unchanged_and_lazy():
    """A subject zero in part of the mask is allowed: those voxels drop out, as before."""
    values = _values()
    values[3, 1:3] = 0.0  # zero in part of the mask only
    values[5, 2, 2, 2] = np.nan
    eager = _ttest(_maps(values)).compute()
    with raise_if_dask_computes():
        lazy = _ttest(_maps(values, chunks={"subject": 1, "x": 2}))
    assert lazy.t.chunks == ((2, 2, 1), (6,), (7,))
    out = lazy.compute()
    np.testing.assert_allclose(out.t.values, eager.t.values, rtol=1e-12, atol=1e-14)
    group = (GROUP == "patient").astype(float)
    ref = _reference_t(_maps(values), [group, np.ones(N), AGE, *_dummies(SEX, ["F", "M"])], _mask().values)
    ok = eager.analysed.values
    assert 0 < ok.sum() < _mask().values.sum()
    np.testing.assert_allclose(eager.t.values[ok], ref[ok], rtol=1e-9)


def test_permutation_observed_t_unchanged():
    maps = _maps()
    perm = stats.permutation(maps, groups=("patient", "control"), mask=_mask(), n_perm=10, stat="voxel").compute()
    ref = _ttest(maps).compute()
    np.testing.assert_allclose(perm.t.values, ref.t.values, rtol=1e-9, atol=1e-12)


def test_regressors_one_fewer_than_volumes_allowed():
    """T - 1 regressors leave one residual dimension: allowed, and equal to least squares."""
    bold, conf = _bold(20), _confounds(20, 17)
    out = preprocess.regress(bold, conf, detrend=1).values
    t = np.linspace(-1, 1, 20)
    x = np.column_stack([conf.to_numpy(), np.ones(20), t])
    y = np.asarray(bold.values, float).reshape(-1, 20).T
    ref = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(out.reshape(-1, 20).T, ref, atol=1e-4)
    assert np.abs(ref).max() > 1e-3  # not all zero


@pytest.mark.parametrize(
    "text",
    [
        "[metrics]\ndc_threshold = 0\n",
        "[preprocess]\nband = [0, 0.1]\nconfounds = []\n",
        "[group]\ngroups = ['control', 'patient']\ncovariates = []\n",
        "[metrics]\nsmooth_fwhm = 0.5\nseeds = ['Precentral_L']\n",
    ],
)
def test_valid_config_boundaries(text):
    cfg = StudyConfig.from_toml_string(text)
    assert StudyConfig.from_toml_string(cfg.to_toml()) == cfg
