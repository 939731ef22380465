"""Tests for framewise displacement and motion QC."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from scipy.spatial.transform import Rotation

from brainarr import preprocess as pp
from brainarr.testing import raise_if_dask_computes

NAMES = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def fd_loop(params, radius=50.0):
    """Power FD with explicit loops."""
    out = [0.0]
    for t in range(1, len(params)):
        total = 0.0
        for j in range(6):
            delta = abs(params[t][j] - params[t - 1][j])
            total += delta if j < 3 else radius * delta
        out.append(total)
    return np.array(out)


@pytest.fixture
def motion(rng):
    values = np.cumsum(rng.standard_normal((3, 30, 6)) * [0.2, 0.2, 0.2, 0.01, 0.01, 0.01], axis=1)
    return xr.DataArray(
        values,
        dims=("subject", "time", "confound"),
        coords={
            "subject": ["s1", "s2", "s3"],
            "confound": NAMES,
            "units": ("confound", ["mm"] * 3 + ["rad"] * 3),
        },
    )


class TestFramewiseDisplacement:
    @pytest.mark.parametrize("chunks", [None, {"subject": 1}, {"subject": (2, 1), "time": (7, 23)}])
    def test_against_loop(self, motion, chunks):
        m = motion if chunks is None else motion.chunk(chunks)
        with raise_if_dask_computes():
            fd = pp.framewise_displacement(m)
        assert dask.is_dask_collection(fd.data) == (chunks is not None)
        assert fd.dims == ("subject", "time")
        for s in range(3):
            np.testing.assert_allclose(fd.values[s], fd_loop(motion.values[s]), rtol=1e-12)
        assert fd.attrs["units"] == "mm"
        assert fd.name == "framewise_displacement"
        assert "brainarr.preprocess.framewise_displacement(radius=None, method='power')" in fd.attrs["history"]
        assert fd.attrs["radius_mm"] == 50.0

    def test_radius(self, motion):
        fd = pp.framewise_displacement(motion.isel(subject=0), radius=80.0)
        np.testing.assert_allclose(fd.values, fd_loop(motion.values[0], 80.0), rtol=1e-12)

    def test_one_rotation_step(self):
        values = np.zeros((3, 6))
        values[1, 3] = 0.02  # 0.02 rad about x
        values[2, 3] = 0.02
        values[2, 0] = 1.5
        fd = pp.framewise_displacement(xr.DataArray(values, dims=("time", "confound")))
        np.testing.assert_allclose(fd.values, [0.0, 1.0, 1.5])

    def test_bad_radius(self, motion):
        with pytest.raises(ValueError, match=r"radius must be a positive number of mm, got -1"):
            pp.framewise_displacement(motion, radius=-1)


def spm_affine(params):
    """SPM spm_matrix convention via scipy: R = Rx(-pitch) Ry(roll) Rz(-yaw), then translate."""
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("XYZ", [-params[3], params[4], -params[5]]).as_matrix()
    affine[:3, 3] = params[:3]
    return affine


class TestJenkinson:
    def test_against_monte_carlo_over_sphere(self, motion):
        params = motion.values[0, :6]
        fd = pp.framewise_displacement(motion.isel(subject=0, time=slice(0, 6)), method="jenkinson")
        assert fd.attrs["radius_mm"] == 80.0
        # RMS displacement of points uniformly distributed in an 80 mm ball
        rng = np.random.default_rng(1)
        pts = rng.standard_normal((200_000, 3))
        pts *= (80.0 * rng.random(200_000) ** (1 / 3) / np.linalg.norm(pts, axis=1))[:, None]
        pts_h = np.column_stack([pts, np.ones(len(pts))])
        assert fd.values[0] == 0
        for t in range(1, 6):
            moved_prev = pts_h @ spm_affine(params[t - 1]).T
            moved_now = pts_h @ spm_affine(params[t]).T
            rms = np.sqrt(np.mean(np.sum((moved_now - moved_prev)[:, :3] ** 2, axis=1)))
            # the displacement is measured for points in the previous volume's space
            np.testing.assert_allclose(fd.values[t], rms, rtol=0.02)

    def test_pure_translation_equals_distance(self):
        values = np.zeros((3, 6))
        values[1, :3] = [3.0, 4.0, 0.0]
        values[2, :3] = [3.0, 4.0, 1.0]
        da = xr.DataArray(values, dims=("time", "confound"))
        fd = pp.framewise_displacement(da, method="jenkinson")
        np.testing.assert_allclose(fd.values, [0.0, 5.0, 1.0], atol=1e-12)

    def test_lazy_subject_dim(self, motion):
        eager = pp.framewise_displacement(motion, method="jenkinson")
        with raise_if_dask_computes():
            lazy = pp.framewise_displacement(motion.chunk({"subject": 1, "time": 10}), method="jenkinson")
        assert dask.is_dask_collection(lazy.data)
        np.testing.assert_allclose(lazy.values, eager.values, rtol=1e-12)

    def test_bad_method(self, motion):
        with pytest.raises(ValueError, match=r"method must be 'power' or 'jenkinson', got 'fsl'"):
            pp.framewise_displacement(motion, method="fsl")


class TestMotionQC:
    def test_values_and_rule(self, motion):
        values = motion.values.copy()
        values[0, 5, 1] = -3.5  # subject 1: translation above 3 mm
        values[1] = np.clip(values[1], -0.05, 0.05)
        values[1, :, 0] = 0.0
        values[1, 3, 0] = 3.0  # exactly 3 mm: not excluded (rule is strictly greater)
        values[2] = np.clip(values[2], -0.05, 0.05)
        values[2, 10, 4] = np.deg2rad(3.2)  # subject 3: rotation above 3 degrees
        m = motion.copy(data=values).chunk({"subject": 1})
        with raise_if_dask_computes():
            qc = pp.motion_qc(m)
        assert isinstance(qc, xr.Dataset)
        assert set(qc.data_vars) == {"mean_fd", "max_translation", "max_rotation", "excluded"}
        for s in range(3):
            np.testing.assert_allclose(qc.mean_fd.values[s], fd_loop(values[s]).mean(), rtol=1e-12)
            np.testing.assert_allclose(qc.max_translation.values[s], np.abs(values[s, :, :3]).max())
            np.testing.assert_allclose(qc.max_rotation.values[s], np.degrees(np.abs(values[s, :, 3:]).max()))
        assert qc.excluded.values.tolist() == [True, False, True]
        assert qc.max_rotation.attrs["units"] == "degree"
        assert qc.mean_fd.attrs["units"] == "mm"
        assert "history" in qc.excluded.attrs

    def test_thresholds_and_assign_to_cohort(self, motion):
        qc = pp.motion_qc(motion, max_translation=100.0, max_rotation=100.0)
        assert not qc.excluded.values.any()
        cohort = xr.Dataset({"x": ("subject", np.arange(3.0))}, coords={"subject": ["s1", "s2", "s3"]})
        cohort = cohort.assign_coords(mean_fd=qc["mean_fd"], excluded=qc["excluded"])
        assert cohort.sel(subject=~cohort.excluded).sizes["subject"] == 3
