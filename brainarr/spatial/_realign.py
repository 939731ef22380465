"""Head-motion correction: SPM12's rigid-body realignment and reslicing.

:func:`realign` estimates, for every volume of a native 4-D run, the rigid-body transform
that aligns it with the first volume, with the algorithm and defaults of SPM12's
``spm_realign`` (Friston et al. 1995; Ashburner & Friston 2007, "Rigid body registration"):
a least-squares Gauss-Newton fit of six parameters plus an intensity scale, on smoothed
volumes sampled at a subset of points. :func:`reslice` then resamples each volume through
its matrix (lazy). Parameters come out exactly as SPM's ``rp_*.txt``.

References
----------
Friston KJ, Ashburner J, Frith CD, Poline JB, Heather JD, Frackowiak RSJ (1995). Spatial
registration and normalization of images. Hum Brain Mapp 3:165-189.
Ashburner J, Friston KJ (2007). Rigid body registration. In: Statistical Parametric
Mapping: The Analysis of Functional Brain Images, ch. 4. Academic Press.
Unser M (1999). Splines: a perfect fit for signal and image processing. IEEE Signal Process
Mag 16:22-38.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from brainarr._core.attrs import record_history
from brainarr._core.blas import one_blas_thread
from brainarr._core.confounds import MOTION_PARAMS, MOTION_UNITS
from brainarr._core.dims import CONFOUND, SPATIAL, TIME
from brainarr._core.grid import voxel_size
from brainarr._core.rigid import rigid_matrix, rigid_params
from brainarr._core.validation import describe, get_affine
from brainarr.exceptions import DataValidationError, DimensionError, GridMismatchError
from brainarr.spatial._resample import EDGE_TOLERANCE, _clamp_edges, resample, sample_voxels, spline_coefficients

__all__ = ["realign", "reslice"]

#: Gauss-Newton iterations at most per volume and pass (SPM12: 64).
MAX_ITER = 64
#: Relative decrease of the residual mean square below which a fit has converged (SPM12).
TOLERANCE = 1e-8
#: Fewest sampled points that must fall inside a volume's field of view.
MIN_POINTS = 32
#: Volumes per task when the estimation streams through the run.
CHUNK_VOLUMES = 16
#: B-spline degree of the reslice that gives the ``mean`` output (1: trilinear).
MEAN_ORDER = 1
#: Voxels: step of the central differences for the reference's gradient.
_STEP = 1e-3


# --------------------------------------------------------------------------------------------
# numpy kernels
# --------------------------------------------------------------------------------------------
def _smooth_coefficients(volume: np.ndarray, affine: np.ndarray, fwhm: float, interp: int) -> np.ndarray:
    """Gaussian smoothing of ``fwhm`` mm, then B-spline coefficients of degree ``interp``.

    The kernel's sigma in voxels is ``fwhm / sqrt(8 ln 2) / voxel_size`` per axis, truncated at
    6 sigma as SPM12's ``smooth_vol``; outside the field of view counts as 0.
    """
    vol = np.nan_to_num(np.asarray(volume, dtype=np.float64))
    if fwhm > 0:
        sigma = fwhm / np.sqrt(8.0 * np.log(2.0)) / voxel_size(affine)
        vol = ndimage.gaussian_filter(vol, sigma, mode="constant", truncate=6.0)
    return spline_coefficients(vol, interp)


def _quadratic_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights (3, n) of the quadratic B-spline at offsets -1, 0, 1 and their derivatives.

    ``t = x - round(x)`` in ``[-0.5, 0.5)``; with ``beta2(u) = 3/4 - u^2`` for ``|u| < 1/2``
    and ``(|u| - 3/2)^2 / 2`` for ``1/2 <= |u| < 3/2`` (Unser 1999, eq. 9), the weights of the
    coefficients at ``round(x) + k`` are ``beta2(t - k)``: ``(t - 1/2)^2 / 2``,
    ``3/4 - t^2``, ``(t + 1/2)^2 / 2``, and their derivatives in ``x`` are ``t - 1/2``,
    ``-2 t``, ``t + 1/2`` (per voxel).
    """
    weight = np.stack([0.5 * (t - 0.5) ** 2, 0.75 - t * t, 0.5 * (t + 0.5) ** 2])
    slope = np.stack([t - 0.5, -2.0 * t, t + 0.5])
    return weight, slope


def _quadratic_with_gradient(coef: np.ndarray, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value (n,) and exact voxel gradient (n, 3) of a quadratic B-spline at points (3, n).

    The 27 coefficients around each point are read once from the coefficients padded by one
    mirrored voxel (the boundary condition of :func:`scipy.ndimage.map_coordinates`); the
    value and the three derivatives are tensor products of :func:`_quadratic_weights`.
    Points must lie in ``[0, n - 1]`` along each axis (after edge mirroring).
    """
    padded = np.pad(coef, 1, mode="reflect").ravel()
    strides = np.array([(coef.shape[1] + 2) * (coef.shape[2] + 2), coef.shape[2] + 2, 1])
    nearest = np.floor(ijk + 0.5)
    (wx, wy, wz), (dx, dy, dz) = zip(*(_quadratic_weights(ijk[a] - nearest[a]) for a in range(3)), strict=True)
    base = strides @ nearest.astype(np.intp)  # padded index of the coefficient at offset (-1, -1, -1)
    value = np.zeros(ijk.shape[1])
    grad = np.zeros((3, ijk.shape[1]))
    for a in range(3):
        for b in range(3):
            row = base + (a * strides[0] + b * strides[1])
            near = [padded[row + c] for c in range(3)]
            along_z = wz[0] * near[0] + wz[1] * near[1] + wz[2] * near[2]
            slope_z = dz[0] * near[0] + dz[1] * near[1] + dz[2] * near[2]
            wxy = wx[a] * wy[b]
            value += wxy * along_z
            grad[0] += (dx[a] * wy[b]) * along_z
            grad[1] += (wx[a] * dy[b]) * along_z
            grad[2] += wxy * slope_z
    return value, grad.T


def _sample_with_gradient(coef: np.ndarray, ijk: np.ndarray, interp: int) -> tuple[np.ndarray, np.ndarray]:
    """Values (n,) and voxel-space gradient (n, 3) of a B-spline at voxel points ``ijk`` (3, n).

    Points up to :data:`EDGE_TOLERANCE` outside are mirrored inside first. Degree 2 (the
    default) is evaluated exactly in one pass (:func:`_quadratic_with_gradient`); other degrees
    take a central difference of the spline (step 1e-3 voxel), exact for degree 1 away from
    knots and accurate to O(step^2) otherwise.
    """
    ijk = _clamp_edges(np.asarray(ijk, dtype=np.float64), coef.shape)
    if interp == 2 and min(coef.shape) >= 2:
        return _quadratic_with_gradient(coef, ijk)
    value = sample_voxels(coef, ijk, order=interp, prefiltered=True)
    grad = np.empty((ijk.shape[1], 3))
    for axis in range(3):
        plus, minus = ijk.copy(), ijk.copy()
        plus[axis] += _STEP
        minus[axis] -= _STEP
        grad[:, axis] = (
            sample_voxels(coef, plus, order=interp, prefiltered=True)
            - sample_voxels(coef, minus, order=interp, prefiltered=True)
        ) / (2 * _STEP)
    return value, grad


def _transform_points(mat: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``mat @ (x, 1)`` for voxel points ``x`` (3, n)."""
    return mat[:3, :3] @ x + mat[:3, 3:4]


def _design(affine: np.ndarray, x: np.ndarray, grad: np.ndarray, lkp: np.ndarray) -> np.ndarray:
    """Derivatives of the sampled image with respect to the rigid parameters (SPM's ``make_A``).

    For parameter ``k``, moving the points by ``inv(M) inv(R(dp_k)) M x`` changes the image by
    ``grad . dy``; the derivative is taken by a forward difference of 1e-6 (mm or rad) and
    negated (the fitted image is the reference minus the model), shape (n, len(lkp)).
    """
    inv_m = np.linalg.inv(affine)
    out = np.empty((x.shape[1], len(lkp)))
    for col, k in enumerate(lkp):
        params = np.zeros(6)
        params[k] = 1e-6
        moved = _transform_points(inv_m @ np.linalg.inv(rigid_matrix(params)) @ affine, x)
        out[:, col] = np.sum((moved - x) * grad.T, axis=0) / -1e-6
    return out


def _trim_points(design: np.ndarray, b: np.ndarray, quality: float) -> np.ndarray:
    """Indices of the points kept by SPM's quality criterion.

    With ``alpha = [A b]' [A b]``, removing point ``i`` multiplies ``det(alpha)`` by
    ``1 - h_i`` where ``h_i = v_i' alpha^-1 v_i`` (matrix determinant lemma). Repeatedly drop
    the 10 % of points with the smallest ``h_i`` (least information about the parameters)
    until ``det(alpha)`` falls to ``quality`` times its value with every point.
    """
    keep = np.arange(len(b))
    v = np.column_stack([design, b])
    alpha = v.T @ v
    sign0, logdet0 = np.linalg.slogdet(alpha)
    if sign0 <= 0:
        return keep
    logdet = logdet0
    while logdet - logdet0 > np.log(quality) and len(keep) > 10 * MIN_POINTS:
        vk = v[keep]
        leverage = np.einsum("ij,jk,ik->i", vk, np.linalg.inv(alpha), vk)
        order = np.argsort(leverage, kind="stable")
        keep = np.sort(keep[order[round(len(keep) / 10) :]])
        vk = v[keep]
        alpha = vk.T @ vk
        sign, logdet = np.linalg.slogdet(alpha)
        if sign <= 0:
            break
    return keep


@dataclasses.dataclass
class _Target:
    """What volumes are matched to: points, the design matrix and the values there."""

    affine: np.ndarray  # voxel-to-world of the reference grid
    x: np.ndarray  # (3, n) voxel points of the reference
    design: np.ndarray  # (n, p) derivatives, weights applied
    b: np.ndarray  # (n,) reference values, weights applied
    weight: np.ndarray | None  # (n,)
    lkp: np.ndarray  # fitted parameters (indices into the six)

    def __post_init__(self) -> None:
        #: normal matrix ``A'A`` with every point inside the field of view (the usual case)
        self.alpha = self.design.T @ self.design


def _fit_volume(
    coef: np.ndarray, mat: np.ndarray, target: _Target, interp: int, *, label: str
) -> tuple[np.ndarray, float, np.ndarray]:
    """Gauss-Newton fit of one volume (SPM12 ``spm_realign``'s inner loop).

    ``mat`` is the volume's current voxel-to-world matrix; each step samples the volume at
    ``y = inv(mat) @ affine @ x``, scales it to the reference (``sc = sum(b) / sum(F)``),
    solves ``A p = b - sc F`` and updates ``mat <- inv(R(p)) @ mat``, until the residual mean
    square stops decreasing by more than :data:`TOLERANCE` (then two more steps).

    Returns the fitted matrix, the intensity scale and the voxel points ``y`` (3, n).
    """
    shape = coef.shape
    ss = np.inf
    countdown = -1
    sc = 1.0
    for _ in range(MAX_ITER):
        y = _transform_points(np.linalg.inv(mat) @ target.affine, target.x)
        inside = np.all((y >= 0) & (y <= np.asarray(shape)[:, None] - 1), axis=0)
        if inside.sum() < MIN_POINTS:
            raise DataValidationError(
                f"realign: {label} has too few sampled points left inside its field of view "
                f"({int(inside.sum())}); the motion is too large or the volume is empty"
            )
        everywhere = bool(inside.all())
        f = sample_voxels(coef, y if everywhere else y[:, inside], order=interp, prefiltered=True)
        if target.weight is not None:
            f = f * (target.weight if everywhere else target.weight[inside])
        b1 = target.b if everywhere else target.b[inside]
        total = f.sum()
        sc = float(b1.sum() / total) if total != 0 else 1.0
        resid = b1 - f * sc
        a = target.design if everywhere else target.design[inside]
        soln = np.linalg.solve(target.alpha if everywhere else a.T @ a, a.T @ resid)
        params = np.zeros(6)
        params[target.lkp] = soln
        mat = np.linalg.inv(rigid_matrix(params)) @ mat
        previous, ss = ss, float(resid @ resid / len(resid))
        if countdown == -1 and (previous - ss) / previous < TOLERANCE:
            countdown = 2
        if countdown != -1:
            if countdown == 0:
                break
            countdown -= 1
    return mat, sc, _transform_points(np.linalg.inv(mat) @ target.affine, target.x)


def _accumulate(coef: np.ndarray, y: np.ndarray, sc: float, interp: int, sums: np.ndarray) -> None:
    """Add one fitted volume's scaled values and gradients at ``y`` to ``sums`` (5, n)."""
    upper = np.asarray(coef.shape)[:, None] - 1
    seen = np.all((y >= -EDGE_TOLERANCE) & (y <= upper + EDGE_TOLERANCE), axis=0)
    value, grad = _sample_with_gradient(coef, y[:, seen], interp)
    sums[0, seen] += 1.0
    sums[1, seen] += value * sc
    sums[2:, seen] += grad.T * sc


def _fit_block(
    block: np.ndarray,
    mats: np.ndarray,
    target: _Target,
    *,
    start: int,
    fwhm: float,
    interp: int,
    accumulate: bool = False,
    skip: int | None = None,
    reframe: np.ndarray | None = None,
    coefs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None, np.ndarray | None]:
    """Fit the volumes of a ``(X, Y, Z, t)`` block starting at volume ``start``.

    Returns the fitted matrices (t, 4, 4); with ``accumulate`` the point sums (5, n) (count,
    scaled values, scaled gradients) and the smoothed volumes' spline coefficients
    ``(X, Y, Z, t)`` (so that a second pass need not recompute them, passed back as
    ``coefs``); with ``reframe`` (a 4 x 4 applied on the left of the fitted matrices to give
    the final ones) the sum and count of the volumes resliced onto the reference grid. Volume
    ``skip`` (the reference) is not fitted: it keeps its matrix and adds its own values at the
    points.
    """
    out = np.empty((block.shape[3], 4, 4))
    sums = np.zeros((5, target.x.shape[1])) if accumulate else None
    kept = np.empty(block.shape) if accumulate and coefs is None else None
    mean = None
    for t in range(block.shape[3]):
        if coefs is None:
            coef = _smooth_coefficients(block[..., t], target.affine, fwhm, interp)
        else:
            coef = coefs[..., t]
        if kept is not None:
            kept[..., t] = coef
        if start + t == skip:
            mat, sc, y = mats[t], 1.0, target.x
        else:
            # head motion is smooth in time: a volume starts from its predecessor's fit when
            # that is the closer guess (the result does not depend on it, only the steps)
            start_mat = mats[t] if t == 0 else out[t - 1] @ np.linalg.inv(mats[t - 1]) @ mats[t]
            mat, sc, y = _fit_volume(coef, start_mat, target, interp, label=f"volume {start + t}")
        out[t] = mat
        if sums is not None:
            _accumulate(coef, y, sc, interp, sums)
        if reframe is not None:
            mean = _add_to_mean(block[..., t], reframe @ mat, target.affine, mean)
    return out, sums, mean, kept


def _add_to_mean(volume: np.ndarray, mat: np.ndarray, affine: np.ndarray, acc):
    """Reslice ``volume`` (voxel-to-world ``mat``) onto ``affine``'s grid; sum and count.

    Interpolation is trilinear (:data:`MEAN_ORDER`), with the edge handling of
    :func:`brainarr.spatial._resample.sample_voxels`.
    """
    shape = volume.shape
    to_source = np.linalg.inv(mat) @ affine
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij"))
    ijk = np.einsum("ij,j...->i...", to_source[:3, :3], grid) + to_source[:3, 3].reshape(3, 1, 1, 1)
    upper = np.asarray(shape).reshape(3, 1, 1, 1) - 1
    seen = np.all((ijk >= -EDGE_TOLERANCE) & (ijk <= upper + EDGE_TOLERANCE), axis=0)
    values = sample_voxels(np.asarray(volume, dtype=np.float64), ijk, order=MEAN_ORDER)
    if acc is None:
        return values, seen.astype(np.int64)
    return acc[0] + values, acc[1] + seen


def _make_target(
    affine: np.ndarray,
    x: np.ndarray,
    values: np.ndarray,
    grad: np.ndarray,
    weight: np.ndarray | None,
    lkp: np.ndarray,
) -> _Target:
    design = _design(affine, x, grad, lkp)
    b = values.copy()
    if weight is not None:
        design = design * weight[:, None]
        b = b * weight
    return _Target(affine=affine, x=x, design=design, b=b, weight=weight, lkp=lkp)


def _sample_points(shape: tuple[int, int, int], affine: np.ndarray, sep: float) -> tuple[np.ndarray, np.ndarray]:
    """SPM12's sampling points (3, n) in 0-based voxels and the fitted parameters.

    A grid every ``sep`` mm from the first voxel to half a voxel before the last, each point
    jittered by up to half a voxel (uniform, fixed seed) so that it does not sit on the voxel
    lattice; for images under 3 slices only in-plane parameters are fitted and z is not jittered.
    """
    skip = sep / voxel_size(affine)
    rng = np.random.default_rng(0)
    flat = shape[2] < 3
    axes = [np.arange(0.0, n - 1.5 + 1e-9, s) for n, s in zip(shape[:2], skip[:2], strict=True)]
    axes.append(np.arange(0.0, shape[2] - (1.0 if flat else 1.5) + 1e-9, skip[2]))
    x = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])
    jitter = rng.random(x.shape) * 0.5
    if flat:
        jitter[2] = 0.0
    lkp = np.array([0, 1, 5]) if flat else np.arange(6)
    return x + jitter, lkp


# --------------------------------------------------------------------------------------------
# xarray wrappers
# --------------------------------------------------------------------------------------------
def _check_bold(bold: xr.DataArray, func: str) -> None:
    if not isinstance(bold, xr.DataArray):
        raise DimensionError(f"{func}: expected an xarray DataArray, got {type(bold).__name__}")
    if tuple(bold.dims) != (*SPATIAL, TIME):
        raise DimensionError(
            f"{func}: {describe(bold)} must be a 4-D run with dims (x, y, z, time), got {tuple(bold.dims)}"
        )


def _time_blocks(bold: xr.DataArray) -> list[tuple[int, object]]:
    """(start, block) pairs of at most :data:`CHUNK_VOLUMES` volumes, spatial dims whole."""
    data = bold.data
    n = data.shape[3]
    if isinstance(data, da.Array):
        # fixed blocks whatever the input's chunks: a volume's starting guess (its predecessor's
        # fit within a block) and so its last Gauss-Newton step never depend on the chunking
        data = data.rechunk({0: -1, 1: -1, 2: -1, 3: CHUNK_VOLUMES})
        starts = np.concatenate([[0], np.cumsum(data.chunks[3])[:-1]])
        blocks = data.to_delayed().ravel()
        return [(int(s), b) for s, b in zip(starts, blocks, strict=True)]
    return [(s, data[..., s : s + CHUNK_VOLUMES]) for s in range(0, n, CHUNK_VOLUMES)]


def _run_blocks(blocks, mats: np.ndarray, target: _Target, coefs: list | None = None, **kwargs) -> list:
    """Fit each block (one dask task per block), in order; ``coefs``: each block's coefficients."""
    fit = dask.delayed(_fit_block_checked, pure=True)
    coefs = [None] * len(blocks) if coefs is None else coefs
    tasks = [
        fit(block, mats, target, start=start, coefs=dask.delayed(c), **kwargs)
        for (start, block), c in zip(blocks, coefs, strict=True)
    ]
    return list(dask.compute(*tasks))


def _fit_block_checked(block, mats, target, *, start, **kwargs):
    block = np.asarray(block, dtype=np.float64)
    if not np.all(np.isfinite(block)):
        raise DataValidationError(
            f"realign: volumes {start}-{start + block.shape[3] - 1} contain NaN or Inf; "
            "realignment needs finite values (replace them, e.g. with 0 outside the head)"
        )
    with one_blas_thread():  # small products: a BLAS pool would only oversubscribe the cores
        return _fit_block(block, mats[start : start + block.shape[3]], target, start=start, **kwargs)


def _reference_volume(bold: xr.DataArray, index: int) -> np.ndarray:
    vol = np.asarray(bold.isel({TIME: index}).values, dtype=np.float64)
    if not np.all(np.isfinite(vol)):
        raise DataValidationError(f"realign: volume {index} of {describe(bold)} contains NaN or Inf")
    if not np.any(vol):
        raise DataValidationError(f"realign: volume {index} of {describe(bold)} is all zero")
    return vol


def _check_options(bold, reference, quality, sep, fwhm, interp) -> int:
    n = int(bold.sizes[TIME])
    if n < 2:
        raise DimensionError(f"realign: {describe(bold)} has {n} volume; realignment needs at least 2")
    if not 0 < quality <= 1:
        raise ValueError(f"realign: quality must be in (0, 1], got {quality}")
    if not sep > 0:
        raise ValueError(f"realign: sep must be a positive distance in mm, got {sep}")
    if not fwhm >= 0:
        raise ValueError(f"realign: fwhm must be >= 0 mm, got {fwhm}")
    if isinstance(interp, bool) or interp not in range(1, 8):
        raise ValueError(f"realign: interp must be a B-spline degree from 1 to 7, got {interp!r}")
    if reference == "first":
        return 0
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool) and -n <= reference < n:
        return int(reference) % n
    raise ValueError(f"realign: reference must be 'first' or a volume index in [0, {n}), got {reference!r}")


def _weights(weight, bold, x, affine) -> np.ndarray | None:
    if weight is None:
        return None
    if not isinstance(weight, xr.DataArray) or tuple(weight.dims) != SPATIAL:
        raise DimensionError("realign: weight must be a DataArray with dims (x, y, z) on the run's grid")
    if tuple(weight.shape) != tuple(bold.sizes[d] for d in SPATIAL):
        raise GridMismatchError(f"realign: weight grid {weight.shape} differs from the run's {bold.shape[:3]}")
    w = np.asarray(weight.values, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataValidationError("realign: weight must be finite and non-negative")
    return sample_voxels(w, x, order=1)


@record_history
def realign(
    bold: xr.DataArray,
    *,
    reference: Literal["first"] | int = "first",
    quality: float = 0.9,
    sep: float = 4.0,
    fwhm: float = 5.0,
    interp: int = 2,
    register_to_mean: bool = True,
    weight: xr.DataArray | None = None,
) -> xr.Dataset:
    """Estimate head motion: rigid-body realignment of every volume (SPM12's ``spm_realign``).

    Parameters
    ----------
    bold : xarray.DataArray (x, y, z, time)
        A native run as :func:`brainarr.io.load_nifti` returns it (any affine, oblique
        included), at least 2 volumes, finite values.
    reference : "first" or int, default "first"
        Volume the first pass registers to. Parameters are always reported relative to the
        first volume (as SPM's ``rp_*.txt``).
    quality : float, default 0.9
        SPM's "Quality" (0, 1]: sampled points are dropped, least informative first, while
        the determinant of the normal equations stays above ``quality`` times its full value.
    sep : float, default 4.0
        Spacing in mm of the sampled points.
    fwhm : float, default 5.0
        FWHM in mm of the Gaussian applied to every volume before matching.
    interp : int, default 2
        B-spline degree used to sample the volumes during estimation (1 to 7).
    register_to_mean : bool, default True
        Two passes: to the reference volume, then to the mean of the pass-1 aligned volumes.
    weight : xarray.DataArray (x, y, z), optional
        Non-negative weighting of the reference voxels (SPM's weighting image).

    Returns
    -------
    xarray.Dataset
        ``motion`` (time, confound) float64: ``trans_x, trans_y, trans_z`` (mm) and ``rot_x,
        rot_y, rot_z`` (rad) as SPM12's ``rp_*.txt``, ``motion[0] == 0``;
        ``matrices`` (time, row, col): the aligned voxel-to-world matrix of each volume,
        ``rigid_matrix(motion[t]) @ affine``; ``mean`` (x, y, z) float32: the mean of the
        realigned volumes (trilinear reslice onto the first volume's grid, :data:`MEAN_ORDER`;
        voxels not seen in every volume are 0). ``attrs``: ``affine``, ``tr``, ``parameters``.

    Raises
    ------
    DimensionError
        If ``bold`` is not 4-D ``(x, y, z, time)`` or has fewer than 2 volumes.
    DataValidationError
        If a volume holds NaN or Inf, the reference is empty, or a volume leaves the field of
        view.

    Notes
    -----
    Triggers computation: two passes over the run, the second also accumulating the mean;
    blocks of :data:`CHUNK_VOLUMES` volumes are dask tasks. With ``register_to_mean`` the
    smoothed volumes' spline coefficients of the first pass are kept for the second (float64,
    8 bytes per voxel and volume: 240 MiB for 64 x 64 x 29 x 260).

    The mean is resliced trilinearly: it serves as a target (coregistration, masks), and a
    degree-4 reslice of every volume would cost as much as :func:`reslice` itself; use
    ``reslice(bold, realignment).mean("time")`` for a degree-4 mean (SPM12's, unmasked).

    The algorithm of SPM12 (Friston et al. 1995; Ashburner & Friston 2007):

    1. Points on a grid every ``sep`` mm (jittered by up to half a voxel) of the reference,
       smoothed with a Gaussian of ``fwhm`` mm and interpolated by B-splines of degree
       ``interp``, give values ``b`` and gradients, hence the derivatives ``A`` of the image
       with respect to the six parameters; the least informative points are dropped
       (``quality``).
    2. Each volume, smoothed the same way, is fitted by Gauss-Newton: ``y = inv(M) @ M0 @ x``,
       ``F`` its values there, ``sc = sum(b) / sum(F)``, solve ``A p = b - sc F`` and update
       ``M <- inv(R(p)) @ M`` (``R`` = :func:`brainarr._core.rigid.rigid_matrix`), up to 64
       steps until the residual mean square stops falling.
    3. With ``register_to_mean``, the scaled values and gradients of the fitted volumes are
       averaged at the points and every volume is fitted again to that mean.
    4. Matrices are re-expressed so that the first volume keeps its header affine:
       ``M_t <- M0 @ inv(M_first) @ M_t`` and ``motion[t] = rigid_params(M_t @ inv(M0))``.
    """
    _check_bold(bold, "realign")
    ref_index = _check_options(bold, reference, quality, sep, fwhm, interp)
    affine = get_affine(bold, func="realign")
    n = int(bold.sizes[TIME])
    shape = tuple(int(bold.sizes[d]) for d in SPATIAL)
    x, lkp = _sample_points(shape, affine, sep)
    w = _weights(weight, bold, x, affine)
    ref_coef = _smooth_coefficients(_reference_volume(bold, ref_index), affine, fwhm, interp)
    values, grad = _sample_with_gradient(ref_coef, x, interp)
    target = _make_target(affine, x, values, grad, w, lkp)
    if n > 2:
        keep = _trim_points(target.design, target.b, quality)
        x, values, grad = x[:, keep], values[keep], grad[keep]
        w = None if w is None else w[keep]
        target = _make_target(affine, x, values, grad, w, lkp)
    mats = np.repeat(affine[None], n, axis=0)
    blocks = _time_blocks(bold)
    fit = dict(fwhm=fwhm, interp=interp)
    if register_to_mean:
        results = _run_blocks(blocks, mats, target, accumulate=True, skip=ref_index, **fit)
        coefs = [r[3] for r in results]
        mats = np.concatenate([r[0] for r in results])
        sums = np.sum([r[1] for r in results], axis=0)
        count = sums[0]
        target = _make_target(affine, x, sums[1] / count, (sums[2:] / count).T, w, lkp)
        skip = None
    else:
        skip, coefs = ref_index, None
    first = affine if skip == 0 else _fit_first(bold, mats[0], target, fwhm, interp, coefs)
    reframe = affine @ np.linalg.inv(first)
    results = _run_blocks(blocks, mats, target, coefs, skip=skip, reframe=reframe, **fit)
    del coefs
    mats = reframe @ np.concatenate([r[0] for r in results])
    total = np.sum([r[2][0] for r in results], axis=0)
    seen = np.sum([r[2][1] for r in results], axis=0)
    mean = np.where(seen == n, total / n, 0.0).astype(np.float32)
    params = dict(
        reference=reference, quality=quality, sep=sep, fwhm=fwhm, interp=interp, register_to_mean=register_to_mean
    )
    return _realign_dataset(bold, mats, mean, affine, params)


def _fit_first(
    bold: xr.DataArray, mat: np.ndarray, target: _Target, fwhm: float, interp: int, coefs: list | None
) -> np.ndarray:
    """The first volume's fitted matrix (needed before the last pass to reslice the mean)."""
    if coefs is not None:
        coef = coefs[0][..., 0]
    else:
        coef = _smooth_coefficients(_reference_volume(bold, 0), target.affine, fwhm, interp)
    return _fit_volume(coef, mat, target, interp, label="volume 0")[0]


def _realign_dataset(bold, mats, mean, affine, params) -> xr.Dataset:
    """Motion parameters relative to the first volume, matrices and mean as a Dataset."""
    motion = rigid_params(mats @ np.linalg.inv(affine))
    motion[0] = 0.0
    matrices = rigid_matrix(motion) @ affine
    matrices[0] = affine
    time = {TIME: bold[TIME].variable} if TIME in bold.coords else {}
    motion_da = xr.DataArray(
        motion,
        dims=(TIME, CONFOUND),
        coords={**time, CONFOUND: list(MOTION_PARAMS)},
        name="motion",
        attrs={
            "long_name": "head motion relative to the first volume (SPM12 rp_*.txt)",
            "units": "mm (trans_*), rad (rot_*)",
            "confound_units": list(MOTION_UNITS),
        },
    )
    matrices_da = xr.DataArray(
        matrices,
        dims=(TIME, "row", "col"),
        coords=time,
        name="matrices",
        attrs={"long_name": "aligned voxel-to-world matrix of each volume", "units": "mm"},
    )
    mean_da = xr.DataArray(
        mean,
        dims=SPATIAL,
        coords={d: bold[d].variable for d in SPATIAL if d in bold.coords},
        name="mean",
        attrs={"long_name": "mean of the realigned volumes", "affine": affine.tolist()},
    )
    ds = xr.Dataset({"motion": motion_da, "matrices": matrices_da, "mean": mean_da})
    ds.attrs["affine"] = affine.tolist()
    if "tr" in bold.attrs:
        ds.attrs["tr"] = bold.attrs["tr"]
    if "source" in bold.attrs:
        ds.attrs["source"] = bold.attrs["source"]
    ds.attrs["parameters"] = repr(params)
    return ds


@record_history
def reslice(
    bold: xr.DataArray,
    realignment: xr.Dataset,
    *,
    order: int = 4,
    like: xr.DataArray | None = None,
    mask: bool = False,
) -> xr.DataArray:
    """Resample every volume through its realignment onto the first volume's grid (lazy).

    Parameters
    ----------
    bold : xarray.DataArray (x, y, z, time)
        The run that was realigned.
    realignment : xarray.Dataset
        The output of :func:`realign` (its ``matrices``).
    order : int, default 4
        B-spline degree (SPM12's reslice default is 4).
    like : xarray.DataArray, optional
        Another target grid (e.g. a finer one); default the first volume's grid.
    mask : bool, default False
        Set to 0 every voxel that is outside the field of view of any volume (SPM's
        "masking"), so that every voxel has data at every time point.

    Returns
    -------
    xarray.DataArray (x, y, z, time)
        Float32, lazy for a dask input (one task per chunk of volumes, space in one chunk).

    Notes
    -----
    Volume ``t`` with aligned voxel-to-world matrix ``M_t`` is sampled at
    ``inv(M_t) @ target_affine @ v`` for every target voxel ``v``: through
    :func:`brainarr.spatial.resample` with the per-volume world transforms
    ``affine @ inv(M_t)`` (header world of the first volume to volume ``t``'s header world).
    """
    _check_bold(bold, "reslice")
    if not isinstance(realignment, xr.Dataset) or "matrices" not in realignment:
        raise DimensionError("reslice: realignment must be the Dataset returned by brainarr.spatial.realign")
    mats = np.asarray(realignment["matrices"].values, dtype=np.float64)
    n = int(bold.sizes[TIME])
    if mats.shape != (n, 4, 4):
        raise GridMismatchError(f"reslice: realignment has {mats.shape[0]} volumes, {describe(bold)} has {n}")
    affine = get_affine(bold, func="reslice")
    transforms = affine @ np.linalg.inv(mats)
    out = resample(bold, like, transform=transforms, order=order)
    if mask:
        target_affine = np.asarray(out.attrs["affine"], dtype=np.float64)
        shape = tuple(int(out.sizes[d]) for d in SPATIAL)
        keep = _common_fov(mats, affine, target_affine, shape, tuple(int(bold.sizes[d]) for d in SPATIAL))
        out = out.where(xr.DataArray(keep, dims=SPATIAL), 0.0)
    out.attrs.pop("history", None)
    return out


def _common_fov(mats, affine, target_affine, shape, src_shape) -> np.ndarray:
    """Target voxels inside the field of view of every volume (bool, shape ``shape``)."""
    from brainarr.spatial._resample import grid_points, world_to_voxel

    points = grid_points(target_affine, shape)
    keep = np.ones(shape, dtype=bool)
    upper = np.asarray(src_shape).reshape(3, 1, 1, 1) - 1
    for m in mats:
        ijk = world_to_voxel(m, points)
        keep &= np.all((ijk >= -EDGE_TOLERANCE) & (ijk <= upper + EDGE_TOLERANCE), axis=0)
    return keep
