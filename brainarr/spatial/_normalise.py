"""Spatial normalisation of a T1 image to the MNI152 2009 template: affine, then diffeomorphic.

The affine part is found by maximising the mutual information of the two images (Mattes et al.
2003), in three stages of increasing freedom (translation, rigid, 12-parameter affine), coarse
to fine. The nonlinear part is the symmetric normalisation (SyN) of Avants et al. (2008) with a
local cross-correlation metric, computed by dipy (Garyfallidis et al. 2014). The result is kept
as numbers: a deformation field on the template grid that gives, for every template voxel, the
T1 world coordinate (mm) it corresponds to -- the "pull" field of SPM's ``y_*.nii``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import xarray as xr

from brainarr._core.dims import SPATIAL
from brainarr._core.validation import describe, get_affine
from brainarr.exceptions import DataValidationError, DimensionError
from brainarr.spatial._resample import grid_points, sample_volume
from brainarr.spatial._templates import mni_template, smooth_to, volume_of

__all__ = ["deformation_at", "normalise"]

_FUNC = "brainarr.spatial.normalise"
COMPONENT = "component"


@contextlib.contextmanager
def _quiet_dipy() -> Iterator[None]:
    """Silence dipy's progress log and its deprecation chatter for the duration of a call."""
    import dipy.align.imwarp  # noqa: F401  (dipy configures its logger on import)

    logger = logging.getLogger("dipy")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _unit_range(data: np.ndarray) -> np.ndarray:
    """Intensities scaled so that the 99.5th percentile of the non-zero voxels is 1 (float64)."""
    nonzero = data[data > 0]
    top = float(np.percentile(nonzero, 99.5)) if nonzero.size else float(np.abs(data).max())
    return np.asarray(data, np.float64) / (top if top > 0 else 1.0)


def _affine_stage(
    static: np.ndarray, static_aff: np.ndarray, moving: np.ndarray, moving_aff: np.ndarray, *, iters: Sequence[int]
) -> np.ndarray:
    """12-parameter affine, template world -> T1 world, by mutual information (dipy).

    Translation (from the centres of mass), then rigid, then affine, each coarse to fine
    (Mattes et al. 2003 MI with 32 bins, dense sampling).
    """
    from dipy.align.imaffine import AffineRegistration, MutualInformationMetric, transform_centers_of_mass
    from dipy.align.transforms import AffineTransform3D, RigidTransform3D, TranslationTransform3D

    start = transform_centers_of_mass(static, static_aff, moving, moving_aff).affine
    reg = AffineRegistration(
        metric=MutualInformationMetric(nbins=32, sampling_proportion=None),
        level_iters=list(iters),
        sigmas=[2.0, 1.0, 0.0][-len(iters) :],
        factors=[4, 2, 1][-len(iters) :],
        verbosity=0,
    )
    for transform in (TranslationTransform3D(), RigidTransform3D(), AffineTransform3D()):
        fitted = reg.optimize(
            static,
            moving,
            transform,
            None,
            static_grid2world=static_aff,
            moving_grid2world=moving_aff,
            starting_affine=start,
        )
        start = fitted.affine
    return np.asarray(start, float)


def _syn_stage(
    static: np.ndarray,
    static_aff: np.ndarray,
    moving: np.ndarray,
    moving_aff: np.ndarray,
    prealign: np.ndarray,
    *,
    iters: Sequence[int],
    radius: int,
) -> np.ndarray:
    """Pull field (template world mm -> T1 world mm) on the static grid, shape (nx, ny, nz, 3).

    Symmetric diffeomorphic normalisation (Avants et al. 2008) with the local cross-correlation
    metric in a cube of half-width ``radius`` voxels, started from the affine ``prealign``.
    """
    from dipy.align.imwarp import SymmetricDiffeomorphicRegistration
    from dipy.align.metrics import CCMetric

    syn = SymmetricDiffeomorphicRegistration(metric=CCMetric(3, radius=radius), level_iters=list(iters))
    mapping = syn.optimize(
        static, moving, static_grid2world=static_aff, moving_grid2world=moving_aff, prealign=prealign
    )
    points = grid_points(static_aff, static.shape).reshape(-1, 3)
    # the forward map of dipy takes a static (template) point to the moving (T1) point it pulls from
    return np.asarray(mapping.transform_points(points), float).reshape(*static.shape, 3)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 4 x 4 (or 3 x 3) matrix applied to points (..., 3); einsum avoids matmul's slow small-matrix path."""
    out = np.einsum("ij,...j->...i", matrix[:3, :3], points)
    return out + matrix[:3, 3] if matrix.shape[1] == 4 else out


def _affine_field(matrix: np.ndarray, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The affine ``matrix`` applied to the voxel centres of a grid, shape (nx, ny, nz, 3)."""
    return _apply(matrix, grid_points(affine, shape))


def normalise(
    t1: xr.DataArray,
    template: xr.DataArray | None = None,
    *,
    voxel_size: float = 2.0,
    nonlinear: bool = True,
    affine_iters: Sequence[int] = (200, 100, 20),
    syn_iters: Sequence[int] = (20, 10, 5),
    cc_radius: int = 2,
) -> xr.Dataset:
    """Register a T1 image to the MNI152 2009 template: affine (12 parameters), then nonlinear.

    Parameters
    ----------
    t1 : xarray.DataArray (x, y, z)
        The subject's T1-weighted image with ``attrs["affine"]`` (voxel to world, mm). A
        brain-extracted image matches the template best (nilearn's MNI152 2009 T1 is
        brain-extracted).
    template : xarray.DataArray (x, y, z), optional
        The target, with ``attrs["affine"]``; by default the MNI152 2009 T1 at ``voxel_size``.
    voxel_size : float, default 2.0
        Voxel edge (mm) of the default template grid, on which the deformation is estimated
        and returned. 2 mm takes about a minute on two cores; 3 or 4 mm are quicker.
    nonlinear : bool, default True
        False stops after the affine part (the deformation is then the affine field).
    affine_iters : sequence of int, default (200, 100, 20)
        Iterations per level (coarse to fine) of the affine stages; the affine is estimated on
        the template at 4 mm (or the template's own grid if coarser), which is ample for 12
        parameters.
    syn_iters : sequence of int, default (20, 10, 5)
        Iterations per level (coarse to fine, each level halving the resolution) of SyN.
    cc_radius : int, default 2
        Half-width (voxels of the working grid) of the cross-correlation window.

    Returns
    -------
    xarray.Dataset on the template grid (x, y, z)
        - ``deformation`` (x, y, z, component), float32: for every template voxel, the T1
          world coordinate (mm) it corresponds to (a "pull" field, as SPM's ``y_*.nii``).
          Sampling the T1 there gives the normalised T1.
        - ``affine_matrix`` (row, col): the affine part, template world mm -> T1 world mm.
        - ``normalised`` (x, y, z), float32: the T1 resampled through ``deformation``
          (trilinear).
        - attrs: ``affine`` (the template's voxel-to-world matrix), ``t1_affine``, options,
          ``elapsed_s``.

    Notes
    -----
    Triggers computation (the T1 is read; the output is 3-D). The T1 is smoothed to the
    working voxel size before registration (Gaussian of FWHM ``sqrt(voxel_size**2 - vox**2)``).
    Use :func:`deformation_at` to evaluate the mapping at any MNI point.

    References
    ----------
    Avants BB, Epstein CL, Grossman M, Gee JC (2008). Symmetric diffeomorphic image
    registration with cross-correlation. Medical Image Analysis 12:26-41.
    Mattes D et al. (2003). PET-CT image registration in the chest using free-form
    deformations. IEEE Transactions on Medical Imaging 22:120-128.
    Garyfallidis E et al. (2014). Dipy, a library for the analysis of diffusion MRI data.
    Frontiers in Neuroinformatics 8:8.
    Fonov V et al. (2011). Unbiased average age-appropriate atlases for pediatric studies.
    NeuroImage 54:313-327.
    """
    began = time.perf_counter()
    if not voxel_size > 0:
        raise ValueError(f"{_FUNC}: voxel_size must be positive (mm), got {voxel_size}")
    if int(cc_radius) < 1:
        raise ValueError(f"{_FUNC}: cc_radius must be at least 1 voxel, got {cc_radius}")
    data, t1_aff = volume_of(t1, name="t1", func=_FUNC)
    if template is None:
        template = mni_template("t1", voxel_size)
    static, static_aff = volume_of(template, name="template", func=_FUNC)
    static_vox = float(np.abs(np.linalg.det(static_aff[:3, :3])) ** (1 / 3))
    moving = _unit_range(smooth_to(data, t1_aff, static_vox))
    static64 = _unit_range(static)

    coarse = mni_template("t1", max(4.0, static_vox)) if template is None and static_vox < 4 else None
    with _quiet_dipy():
        if coarse is not None:
            c_aff = np.asarray(coarse.attrs["affine"], float)
            matrix = _affine_stage(_unit_range(coarse.values), c_aff, moving, t1_aff, iters=affine_iters)
        else:
            matrix = _affine_stage(static64, static_aff, moving, t1_aff, iters=affine_iters)
        if nonlinear:
            field = _syn_stage(static64, static_aff, moving, t1_aff, matrix, iters=syn_iters, radius=int(cc_radius))
        else:
            field = _affine_field(matrix, static_aff, static.shape)
    warped = sample_volume(data, t1_aff, field, order=1).astype(np.float32)
    return _as_dataset(
        field,
        matrix,
        warped,
        template,
        static_aff,
        t1_aff,
        voxel_size=static_vox,
        nonlinear=bool(nonlinear),
        affine_iters=list(affine_iters),
        syn_iters=list(syn_iters),
        cc_radius=int(cc_radius),
        elapsed_s=round(time.perf_counter() - began, 2),
    )


def _as_dataset(field, matrix, warped, template, static_aff, t1_aff, **attrs) -> xr.Dataset:
    coords = {d: template[d] for d in SPATIAL}
    ds = xr.Dataset(
        {
            "deformation": xr.DataArray(
                field.astype(np.float32),
                dims=(*SPATIAL, COMPONENT),
                coords={**coords, COMPONENT: list(SPATIAL)},
                attrs={"units": "mm", "long_name": "T1 world coordinate of each template voxel"},
            ),
            "affine_matrix": xr.DataArray(
                matrix, dims=("row", "col"), attrs={"long_name": "template world mm -> T1 world mm (affine part)"}
            ),
            "normalised": xr.DataArray(
                warped, dims=SPATIAL, coords=coords, attrs={"long_name": "T1 on the template grid"}
            ),
        }
    )
    ds.attrs.update({"affine": static_aff.tolist(), "t1_affine": t1_aff.tolist(), **attrs})
    return ds


def _fields(normalisation: xr.Dataset, func: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual field (deformation minus its affine part), the affine part and the grid affine."""
    if not isinstance(normalisation, xr.Dataset) or "deformation" not in normalisation:
        raise DataValidationError(f"{func}: expected the Dataset returned by normalise (with 'deformation')")
    if "affine_matrix" not in normalisation:
        raise DataValidationError(f"{func}: {describe(normalisation)} has no 'affine_matrix'")
    field = normalisation["deformation"]
    if set(field.dims) != {*SPATIAL, COMPONENT} or field.sizes[COMPONENT] != 3:
        raise DimensionError(f"{func}: 'deformation' must have dims (x, y, z, component=3), got {dict(field.sizes)}")
    grid = get_affine(normalisation, func=func)
    matrix = np.asarray(normalisation["affine_matrix"].values, float)
    values = np.asarray(field.transpose(*SPATIAL, COMPONENT).values, np.float64)
    residual = values - _affine_field(matrix, grid, values.shape[:3])
    return residual, matrix, grid


def deformation_at(normalisation: xr.Dataset, points_mni: np.ndarray) -> np.ndarray:
    """T1 world coordinates (mm) of arbitrary MNI points, through a normalisation.

    Parameters
    ----------
    normalisation : xarray.Dataset
        What :func:`normalise` returns.
    points_mni : array (..., 3)
        Points in template (MNI) world space, mm, e.g. the voxel centres of
        ``brainarr.datasets.study_grid(3.0)``.

    Returns
    -------
    numpy.ndarray (..., 3)
        The corresponding T1 world points (mm): the affine part applied to each point plus the
        nonlinear residual of the deformation, interpolated trilinearly. Outside the template
        box the residual is taken as zero (pure affine extrapolation).
    """
    residual, matrix, grid = _fields(normalisation, "brainarr.spatial.deformation_at")
    pts = np.asarray(points_mni, float)
    if pts.shape[-1:] != (3,):
        raise DimensionError(f"brainarr.spatial.deformation_at: points must have shape (..., 3), got {pts.shape}")
    out = _apply(matrix, pts)
    for k in range(3):
        out[..., k] += sample_volume(residual[..., k], grid, pts, order=1, cval=0.0)
    return out


def _inverse_points(normalisation: xr.Dataset, points_t1: np.ndarray, *, n_iter: int = 20) -> np.ndarray:
    """MNI points (mm) that the normalisation maps to the given T1 points (the inverse map).

    Fixed-point iteration ``x <- x + L^-1 (y - phi(x))`` from ``x = A^-1 y``, where ``A`` is
    the affine part and ``L`` its linear block; it converges where the residual displacement
    is smooth (its Jacobian well below one), as for SyN fields.
    """
    residual, matrix, grid = _fields(normalisation, "brainarr.spatial.segment")
    pts = np.asarray(points_t1, float)
    inv = np.linalg.inv(matrix)
    x = _apply(inv, pts)
    lin_inv = inv[:3, :3]
    for _ in range(n_iter):
        phi = _apply(matrix, x)
        for k in range(3):
            phi[..., k] += sample_volume(residual[..., k], grid, x, order=1, cval=0.0)
        x += _apply(lin_inv, pts - phi)
    return x
