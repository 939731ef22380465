"""Rigid coregistration of two images by normalised mutual information (SPM12 ``spm_coreg``'s approach).

The cost is the normalised mutual information of the joint intensity histogram,

    NMI = (H(a) + H(b)) / H(a, b),

(Studholme, Hill & Hawkes 1999, Pattern Recognition 32:71-86), where ``H`` are the Shannon
entropies of the marginal and joint distributions of the two images' intensities sampled at the
same points. As in SPM12 (Collignon et al. 1995; Ashburner & Friston, *Human Brain Function*,
ch. 2), the images are scaled to 256 grey levels, sampled on a jittered grid every ``sep`` mm
(coarse to fine), the joint histogram is smoothed by a Gaussian of ``fwhm`` bins, and the six
rigid parameters are found by Powell's method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr
from scipy import ndimage, optimize

from brainarr._core.confounds import MOTION_PARAMS
from brainarr._core.dims import CONFOUND
from brainarr._core.grid import voxel_size
from brainarr._core.rigid import rigid_matrix
from brainarr.exceptions import DataValidationError
from brainarr.spatial._resample import EDGE_TOLERANCE, grid_points, sample_voxels, world_to_voxel
from brainarr.spatial._templates import smooth_to, volume_of

__all__ = ["coregister"]

_FUNC = "brainarr.spatial.coregister"
_BINS = 256
#: Powell's initial step along each parameter (mm for translations, rad for rotations).
_STEPS = np.array([1.0, 1.0, 1.0, 0.02, 0.02, 0.02])
#: Default convergence tolerance per parameter (SPM12 spm_coreg's ``tol``; mm and rad).
_TOLERANCE = (0.02, 0.02, 0.02, 0.001, 0.001, 0.001)


def _to_levels(data: np.ndarray) -> np.ndarray:
    """Intensities scaled to [0, 255] between the minimum and the 99.9th percentile (clipped)."""
    lo = float(data.min())
    hi = float(np.percentile(data, 99.9))
    if not hi > lo:
        hi = float(data.max())
    return np.clip((data - lo) * ((_BINS - 1) / (hi - lo)), 0.0, _BINS - 1.0).astype(np.float32)


def _joint_histogram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Joint histogram of grey levels ``a`` (integers) and ``b`` (real; partial-volume binning)."""
    ia = a.astype(np.int64)
    fb = np.floor(b)
    wb = b - fb
    ib = fb.astype(np.int64)
    ib1 = np.minimum(ib + 1, _BINS - 1)
    base = ia * _BINS
    hist = np.bincount(base + ib, weights=1.0 - wb, minlength=_BINS * _BINS)
    hist += np.bincount(base + ib1, weights=wb, minlength=_BINS * _BINS)
    return hist.reshape(_BINS, _BINS)


def _nmi(hist: np.ndarray, fwhm: Sequence[float]) -> float:
    """Normalised mutual information ``(H(a) + H(b)) / H(a, b)`` of a smoothed joint histogram."""
    sigma = np.asarray(fwhm, float) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    h = ndimage.gaussian_filter(hist, sigma, mode="constant") + np.finfo(float).eps
    h /= h.sum()
    pa, pb = h.sum(axis=1), h.sum(axis=0)
    ent_ab = -np.sum(h * np.log2(h))
    ent_a = -np.sum(pa * np.log2(pa))
    ent_b = -np.sum(pb * np.log2(pb))
    return float((ent_a + ent_b) / ent_ab)


class _Level:
    """One sampling level: jittered points of the fixed image and its grey levels there."""

    def __init__(self, fixed, fixed_affine, moving, moving_affine, sep: float, rng: np.random.Generator):
        f_levels = _to_levels(smooth_to(fixed, fixed_affine, sep))
        self.moving = _to_levels(smooth_to(moving, moving_affine, sep))
        self.moving_affine = np.asarray(moving_affine, float)
        step = np.maximum(sep / voxel_size(fixed_affine), 1.0)
        axes = [np.arange(0, n - 1, s) for n, s in zip(fixed.shape, step, strict=True)]
        idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        idx = idx + rng.uniform(0, 1, idx.shape) * np.minimum(step, np.array(fixed.shape) - 1 - idx)
        vals = sample_voxels(f_levels, idx.T, order=1)
        self.points = idx @ fixed_affine[:3, :3].T + fixed_affine[:3, 3]
        self.fixed_levels = np.rint(vals).astype(np.int64)

    def cost(self, params: np.ndarray, fwhm: Sequence[float]) -> float:
        """Negative NMI for parameters ``params`` (moving world = rigid_matrix(params) @ fixed world)."""
        vox = world_to_voxel(self.moving_affine, self.points, rigid_matrix(params))
        shape = np.array(self.moving.shape)[:, None]
        inside = np.all((vox >= -EDGE_TOLERANCE) & (vox <= shape - 1 + EDGE_TOLERANCE), axis=0)
        if inside.sum() < 64:
            return 0.0
        vals = sample_voxels(self.moving, vox[:, inside], order=1)
        return -_nmi(_joint_histogram(self.fixed_levels[inside], vals), fwhm)


def _estimate(
    fixed, fixed_affine, moving, moving_affine, *, sep, fwhm, tolerance, initial, seed=0
) -> tuple[np.ndarray, float]:
    """Powell search of the six rigid parameters, coarse to fine. Returns parameters and NMI."""
    rng = np.random.default_rng(seed)
    params = np.asarray(initial, float).copy()
    tol = np.asarray(tolerance, float)
    value = np.nan
    for i, s in enumerate(sep):
        # coarse levels only need to bring the search near the optimum: a looser tolerance
        xtol = 1.0 if i == len(sep) - 1 else 5.0
        level = _Level(fixed, fixed_affine, moving, moving_affine, float(s), rng)
        # scale parameters so that one unit is one tolerance step: Powell's xtol then applies to all
        res = optimize.minimize(
            lambda q, level=level: level.cost(q * tol, fwhm),
            params / tol,
            method="Powell",
            options={"xtol": xtol, "ftol": 1e-5, "direc": np.diag(_STEPS / tol), "maxfev": 4000},
        )
        params = np.asarray(res.x) * tol
        value = -float(res.fun)
    return params, value


def coregister(
    moving: xr.DataArray,
    fixed: xr.DataArray,
    *,
    cost: Literal["nmi"] = "nmi",
    sep: Sequence[float] = (4.0, 2.0),
    fwhm: Sequence[float] = (7.0, 7.0),
    tolerance: Sequence[float] = _TOLERANCE,
    initial: Sequence[float] | None = None,
) -> xr.Dataset:
    """Rigid registration of one 3-D image to another by normalised mutual information.

    Parameters
    ----------
    moving : xarray.DataArray (x, y, z)
        The image to be moved, e.g. the mean EPI of a run (any voxel size, oblique allowed),
        with ``attrs["affine"]`` (voxel to world, mm).
    fixed : xarray.DataArray (x, y, z)
        The reference, e.g. the subject's T1, with ``attrs["affine"]``.
    cost : {"nmi"}
        Normalised mutual information (Studholme et al. 1999), the default of SPM12.
    sep : sequence of float, default (4, 2)
        Sampling distance (mm) of each coarse-to-fine level. Before sampling at ``s`` mm both
        images are smoothed with a Gaussian of FWHM ``sqrt(s**2 - vox**2)`` mm along each axis.
    fwhm : (float, float), default (7, 7)
        FWHM (bins) of the Gaussian that smooths the 256 x 256 joint histogram.
    tolerance : sequence of 6 float
        Accuracy wanted for each parameter (mm, mm, mm, rad, rad, rad); default SPM12's
        ``(0.02, 0.02, 0.02, 0.001, 0.001, 0.001)``.
    initial : sequence of 6 float, optional
        Starting parameters (same convention as the result); zeros by default (the images'
        own affines are trusted as a starting point).

    Returns
    -------
    xarray.Dataset
        - ``params`` (confound): ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z``
          (rad), in SPM's convention (:func:`brainarr._core.rigid.rigid_matrix`).
        - ``matrix`` (row, col): ``rigid_matrix(params)``, which maps a point of the FIXED
          image's world space (mm) to the corresponding point of the MOVING image's world space:
          ``moving_world = matrix @ fixed_world``. Sampling ``moving`` at
          ``inv(moving_affine) @ matrix @ fixed_affine @ voxel`` therefore resamples it onto
          the fixed grid (the "pull" direction). Equivalently, the corrected voxel-to-world
          affine of ``moving`` (the one that puts it in register with ``fixed``) is
          ``inv(matrix) @ moving_affine``.
        - attrs ``nmi`` (the cost at the optimum, between 1 and 2), ``cost``, ``sep``,
          ``fwhm``, ``tolerance``.

    Notes
    -----
    Triggers computation of both images (small: two 3-D volumes). Points where the moved
    image has no data are left out of the histogram. Rotations are about the world origin,
    as in SPM. A fixed seed jitters the sample points, so the result is reproducible.

    References
    ----------
    Studholme C, Hill DLG, Hawkes DJ (1999). An overlap invariant entropy measure of 3D medical
    image alignment. Pattern Recognition 32:71-86.
    Collignon A et al. (1995). Automated multi-modality image registration based on information
    theory. Information Processing in Medical Imaging, 263-274.
    Press WH et al. (2007). Numerical Recipes, 3rd ed., sec. 10.7 (Powell's method).
    """
    if cost != "nmi":
        raise ValueError(f"{_FUNC}: cost must be 'nmi', got {cost!r}")
    sep = tuple(float(s) for s in sep)
    if not sep or not all(np.isfinite(s) and s > 0 for s in sep):
        raise ValueError(f"{_FUNC}: sep must be positive sampling distances in mm, got {sep}")
    fwhm = tuple(float(f) for f in fwhm)
    if len(fwhm) != 2 or not all(f >= 0 for f in fwhm):
        raise ValueError(f"{_FUNC}: fwhm must be two non-negative widths in bins, got {fwhm}")
    tolerance = tuple(float(t) for t in tolerance)
    if len(tolerance) != 6 or not all(t > 0 for t in tolerance):
        raise ValueError(f"{_FUNC}: tolerance must be 6 positive numbers (mm x3, rad x3), got {tolerance}")
    start = np.zeros(6) if initial is None else np.asarray(initial, float)
    if start.shape != (6,) or not np.all(np.isfinite(start)):
        raise ValueError(f"{_FUNC}: initial must be 6 finite numbers (mm x3, rad x3), got {initial!r}")
    mov, mov_aff = volume_of(moving, name="moving", func=_FUNC)
    fix, fix_aff = volume_of(fixed, name="fixed", func=_FUNC)
    _check_overlap(fix, fix_aff, mov, mov_aff, start)
    params, value = _estimate(fix, fix_aff, mov, mov_aff, sep=sep, fwhm=fwhm, tolerance=tolerance, initial=start)
    return _as_dataset(params, value, sep=sep, fwhm=fwhm, tolerance=tolerance)


def _check_overlap(fix, fix_aff, mov, mov_aff, start) -> None:
    """Raise :class:`DataValidationError` when the images do not overlap at the start."""
    step = max(1, int(np.ceil((fix.size / 4096) ** (1 / 3))))  # a sub-grid: a flat stride could alias to one slice
    pts = grid_points(fix_aff, fix.shape)[::step, ::step, ::step].reshape(-1, 3)
    moved = (rigid_matrix(start) @ np.c_[pts, np.ones(len(pts))].T)[:3].T
    ones = np.ones(len(moved))
    vox = (np.linalg.inv(mov_aff) @ np.c_[moved, ones].T)[:3]
    inside = np.all((vox >= 0) & (vox <= np.array(mov.shape)[:, None] - 1), axis=0)
    if inside.mean() < 0.01:
        raise DataValidationError(
            f"{_FUNC}: moving and fixed images barely overlap in world space ({100 * inside.mean():.1f}% "
            "of the fixed box); check their affines or pass initial=..."
        )


def _as_dataset(params: np.ndarray, value: float, **attrs) -> xr.Dataset:
    matrix = rigid_matrix(params)
    ds = xr.Dataset(
        {
            "params": xr.DataArray(params, dims=(CONFOUND,), coords={CONFOUND: list(MOTION_PARAMS)}),
            "matrix": xr.DataArray(matrix, dims=("row", "col")),
        }
    )
    ds["params"].attrs.update({"units": "mm (trans_*), rad (rot_*)", "convention": "SPM12 spm_matrix"})
    ds["matrix"].attrs.update(
        {"long_name": "fixed world (mm) -> moving world (mm)", "description": "moving_world = matrix @ fixed_world"}
    )
    ds.attrs.update({"cost": "nmi", "nmi": value, **{k: list(v) for k, v in attrs.items()}})
    return ds
