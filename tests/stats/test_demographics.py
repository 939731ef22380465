from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import brainarr.stats as bs
from brainarr.exceptions import MissingMetadataError


def _exact_sample(n, mean, sd, rng):
    x = rng.standard_normal(n)
    x = (x - x.mean()) / x.std(ddof=1)
    return mean + sd * x


@pytest.fixture
def study(rng):
    """Subjects with exactly Table 1's counts, means and SDs (31 patients, 33 controls)."""
    n_p, n_c = 31, 33
    group = ["patient"] * n_p + ["control"] * n_c
    sex = ["M"] * 15 + ["F"] * 16 + ["M"] * 9 + ["F"] * 24
    age = np.r_[_exact_sample(n_p, 64.52, 16.40, rng), _exact_sample(n_c, 47.69, 13.45, rng)]
    vas = np.r_[_exact_sample(n_p, 5.26, 1.90, rng), _exact_sample(n_c, 1.06, 2.58, rng)]
    ids = [f"sub-{i:02d}" for i in range(n_p + n_c)]
    return xr.Dataset(
        coords={
            "subject": ids,
            "group": ("subject", group),
            "sex": ("subject", sex),
            "age": ("subject", age),
            "vas": ("subject", vas),
            "excluded": ("subject", np.zeros(n_p + n_c, bool)),
        }
    )


class TestDemographics:
    def test_table1(self, study):
        table = bs.demographics(study, groups=("patient", "control"), variables=["age", "sex", "vas"])
        ref_age = stats.ttest_ind_from_stats(64.52, 16.40, 31, 47.69, 13.45, 33, equal_var=True)
        assert table.loc["age", "p"] == pytest.approx(ref_age.pvalue, rel=1e-9)
        assert table.loc["age", "p"] < 0.001
        assert table.loc["age", "patient"] == "64.52 ± 16.40"
        ref_vas = stats.ttest_ind_from_stats(5.26, 1.90, 31, 1.06, 2.58, 33)
        assert table.loc["vas", "p"] == pytest.approx(ref_vas.pvalue, rel=1e-9)
        men = table.loc["sex = M"]
        assert men["patient"] == "15 (48.4)" and men["control"] == "9 (27.3)"
        assert round(men["p"], 3) == 0.081  # the study's value: Pearson chi-square, no Yates correction
        # independent Pearson chi-square from the 2 x 2 counts
        obs = np.array([[15, 9], [16, 24]], float)
        exp = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
        chi2 = ((obs - exp) ** 2 / exp).sum()
        assert men["statistic"] == pytest.approx(chi2, rel=1e-12)
        assert men["p"] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-12)

    def test_default_variables_and_dataframe_input(self, study):
        table = bs.demographics(study)
        assert "excluded" not in " ".join(table.index) and list(table.columns[:2]) == ["control", "patient"]
        frame = pd.DataFrame({k: study[k].values for k in ("group", "age", "sex")})
        again = bs.demographics(frame, variables=["age", "sex"])
        assert again.loc["age", "p"] == pytest.approx(table.loc["age", "p"])

    def test_markdown(self, study):
        md = bs.demographics_to_markdown(
            bs.demographics(study, groups=("patient", "control"), variables=["age", "sex"])
        )
        lines = md.strip().splitlines()
        assert lines[0] == "| variable | patient (n=31) | control (n=33) | p |"
        assert lines[2] == "| age | 64.52 ± 16.40 | 47.69 ± 13.45 | < 0.001 |"
        assert "| sex = M | 15 (48.4) | 9 (27.3) | 0.081 |" in lines

    def test_errors(self, study):
        with pytest.raises(MissingMetadataError, match="'bmi'"):
            bs.demographics(study, variables=["bmi"])
        with pytest.raises(MissingMetadataError, match="'site'"):
            bs.demographics(study, by="site")
        with pytest.raises(TypeError, match="subject"):
            bs.demographics(xr.Dataset())
