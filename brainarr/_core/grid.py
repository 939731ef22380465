"""Voxel grids: coordinates from an affine, and an affine from coordinates."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from nibabel.affines import voxel_sizes

from brainarr._core.dims import SPATIAL
from brainarr.exceptions import ObliqueAffineWarning

__all__ = ["is_axis_aligned", "spatial_coords", "voxel_size"]

_COORD_ATTRS = {
    "x": {"units": "mm", "long_name": "MNI x (left to right)", "axis": "X"},
    "y": {"units": "mm", "long_name": "MNI y (posterior to anterior)", "axis": "Y"},
    "z": {"units": "mm", "long_name": "MNI z (inferior to superior)", "axis": "Z"},
}


def is_axis_aligned(affine: np.ndarray, *, atol: float = 1e-6) -> bool:
    """True when voxel axis i maps to world axis i alone (diagonal 3 x 3 part; flips allowed).

    Stricter than a zero :func:`nibabel.affines.obliquity`, which also holds for permuted
    axes (an LIA or PIR image): the coordinates of :func:`spatial_coords` need voxel axis
    ``x`` along world x, ``y`` along y and ``z`` along z.
    """
    block = np.asarray(affine, float)[:3, :3]
    off = block - np.diag(np.diag(block))
    return bool(np.all(np.abs(off) <= atol * max(1.0, np.abs(block).max())) and np.all(np.diag(block) != 0))


def voxel_size(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm of a 4 x 4 affine (:func:`nibabel.affines.voxel_sizes`).

    Parameters
    ----------
    affine : array (4, 4)
        Voxel-to-world matrix.

    Returns
    -------
    numpy.ndarray (3,) of float
        The norms of the first three columns, in mm.
    """
    return voxel_sizes(np.asarray(affine, float))


def spatial_coords(affine: np.ndarray, shape: tuple[int, int, int], *, source: str = "") -> dict[str, xr.Variable]:
    """Coordinates of voxel centres for ``x``, ``y``, ``z``.

    For an axis-aligned affine these are world millimetres; for an oblique affine they are
    voxel indices, with an :class:`~brainarr.exceptions.ObliqueAffineWarning` (the exact
    affine stays in ``attrs``).

    Parameters
    ----------
    affine : array (4, 4)
        Voxel-to-world matrix.
    shape : tuple of int
        Grid size.
    source : str
        File name for the warning.

    Returns
    -------
    dict of xarray.Variable
        One 1-D coordinate per spatial dim.
    """
    affine = np.asarray(affine, float)
    coords = {}
    if is_axis_aligned(affine):
        for i, dim in enumerate(SPATIAL):
            values = affine[i, i] * np.arange(shape[i]) + affine[i, 3]
            coords[dim] = xr.Variable(dim, values, _COORD_ATTRS[dim])
    else:
        warnings.warn(
            f"{source or 'image'} has an oblique affine; spatial coordinates are voxel indices "
            "(the exact affine is kept in attrs['affine'])",
            ObliqueAffineWarning,
            stacklevel=3,
        )
        for i, dim in enumerate(SPATIAL):
            coords[dim] = xr.Variable(
                dim, np.arange(shape[i], dtype=float), {"units": "1", "long_name": f"voxel index {dim}"}
            )
    return coords
