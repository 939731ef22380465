"""How the subject stage scales: with workers, with the cohort's size, and what the driver does.

For each cohort size, simulates the subjects (:func:`brainarr.datasets.simulate_cohort`) into
a Zarr store once, then for each number of workers runs the whole study
(:func:`brainarr.pipeline.run`) on a ``distributed.LocalCluster`` of single-threaded worker
processes, after removing the derived maps of the previous run. Measured per run:

* the subject stage's wall time, and per subject;
* the workers' peak resident set size (polled every 0.5 s) and the scheduler's;
* the driver's CPU seconds per subject during the subject stage (including the polling of
  the workers' memory, two small calls a second);
* the size of the store's root group attribute (bytes of JSON);
* the workers' CPU seconds per subject, against the same subject's maps computed alone in
  this process with the synchronous scheduler (the kernels without any orchestration).

Prints a Markdown table and the speed-up of the largest number of workers over one.

Usage::

    python benchmarks/study_scale.py --subjects 16 --workers 1 2          # speed-up
    python benchmarks/study_scale.py --subjects 16 256 --workers 2        # linearity
    python benchmarks/study_scale.py --subjects 63 --voxel-size 3 --workers 2   # full size
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

from cohort import MemoryMonitor, cpu_seconds


def _drop_derived(store: Path) -> None:
    """Remove the derived maps and their commit records: the next run computes every subject."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    state = dict(group.attrs["brainarr"])
    for name in state.get("derived", {}):
        if name in group:
            del group[name]
        if "_commits" in group and name in group["_commits"]:
            del group["_commits"][name]
    if "seed" in group:
        del group["seed"]
    state["derived"] = {}
    group.attrs["brainarr"] = state


def _scheduler_rss(dask_scheduler=None) -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _kernels_alone(store: Path, config) -> float:
    """Seconds to compute subject 0's maps in this process, inputs in memory, synchronous scheduler."""
    import dask

    from brainarr import study
    from brainarr.cohort import open_cohort

    cohort = open_cohort(store)
    masks = study.analysis_masks(cohort, config)
    bold = cohort["bold"].isel(subject=0, drop=True).load()
    bold = bold.drop_vars([c for c in bold.coords if c not in bold.dims])
    motion = study.motion_parameters(cohort["confounds"].isel(subject=0, drop=True)).load()
    motion = motion.drop_vars([c for c in motion.coords if c not in motion.dims])
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        maps = study.subject_maps(bold, motion, masks, config, config.metrics.families)
        dask.compute(*(maps[n].data for n in maps.data_vars), scheduler="sync")
        best = min(best, time.perf_counter() - start)
    return best


def run_once(store: Path, workers: int, config, out: Path, memory_limit: str) -> dict:
    import zarr
    from distributed import Client, LocalCluster

    from brainarr import pipeline

    _drop_derived(store)
    stage: dict[str, float] = {}
    real_stage = pipeline.run_subject_stage

    def timed_stage(*args, **kwargs):  # the driver's CPU during the subject stage only
        start = cpu_seconds()
        try:
            return real_stage(*args, **kwargs)
        finally:
            stage["driver_cpu"] = cpu_seconds() - start

    pipeline.run_subject_stage = timed_stage
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
            dashboard_address=None, silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
        MemoryMonitor(client) as monitor,
    ):  # fmt: skip
        monitor.poll()
        worker_cpu = dict(monitor.cpu)
        try:
            result = pipeline.run(config, store, client=client, progress=False, output=out)
        finally:
            pipeline.run_subject_stage = real_stage
        monitor.poll()
        scheduler = client.run_on_scheduler(_scheduler_rss)
        used = sum(cpu - worker_cpu.get(pid, 0.0) for pid, cpu in monitor.cpu.items())
    n = len(result.computed["alff"])
    attrs = zarr.open_group(str(store), mode="r").attrs["brainarr"]
    return {
        "subjects": n,
        "workers": workers,
        "subject_stage_s": result.timings["subjects"],
        "per_subject_s": result.timings["subjects"] / n,
        "group_s": result.timings["group"],
        "total_s": result.timings["total"],
        "worker_cpu_per_subject_s": used / n,
        "driver_cpu_per_subject_s": stage["driver_cpu"] / n,
        "worker_peak_mib": max(monitor.peak.values()) / 2**20,
        "scheduler_mib": scheduler / 2**20,
        "root_attrs_bytes": len(json.dumps(attrs, sort_keys=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[16])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--voxel-size", type=float, default=6.0)
    parser.add_argument("--n-volumes", type=int, default=230)
    parser.add_argument("--memory-limit", default="3GiB")
    parser.add_argument("--store-dir", default=None, help="where the stores go (default a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    args = parser.parse_args()

    from brainarr import io
    from brainarr.config import StudyConfig
    from brainarr.datasets import simulate_cohort

    config = StudyConfig()
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, figures=False))
    base = Path(args.store_dir or tempfile.mkdtemp(prefix="brainarr-scale-"))
    rows = []
    kernels = None
    for n in args.subjects:
        store = base / f"n{n}-{args.voxel_size:g}mm.zarr"
        if not store.exists():
            start = time.perf_counter()
            sim = simulate_cohort(n // 2, n - n // 2, voxel_size=args.voxel_size, n_volumes=args.n_volumes, seed=0)
            io.ingest(sim, store)
            print(f"{n} subjects: simulate + ingest {time.perf_counter() - start:.0f} s", flush=True)
        if kernels is None:
            kernels = _kernels_alone(store, config)
        for workers in args.workers:
            row = run_once(store, workers, config, base / "out", args.memory_limit)
            row["kernels_alone_s"] = kernels
            rows.append(row)
            print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(store)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    for n in args.subjects:
        same = {r["workers"]: r for r in rows if r["subjects"] == n}
        if 1 in same and len(same) > 1:
            most = max(same)
            speedup = same[1]["subject_stage_s"] / same[most]["subject_stage_s"]
            print(f"{n} subjects: {most} workers run the subject stage {speedup:.2f}x faster than 1")
    if not args.keep and args.store_dir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
