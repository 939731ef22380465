"""Memory bounds: whole-brain degree centrality and ReHo without an N x N matrix in memory.

Each test runs the computation in a fresh Python process and reads that process's peak
resident memory (``VmHWM`` in ``/proc/self/status``) before and after. ``VmHWM`` belongs to
the process itself (``ru_maxrss`` of children is inherited across fork/exec and would report
the parent's peak), so the difference is the computation's own peak growth.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc"),
]

#: 32 x 32 x 30 = 30,720 in-mask voxels: the N x N float32 correlation matrix is 3.8 GB
GRID = (32, 32, 30)
N_TIME = 40
BUDGET_MB = 500

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import dask
    import numpy as np
    import xarray as xr
    from brainarr.metrics import degree_centrality, reho
    from brainarr.testing import make_affine

    def peak_mb():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    which = sys.argv[1]
    shape = tuple(json.loads(sys.argv[2]))
    n_time = int(sys.argv[3])
    rng = np.random.default_rng(5)
    # a shared component gives many correlations above the threshold
    common = rng.standard_normal(n_time).astype(np.float32)
    data = rng.standard_normal((*shape, n_time)).astype(np.float32)
    data += rng.uniform(0, 1.2, shape).astype(np.float32)[..., None] * common
    bold = xr.DataArray(
        data, dims=("x", "y", "z", "time"), attrs={"affine": make_affine(3.0).tolist(), "tr": 2.0}
    ).chunk({"x": 16, "y": 16, "z": -1, "time": -1})
    mask = xr.DataArray(np.ones(shape, bool), dims=("x", "y", "z"))
    before = peak_mb()
    with dask.config.set(scheduler="threads", num_workers=2):
        if which == "dc":
            out = degree_centrality(bold, mask, threshold=0.25).compute()
            result = out["dc_binary"].values
        else:
            result = reho(bold, mask).compute().values
    after = peak_mb()
    # independent check of a few voxels against plain numpy
    flat = data.reshape(-1, n_time).astype(np.float64)
    z = (flat - flat.mean(1, keepdims=True)) / flat.std(1, ddof=1, keepdims=True)
    picks = [0, 12345, flat.shape[0] - 1]
    checks = []
    for i in picks:
        if which == "dc":
            r = z @ z[i] / (n_time - 1)
            r[i] = 0
            checks.append([float(result.reshape(-1)[i]), float((r > 0.25).sum())])
    print(json.dumps({"before": before, "after": after, "checks": checks,
                      "n": int(mask.sum()), "finite": bool(np.isfinite(result).all()),
                      "range": [float(result.min()), float(result.max())]}))
    """
)


def _run(which: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, which, json.dumps(GRID), str(N_TIME)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(150)
def test_degree_centrality_peak_memory_is_bounded():
    report = _run("dc")
    n = report["n"]
    assert n * n * 4 / 2**20 > 7 * BUDGET_MB  # the full matrix would not fit the budget
    growth = report["after"] - report["before"]
    assert growth < BUDGET_MB, f"peak grew by {growth:.0f} MB"
    assert report["finite"]
    for got, expected in report["checks"]:
        # float32 block products against float64: a correlation within ~1e-6 of the
        # threshold may fall on either side
        assert abs(got - expected) <= 2
    assert report["range"][1] > 1000  # a dense graph, not a trivial one


@pytest.mark.timeout(150)
def test_reho_peak_memory_is_bounded():
    report = _run("reho")
    growth = report["after"] - report["before"]
    assert growth < BUDGET_MB, f"peak grew by {growth:.0f} MB"
    assert report["finite"]
    assert 0 < report["range"][1] <= 1
