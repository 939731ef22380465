"""The whole spatial chain for one study-size subject: time per step and peak memory of the task.

One simulated raw subject at the study's acquisition (native oblique EPI 64 x 64 x 43, 3.4 x 3.4 x
3.2 mm, 240 volumes, TR 2 s, interleaved slices, a 1 mm T1) goes through
:func:`brainarr.spatial.preprocess` onto the 3 mm study grid (61 x 73 x 61), step by step with
timings, then once more as :func:`brainarr.raw.ingest` runs it (``brainarr.raw._ingest._chain``:
files in, arrays out) in a fresh process whose peak resident memory is the worker's peak for one
subject. Accuracy against the simulator's truth is printed too.

Usage::

    python benchmarks/spatial.py [--volumes 240] [--t1-voxel 1.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

import brainarr as ba
from brainarr.exceptions import ObliqueAffineWarning

warnings.simplefilter("ignore", ObliqueAffineWarning)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(label: str, timings: dict, fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), _cpu()
    out = fn(*args, **kwargs)
    timings[label] = (time.perf_counter() - wall, _cpu() - cpu)
    return out


def _task_peak(row, grid) -> dict:
    """Run one subject's chain as the ingest task does, in a fresh process; its time and peak RSS."""
    code = f"""
import json, resource, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from brainarr.raw._ingest import _chain
from brainarr.datasets import study_grid
g = study_grid(3.0)
t = time.perf_counter()
out = _chain("sub-001", {str(row["bold"])!r}, {str(row["t1"])!r}, 2.0, {list(row["slice_times"])!r}, "z",
             np.asarray(g.attrs["affine"]), g.shape, {{}}, (3.0, 3.0))
print(json.dumps({{"wall": time.perf_counter() - t,
                   "cpu": resource.getrusage(resource.RUSAGE_SELF).ru_utime
                          + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
                   "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=240)
    parser.add_argument("--t1-voxel", type=float, default=1.0)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="brainarr-spatial-")
    start = time.perf_counter()
    truth = ba.datasets.simulate_raw(
        root, n_patients=1, n_controls=1, n_volumes=args.volumes, t1_voxel_size=args.t1_voxel, seed=0, n_movers=0
    )
    print(f"simulated 2 raw subjects in {time.perf_counter() - start:.1f} s under {root}")
    row = ba.raw.find_bids_raw(root).loc["sub-001"]
    bold = ba.io.load_nifti(row["bold"]).load()
    t1 = ba.io.load_nifti(row["t1"]).load()
    grid = ba.datasets.study_grid(3.0)
    print(f"EPI {bold.shape}, T1 {t1.shape}, grid {grid.shape}")

    t: dict[str, tuple[float, float]] = {}
    timed = _timed(
        "slice timing",
        t,
        lambda: ba.preprocess.slice_timing(bold.chunk(time=-1), np.asarray(row["slice_times"])).compute(),
    )
    r = _timed("realign", t, ba.spatial.realign, timed)
    c = _timed("coregister", t, ba.spatial.coregister, r["mean"], t1)
    n = _timed("normalise", t, ba.spatial.normalise, t1)
    _timed("segment", t, ba.spatial.segment, t1, normalisation=n)
    out = _timed("preprocess (estimation, again)", t, ba.spatial.preprocess, bold, t1, slice_timing=row["slice_times"])
    _timed("resample to 61 x 73 x 61 x T", t, lambda: out["bold"].values)

    motion = truth["subjects"]["sub-001"]["motion"]
    err = out["motion"].values - motion
    err[:, 3:] = np.degrees(err[:, 3:])
    print("\nstep                              wall (s)   CPU (s)")
    for k, (wall, cpu) in t.items():
        print(f"{k:<32} {wall:9.1f} {cpu:9.1f}")
    chain = sum(t[k][0] for k in ("slice timing", "realign", "coregister", "normalise", "segment"))
    print(f"{'chain (steps above + resample)':<32} {chain + t['resample to 61 x 73 x 61 x T'][0]:9.1f}")
    print("\nmotion error RMS per parameter (mm, deg):", np.sqrt((err**2).mean(0)).round(3))
    print("coregistration parameters (truth: identity):", c["params"].values.round(3))
    peak = _task_peak(row, grid)
    print(
        f"\none ingest task in a fresh process: {peak['wall']:.1f} s wall, {peak['cpu']:.1f} s CPU, "
        f"peak resident memory {peak['peak_gib']:.2f} GiB"
    )


if __name__ == "__main__":
    main()
