"""Benchmark the group statistics at the study's size (63 subjects, 61 x 73 x 61 grid, 3 mm).

Run: ``python benchmarks/stats.py [n_perm] [--tfce N] [--direct N] [--workers 1 2 [--worker-perms N]]``.
Prints wall time and
peak resident memory per step: the GLM and GRF steps, the voxel and cluster-mass permutation
tests, the TFCE permutation test with labelling at every height and with the incremental graph
method (per permutation), and, with ``--workers``, the TFCE test on a
``distributed.LocalCluster`` of that many single-threaded worker processes. A count of 0
skips that step; the paper-size measurement is::

    python benchmarks/stats.py 0 --tfce 5000 --direct 0

``python benchmarks/stats.py --clusters`` times the cluster bookkeeping alone on a rough t map
of the study grid with hundreds of clusters of both signs (smoothed noise, |t| >= 1.5 or the
GRF thresholds with k = 1): :func:`brainarr.stats.cluster_table` (without and with
sub-peaks), :func:`brainarr.stats.grf` with a given FWHM, and the per-permutation cluster
statistics of :func:`brainarr.stats.permutation` (63 maps, 100 permutations).
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
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


def main(n_perm: int = 200, *, n_tfce: int = 200, n_direct: int | None = None, workers=(), worker_perms=None) -> None:
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
    lazy = maps  # simulated where computed: on the workers of a cluster
    maps = step("simulate the 63 maps (not part of the analysis)", lambda: maps.persist())
    t_glm = time.perf_counter()
    res = step("ttest2 (graph)", lambda: bs.ttest2(maps, groups=("patient", "control"), mask=gm_np))
    res = step("ttest2 (compute t, p, beta, residuals)", lambda: res.persist())
    sm = step("smoothness", lambda: bs.smoothness(res["residuals"], gm_np).compute())
    print("  FWHM mm", np.round(sm.fwhm.values, 2), "dLh", float(sm.dlh))
    g = step("grf (voxel p 0.01, cluster p 0.05)", lambda: bs.grf(res, mask=gm_np, cluster_p=0.05).compute())
    print("  k =", g.attrs["cluster_size"], "clusters", g.sizes["cluster_id"])
    step("cluster_table", lambda: bs.cluster_table(g))
    print(f"{'GLM + GRF + cluster table, total':<40s} {time.perf_counter() - t_glm:8.2f} s", flush=True)
    mem = maps
    for stat in ("voxel", "cluster_mass") if n_perm else ():
        step(
            f"permutation {stat}, {n_perm} perms",
            lambda stat=stat: bs.permutation(mem, mask=gm_np, n_perm=n_perm, stat=stat).compute(),
        )
    module = importlib.import_module("brainarr.stats.permutation")
    default_min = module._GRAPH_MIN_VOXELS
    n_direct = max(2, n_tfce // 10) if n_direct is None else n_direct
    runs = (("labelling every height", 10**12, n_direct), ("incremental graph", default_min, n_tfce))
    for label, min_voxels, k in [r for r in runs if r[2] > 0]:
        module._GRAPH_MIN_VOXELS = min_voxels
        t0 = time.perf_counter()
        step(f"permutation tfce, {k} perms, {label}", lambda k=k: tfce_run(mem, gm_np, k))
        print(f"  {(time.perf_counter() - t0) / k:.3f} s per permutation", flush=True)
    module._GRAPH_MIN_VOXELS = default_min
    worker_perms = n_tfce if worker_perms is None else worker_perms
    for n_workers in workers:
        from distributed import Client, LocalCluster, wait

        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True) as cluster, Client(cluster) as c:
            # the maps live on the workers, as when they are read from a store by the workers
            on_cluster = c.persist(lazy)
            wait(on_cluster)
            tfce_run(on_cluster, gm_np, 2 * n_workers)  # warm up the workers
            t0 = time.perf_counter()
            step(
                f"permutation tfce, {worker_perms} perms, {n_workers} worker(s)",
                lambda on_cluster=on_cluster: tfce_run(on_cluster, gm_np, worker_perms),
            )
            per = (time.perf_counter() - t0) / worker_perms
            print(f"  {per:.3f} s per permutation; 5000 permutations ~ {5000 * per / 60:.1f} min", flush=True)
    print("load average", os.getloadavg())


def clusters_benchmark(n_perm: int = 100, repeats: int = 3) -> None:
    """Time cluster labelling, sizes and peaks (see the module docstring)."""
    grid = ba.datasets.study_grid()
    gm = ba.datasets.gm_mask(like=grid).compute()
    atlas = ba.datasets.aal(like=grid)
    noise = np.random.default_rng(5).standard_normal(grid.shape)
    t = ndi.gaussian_filter(noise, 0.8)
    t = np.where(gm.values, 2.0 * t / t.std(), 0.0)
    t_map = grid.copy(data=t.astype(float))
    thresholded = t_map.where(np.abs(t_map) >= 1.5, 0.0)
    table = bs.cluster_table(thresholded, atlas=atlas)
    print(
        f"t map {grid.shape}: {int((table.peak_t > 0).sum())} positive and {int((table.peak_t < 0).sum())} "
        f"negative clusters, largest {int(table['size'].max())} voxels, {int(np.count_nonzero(thresholded))} voxels"
    )

    def best(name, fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        print(f"{name:<48s} {min(times):8.3f} s (best of {repeats})", flush=True)
        return out

    best("cluster_table", lambda: bs.cluster_table(thresholded, atlas=atlas))
    best("cluster_table, subpeaks", lambda: bs.cluster_table(thresholded, atlas=atlas, subpeaks=True))
    ds = xr.Dataset({"t": t_map}, attrs={"dof": 59, "affine": grid.attrs["affine"]})
    g = best("grf (fwhm 2 mm given, voxel p 0.2)", lambda: bs.grf(ds, mask=gm, voxel_p=0.2, fwhm=2.0))
    print(f"  {g.sizes['cluster_id']} clusters of at least k = {g.attrs['cluster_size']} voxels")
    best("cluster_table of the grf Dataset", lambda: bs.cluster_table(g, atlas=atlas))
    n = 63
    maps = xr.DataArray(
        np.stack([ndi.gaussian_filter(np.random.default_rng(i).standard_normal(grid.shape), 0.8) for i in range(n)]),
        dims=("subject", "x", "y", "z"),
        coords={
            "subject": [f"sub-{i:02d}" for i in range(n)],
            **{d: grid[d] for d in ("x", "y", "z")},
            "group": ("subject", ["patient"] * 31 + ["control"] * 32),
        },
        attrs={"affine": grid.attrs["affine"]},
    )
    for stat in ("cluster_size", "cluster_mass"):

        def run(stat=stat):
            return bs.permutation(maps, mask=gm, n_perm=n_perm, stat=stat, voxel_p=0.2, covariates=()).compute()

        best(f"permutation {stat}, {n_perm} perms", run)


def tfce_run(maps, mask, n_perm):
    return bs.permutation(maps, mask=mask, n_perm=n_perm, stat="tfce").compute()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", action="store_true", help="time the cluster bookkeeping only")
    parser.add_argument("n_perm", nargs="?", type=int, default=200, help="voxel and cluster-mass permutations")
    parser.add_argument("--tfce", type=int, default=200, help="TFCE permutations (graph method)")
    parser.add_argument("--direct", type=int, default=None, help="TFCE permutations labelling every height")
    parser.add_argument("--workers", type=int, nargs="*", default=[], help="LocalCluster sizes to time")
    parser.add_argument("--worker-perms", type=int, default=None, help="TFCE permutations on each cluster")
    args = parser.parse_args()
    print("load average", os.getloadavg())
    if args.clusters:
        clusters_benchmark()
        raise SystemExit
    main(args.n_perm, n_tfce=args.tfce, n_direct=args.direct, workers=args.workers, worker_perms=args.worker_perms)
