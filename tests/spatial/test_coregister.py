"""Rigid NMI coregistration: known injected transforms, real EPI, multimodal contrast."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from nibabel.testing import data_path

from brainarr._core.confounds import MOTION_PARAMS
from brainarr._core.rigid import rigid_matrix
from brainarr.exceptions import DataValidationError, DimensionError, MissingMetadataError
from brainarr.spatial import coregister
from brainarr.spatial._templates import mni_template
from brainarr.testing import epi_like as _epi_like
from brainarr.testing import sample_linear as _sample
from brainarr.testing import voxel_centres as _world

pytestmark = pytest.mark.filterwarnings("ignore::brainarr.exceptions.ObliqueAffineWarning")


def _image(data: np.ndarray, affine: np.ndarray) -> xr.DataArray:
    da = xr.DataArray(np.asarray(data, np.float32), dims=("x", "y", "z"))
    da.attrs["affine"] = np.asarray(affine, float).tolist()
    return da


def _rms(estimated: np.ndarray, truth: np.ndarray, points: np.ndarray) -> float:
    p = np.c_[points, np.ones(len(points))].T
    d = (estimated @ p - truth @ p)[:3]
    return float(np.sqrt((d**2).sum(axis=0).mean()))


@pytest.fixture(scope="module")
def t1_2mm():
    return mni_template("t1", 2.0)


@pytest.fixture(scope="module")
def epi_like():
    """EPI-like contrast synthesised from the tissue maps (CSF bright, WM dark), oblique 3.4 x 3.4 x 3.2 mm."""
    return _epi_like()


@pytest.mark.parametrize(
    "truth",
    [
        [8.0, -6.0, 5.0, 0.12, -0.1, 0.15],  # about 8 mm and 7-9 degrees on every axis
        [-10.0, 4.0, -7.0, -0.17, 0.08, -0.05],  # 10 mm, 10 degrees
    ],
)
def test_epi_like_contrast_to_t1_recovers_rigid_offset(t1_2mm, epi_like, truth):
    vals, grid = epi_like
    moved = rigid_matrix(truth)
    # moving world = moved @ fixed world: the EPI's voxels are relabelled, not resampled
    # the fine level of the default sep=(4, 2) is left to the benchmark (it costs most of the time)
    result = coregister(_image(vals, moved @ grid), t1_2mm, sep=(6.0, 4.0))
    mask = mni_template("mask", 2.0).values.ravel() > 0.5
    pts = _world(np.asarray(t1_2mm.attrs["affine"]), t1_2mm.shape)[mask]
    assert _rms(result["matrix"].values, moved, pts) <= 1.0
    np.testing.assert_allclose(result["matrix"].values, rigid_matrix(result["params"].values))
    assert list(result["params"][result["params"].dims[0]].values) == list(MOTION_PARAMS)
    assert 1.0 < result.attrs["nmi"] < 2.0


def test_real_epi_mean_against_other_contrast_and_grid():
    """nibabel's example4d (real EPI, oblique) against a contrast-inverted 3 mm copy of itself."""
    img = nib.load(f"{data_path}/example4d.nii.gz")
    mean = np.asarray(img.dataobj, np.float32).mean(axis=-1)
    affine = np.asarray(img.affine, float)
    # the fixed image: same anatomy, axis-aligned 3 mm grid, inverted non-linear contrast
    corners = _world(affine @ np.diag([*(np.array(mean.shape) - 1), 1.0]), (2, 2, 2))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    fixed_aff = np.diag([3.0, 3.0, 3.0, 1.0])
    fixed_aff[:3, 3] = lo
    fshape = tuple(int(n) for n in np.floor((hi - lo) / 3.0) + 1)
    fvals = _sample(mean, affine, _world(fixed_aff, fshape)).reshape(fshape)
    top = np.percentile(fvals, 99.5)
    fixed = np.where(fvals > 0, top - np.sqrt(np.clip(fvals, 0, None) * top) * 0.8, 0.0)
    truth = rigid_matrix([6.0, -5.0, 4.0, 0.1, -0.12, 0.08])
    result = coregister(_image(mean, truth @ affine), _image(fixed, fixed_aff), sep=(8.0, 4.0))
    head = fvals.ravel() > np.percentile(fvals[fvals > 0], 30)
    assert _rms(result["matrix"].values, truth, _world(fixed_aff, fshape)[head]) <= 1.0


def test_identity_when_already_aligned(t1_2mm, epi_like):
    vals, grid = epi_like
    result = coregister(_image(vals, grid), t1_2mm, sep=(4.0,))
    mask = mni_template("mask", 2.0).values.ravel() > 0.5
    pts = _world(np.asarray(t1_2mm.attrs["affine"]), t1_2mm.shape)[mask]
    assert _rms(result["matrix"].values, np.eye(4), pts) <= 1.0


def test_bad_inputs(t1_2mm):
    four_d = xr.DataArray(np.random.default_rng(0).random((5, 6, 7, 3)), dims=("x", "y", "z", "time"))
    four_d.attrs["affine"] = np.eye(4).tolist()
    with pytest.raises(DimensionError, match="moving"):
        coregister(four_d, t1_2mm)
    no_affine = xr.DataArray(np.random.default_rng(0).random((5, 6, 7)), dims=("x", "y", "z"))
    with pytest.raises(MissingMetadataError):
        coregister(no_affine, t1_2mm)
    far = _image(np.random.default_rng(0).random((8, 9, 10)), np.diag([2.0, 2.0, 2.0, 1.0]))
    far.attrs["affine"] = (np.array(far.attrs["affine"]) + np.c_[np.zeros((4, 3)), [1000, 0, 0, 0]]).tolist()
    with pytest.raises(DataValidationError, match="overlap"):
        coregister(far, t1_2mm)
    const = _image(np.ones((8, 9, 10)), np.eye(4))
    with pytest.raises(DataValidationError, match="constant"):
        coregister(const, t1_2mm)
    with pytest.raises(ValueError, match="sep"):
        coregister(t1_2mm, t1_2mm, sep=(0.0,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="cost"):
            coregister(t1_2mm, t1_2mm, cost="mse")
