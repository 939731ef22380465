"""Benchmark the group statistics at the study's size (63 subjects, 61 x 73 x 61 grid, 3 mm).

Run: ``python benchmarks/stats.py [n_perm]``. Prints wall time and peak resident memory per step.
"""

from __future__ import annotations

import resource
import sys
import time

import dask
import numpy as np
import scipy.ndimage as ndi
import xarray as xr

import brainarr as ba
import brainarr.stats as bs


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(name, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{name:<40s} {time.perf_counter() - t0:8.2f} s   peak RSS {peak_mib():8.0f} MiB", flush=True)
    return out


def main(n_perm: int = 200) -> None:
    grid = ba.datasets.study_grid()
    gm = ba.datasets.gm_mask(like=grid)
    rng = np.random.default_rng(0)
    n_p, n_c = 31, 32
    n = n_p + n_c
    shape = grid.shape
    sigma = 6.0 / 3.0 / np.sqrt(8 * np.log(2))

    def subject(i):
        noise = np.random.default_rng(i).standard_normal(shape)
        return (ndi.gaussian_filter(noise, sigma) + 1.0).astype(np.float32)

    parts = [dask.array.from_delayed(dask.delayed(subject)(i), shape, np.float32) for i in range(n)]
    data = dask.array.stack(parts).rechunk((1, 31, 37, 31))
    maps = xr.DataArray(
        data,
        dims=("subject", "x", "y", "z"),
        coords={
            "subject": [f"sub-{i:02d}" for i in range(n)],
            **{d: grid[d] for d in ("x", "y", "z")},
            "group": ("subject", ["patient"] * n_p + ["control"] * n_c),
            "age": ("subject", rng.uniform(30, 80, n)),
            "sex": ("subject", rng.choice(["M", "F"], n)),
        },
        attrs={"affine": grid.attrs["affine"], "source": "benchmark"},
    )
    gm_np = gm.compute()
    print(f"maps {maps.shape}, mask voxels {int(gm_np.sum())}, threads {dask.system.CPU_COUNT}")
    res = step("ttest2 (graph)", lambda: bs.ttest2(maps, groups=("patient", "control"), mask=gm_np))
    res = step("ttest2 (compute t, p, beta, residuals)", lambda: res.persist())
    sm = step("smoothness", lambda: bs.smoothness(res["residuals"], gm_np).compute())
    print("  FWHM mm", np.round(sm.fwhm.values, 2), "dLh", float(sm.dlh))
    g = step("grf (voxel p 0.01, cluster p 0.05)", lambda: bs.grf(res, mask=gm_np, cluster_p=0.05))
    print("  k =", g.attrs["cluster_size"], "clusters", g.sizes["cluster_id"])
    step("cluster_table", lambda: bs.cluster_table(g))
    mem = maps.persist()
    n_tfce = max(2, n_perm // 10)
    for stat, k in (("voxel", n_perm), ("cluster_mass", n_perm), ("tfce", n_tfce)):
        step(
            f"permutation {stat}, {k} perms",
            lambda stat=stat, k=k: bs.permutation(mem, mask=gm_np, n_perm=k, stat=stat).compute(),
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
