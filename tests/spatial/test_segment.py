"""Tissue segmentation with warped MNI152 priors: the template itself, a bias field, a known warp."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from brainarr._core.rigid import rigid_matrix
from brainarr.datasets import study_grid
from brainarr.exceptions import DimensionError
from brainarr.spatial import _segment, normalise, segment
from brainarr.spatial._segment import _mrf_cleanup
from brainarr.spatial._templates import mni_template, tissue_priors
from brainarr.testing import dice as _dice
from brainarr.testing import sample_linear as _sample
from brainarr.testing import voxel_centres as _world


def _identity_normalisation(template: xr.DataArray) -> xr.Dataset:
    """A normalisation that maps every MNI point to itself (built by hand, not by normalise)."""
    affine = np.asarray(template.attrs["affine"], float)
    field = _world(affine, template.shape).reshape(*template.shape, 3).astype(np.float32)
    ds = xr.Dataset(
        {
            "deformation": (("x", "y", "z", "component"), field),
            "affine_matrix": (("row", "col"), np.eye(4)),
        }
    )
    ds.attrs["affine"] = affine.tolist()
    return ds


@pytest.fixture(scope="module")
def template():
    return mni_template("t1", 2.0)


@pytest.fixture(scope="module")
def priors():
    return tissue_priors(2.0)


def test_mni_t1_itself(template, priors):
    out = segment(template, normalisation=_identity_normalisation(template))
    assert _dice(out["gm"].values > 0.5, priors["gm"].values > 0.5) >= 0.90
    assert _dice(out["wm"].values > 0.5, priors["wm"].values > 0.5) >= 0.93
    for name in ("gm", "wm", "csf"):
        assert out[name].dtype == np.float32
        assert out[name].dims == ("x", "y", "z")
        assert float(out[name].min()) >= 0.0
        assert float(out[name].max()) <= 1.0
    assert float((out["gm"] + out["wm"] + out["csf"]).max()) <= 1.0 + 1e-5
    np.testing.assert_allclose(out["x"].values, template["x"].values)
    # WM brighter than GM brighter than CSF on a T1
    means = dict(zip(out.attrs["gauss_class"], out.attrs["means"], strict=False))
    assert means["wm"] > means["gm"] > means["csf"]


def test_bias_field_is_corrected():
    template, priors = mni_template("t1", 3.0), tissue_priors(3.0)
    pts = _world(np.asarray(template.attrs["affine"]), template.shape).reshape(*template.shape, 3)
    bias = np.exp(0.25 * pts[..., 0] / 90.0 + 0.12 * pts[..., 1] / 120.0 - 0.2 * (pts[..., 2] / 100.0) ** 2)
    biased = template.copy(data=(template.values * bias).astype(np.float32))
    ident = _identity_normalisation(template)
    plain = segment(biased, normalisation=ident, bias_degree=0, n_iter=15)
    fixed = segment(biased, normalisation=ident, n_iter=15)
    truth = priors["wm"].values > 0.5
    assert _dice(fixed["wm"].values > 0.5, truth) > _dice(plain["wm"].values > 0.5, truth)
    assert _dice(fixed["wm"].values > 0.5, truth) >= 0.93


def test_warped_t1_on_study_grid():
    """A T1 made by a known warp (rigid + 5% zoom + smooth field up to ~7 mm), at 3 mm, normalised at 4 mm.

    The full-size version (1 mm T1, 2 mm normalisation, GM and WM Dice >= 0.90) is in
    ``benchmarks/spatial_anat.py``.
    """
    template = mni_template("t1", 3.0)
    affine = np.asarray(template.attrs["affine"], float)
    matrix = rigid_matrix([4.0, -3.0, 2.0, 0.06, -0.04, 0.08])
    matrix[:3, :3] *= 1.05

    def psi(p):  # T1 world -> MNI world
        disp = np.stack([4.0 * np.sin(p[:, 1] / 25.0), 4.0 * np.cos(p[:, 2] / 30.0), 4.0 * np.sin(p[:, 0] / 20.0)], -1)
        return p @ matrix[:3, :3].T + matrix[:3, 3] + disp

    values = _sample(template.values, affine, psi(_world(affine, template.shape))).reshape(template.shape)
    t1 = xr.DataArray(values.astype(np.float32), dims=("x", "y", "z"), attrs={"affine": affine.tolist()})
    out = segment(t1, normalisation=normalise(t1, voxel_size=4.0, syn_iters=(10, 10, 5)), n_iter=25)

    # truth on the 3 mm study grid: the template maps there, the segmentation pulled from T1 space
    grid = study_grid(3.0)
    mni = _world(np.asarray(grid.attrs["affine"]), grid.shape)
    lin = np.linalg.inv(matrix[:3, :3])
    y = (mni - matrix[:3, 3]) @ lin.T
    for _ in range(60):  # invert psi by fixed-point iteration
        y = y + (mni - psi(y)) @ lin.T
    priors = tissue_priors(3.0)
    for name, floor in (("gm", 0.85), ("wm", 0.90)):
        truth = _sample(priors[name].values, affine, mni) > 0.5
        got = _sample(out[name].values, affine, y) > 0.5
        assert _dice(got, truth) >= floor, (name, _dice(got, truth))


def _mrf_loop(post, work, shape, spacing, beta, n_iter):
    """Mean-field Potts sweeps written voxel by voxel (the reference for the vectorised kernel)."""
    q = np.zeros((4, *shape))
    q[3] = 1.0
    ijk = np.array(np.unravel_index(work, shape)).T
    for n, (i, j, k) in enumerate(ijk):
        q[:, i, j, k] = post[:, n]
    for _ in range(n_iter):
        new = q.copy()
        for n, (i, j, k) in enumerate(ijk):
            field = np.log(np.maximum(post[:, n], 1e-12))
            for axis in range(3):
                for step in (-1, 1):
                    nb = [i, j, k]
                    nb[axis] += step
                    if 0 <= nb[axis] < shape[axis]:
                        field = field + beta / spacing[axis] * q[:, nb[0], nb[1], nb[2]]
            p = np.exp(field - field.max())
            new[:, i, j, k] = p / p.sum()
        q = new
    return np.stack([q[:, i, j, k] for i, j, k in ijk], axis=1)


def test_mrf_kernel_matches_voxel_loop():
    rng = np.random.default_rng(0)
    shape = (6, 5, 4)
    work = np.sort(rng.choice(np.prod(shape), size=70, replace=False))
    post = rng.dirichlet(np.ones(4), size=work.size).T
    spacing = np.array([1.0, 2.0, 1.5])
    got = _mrf_cleanup(post, work, shape, spacing, beta=0.8, n_iter=3)
    np.testing.assert_allclose(got, _mrf_loop(post, work, shape, spacing, 0.8, 3), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-5)


def test_mrf_removes_noise():
    """Strong noise: the Potts clean-up must raise the Dice of GM and WM well above the plain mixture's."""
    template, priors = mni_template("t1", 3.0), tissue_priors(3.0)
    noisy = template.values + 0.12 * np.random.default_rng(1).standard_normal(template.shape) * (template.values > 0)
    noisy = template.copy(data=noisy.astype(np.float32))
    ident = _identity_normalisation(template)
    plain = segment(noisy, normalisation=ident, mrf=0.0, n_iter=10)
    clean = segment(noisy, normalisation=ident, n_iter=10)
    assert clean.attrs["mrf"] > 0
    for name in ("gm", "wm"):
        truth = priors[name].values > 0.5
        before, after = _dice(plain[name].values > 0.5, truth), _dice(clean[name].values > 0.5, truth)
        assert after > before + 0.02, (name, before, after)


def test_normalisation_computed_when_not_given(monkeypatch):
    """Without a normalisation, segment runs normalise itself (here made cheap: a 6 mm affine-only fit)."""
    template = mni_template("t1", 4.0)
    calls = []

    def cheap(t1):
        calls.append(t1.shape)
        return normalise(t1, voxel_size=6.0, nonlinear=False, affine_iters=(30,))

    monkeypatch.setattr(_segment, "normalise", cheap)
    out = segment(template, n_iter=10)
    assert calls == [template.shape]
    truth = tissue_priors(4.0)["wm"].values > 0.5
    assert _dice(out["wm"].values > 0.5, truth) >= 0.85


def test_bad_inputs(template):
    with pytest.raises(ValueError, match="n_gauss"):
        segment(template, normalisation=_identity_normalisation(template), n_gauss=(1, 1, 1))
    with pytest.raises(ValueError, match="mrf"):
        segment(template, normalisation=_identity_normalisation(template), mrf=-1.0)
    four_d = xr.DataArray(np.zeros((5, 6, 7, 2), np.float32), dims=("x", "y", "z", "time"))
    four_d.attrs["affine"] = np.eye(4).tolist()
    with pytest.raises(DimensionError, match="t1"):
        segment(four_d, normalisation=_identity_normalisation(template))
