"""Tests for confound models and readers in brainarr.preprocess."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from brainarr import io as bio
from brainarr import preprocess as pp
from brainarr.exceptions import DataValidationError, DimensionError, MissingMetadataError
from brainarr.testing import make_bold, raise_if_dask_computes

NAMES = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


@pytest.fixture
def motion_values(rng):
    return np.cumsum(rng.standard_normal((25, 6)) * [0.1, 0.1, 0.1, 0.002, 0.002, 0.002], axis=0)


def motion_da(values, names=NAMES):
    return xr.DataArray(values, dims=("time", "confound"), coords={"confound": names})


class TestFriston24:
    def test_against_explicit_construction(self, motion_values):
        out = pp.friston24(motion_da(motion_values))
        lag = np.vstack([np.zeros((1, 6)), motion_values[:-1]])
        ref = np.hstack([motion_values, lag, motion_values**2, lag**2])
        np.testing.assert_allclose(out.values, ref, rtol=0, atol=0)
        assert out.dims == ("time", "confound")
        assert out.confound.values[[0, 6, 12, 18, 23]].tolist() == [
            "trans_x",
            "trans_x_lag1",
            "trans_x_power2",
            "trans_x_lag1_power2",
            "rot_z_lag1_power2",
        ]
        assert out.units.values[[0, 3, 9, 12, 21]].tolist() == ["mm", "rad", "rad", "mm^2", "rad^2"]
        assert "brainarr.preprocess.friston24" in out.attrs["history"]

    def test_selects_named_columns_in_any_order(self, motion_values, rng):
        extra = np.column_stack([rng.standard_normal(25), motion_values[:, ::-1]])
        da = motion_da(extra, ["csf", *NAMES[::-1]])
        ref = pp.friston24(motion_da(motion_values))
        np.testing.assert_array_equal(pp.friston24(da).values, ref.values)

    def test_unnamed_six_columns_spm_order(self, motion_values):
        da = xr.DataArray(motion_values, dims=("time", "confound"))
        np.testing.assert_array_equal(pp.friston24(da).values, pp.friston24(motion_da(motion_values)).values)

    def test_subject_dim_lazy(self, motion_values):
        both = np.stack([motion_values, -2 * motion_values])
        da = xr.DataArray(
            both, dims=("subject", "time", "confound"), coords={"subject": ["a", "b"], "confound": NAMES}
        ).chunk({"subject": 1})
        with raise_if_dask_computes():
            out = pp.friston24(da)
        assert dask.is_dask_collection(out.data)
        assert out.dims == ("subject", "time", "confound")
        np.testing.assert_allclose(out.values[1], pp.friston24(motion_da(-2 * motion_values)).values)

    def test_wrong_columns(self, rng):
        da = motion_da(rng.standard_normal((10, 7)), ["a", "b", "c", "d", "e", "f", "g"])
        with pytest.raises(DimensionError, match=r"expected the columns \['trans_x'"):
            pp.friston24(da)


class TestTissueSignals:
    def test_means_over_masks(self, rng):
        data = rng.standard_normal((5, 6, 7, 20)).astype(np.float32)
        bold = make_bold(data)
        wm = np.zeros((5, 6, 7), bool)
        wm[1:3, 2:5, 0:4] = True
        csf = np.zeros((5, 6, 7), bool)
        csf[4, 5, 6] = True
        brain = np.zeros((5, 6, 7), bool)
        brain[:, :3] = True
        for chunks in [None, {"x": 2, "y": (4, 2)}, {"z": 1}]:
            b = bold if chunks is None else bold.chunk(chunks)
            with raise_if_dask_computes():
                out = pp.tissue_signals(b, wm=make_bold(wm), csf=make_bold(csf), global_signal=make_bold(brain))
            assert out.dims == ("time", "confound")
            assert out.confound.values.tolist() == ["white_matter", "csf", "global_signal"]
            ref = np.column_stack([data[m].mean(axis=0) for m in (wm, csf, brain)])
            np.testing.assert_allclose(out.values, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out.time.values, bold.time.values)

    def test_global_true_and_subject_dim(self, rng):
        data = rng.standard_normal((2, 5, 6, 7, 20))
        bold = xr.concat([make_bold(d) for d in data], dim="subject").chunk({"subject": 1, "x": 3})
        out = pp.tissue_signals(bold, global_signal=True)
        assert out.dims == ("subject", "time", "confound")
        np.testing.assert_allclose(out.values[..., 0], data.reshape(2, -1, 20).mean(axis=1), atol=1e-12)

    def test_concatenates_with_friston24(self, rng, motion_values):
        bold = make_bold(rng.standard_normal((5, 6, 7, 25)))
        mask = make_bold(np.ones((5, 6, 7), bool))
        conf = xr.concat(
            [pp.friston24(motion_da(motion_values)), pp.tissue_signals(bold, wm=mask, csf=mask)],
            "confound",
            join="override",
        )
        assert conf.sizes["confound"] == 26

    def test_needs_a_mask(self, rng):
        with pytest.raises(ValueError, match=r"at least one of wm="):
            pp.tissue_signals(make_bold(rng.standard_normal((5, 6, 7, 10))))

    def test_grid_mismatch(self, rng):
        with pytest.raises(ValueError, match=r"bold and white_matter are on different grids"):
            pp.tissue_signals(make_bold(rng.standard_normal((5, 6, 7, 10))), wm=make_bold(np.ones((5, 6, 8), bool)))


TSV = (
    "trans_x\ttrans_y\ttrans_z\trot_x\trot_y\trot_z\ttrans_x_derivative1\twhite_matter\tcsf\n"
    "0.1\t0.2\t0.3\t0.001\t0.002\t0.003\tn/a\t500.5\t800\n"
    "0.15\t0.1\t0.3\t0.001\t0.003\t0.003\t0.05\t501.5\t801\n"
    "0.2\t0.0\t0.35\t0.002\t0.002\t0.004\t0.05\t499.0\t799\n"
)


class TestReaders:
    def test_read_confounds_tsv_defaults(self, tmp_path):
        path = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
        path.write_text(TSV)
        out = bio.read_confounds_tsv(path, tr=2.0)
        assert out.dims == ("time", "confound")
        assert out.confound.values.tolist() == [*NAMES, "white_matter", "csf"]
        np.testing.assert_allclose(out.values[:, 0], [0.1, 0.15, 0.2])
        np.testing.assert_allclose(out.values[:, -2], [500.5, 501.5, 499.0])
        np.testing.assert_allclose(out.time.values, [0.0, 2.0, 4.0])
        assert out.units.values[[0, 3, 6]].tolist() == ["mm", "rad", "arbitrary"]
        assert out.attrs["source"] == str(path)

    def test_derivative_first_row_nan_becomes_zero(self, tmp_path):
        path = tmp_path / "c.tsv"
        path.write_text(TSV)
        out = bio.read_confounds_tsv(path, columns=["trans_x_derivative1", "csf"])
        np.testing.assert_allclose(out.values[:, 0], [0.0, 0.05, 0.05])
        np.testing.assert_array_equal(out.time.values, [0, 1, 2])

    def test_missing_column(self, tmp_path):
        path = tmp_path / "c.tsv"
        path.write_text(TSV)
        with pytest.raises(MissingMetadataError, match=r"c.tsv has no column\(s\) \['global_signal'\]"):
            bio.read_confounds_tsv(path, columns=["csf", "global_signal"])

    def test_nan_elsewhere(self, tmp_path):
        path = tmp_path / "c.tsv"
        path.write_text(TSV.replace("501.5", "n/a"))
        with pytest.raises(DataValidationError, match=r"column 'white_matter' has missing values in rows \[1\]"):
            bio.read_confounds_tsv(path)

    def test_read_spm_motion(self, tmp_path, motion_values):
        path = tmp_path / "rp_sub01.txt"
        np.savetxt(path, motion_values, fmt="%.8e")
        out = bio.read_spm_motion(path, tr=2.5)
        np.testing.assert_allclose(out.values, motion_values, rtol=1e-8)
        assert out.confound.values.tolist() == NAMES
        assert out.units.values.tolist() == ["mm"] * 3 + ["rad"] * 3
        assert out.attrs["tr"] == 2.5
        np.testing.assert_allclose(out.time.values[:2], [0, 2.5])

    def test_read_spm_motion_wrong_columns(self, tmp_path):
        path = tmp_path / "rp_bad.txt"
        np.savetxt(path, np.zeros((4, 5)))
        with pytest.raises(DimensionError, match=r"rp_bad.txt has 5 columns"):
            bio.read_spm_motion(path)

    def test_regress_with_read_confounds(self, tmp_path, rng):
        path = tmp_path / "c.tsv"
        path.write_text(TSV)
        conf = bio.read_confounds_tsv(path, columns=["trans_x"], tr=2.0)
        bold = make_bold(rng.standard_normal((2, 3, 4, 3)))
        out = pp.regress(bold, conf, detrend=None)
        assert out.shape == bold.shape
        # two columns and the intercept for three volumes would fit every series exactly
        two = bio.read_confounds_tsv(path, columns=["trans_x", "csf"], tr=2.0)
        with pytest.raises(DataValidationError, match=r"3 regressors \(2 confound column\(s\), an intercept\)"):
            pp.regress(bold, two, detrend=None)
