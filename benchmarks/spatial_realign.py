"""Accuracy, time and peak memory of brainarr.spatial.realign + reslice on a real run.

The run (64 x 64 x 29 x 260, oblique affine) gets known rigid motion (a slow drift plus
sudden jumps, up to 3 mm / 3 degrees) injected by resampling each volume (degree-5
B-spline); the 3 lowest and highest slices are set to 0 first so that the object stays
inside the field of view. The object's own motion is estimated once beforehand and composed
with the injected one as the ground truth.

Usage::

    python benchmarks/spatial_realign.py [path/to/sub-RAPIDTIDETEST.nii.gz]
"""

from __future__ import annotations

import os
import resource
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
import xarray as xr

from brainarr._core.rigid import rigid_matrix, rigid_params
from brainarr.spatial import realign, resample, reslice

DEFAULT = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "rapidtide-rest" / "sub-RAPIDTIDETEST.nii.gz"
)
DEG = np.pi / 180


def injected_motion(n: int, seed: int = 0) -> np.ndarray:
    """Drift plus jumps, clipped to 3 mm / 3 degrees (SPM units: mm, rad)."""
    rng = np.random.default_rng(seed)
    drift = np.cumsum(rng.normal(scale=0.08, size=(n, 6)), axis=0)
    jumps = np.zeros((n, 6))
    for t in rng.choice(np.arange(10, n), size=6, replace=False):
        jumps[t:] += rng.uniform(-1.5, 1.5, size=6)
    deg = np.clip(drift + jumps, -3, 3)
    deg[0] = 0
    return deg * np.array([1, 1, 1, DEG, DEG, DEG])


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (s)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(path: Path = DEFAULT) -> None:
    """Run the benchmark and print a table."""
    warnings.simplefilter("ignore")
    img = nib.load(path)
    vals = np.asarray(img.dataobj, dtype=np.float32)
    vals[:, :, :3] = 0
    vals[:, :, -3:] = 0
    aff = img.affine
    mask = np.asarray(nib.load(str(path).replace(".nii.gz", "_brainmask.nii.gz")).dataobj) > 0
    bold = xr.DataArray(vals, dims=("x", "y", "z", "time"), attrs={"affine": aff.tolist(), "tr": 1.5})
    own = realign(bold)["matrices"].values @ np.linalg.inv(aff)
    true = injected_motion(vals.shape[3])
    mats = rigid_matrix(true)
    moved = resample(bold, transform=mats, order=5).values
    del vals, bold
    lazy = xr.DataArray(
        da.from_array(moved, chunks=(-1, -1, -1, 20)),
        dims=("x", "y", "z", "time"),
        attrs={"affine": aff.tolist(), "tr": 1.5},
    )
    tracemalloc.start()
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = realign(lazy)
    c1, t1 = cpu_seconds(), time.perf_counter()
    resliced = reslice(lazy, out).values
    c2, t2 = cpu_seconds(), time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    expected = rigid_params(own @ mats)
    err = (out["motion"].values - expected) / np.array([1, 1, 1, DEG, DEG, DEG])
    vox = np.c_[np.argwhere(mask), np.ones(mask.sum())].T
    disp = np.linalg.norm((out["matrices"].values @ vox - (own @ mats @ aff) @ vox)[:, :3], axis=1)
    trans, rot = np.abs(true[:, :3]).max(), np.abs(true[:, 3:]).max() / DEG
    print(f"run {moved.shape}, injected max |trans| {trans:.2f} mm, |rot| {rot:.2f} deg")
    print(f"{'parameter':<10}{'RMS err':>10}{'max err':>10}  (mm / deg)")
    for name, col in zip(out["confound"].values, err.T, strict=True):
        print(f"{name:<10}{np.sqrt(np.mean(col**2)):>10.4f}{np.abs(col).max():>10.4f}")
    print(f"brain-voxel displacement error: RMS {np.sqrt(np.mean(disp**2)):.4f} mm, max {disp.max():.4f} mm")
    print(f"{'step':<20}{'wall s':>8}{'CPU s':>8}  (CPU = user + sys, {os.cpu_count()} cores)")
    for step, wall, cpu in (
        ("realign", t1 - t0, c1 - c0),
        ("reslice (computed)", t2 - t1, c2 - c1),
        ("total", t2 - t0, c2 - c0),
    ):
        print(f"{step:<20}{wall:>8.1f}{cpu:>8.1f}")
    sizes = f"data {moved.nbytes / 2**20:.0f} MiB, output {resliced.nbytes / 2**20:.0f} MiB"
    print(f"peak traced memory {peak:.0f} MiB ({sizes})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
