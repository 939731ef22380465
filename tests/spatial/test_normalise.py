"""Affine + SyN normalisation to MNI152: a T1 made from the template by a known warp."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from brainarr._core.rigid import rigid_matrix
from brainarr.datasets import study_grid
from brainarr.exceptions import DataValidationError, DimensionError
from brainarr.spatial import normalise
from brainarr.spatial._normalise import deformation_at
from brainarr.spatial._templates import mni_template
from brainarr.testing import sample_linear as _sample
from brainarr.testing import voxel_centres as _world


class KnownWarp:
    """``psi``: T1 world -> MNI world, an affine (rotation, shift, 5% zoom) plus a smooth field up to 8 mm."""

    def __init__(self):
        self.matrix = rigid_matrix([5.0, -4.0, 3.0, 0.08, -0.05, 0.1])
        self.matrix[:3, :3] *= 1.05

    def displacement(self, p):
        return np.stack(
            [5.0 * np.sin(p[:, 1] / 25.0), 4.5 * np.cos(p[:, 2] / 30.0), 4.0 * np.sin(p[:, 0] / 20.0)], axis=-1
        )

    def psi(self, p):
        return p @ self.matrix[:3, :3].T + self.matrix[:3, 3] + self.displacement(p)

    def inverse(self, x, n_iter=60):
        """T1 points y with psi(y) = x (fixed-point iteration; the field is a contraction)."""
        lin = np.linalg.inv(self.matrix[:3, :3])
        y = (x - self.matrix[:3, 3]) @ lin.T
        for _ in range(n_iter):
            y = (x - self.matrix[:3, 3] - self.displacement(y)) @ lin.T
        return y


def make_warped_t1(warp: KnownWarp, voxel: float = 2.0) -> xr.DataArray:
    template = mni_template("t1", voxel)
    affine = np.asarray(template.attrs["affine"], float)
    shape = template.shape
    values = _sample(template.values, affine, warp.psi(_world(affine, shape))).reshape(shape)
    t1 = xr.DataArray(values.astype(np.float32), dims=("x", "y", "z"))
    t1.attrs["affine"] = affine.tolist()
    return t1


@pytest.fixture(scope="module")
def warp():
    return KnownWarp()


@pytest.fixture(scope="module")
def result(warp):
    return normalise(make_warped_t1(warp), voxel_size=4.0)


def test_max_displacement_is_up_to_8mm(warp):
    pts = _world(np.diag([2.0, 2.0, 2.0, 1.0]) + np.c_[np.zeros((4, 3)), [-90, -126, -72, 0]], (91, 109, 91))
    assert 7.0 < np.linalg.norm(warp.displacement(pts), axis=1).max() <= 8.0


def test_deformation_recovered_within_1p5_mm(warp, result):
    mask = mni_template("mask", 4.0).values.ravel() > 0.5
    grid = np.asarray(result.attrs["affine"])
    mni = _world(grid, result["deformation"].shape[:3])[mask]
    truth = warp.inverse(mni)
    np.testing.assert_allclose(warp.psi(truth), mni, atol=1e-6)
    got = result["deformation"].values.reshape(-1, 3)[mask]
    err = np.linalg.norm(got - truth, axis=1)
    assert err.mean() <= 1.5, err.mean()
    # the affine part alone is clearly worse: the nonlinear part matters
    affine_only = mni @ result["affine_matrix"].values[:3, :3].T + result["affine_matrix"].values[:3, 3]
    assert np.linalg.norm(affine_only - truth, axis=1).mean() > 2 * err.mean()


def test_output_layout(result):
    assert result["deformation"].dims == ("x", "y", "z", "component")
    assert result["deformation"].dtype == np.float32
    assert result["affine_matrix"].shape == (4, 4)
    assert result["normalised"].dims == ("x", "y", "z")
    template = mni_template("t1", 4.0)
    np.testing.assert_allclose(result["x"].values, template["x"].values)
    # normalised T1 resembles the template
    a, b = result["normalised"].values.ravel(), template.values.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95


def test_deformation_at_study_grid(result):
    grid = study_grid(3.0)
    pts = _world(np.asarray(grid.attrs["affine"]), grid.shape).reshape(*grid.shape, 3)
    out = deformation_at(result, pts)
    assert out.shape == (*grid.shape, 3)
    # at the template's own voxels it returns the field itself
    tgrid = np.asarray(result.attrs["affine"])
    own = _world(tgrid, result["deformation"].shape[:3])
    np.testing.assert_allclose(deformation_at(result, own), result["deformation"].values.reshape(-1, 3), atol=1e-3)
    # far outside the template box: the affine part alone
    far = np.array([[300.0, -400.0, 250.0]])
    m = result["affine_matrix"].values
    np.testing.assert_allclose(deformation_at(result, far), far @ m[:3, :3].T + m[:3, 3])
    with pytest.raises(DimensionError):
        deformation_at(result, np.zeros((4, 2)))
    with pytest.raises(DataValidationError):
        deformation_at(xr.Dataset(), pts)


def test_bad_inputs():
    flat = xr.DataArray(np.zeros((6, 7, 8), np.float32), dims=("x", "y", "z"), attrs={"affine": np.eye(4).tolist()})
    with pytest.raises(DataValidationError, match="t1"):
        normalise(flat)
    with pytest.raises(ValueError, match="voxel_size"):
        normalise(flat, voxel_size=0)
