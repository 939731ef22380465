"""Tests for brainarr.preprocess.smooth."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from brainarr import preprocess as pp
from brainarr.testing import make_affine, make_bold, raise_if_dask_computes

SHAPE = (11, 12, 13)


def sigma_vox(fwhm, vox):
    # independent conversion: FWHM = 2 sqrt(2 ln 2) sigma
    return np.asarray(fwhm, float) / (2 * np.sqrt(2 * np.log(2))) / np.asarray(vox, float)


@pytest.fixture
def vol(rng):
    return rng.standard_normal(SHAPE).astype(np.float64)


class TestSmooth:
    @pytest.mark.parametrize(
        "chunks",
        [
            None,
            {"x": 6, "y": 5, "z": 7},
            {"x": (3, 8), "y": (2, 5, 5), "z": (10, 3)},
            {"x": 1, "y": 2},  # chunks thinner than the halo
        ],
    )
    def test_matches_scipy_on_whole_array(self, vol, chunks):
        img = make_bold(vol)
        if chunks is not None:
            img = img.chunk(chunks)
        with raise_if_dask_computes():
            out = pp.smooth(img, 6.0)
        assert dask.is_dask_collection(out.data) == (chunks is not None)
        ref = ndi.gaussian_filter(vol, sigma_vox(6.0, 3.0), mode="reflect", truncate=4.0)
        np.testing.assert_allclose(out.values, ref, rtol=1e-10, atol=1e-12)

    def test_anisotropic_voxels_and_fwhm(self, vol):
        affine = make_affine((2.0, 3.0, 4.0))
        img = make_bold(vol, affine=affine).chunk({"x": 4, "y": 7, "z": 5})
        out = pp.smooth(img, (8.0, 6.0, 10.0), truncate=3.0)
        ref = ndi.gaussian_filter(vol, sigma_vox((8.0, 6.0, 10.0), (2.0, 3.0, 4.0)), truncate=3.0)
        np.testing.assert_allclose(out.values, ref, rtol=1e-10, atol=1e-12)
        assert out.attrs["fwhm"] == [8.0, 6.0, 10.0]

    def test_leading_dims_subject_seed(self, rng):
        data = rng.standard_normal((2, 3, *SHAPE))
        base = make_bold(data[0, 0])
        img = xr.DataArray(
            data,
            dims=("subject", "seed", "x", "y", "z"),
            coords={"subject": ["s1", "s2"], "seed": ["a", "b", "c"], **{d: base[d] for d in "xyz"}},
            attrs=base.attrs,
        ).chunk({"subject": 1, "seed": 2, "x": 5, "z": (6, 7)})
        with raise_if_dask_computes():
            out = pp.smooth(img, 5.0)
        assert out.dims == img.dims
        sig = sigma_vox(5.0, 3.0)
        for i in range(2):
            for j in range(3):
                np.testing.assert_allclose(out.values[i, j], ndi.gaussian_filter(data[i, j], sig), atol=1e-12)

    def test_4d_smooths_each_volume_only_in_space(self, rng):
        data = rng.standard_normal((*SHAPE, 5)).astype(np.float32)
        img = make_bold(data).chunk({"x": 4, "time": 2})
        out = pp.smooth(img, 4.0)
        assert out.dtype == np.float32
        assert out.chunks[3] == (2, 2, 1)
        sig = sigma_vox(4.0, 3.0)
        for t in range(5):
            ref = ndi.gaussian_filter(data[..., t].astype(np.float64), sig)
            np.testing.assert_allclose(out.values[..., t], ref, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("chunks", [None, {"x": 5, "y": 7}, {"x": (2, 9), "z": 4}])
    def test_mask_normalised_convolution(self, vol, chunks):
        img = make_bold(vol)
        maskv = np.zeros(SHAPE, bool)
        maskv[2:9, 1:10, 3:12] = True
        maskv[4, 4, 4] = False
        mask = make_bold(maskv, name="mask")
        if chunks is not None:
            img = img.chunk(chunks)
        out = pp.smooth(img, 6.0, mask=mask)
        sig = sigma_vox(6.0, 3.0)
        w = maskv.astype(float)
        num = ndi.gaussian_filter(vol * w, sig)
        den = ndi.gaussian_filter(w, sig)
        ref = np.where(maskv, num / den, 0.0)
        np.testing.assert_allclose(out.values, ref, rtol=1e-10, atol=1e-12)
        assert np.all(out.values[~maskv] == 0)

    @pytest.mark.parametrize("mask_chunks", [None, {"x": 4}])
    def test_mask_thin_chunks_lazy(self, vol, mask_chunks):
        # chunks thinner than the halo, a dask or numpy mask: lazy, and equal to scipy
        maskv = np.zeros(SHAPE, bool)
        maskv[1:10, 2:11, 2:12] = True
        mask = make_bold(maskv, name="mask")
        if mask_chunks is not None:
            mask = mask.chunk(mask_chunks)
        img = make_bold(vol).chunk({"x": 1, "y": (2, 10), "z": 3})
        with raise_if_dask_computes():
            out = pp.smooth(img, 6.0, mask=mask)
        assert dask.is_dask_collection(out.data)
        sig = sigma_vox(6.0, 3.0)
        w = maskv.astype(float)
        ref = np.where(maskv, ndi.gaussian_filter(vol * w, sig) / ndi.gaussian_filter(w, sig), 0.0)
        np.testing.assert_allclose(out.values, ref, rtol=1e-10, atol=1e-12)

    def test_kernel_longer_than_an_axis(self, vol):
        # 40 mm at 3 mm voxels: a halo of 23 voxels, more than every axis
        img = make_bold(vol).chunk({"x": 4, "y": 5, "z": 6})
        with raise_if_dask_computes():
            out = pp.smooth(img, 40.0)
        assert out.chunks == ((11,), (12,), (13,))
        ref = ndi.gaussian_filter(vol, sigma_vox(40.0, 3.0))
        np.testing.assert_allclose(out.values, ref, rtol=1e-10, atol=1e-12)

    def test_mask_constant_inside_stays_constant(self):
        maskv = np.zeros(SHAPE, bool)
        maskv[3:8, 2:9, 4:10] = True
        img = make_bold(np.where(maskv, 5.0, 100.0)).chunk({"x": 4})
        out = pp.smooth(img, 8.0, mask=make_bold(maskv))
        # outside values do not leak in: normalised convolution of a constant is the constant
        np.testing.assert_allclose(out.values[maskv], 5.0, rtol=1e-12)

    def test_metadata(self, vol):
        img = make_bold(vol, name="alff")
        img.attrs["units"] = "1"
        img.attrs["history"] = "earlier step"
        out = pp.smooth(img, 6)
        assert out.name == "alff"
        assert out.attrs["units"] == "1"
        assert out.attrs["affine"] == img.attrs["affine"]
        assert out.attrs["fwhm"] == 6.0
        lines = out.attrs["history"].splitlines()
        assert lines[0] == "earlier step"
        assert "brainarr.preprocess.smooth(fwhm=6" in lines[1]
        xr.testing.assert_equal(out.x, img.x)

    def test_integer_input_becomes_float(self):
        img = make_bold(np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3)
        out = pp.smooth(img, 6)
        assert out.dtype == np.float64

    @pytest.mark.parametrize("fwhm", [0, -2.0, (6, 0, 6), np.nan])
    def test_fwhm_must_be_positive(self, vol, fwhm):
        with pytest.raises(ValueError, match=r"fwhm must be > 0 mm"):
            pp.smooth(make_bold(vol), fwhm)

    def test_fwhm_wrong_length(self, vol):
        with pytest.raises(ValueError, match=r"one number or three"):
            pp.smooth(make_bold(vol), (6, 6))

    def test_missing_spatial_dim(self, vol):
        da = xr.DataArray(vol, dims=("a", "b", "c"))
        with pytest.raises(TypeError, match=r"expected \('x', 'y', 'z'\)"):
            pp.smooth(da, 6)

    def test_mask_on_other_grid(self, vol):
        mask = make_bold(np.ones((11, 12, 14), bool))
        with pytest.raises(ValueError, match=r"z has 13 vs 14 voxels"):
            pp.smooth(make_bold(vol), 6, mask=mask)


@st.composite
def chunkings(draw, shape=SHAPE):
    """Random (possibly uneven) chunk sizes along each spatial axis."""
    out = {}
    for dim, size in zip("xyz", shape, strict=True):
        sizes = []
        left = size
        while left > 0:
            step = draw(st.integers(1, left))
            sizes.append(step)
            left -= step
        out[dim] = tuple(sizes)
    return out


@settings(max_examples=15, deadline=None)
@given(chunks=chunkings(), fwhm=st.floats(2.0, 12.0))
def test_smooth_any_chunking_equals_scipy(chunks, fwhm):
    vol = np.random.default_rng(3).standard_normal(SHAPE)
    out = pp.smooth(make_bold(vol).chunk(chunks), fwhm).values
    ref = ndi.gaussian_filter(vol, sigma_vox(fwhm, 3.0))
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
