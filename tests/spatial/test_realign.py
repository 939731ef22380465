"""Tests of brainarr.spatial.realign / reslice on real EPI volumes with injected rigid motion."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from brainarr._core.confounds import MOTION_PARAMS
from brainarr._core.rigid import rigid_matrix, rigid_params
from brainarr.exceptions import DataValidationError, DimensionError
from brainarr.io import load_nifti
from brainarr.spatial import realign, resample, reslice
from brainarr.testing import raise_if_dask_computes

pytestmark = pytest.mark.filterwarnings("ignore::brainarr.exceptions.ObliqueAffineWarning")

DATA = Path(__file__).resolve().parents[1] / "data" / "rapidtide" / "sub-RAPIDTIDETEST_first4.nii.gz"
DEG = np.pi / 180

#: Injected motion (mm, degrees): a drift and sudden jumps up to 3 mm / 3 degrees.
INJECTED = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.2, -0.8, 0.6, 1.0, -0.7, 0.5],
        [-3.0, 2.5, -1.5, -2.0, 3.0, -2.5],
        [2.0, 3.0, 1.0, 3.0, -1.0, 2.0],
    ]
)


@pytest.fixture(scope="module")
def run():
    """The real run with the 3 lowest and 3 highest slices set to 0.

    The brain fills the scanner's field of view in z; motion injected by resampling would
    bring zeros into it at the slab edges (no real tissue exists beyond them), which biases
    any realignment by up to 0.4 mm. With a margin the injected motion keeps the whole object
    inside the field of view.
    """
    bold = load_nifti(DATA).load()
    vals = bold.values.copy()
    vals[:, :, :3] = 0.0
    vals[:, :, -3:] = 0.0
    return bold.copy(data=vals)


def _inject(bold, params):
    """Volume t resampled so that its aligned matrix becomes ``rigid_matrix(params[t]) @ affine``."""
    mats = rigid_matrix(params)
    vols = [resample(bold.isel(time=t), transform=mats[t], order=5).values for t in range(bold.sizes["time"])]
    return bold.copy(data=np.stack(vols, axis=-1))


def _as_params(motion_deg):
    return motion_deg * np.array([1, 1, 1, DEG, DEG, DEG])


@pytest.fixture(scope="module")
def intrinsic(run):
    """Motion already in the four real volumes (a few hundredths of a mm)."""
    return realign(run)


def test_recovers_injected_motion(run, intrinsic):
    true = _as_params(INJECTED)
    out = realign(_inject(run, true))
    # the object's own motion composes with the injected one: M_t = I_t @ R_t @ affine
    own = intrinsic["matrices"].values @ np.linalg.inv(run.attrs["affine"])
    expected = rigid_params(own @ rigid_matrix(true))
    err = (out["motion"].values - expected) / np.array([1, 1, 1, DEG, DEG, DEG])
    assert np.all(np.sqrt(np.mean(err[1:] ** 2, axis=0)) <= 0.05), err
    assert np.abs(err).max() <= 0.15, err
    # displacement of brain voxels (mm)
    aff = np.asarray(run.attrs["affine"])
    brain = np.argwhere(run.isel(time=0).values > 0.3 * run.isel(time=0).values.max())
    vox = np.c_[brain, np.ones(len(brain))].T
    est = out["matrices"].values @ vox
    ref = (own @ rigid_matrix(true) @ aff) @ vox
    disp = np.linalg.norm((est - ref)[:, :3], axis=1)
    assert np.sqrt(np.mean(disp**2)) < 0.1


def test_spm_convention(run, intrinsic):
    out = realign(_inject(run, _as_params(INJECTED)))
    aff = np.asarray(run.attrs["affine"])
    assert abs(aff[0, 1]) > 0.1  # the affine is oblique
    np.testing.assert_array_equal(out["motion"].values[0], 0.0)
    np.testing.assert_array_equal(out["matrices"].values[0], aff)
    np.testing.assert_allclose(out["matrices"].values, rigid_matrix(out["motion"].values) @ aff, atol=1e-12)
    assert list(out["confound"].values) == list(MOTION_PARAMS)
    assert out["motion"].dtype == np.float64 and out["motion"].dims == ("time", "confound")
    assert out["mean"].dims == ("x", "y", "z") and out.attrs["tr"] == 1.5
    # sign: a +2 mm shift along world x of the object is reported as +2 mm
    shifted = realign(_inject(run, np.array([[0, 0, 0, 0, 0, 0]] * 2 + [[2.0, 0, 0, 0, 0, 0]] * 2)))
    assert abs(shifted["motion"].values[3, 0] - 2.0 - intrinsic["motion"].values[3, 0]) < 0.05


def test_zero_motion(run, intrinsic):
    same = run.copy(data=np.repeat(run.values[..., :1], 4, axis=-1))
    out = realign(same)
    np.testing.assert_allclose(out["motion"].values, 0.0, atol=1e-6)
    assert np.abs(intrinsic["motion"].values[:, :3]).max() < 0.2  # the real volumes barely move


def test_mean_and_reslice(run):
    true = _as_params(INJECTED)
    moved = _inject(run, true)
    out = realign(moved)
    lazy = moved.copy(data=da.from_array(moved.values, chunks=(64, 64, 29, 3)))
    with raise_if_dask_computes():
        res = reslice(lazy, out)
    assert res.chunks[3] == (3, 1)
    res = res.values
    # a resliced volume lines up with the first one inside the brain
    brain = run.isel(time=0).values > 0.3 * run.isel(time=0).values.max()
    brain[:, :, :6] = brain[:, :, -6:] = False
    corr = np.corrcoef(res[..., 0][brain], res[..., 2][brain])[0, 1]
    raw = np.corrcoef(moved.values[..., 0][brain], moved.values[..., 2][brain])[0, 1]
    assert corr > 0.97 > raw
    mean = out["mean"].values
    assert np.corrcoef(mean[brain], res[..., 0][brain])[0, 1] > 0.98


def test_deterministic(run):
    moved = _inject(run.isel(time=slice(0, 3)), _as_params(INJECTED[:3]))
    a = realign(moved)["motion"].values
    b = realign(moved.copy(data=da.from_array(moved.values, chunks=(64, 64, 29, 1))))["motion"].values
    np.testing.assert_array_equal(a, b)


def test_bad_inputs(run):
    with pytest.raises(DimensionError, match="4-D"):
        realign(run.isel(time=0))
    with pytest.raises(DimensionError, match="at least 2"):
        realign(run.isel(time=slice(0, 1)))
    nan = run.values.copy()
    nan[30, 30, 10, 2] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        realign(run.copy(data=nan))
    with pytest.raises(ValueError, match="quality"):
        realign(run, quality=0)
    with pytest.raises(DimensionError):
        reslice(run, xr.Dataset())


def test_quadratic_value_and_gradient_match_scipy():
    """The one-pass degree-2 sampler equals map_coordinates and its finite differences."""
    from scipy import ndimage

    from brainarr.spatial._realign import _sample_with_gradient
    from brainarr.spatial._resample import spline_coefficients

    rng = np.random.default_rng(3)
    for shape in [(9, 7, 5), (2, 6, 3)]:
        coef = spline_coefficients(rng.normal(size=shape), 2)
        upper = np.asarray(shape)[:, None] - 1.0
        pts = rng.uniform(0.0, 1.0, size=(3, 500)) * upper
        pts[:, :3] = [[0.0, upper[0, 0], 0.5], [0.0, upper[1, 0], 1.5], [0.0, upper[2, 0], 0.5]]  # edges, knots
        value, grad = _sample_with_gradient(coef, pts, 2)
        ref = ndimage.map_coordinates(coef, pts, order=2, mode="mirror", prefilter=False)
        np.testing.assert_allclose(value, ref, atol=1e-12)
        inner = np.all((pts > 1e-4) & (pts < upper - 1e-4), axis=0)
        for axis in range(3):
            step = np.zeros((3, 1))
            step[axis] = 1e-6
            plus = ndimage.map_coordinates(coef, pts + step, order=2, mode="mirror", prefilter=False)
            minus = ndimage.map_coordinates(coef, pts - step, order=2, mode="mirror", prefilter=False)
            np.testing.assert_allclose(grad[inner, axis], ((plus - minus) / 2e-6)[inner], atol=1e-5)
