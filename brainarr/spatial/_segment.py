"""Tissue segmentation of a T1 image (GM, WM, CSF) with spatial priors warped from MNI152 2009.

A simplified form of SPM's unified segmentation (Ashburner & Friston 2005): each voxel's
intensity is modelled as a mixture of Gaussians, a few per tissue class, and the prior
probability of each class in each voxel is the MNI152 2009 tissue map carried into T1 space
through the inverse of the normalisation. The mixture parameters are fitted by expectation-
maximisation (Dempster et al. 1977; Van Leemput et al. 1999), optionally with a smooth
multiplicative bias field modelled as the exponential of a low-order polynomial (Wells et al.
1996). The class posteriors, regularised by a Potts Markov random field over the 6 face
neighbours (mean field; Zhang et al. 2001), are the tissue probability maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from brainarr._core.dims import SPATIAL
from brainarr._core.grid import voxel_size as _voxel_size
from brainarr.spatial._normalise import _inverse_points, normalise
from brainarr.spatial._resample import grid_points, sample_volume, sample_voxels
from brainarr.spatial._templates import _prior_arrays, volume_of

__all__ = ["segment"]

_FUNC = "brainarr.spatial.segment"
_CLASSES = ("gm", "wm", "csf", "background")
_LONG = {"gm": "grey matter probability", "wm": "white matter probability", "csf": "cerebrospinal fluid probability"}


def _mni_of_voxels(normalisation: xr.Dataset, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """MNI coordinates (mm) of every T1 voxel, shape (nx, ny, nz, 3), float32.

    The inverse map is solved on a grid of about 4 mm and interpolated trilinearly (the
    deformation is smooth at that scale).
    """
    step = np.maximum(np.rint(4.0 / _voxel_size(affine)), 1).astype(int)
    axes = [np.arange(0, n - 1 + s, s) for n, s in zip(shape, step, strict=True)]
    coarse_shape = tuple(len(a) for a in axes)
    coarse_affine = affine @ np.diag([*step, 1.0])
    mni = _inverse_points(normalisation, grid_points(coarse_affine, coarse_shape)).reshape(*coarse_shape, 3)
    index = np.indices(shape, dtype=np.float64) / step.reshape(3, 1, 1, 1)
    out = np.empty((*shape, 3), np.float32)
    for k in range(3):
        out[..., k] = sample_voxels(mni[..., k], index, order=1)
    return out


def _warped_priors(mni: np.ndarray, template_size: float) -> np.ndarray:
    """Tissue priors (4, n) sampled at MNI points (n, 3); outside the template: background."""
    stack, affine = _prior_arrays(template_size)
    priors = np.empty((4, mni.shape[0]), np.float32)
    for k in range(4):
        priors[k] = sample_volume(stack[k], affine, mni, order=1, cval=1.0 if k == 3 else 0.0)
    priors = np.clip(priors, 1e-4, None)
    return priors / priors.sum(axis=0, keepdims=True)


def _polynomial_basis(points: np.ndarray, degree: int) -> np.ndarray:
    """Monomials of the centred, scaled coordinates up to total ``degree``, shape (n, m)."""
    p = (points - points.mean(axis=0)) / np.maximum(np.ptp(points, axis=0) / 2.0, 1e-6)
    powers = [(i, j, k) for i in range(degree + 1) for j in range(degree + 1 - i) for k in range(degree + 1 - i - j)]
    return np.stack([p[:, 0] ** i * p[:, 1] ** j * p[:, 2] ** k for i, j, k in powers], axis=1)


class _Mixture:
    """Gaussian mixture with ``n_gauss[c]`` components per class and voxel-wise class priors."""

    def __init__(self, y: np.ndarray, priors: np.ndarray, n_gauss: Sequence[int]):
        self.owner = np.repeat(np.arange(len(n_gauss)), n_gauss)
        self.mean = np.empty(len(self.owner))
        self.var = np.empty(len(self.owner))
        self.weight = np.empty(len(self.owner))
        self.floor = (1e-3 * np.ptp(y)) ** 2 + 1e-12
        for c, n in enumerate(n_gauss):
            w = priors[c] / priors[c].sum()
            m = float(np.sum(w * y))
            v = float(np.sum(w * (y - m) ** 2)) + self.floor
            js = np.flatnonzero(self.owner == c)
            spread = np.linspace(-1.0, 1.0, n) * np.sqrt(v) * 0.5 if n > 1 else np.zeros(1)
            self.mean[js], self.var[js], self.weight[js] = m + spread, v, 1.0 / n

    def responsibilities(self, y: np.ndarray, priors: np.ndarray) -> tuple[np.ndarray, float]:
        """Posterior of each Gaussian (g, n) and the log-likelihood of the data."""
        d = y[None, :] - self.mean[:, None]
        logp = -0.5 * d**2 / self.var[:, None] - 0.5 * np.log(2 * np.pi * self.var[:, None])
        logp += np.log(self.weight[:, None]) + np.log(priors[self.owner])
        top = logp.max(axis=0)
        p = np.exp(logp - top)
        total = p.sum(axis=0)
        return p / total, float(np.sum(np.log(total) + top))

    def update(self, y: np.ndarray, resp: np.ndarray) -> None:
        """M-step: weights within each class, means and variances (Dempster et al. 1977)."""
        mass = resp.sum(axis=1) + 1e-12
        self.mean = resp @ y / mass
        self.var = np.maximum(np.einsum("gn,gn->g", resp, (y[None, :] - self.mean[:, None]) ** 2) / mass, self.floor)
        for c in np.unique(self.owner):
            js = self.owner == c
            self.weight[js] = mass[js] / mass[js].sum()


def _bias_step(y_raw, resp, mix: _Mixture, basis, brain: np.ndarray) -> np.ndarray:
    """Log bias field fitted by weighted least squares (Wells et al. 1996), one value per voxel.

    In the log domain each voxel's residual is ``log y - log(expected intensity)``, with weight
    ``sum_j r_j mu_j**2 / var_j`` (the inverse variance of its log intensity); only brain
    classes enter the fit.
    """
    sel = brain & (y_raw > 0)
    r = resp[:, sel]
    expected = (r * mix.mean[:, None]).sum(axis=0) / np.maximum(r.sum(axis=0), 1e-12)
    weight = (r * (mix.mean**2 / mix.var)[:, None]).sum(axis=0)
    ok = expected > 0
    resid = np.log(y_raw[sel][ok]) - np.log(expected[ok])
    a = basis[sel][ok]
    w = weight[ok]
    lhs = a.T @ (a * w[:, None]) + 1e-6 * np.eye(a.shape[1]) * w.sum()
    coef = np.linalg.solve(lhs, a.T @ (w * resid))
    coef[0] = 0.0  # the overall scale is absorbed by the class means
    return basis @ coef


def _fit(y_raw, priors, *, n_gauss, n_iter, tol, bias_degree, points) -> tuple[np.ndarray, _Mixture, float, int]:
    """EM with optional bias correction; returns class posteriors (4, n), the mixture, log-lik, iterations."""
    basis = _polynomial_basis(points, bias_degree) if bias_degree > 0 else None
    log_bias = np.zeros_like(y_raw)
    y = y_raw.copy()
    mix = _Mixture(y, priors, n_gauss)
    previous = -np.inf
    loglik = -np.inf
    done = 0
    for done in range(1, n_iter + 1):
        resp, loglik = mix.responsibilities(y, priors)
        mix.update(y, resp)
        if basis is not None and done >= 3:
            brain = priors[3] < 0.5
            log_bias = _bias_step(y_raw, resp, mix, basis, brain)
            y = y_raw * np.exp(-log_bias)
        if abs(loglik - previous) < tol * abs(loglik):
            break
        previous = loglik
    resp, loglik = mix.responsibilities(y, priors)
    post = np.zeros((4, y.size))
    np.add.at(post, mix.owner, resp)
    return post, mix, loglik, done


def _neighbour_sum(q: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum over the 6 face neighbours of each voxel of maps ``q`` (c, nx, ny, nz); zero outside."""
    out = np.zeros_like(q)
    for axis, w in enumerate(weights, start=1):
        lo = [slice(None)] * 4
        hi = [slice(None)] * 4
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        out[tuple(hi)] += w * q[tuple(lo)]
        out[tuple(lo)] += w * q[tuple(hi)]
    return out


def _mrf_cleanup(post: np.ndarray, work: np.ndarray, shape, spacing, *, beta: float, n_iter: int) -> np.ndarray:
    """Mean-field estimate of the class posteriors under a Potts prior on the 6-neighbourhood.

    Each sweep sets, for every modelled voxel ``i`` and class ``c``,

        q_c(i)  proportional to  p_c(i) * exp(beta * sum_j w_ij q_c(j)),

    where ``p_c(i)`` is the posterior of the independent-voxel mixture (likelihood times warped
    prior), ``j`` runs over the 6 face neighbours and ``w_ij`` is 1 for a neighbour 1 mm away
    (``1 / distance`` in mm otherwise, so the prior does not depend on the voxel size). The
    update is simultaneous over voxels (Zhang 1992). Voxels outside the model are background.

    Parameters
    ----------
    post : array (4, n)
        Independent-voxel posteriors at the flat indices ``work`` of a grid of ``shape``.
    spacing : array (3,)
        Voxel edges (mm).
    beta : float
        Potts interaction strength per neighbour (dimensionless).
    n_iter : int
        Mean-field sweeps.

    Returns
    -------
    numpy.ndarray (4, n)
        The regularised posteriors.

    References
    ----------
    Zhang J (1992). The mean field theory in EM procedures for Markov random fields. IEEE
    Trans Signal Process 40:2570-2583.
    Zhang Y, Brady M, Smith S (2001). Segmentation of brain MR images through a hidden Markov
    random field model and the expectation-maximization algorithm. IEEE Trans Med Imaging
    20:45-57.
    """
    ijk = np.unravel_index(work, shape)
    lo = [int(a.min()) for a in ijk]
    box = tuple(int(a.max()) - b + 1 for a, b in zip(ijk, lo, strict=True))
    local = np.ravel_multi_index(tuple(a - b for a, b in zip(ijk, lo, strict=True)), box)
    log_data = np.log(np.maximum(post, 1e-12)).astype(np.float32)
    weights = (beta / np.asarray(spacing, float)).astype(np.float32)
    q = np.zeros((post.shape[0], *box), np.float32)
    q[-1] = 1.0
    flat = q.reshape(post.shape[0], -1)
    flat[:, local] = post
    for _ in range(int(n_iter)):
        field = _neighbour_sum(q, weights).reshape(post.shape[0], -1)[:, local]
        field += log_data
        field -= field.max(axis=0, keepdims=True)
        np.exp(field, out=field)
        field /= field.sum(axis=0, keepdims=True)
        flat[:, local] = field
    return flat[:, local].astype(np.float64)


def segment(
    t1: xr.DataArray,
    *,
    normalisation: xr.Dataset | None = None,
    n_iter: int = 50,
    n_gauss: Sequence[int] = (1, 1, 1, 3),
    bias_degree: int = 2,
    tol: float = 1e-6,
    mrf: float = 1.5,
    mrf_iter: int = 10,
) -> xr.Dataset:
    """Grey matter, white matter and CSF probability maps of a T1 image, in its own space.

    Parameters
    ----------
    t1 : xarray.DataArray (x, y, z)
        T1-weighted image with ``attrs["affine"]`` (voxel to world, mm).
    normalisation : xarray.Dataset, optional
        What :func:`normalise` returned for this T1; computed (at 2 mm) when not given. The
        MNI152 2009 tissue priors are carried into T1 space through its inverse.
    n_iter : int, default 50
        Maximum number of EM iterations.
    n_gauss : sequence of 4 int, default (1, 1, 1, 3)
        Gaussians per class: GM, WM, CSF and everything else (non-brain tissue, bone and air
        share three). SPM12 gives CSF two; with a single one the GM/CSF partial-volume
        intensities are not absorbed by a second CSF Gaussian, which measured better on a
        warped MNI152 T1 (GM Dice 0.918 against 0.909 with two, both with ``mrf=1``;
        ``benchmarks/spatial_anat.py``).
    bias_degree : int, default 2
        Total degree of the polynomial modelling the log bias field (0: no correction).
    tol : float, default 1e-6
        Relative change of the log-likelihood below which EM stops.
    mrf : float, default 1.5
        Strength ``beta`` of the Markov random field clean-up (a Potts prior over the 6 face
        neighbours, per neighbour at 1 mm; scaled by ``1 / distance`` in mm); 0 switches it off.
    mrf_iter : int, default 10
        Mean-field sweeps of the clean-up.

    Returns
    -------
    xarray.Dataset (x, y, z) on the grid of ``t1``
        ``gm``, ``wm``, ``csf``: float32 posterior probabilities in [0, 1] (their sum is at
        most 1; the rest is non-brain). attrs: ``affine``, ``loglik``, ``n_iter_done``, the
        fitted ``means`` and ``stds`` of the Gaussians and the class each belongs to.

    Notes
    -----
    Triggers computation (the T1 is read; the maps are 3-D). Voxels whose warped prior of
    being brain is below 0.1% are not modelled and get 0 for all three tissues. After EM, the
    posteriors are regularised by a few mean-field sweeps under a Potts prior (as SPM12's and
    FSL FAST's "MRF" clean-up; Zhang et al. 2001), which removes isolated misclassified voxels
    and partial-volume speckle at the GM/CSF boundary.

    References
    ----------
    Ashburner J, Friston KJ (2005). Unified segmentation. NeuroImage 26:839-851.
    Van Leemput K, Maes F, Vandermeulen D, Suetens P (1999). Automated model-based tissue
    classification of MR images of the brain. IEEE Trans Med Imaging 18:897-908.
    Wells WM, Grimson WEL, Kikinis R, Jolesz FA (1996). Adaptive segmentation of MRI data.
    IEEE Trans Med Imaging 15:429-442.
    Zhang Y, Brady M, Smith S (2001). Segmentation of brain MR images through a hidden Markov
    random field model and the expectation-maximization algorithm. IEEE Trans Med Imaging
    20:45-57.
    Dempster AP, Laird NM, Rubin DB (1977). Maximum likelihood from incomplete data via the EM
    algorithm. J R Stat Soc B 39:1-38.
    """
    n_gauss = tuple(int(n) for n in n_gauss)
    if len(n_gauss) != 4 or min(n_gauss) < 1:
        raise ValueError(f"{_FUNC}: n_gauss must be 4 positive counts (GM, WM, CSF, other), got {n_gauss}")
    if int(n_iter) < 1:
        raise ValueError(f"{_FUNC}: n_iter must be at least 1, got {n_iter}")
    if int(bias_degree) < 0:
        raise ValueError(f"{_FUNC}: bias_degree must be >= 0, got {bias_degree}")
    if not (np.isfinite(mrf) and mrf >= 0) or int(mrf_iter) < 0:
        raise ValueError(f"{_FUNC}: mrf must be a finite strength >= 0 and mrf_iter >= 0, got {mrf}, {mrf_iter}")
    data, affine = volume_of(t1, name="t1", func=_FUNC)
    if normalisation is None:
        normalisation = normalise(t1)
    mni = _mni_of_voxels(normalisation, affine, data.shape).reshape(-1, 3)
    template_size = 1.0 if _voxel_size(affine).min() < 1.5 else 2.0
    priors = _warped_priors(mni, template_size)
    work = np.flatnonzero(priors[3] < 0.999)
    del mni
    if work.size < 100:
        raise ValueError(f"{_FUNC}: the normalisation puts almost no brain inside the T1 box; check the normalisation")
    pts = grid_points(affine, data.shape).reshape(-1, 3)[work] if bias_degree > 0 else None
    post, mix, loglik, done = _fit(
        data.ravel()[work].astype(np.float64),
        priors[:, work].astype(np.float64),
        n_gauss=n_gauss,
        n_iter=int(n_iter),
        tol=float(tol),
        bias_degree=int(bias_degree),
        points=pts,
    )
    if mrf > 0 and int(mrf_iter) > 0:
        post = _mrf_cleanup(post, work, data.shape, _voxel_size(affine), beta=float(mrf), n_iter=int(mrf_iter))
    options = {"bias_degree": int(bias_degree), "mrf": float(mrf), "mrf_iter": int(mrf_iter)}
    return _as_dataset(t1, data.shape, work, post, mix, loglik, done, **options)


def _as_dataset(t1, shape, work, post, mix: _Mixture, loglik: float, done: int, **options) -> xr.Dataset:
    coords = {d: t1[d] for d in SPATIAL if d in t1.coords}
    out = {}
    for k, name in enumerate(_CLASSES[:3]):
        flat = np.zeros(int(np.prod(shape)), np.float32)
        flat[work] = np.clip(post[k], 0.0, 1.0)
        out[name] = xr.DataArray(
            flat.reshape(shape), dims=SPATIAL, coords=coords, attrs={"long_name": _LONG[name], "units": "1"}
        )
    ds = xr.Dataset(out)
    ds.attrs.update(
        {
            "affine": np.asarray(t1.attrs["affine"], float).tolist(),
            "loglik": loglik,
            "n_iter_done": done,
            "means": mix.mean.tolist(),
            "stds": np.sqrt(mix.var).tolist(),
            "gauss_class": [_CLASSES[c] for c in mix.owner],
            **options,
        }
    )
    return ds
