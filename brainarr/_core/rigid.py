"""Rigid-body transforms in SPM's parameterisation (``spm_matrix`` / ``spm_imatrix``).

SPM writes head motion as six numbers per volume (``rp_*.txt``): translations ``x, y, z`` in mm
and rotations pitch, roll, yaw in radians about the x, y and z axes. The 4 x 4 matrix they stand
for is ``T @ R1 @ R2 @ R3`` (Friston et al. 1995; SPM12 ``spm_matrix.m``): rotations first (yaw,
then roll, then pitch), then the translation. brainarr uses this convention everywhere a rigid
transform is written as parameters (realignment, coregistration, framewise displacement).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rigid_matrix", "rigid_params"]


def rigid_matrix(params: np.ndarray) -> np.ndarray:
    """4 x 4 rigid-body matrices from SPM parameters.

    Parameters
    ----------
    params : array (..., 6)
        ``trans_x, trans_y, trans_z`` (mm) and ``rot_x, rot_y, rot_z`` (pitch, roll, yaw; rad).

    Returns
    -------
    numpy.ndarray (..., 4, 4)
        ``T @ R1(pitch) @ R2(roll) @ R3(yaw)`` as SPM12's ``spm_matrix``.
    """
    params = np.asarray(params, dtype=np.float64)
    tx, ty, tz, p, r, y = np.moveaxis(params, -1, 0)
    one, zero = np.ones_like(p), np.zeros_like(p)
    cp, sp, cr, sr, cy, sy = np.cos(p), np.sin(p), np.cos(r), np.sin(r), np.cos(y), np.sin(y)
    r1 = np.stack([one, zero, zero, zero, cp, sp, zero, -sp, cp], -1).reshape(*p.shape, 3, 3)
    r2 = np.stack([cr, zero, sr, zero, one, zero, -sr, zero, cr], -1).reshape(*p.shape, 3, 3)
    r3 = np.stack([cy, sy, zero, -sy, cy, zero, zero, zero, one], -1).reshape(*p.shape, 3, 3)
    out = np.zeros((*p.shape, 4, 4))
    out[..., :3, :3] = r1 @ r2 @ r3
    out[..., :3, 3] = np.stack([tx, ty, tz], -1)
    out[..., 3, 3] = 1.0
    return out


def rigid_params(matrix: np.ndarray) -> np.ndarray:
    """SPM parameters of rigid-body matrices: the inverse of :func:`rigid_matrix`.

    Parameters
    ----------
    matrix : array (..., 4, 4)
        Rigid-body matrices (a rotation and a translation; no zoom or shear).

    Returns
    -------
    numpy.ndarray (..., 6)
        ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (rad), with roll in
        [-pi/2, pi/2] as SPM12's ``spm_imatrix``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    rot = m[..., :3, :3]
    roll = np.arcsin(np.clip(rot[..., 0, 2], -1.0, 1.0))
    pitch = np.arctan2(rot[..., 1, 2], rot[..., 2, 2])
    yaw = np.arctan2(rot[..., 0, 1], rot[..., 0, 0])
    # gimbal lock (roll = +-90 degrees): pitch and yaw are not separable; put it all in yaw
    lock = np.abs(np.cos(roll)) < 1e-9
    if np.any(lock):
        pitch = np.where(lock, 0.0, pitch)
        yaw = np.where(lock, np.arctan2(-rot[..., 1, 0], rot[..., 1, 1]), yaw)
    return np.stack([m[..., 0, 3], m[..., 1, 3], m[..., 2, 3], pitch, roll, yaw], axis=-1)
