"""Sampling images at world points: the one resampler of :mod:`brainarr.spatial`.

Every spatial step (reslicing after realignment, coregistration, normalisation, the one-step
chain onto the study grid) samples a source image at points given in world millimetres. The
conventions, used throughout:

- A voxel-to-world matrix ``vox2world`` (NIfTI ``sform``, ``attrs["affine"]``) maps 0-based
  voxel indices ``(i, j, k, 1)`` to world millimetres.
- A *pull* transform maps the **target** to the **source**: for each target voxel we ask
  which source point it takes its value from. A world-to-world ``transform`` (4 x 4) maps
  target-space world mm to source-space world mm: ``source_world = transform @ target_world``.
- A deformation ``points`` (an array ``(X, Y, Z, 3)``, SPM ``y_*.nii`` style) gives, for
  every target voxel, the world mm it pulls from *before* the affine ``transform``; so the
  source world point of target voxel ``v`` is ``transform @ points[v]``. Without ``points``,
  ``points[v] = target_affine @ v``.
- A chain "study grid -> nonlinear deformation -> rigid coregistration -> per-volume
  realignment" composes as: ``points`` = the deformation's source-world mm of each study-grid
  voxel (in the anatomical image's world), ``transform[t]`` = ``realign_to_native[t] @
  coregistration`` where ``coregistration`` maps anatomical world mm to the mean functional's
  world mm and ``realign_to_native[t] = affine @ inv(matrices[t])`` maps the mean functional's
  world mm to volume ``t``'s header world mm (``matrices`` from
  :func:`brainarr.spatial.realign`).

Interpolation is by B-splines of degree 0 to 7 (:func:`scipy.ndimage.map_coordinates`,
Unser 1999); points outside the source's field of view (beyond the centres of the edge voxels)
take ``fill``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from brainarr._core.attrs import record_history
from brainarr._core.dims import SPATIAL, TIME
from brainarr._core.grid import spatial_coords
from brainarr._core.validation import describe, get_affine
from brainarr.exceptions import DimensionError, GridMismatchError, MissingMetadataError

__all__ = ["EDGE_TOLERANCE", "grid_points", "resample", "sample_volume", "spline_coefficients"]

_FUNC = "resample"

#: Voxels: points this far beyond the centre of an edge voxel are still inside, their value
#: mirrored about the edge, as in SPM12 (``TINY`` of ``spm_vol_utils.c``); farther ones are
#: outside the field of view.
EDGE_TOLERANCE = 0.05


# --------------------------------------------------------------------------------------------
# numpy kernels
# --------------------------------------------------------------------------------------------
def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= int(order) <= 7:
        raise ValueError(f"{_FUNC}: order must be an integer B-spline degree from 0 to 7, got {order!r}")
    return int(order)


def spline_coefficients(volume: np.ndarray, order: int) -> np.ndarray:
    """B-spline coefficients of ``volume`` for repeated sampling with :func:`sample_volume`.

    Parameters
    ----------
    volume : array (X, Y, Z)
        Image values.
    order : int
        B-spline degree, 0 to 7.

    Returns
    -------
    numpy.ndarray (X, Y, Z), float64
        The interpolating coefficients (Unser 1999), computed exactly as
        :func:`scipy.ndimage.map_coordinates` does internally for ``mode="constant"``; orders
        0 and 1 need none and return the values as float64. Pass them with
        ``prefiltered=True``.
    """
    order = _check_order(order)
    volume = np.asarray(volume, dtype=np.float64)
    if order <= 1:
        return volume
    return ndimage.spline_filter(volume, order, output=np.float64, mode="constant")


def grid_points(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """World coordinates of the voxel centres of a grid.

    Parameters
    ----------
    affine : array (4, 4)
        Voxel-to-world matrix (0-based voxel indices to mm).
    shape : tuple of 3 int
        Grid size ``(X, Y, Z)``.

    Returns
    -------
    numpy.ndarray (X, Y, Z, 3), float64
        ``affine @ (i, j, k, 1)`` for every voxel, in mm.
    """
    affine = np.asarray(affine, dtype=np.float64)
    ijk = np.stack(np.meshgrid(*(np.arange(int(n), dtype=np.float64) for n in shape), indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(vox2world: np.ndarray, points: np.ndarray, transform: np.ndarray | None = None) -> np.ndarray:
    """0-based voxel coordinates ``inv(vox2world) @ transform @ points``, shape ``(3, ...)``."""
    mat = np.linalg.inv(np.asarray(vox2world, dtype=np.float64))
    if transform is not None:
        mat = mat @ np.asarray(transform, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return np.einsum("ij,...j->i...", mat[:3, :3], points) + mat[:3, 3].reshape((3,) + (1,) * (points.ndim - 1))


def _clamp_edges(ijk: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Mirror coordinates within :data:`EDGE_TOLERANCE` outside ``[0, n - 1]`` into the grid."""
    out = None
    for axis, n in enumerate(shape):
        c = ijk[axis]
        low = (c < 0) & (c >= -EDGE_TOLERANCE)
        high = (c > n - 1) & (c <= n - 1 + EDGE_TOLERANCE)
        if low.any() or high.any():
            if out is None:
                out = ijk.copy()
            out[axis][low] = -c[low]
            out[axis][high] = 2.0 * (n - 1) - c[high]
    return ijk if out is None else out


def sample_voxels(
    volume: np.ndarray, ijk: np.ndarray, *, order: int, prefiltered: bool = False, cval: float = 0.0
) -> np.ndarray:
    """Values of ``volume`` at 0-based voxel coordinates ``ijk`` (3, ...), float64.

    Coordinates up to :data:`EDGE_TOLERANCE` voxels beyond the centres of the edge voxels are
    mirrored about the edge (as SPM12 does), the rest outside take ``cval``.
    """
    volume = np.asarray(volume)
    ijk = _clamp_edges(np.asarray(ijk, dtype=np.float64), volume.shape)
    return ndimage.map_coordinates(
        volume,
        ijk,
        output=np.float64,
        order=order,
        mode="constant",
        cval=cval,
        prefilter=not prefiltered and order > 1,
    )


def sample_volume(
    volume: np.ndarray,
    vox2world: np.ndarray,
    points: np.ndarray,
    *,
    order: int,
    prefiltered: bool = False,
    cval: float = 0.0,
) -> np.ndarray:
    """Sample a 3-D image at world points by B-spline interpolation.

    Parameters
    ----------
    volume : array (X, Y, Z)
        Image values, or its :func:`spline_coefficients` when ``prefiltered``.
    vox2world : array (4, 4)
        The image's voxel-to-world matrix (0-based indices to mm).
    points : array (..., 3)
        World coordinates (mm) at which to sample, in the image's world space.
    order : int
        B-spline degree: 0 nearest neighbour, 1 trilinear, 2 to 7 higher-order B-splines.
    prefiltered : bool, default False
        ``volume`` already holds B-spline coefficients (so one image can be sampled many
        times at the cost of one prefilter).
    cval : float, default 0.0
        Value of points outside the field of view.

    Returns
    -------
    numpy.ndarray (...), float64
        The interpolated values.

    Notes
    -----
    A point is inside when its voxel coordinates lie within ``[0, n - 1]`` along every axis
    (the centres of the edge voxels), widened by :data:`EDGE_TOLERANCE` (0.05 voxel, as SPM12:
    such points are mirrored about the edge); values near the edges use mirror-symmetric boundary
    conditions (:func:`scipy.ndimage.map_coordinates` with ``mode="constant"``).
    """
    order = _check_order(order)
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"sample_volume: points must have shape (..., 3), got {points.shape}")
    return sample_voxels(volume, world_to_voxel(vox2world, points), order=order, prefiltered=prefiltered, cval=cval)


def _resample_block(
    block: np.ndarray,
    *,
    src_affine: np.ndarray,
    points: np.ndarray,
    transforms: np.ndarray | None,
    start: int,
    order: int,
    fill: float,
    dtype: np.dtype,
) -> np.ndarray:
    """Resample the volumes of a ``(X, Y, Z, t)`` block; ``transforms`` indexed by absolute time."""
    out = np.empty((*points.shape[:3], block.shape[3]), dtype=dtype)
    shared = None if transforms is not None and transforms.ndim == 3 else world_to_voxel(src_affine, points, transforms)
    for t in range(block.shape[3]):
        ijk = shared if shared is not None else world_to_voxel(src_affine, points, transforms[start + t])
        out[..., t] = sample_voxels(block[..., t], ijk, order=order, cval=fill)
    return out


# --------------------------------------------------------------------------------------------
# xarray wrapper
# --------------------------------------------------------------------------------------------
def _target_grid(img: xr.DataArray, like, affine, shape, points) -> tuple[np.ndarray, tuple[int, int, int], Any]:
    """Target affine, shape and coordinates (reused when the grid is the input's own or ``like``'s)."""
    if like is not None:
        if affine is not None or shape is not None:
            raise ValueError(f"{_FUNC}: give either like= or affine=/shape=, not both")
        if not isinstance(like, (xr.DataArray, xr.Dataset)):
            raise DimensionError(f"{_FUNC}: like must be an xarray DataArray with attrs['affine'], got {type(like)}")
        missing = [d for d in SPATIAL if d not in like.dims]
        if missing:
            raise DimensionError(f"{_FUNC}: like {describe(like)} lacks spatial dims {missing}")
        aff = get_affine(like, func=_FUNC)
        shp = tuple(int(like.sizes[d]) for d in SPATIAL)
        return aff, shp, {d: like[d].variable for d in SPATIAL if d in like.coords}
    if affine is None:
        affine = get_affine(img, func=_FUNC)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise MissingMetadataError(f"{_FUNC}: target affine must be a finite, invertible 4 x 4 matrix")
    if shape is None:
        shape = points.shape[:3] if points is not None else tuple(int(img.sizes[d]) for d in SPATIAL)
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{_FUNC}: shape must be three positive sizes, got {shape}")
    own = shape == tuple(int(img.sizes[d]) for d in SPATIAL) and "affine" in img.attrs
    if own and np.allclose(affine, np.asarray(img.attrs["affine"], dtype=float), rtol=0, atol=1e-9):
        return affine, shape, {d: img[d].variable for d in SPATIAL if d in img.coords}
    return affine, shape, spatial_coords(affine, shape, source=str(img.attrs.get("source", "")))


def _check_transforms(transform, ntime: int | None) -> np.ndarray | None:
    if transform is None:
        return None
    mats = np.asarray(transform, dtype=np.float64)
    if mats.shape == (4, 4):
        return mats
    if mats.ndim == 3 and mats.shape[1:] == (4, 4):
        if ntime is None:
            raise DimensionError(f"{_FUNC}: a stack of transforms {mats.shape} needs a 4-D input with a time dim")
        if mats.shape[0] != ntime:
            raise GridMismatchError(f"{_FUNC}: {mats.shape[0]} transforms for {ntime} volumes; give one per volume")
        return mats
    raise ValueError(f"{_FUNC}: transform must be a 4 x 4 matrix or a (time, 4, 4) stack, got shape {mats.shape}")


@record_history
def resample(
    img: xr.DataArray,
    like: xr.DataArray | None = None,
    *,
    affine: np.ndarray | None = None,
    shape: Sequence[int] | None = None,
    transform: np.ndarray | None = None,
    points: np.ndarray | None = None,
    order: int = 3,
    fill: float = 0.0,
) -> xr.DataArray:
    """Resample a 3-D or 4-D image onto another grid, through an optional chain of transforms.

    Parameters
    ----------
    img : xarray.DataArray (x, y, z[, time])
        The source image, with ``attrs["affine"]`` (voxel-to-world, mm).
    like : xarray.DataArray, optional
        An image on the target grid (its ``attrs["affine"]`` and spatial sizes; its
        coordinates are reused).
    affine, shape : array (4, 4) and tuple of 3 int, optional
        The target grid when ``like`` is not given. ``affine`` defaults to the input's and
        ``shape`` to ``points.shape[:3]`` or the input's.
    transform : array (4, 4) or (time, 4, 4), optional
        World-to-world pull transform, target (or ``points``) world mm to the source's world
        mm: ``source_world = transform @ target_world``. A stack gives one matrix per volume
        of a 4-D input (e.g. ``affine @ inv(matrices[t])`` after :func:`realign`).
    points : array (X, Y, Z, 3), optional
        A deformation ("pull" field, SPM ``y_*.nii`` style): for every target voxel, the world
        mm it takes its value from, to which ``transform`` then applies. Replaces the target
        grid's own voxel centres.
    order : int, default 3
        B-spline degree, 0 (nearest) to 7; 1 is trilinear.
    fill : float, default 0.0
        Value outside the source's field of view.

    Returns
    -------
    xarray.DataArray (x, y, z[, time])
        Float32 (float64 for a float64 input) on the target grid; coordinates from
        :func:`brainarr._core.grid.spatial_coords` (or those of ``like``), ``time`` kept,
        ``attrs`` ``affine`` (the target's) and ``tr``. A dask input stays lazy: one task
        per chunk of volumes, the spatial dims in one chunk.

    Raises
    ------
    DimensionError
        If ``img`` is not 3-D or 4-D with dims ``x, y, z[, time]``.
    MissingMetadataError
        If an affine is missing or singular.
    GridMismatchError
        If a transform stack or ``points`` does not match the data.

    Notes
    -----
    The source voxel of target voxel ``v`` is ``inv(img.affine) @ transform[t] @ p(v)`` with
    ``p(v) = points[v]`` or ``target_affine @ v``; it is interpolated with B-splines of
    degree ``order`` (Unser 1999, :func:`scipy.ndimage.map_coordinates`). Points beyond the
    centres of the source's edge voxels take ``fill``. With ``order=1`` the result equals
    SPM12's ``spm_reslice`` (trilinear) inside the field of view.
    """
    if not isinstance(img, xr.DataArray):
        raise DimensionError(f"{_FUNC}: expected an xarray DataArray, got {type(img).__name__}")
    dims = tuple(img.dims)
    if dims not in (SPATIAL, (*SPATIAL, TIME)):
        raise DimensionError(f"{_FUNC}: {describe(img)} must have dims (x, y, z) or (x, y, z, time), got {dims}")
    order = _check_order(order)
    src_affine = get_affine(img, func=_FUNC)
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 4 or points.shape[3] != 3:
            raise GridMismatchError(f"{_FUNC}: points must have shape (X, Y, Z, 3), got {points.shape}")
    aff, shp, coords = _target_grid(img, like, affine, shape, points)
    if points is None:
        points = grid_points(aff, shp)
    elif points.shape[:3] != shp:
        raise GridMismatchError(f"{_FUNC}: points grid {points.shape[:3]} differs from the target grid {shp}")
    ntime = int(img.sizes[TIME]) if TIME in dims else None
    mats = _check_transforms(transform, ntime)
    dtype = np.dtype(np.float64) if img.dtype == np.float64 else np.dtype(np.float32)
    kwargs = dict(src_affine=src_affine, points=points, transforms=mats, order=order, fill=float(fill), dtype=dtype)
    data = img.data
    if ntime is None:
        block = np.asarray(data)[..., None] if not isinstance(data, da.Array) else data[..., None]
        out = _resample_3d(block, shp, kwargs)
    elif isinstance(data, da.Array):
        out = _resample_dask(data, shp, kwargs)
    else:
        out = _resample_block(np.asarray(data), start=0, **kwargs)
    new_coords = dict(coords)
    if ntime is not None and TIME in img.coords:
        new_coords[TIME] = img[TIME].variable
    result = xr.DataArray(out, dims=dims, coords=new_coords, name=img.name)
    result.attrs.update({k: v for k, v in img.attrs.items() if k not in ("affine", "history")})
    result.attrs["affine"] = aff.tolist()
    return result


def _resample_3d(block, shp, kwargs):
    """A 3-D image: eager for numpy, one task for dask."""
    if isinstance(block, da.Array):
        block = block.rechunk(-1)
        out = da.map_blocks(
            lambda b: _resample_block(b, start=0, **kwargs),
            block,
            chunks=(*((n,) for n in shp), (1,)),
            dtype=kwargs["dtype"],
            meta=np.empty((0, 0, 0, 0), dtype=kwargs["dtype"]),
        )
        return out[..., 0]
    return _resample_block(block, start=0, **kwargs)[..., 0]


def _resample_dask(data: da.Array, shp, kwargs) -> da.Array:
    """Map the resampler over time chunks (spatial dims in one chunk)."""
    data = data.rechunk({0: -1, 1: -1, 2: -1})

    def run(block, block_info=None):
        start = block_info[0]["array-location"][3][0]
        return _resample_block(block, start=start, **kwargs)

    return da.map_blocks(
        run,
        data,
        chunks=(*((n,) for n in shp), data.chunks[3]),
        dtype=kwargs["dtype"],
        meta=np.empty((0, 0, 0, 0), dtype=kwargs["dtype"]),
    )
