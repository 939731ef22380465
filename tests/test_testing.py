"""Tests for the test helpers users can reuse (brainarr.testing)."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

from brainarr.testing import make_affine, make_maps, sigkill_when


def test_make_maps_layout_and_chunks():
    values = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    maps = make_maps(values, chunks={"x": 2}, group=["patient", "control"], age=[40.0, 50.0])
    assert maps.dims == ("subject", "x", "y", "z")
    assert maps["subject"].values.tolist() == ["sub-00", "sub-01"]
    assert maps["group"].values.tolist() == ["patient", "control"]
    affine = make_affine()
    # voxel (1, 2, 3) sits at affine @ (1, 2, 3, 1) in mm
    mm = affine @ np.array([1, 2, 3, 1.0])
    assert (float(maps.x[1]), float(maps.y[2]), float(maps.z[3])) == tuple(mm[:3])
    assert maps.chunks[1] == (2, 1)
    assert not hasattr(maps["age"].data, "dask")  # coordinates stay in memory
    np.testing.assert_array_equal(maps.values, values)


def _sleeper(seconds: float) -> subprocess.Popen:
    code = f"import time; time.sleep({seconds})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_when_kills_at_the_moment():
    proc = _sleeper(30)
    calls = []

    def third_call():
        calls.append(1)
        return "now" if len(calls) >= 3 else None

    assert sigkill_when(proc, third_call, timeout=20) == "now"
    assert proc.returncode == -signal.SIGKILL
    assert len(calls) == 3


def test_sigkill_when_fails_if_the_moment_never_comes():
    proc = _sleeper(0)
    with pytest.raises(AssertionError, match="never caught the moment"):
        sigkill_when(proc, lambda: False, timeout=20, what="the moment")
    assert proc.poll() == 0
