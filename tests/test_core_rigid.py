"""SPM's rigid-body parameterisation (spm_matrix / spm_imatrix) against scipy's rotations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from brainarr._core.rigid import rigid_matrix, rigid_params


def _reference(params: np.ndarray) -> np.ndarray:
    """T @ R1 @ R2 @ R3 with SPM's signs: R1 = Rx(-pitch), R2 = Ry(roll), R3 = Rz(-yaw) (intrinsic XYZ)."""
    out = np.eye(4)
    tx, ty, tz, pitch, roll, yaw = params
    out[:3, :3] = Rotation.from_euler("XYZ", [-pitch, roll, -yaw]).as_matrix()
    out[:3, 3] = tx, ty, tz
    return out


def test_rigid_matrix_matches_spm_convention(rng):
    params = rng.uniform(-1, 1, (50, 6)) * [10, 10, 10, 0.5, 0.5, 0.5]
    ours = rigid_matrix(params)
    for p, m in zip(params, ours, strict=True):
        np.testing.assert_allclose(m, _reference(p), atol=1e-12)


def test_spm_pitch_sign():
    # SPM12 spm_matrix: R1 = [1 0 0; 0 c s; 0 -s c]
    m = rigid_matrix(np.array([0, 0, 0, 0.3, 0, 0]))
    assert m[1, 2] == pytest.approx(np.sin(0.3)) and m[2, 1] == pytest.approx(-np.sin(0.3))


def test_rigid_params_inverts_matrix(rng):
    params = rng.uniform(-1, 1, (200, 6)) * [20, 20, 20, 3.0, 1.5, 3.0]
    np.testing.assert_allclose(rigid_params(rigid_matrix(params)), params, atol=1e-10)


def test_rigid_params_gimbal_lock():
    m = rigid_matrix(np.array([1.0, 2.0, 3.0, 0.4, np.pi / 2, -0.2]))
    np.testing.assert_allclose(rigid_matrix(rigid_params(m)), m, atol=1e-10)
