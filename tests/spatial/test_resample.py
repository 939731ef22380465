"""Tests of brainarr.spatial.resample against SPM12 and scipy."""

from __future__ import annotations

import os
import warnings

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from nibabel.affines import from_matvec
from nibabel.eulerangles import euler2mat
from scipy import ndimage

from brainarr._core.rigid import rigid_matrix
from brainarr.exceptions import DimensionError, GridMismatchError, ObliqueAffineWarning
from brainarr.spatial import resample
from brainarr.spatial._resample import grid_points, sample_volume, spline_coefficients
from brainarr.testing import raise_if_dask_computes

pytestmark = pytest.mark.filterwarnings("ignore::brainarr.exceptions.ObliqueAffineWarning")

NIB_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")


def _image(values, affine, **attrs):
    dims = ("x", "y", "z", "time")[: values.ndim]
    return xr.DataArray(values, dims=dims, attrs={"affine": np.asarray(affine).tolist(), **attrs})


def _oblique():
    aff = rigid_matrix([4.0, -7.0, 2.0, 0.2, -0.15, 0.1]) @ np.diag([2.0, 2.5, 3.0, 1.0])
    aff[:3, 3] += [-10.0, -12.0, -9.0]
    return aff


class TestSpmFixture:
    """nibabel's SPM12 fixture: anat_moved.nii resliced trilinearly into functional.nii's space."""

    def test_order1_matches_spm_reslice(self):
        anat = nib.load(os.path.join(NIB_DATA, "anatomical.nii"))
        func = nib.load(os.path.join(NIB_DATA, "functional.nii"))
        spm = np.asarray(nib.load(os.path.join(NIB_DATA, "resampled_anat_moved.nii")).dataobj, dtype=np.float64)
        # make_moved_anat.py: euler2mat(0.1, 0.2, 0.3) and [3, 4, 5] applied to the anatomical affine
        moved = from_matvec(euler2mat(0.1, 0.2, 0.3), [3, 4, 5]) @ anat.affine
        img = _image(np.asarray(anat.dataobj, dtype=np.float32), moved)
        out = resample(img, affine=func.affine, shape=func.shape[:3], order=1).values
        inside = np.isfinite(spm)  # SPM writes NaN outside the field of view
        assert inside.sum() > 900
        diff = np.abs(out[inside] - spm[inside])
        # float32 rounding of values up to ~9000: max 0.0137, mean 8e-4 (relative 2e-6)
        assert diff.max() / np.abs(spm[inside]).max() < 5e-6
        assert diff.mean() < 2e-3
        assert np.all(out[~inside] == 0.0)


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4, 5])
def test_matches_scipy_affine_transform(order, rng):
    vol = rng.normal(size=(9, 11, 10)).astype(np.float64)
    src_aff = _oblique()
    tgt_aff = np.diag([1.7, 1.9, 2.2, 1.0])
    tgt_aff[:3, 3] = [-5.0, -8.0, -6.0]
    transform = rigid_matrix([1.0, -2.0, 0.5, 0.05, 0.03, -0.04])
    shape = (12, 10, 11)
    out = resample(_image(vol, src_aff), affine=tgt_aff, shape=shape, transform=transform, order=order).values
    mat = np.linalg.inv(src_aff) @ transform @ tgt_aff
    expected = ndimage.affine_transform(vol, mat, output_shape=shape, order=order, mode="constant")
    # away from the 0.05-voxel edge band (mirrored as SPM does), identical to scipy
    ijk = (
        np.einsum("ij,...j->i...", mat[:3, :3], np.indices(shape).transpose(1, 2, 3, 0)) + mat[:3, 3, None, None, None]
    )
    far = np.all(
        (ijk < -0.05)
        | ((ijk > 0) & (ijk < np.array(vol.shape)[:, None, None, None] - 1))
        | (ijk > np.array(vol.shape)[:, None, None, None] - 0.95),
        axis=0,
    )
    np.testing.assert_allclose(out[far], expected[far], atol=1e-5)
    assert np.count_nonzero(out) > 100


def test_sample_volume_prefiltered_equals_plain(rng):
    vol = rng.normal(size=(8, 9, 7))
    aff = _oblique()
    pts = grid_points(aff, (8, 9, 7))[1:-1, 1:-1, 1:-1] + rng.normal(scale=0.5, size=(6, 7, 5, 3))
    plain = sample_volume(vol, aff, pts, order=3)
    pre = sample_volume(spline_coefficients(vol, 3), aff, pts, order=3, prefiltered=True)
    np.testing.assert_allclose(plain, pre, atol=1e-12)
    # at the voxel centres an interpolating spline returns the data
    np.testing.assert_allclose(sample_volume(vol, aff, grid_points(aff, vol.shape), order=3), vol, atol=1e-9)


def test_grid_points_oblique():
    aff = _oblique()
    pts = grid_points(aff, (3, 4, 5))
    assert pts.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(pts[2, 3, 4], (aff @ [2, 3, 4, 1])[:3])


def _bold4d(rng, chunks=None):
    vals = rng.normal(size=(7, 8, 9, 12)).astype(np.float32)
    data = da.from_array(vals, chunks=chunks) if chunks else vals
    img = _image(data, _oblique(), tr=2.0)
    return img.assign_coords(time=np.arange(12) * 2.0)


@pytest.mark.parametrize("tchunk", [1, 5, 12])
def test_dask_lazy_and_equal_to_numpy(tchunk, rng):
    mats = rigid_matrix(rng.normal(scale=[1, 1, 1, 0.03, 0.03, 0.03], size=(12, 6)))
    ref = resample(_bold4d(np.random.default_rng(3)), transform=mats, order=3)
    img = _bold4d(np.random.default_rng(3), chunks=(4, 8, 9, tchunk))
    with raise_if_dask_computes():
        out = resample(img, transform=mats, order=3)
    assert out.chunks[3] == img.chunks[3] and out.chunks[:3] == ((7,), (8,), (9,))
    np.testing.assert_array_equal(out.values, ref.values)
    assert out.attrs["tr"] == 2.0 and out.dtype == np.float32
    # per-volume transforms are applied to the right volumes
    one = resample(img.isel(time=7), transform=mats[7], order=3)
    np.testing.assert_allclose(out.isel(time=7).values, one.values, atol=1e-6)


def test_points_deformation_then_transform(rng):
    vol = rng.normal(size=(10, 9, 8))
    img = _image(vol, np.diag([2.0, 2.0, 2.0, 1.0]))
    tgt = np.diag([3.0, 3.0, 3.0, 1.0])
    shape = (5, 4, 4)
    base = grid_points(tgt, shape)
    field = base + rng.normal(scale=0.7, size=base.shape)
    transform = rigid_matrix([0.5, -0.4, 0.3, 0.02, 0.0, -0.03])
    out = resample(img, affine=tgt, shape=shape, points=field, transform=transform, order=1).values
    world = field @ transform[:3, :3].T + transform[:3, 3]
    np.testing.assert_allclose(out, sample_volume(vol, img.attrs["affine"], world, order=1), atol=1e-6)


def test_like_grid_and_errors(rng):
    img = _image(rng.normal(size=(6, 7, 8)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    like = _image(np.zeros((4, 5, 6), np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    like = like.assign_coords(x=np.arange(4) * 3.0, y=np.arange(5) * 3.0, z=np.arange(6) * 3.0)
    out = resample(img, like, order=1)
    assert out.shape == (4, 5, 6)
    np.testing.assert_array_equal(out.x.values, like.x.values)
    with pytest.raises(DimensionError):
        resample(img.expand_dims("w"))
    with pytest.raises(DimensionError, match="time"):
        resample(img, transform=np.repeat(np.eye(4)[None], 3, axis=0))
    with pytest.raises(GridMismatchError):
        resample(_bold4d(rng), transform=np.repeat(np.eye(4)[None], 3, axis=0))
    with pytest.raises(ValueError, match="order"):
        resample(img, order=9)


def test_oblique_target_warns(rng):
    img = _image(rng.normal(size=(6, 7, 8)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ObliqueAffineWarning):
            resample(img, affine=_oblique(), shape=(3, 3, 3))
