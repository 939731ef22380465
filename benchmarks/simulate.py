"""Benchmark: generate full-size simulated subjects (61 x 73 x 61 x 230, 3 mm).

Prints the time to build the cohort graph, the time to generate one subject (all of its chunks,
reduced chunk by chunk so the subject is never held whole), the peak traced memory of that
computation, and the time and peak memory to stream a few subjects into a Zarr store.

Usage: python benchmarks/simulate.py [--workers 2] [--zarr-subjects 2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
import warnings

import dask

import brainarr.datasets as bd


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--zarr-subjects", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    t0 = time.perf_counter()
    cohort = bd.simulate_cohort(31, 32)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    bd.simulate_cohort(31, 32, seed=1)
    t_rebuild = time.perf_counter() - t0
    bold = cohort.bold
    subject_bytes = bold[0].nbytes
    chunk = tuple(c[0] for c in bold.chunks[1:4])
    chunk_bytes = chunk[0] * chunk[1] * chunk[2] * bold.sizes["time"] * 4
    print(f"cohort: {bold.shape} float32, {_mib(bold.nbytes)} in all, chunks {chunk} (+ time)")
    print(f"build graph (63 subjects): first {t_build:.2f} s (tissue/atlas maps), cached {t_rebuild:.2f} s")
    n_chunks = bold.data.blocks[0].npartitions
    print(f"one subject: {_mib(subject_bytes)} in {n_chunks} chunks of ~{_mib(chunk_bytes)}")

    with dask.config.set(scheduler="threads", num_workers=args.workers):
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t0 = time.perf_counter()
        total = bold[0].data.sum(dtype="float64").compute()
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"generate one full-size subject ({args.workers} threads): {elapsed:.2f} s, "
        f"peak traced {_mib(peak)} ({peak / chunk_bytes:.1f} chunks, {peak / subject_bytes:.2f} subjects), "
        f"max RSS growth {_mib((rss1 - rss0) * 1024)}  [sum {total:.4g}]"
    )

    if args.zarr_subjects:
        n = args.zarr_subjects
        part = cohort.isel(subject=slice(0, n))
        with (
            tempfile.TemporaryDirectory() as tmp,
            dask.config.set(scheduler="threads", num_workers=args.workers),
        ):
            tracemalloc.start()
            t0 = time.perf_counter()
            for i in range(n):
                one = part.isel(subject=slice(i, i + 1))
                if i == 0:
                    one.to_zarr(f"{tmp}/sim.zarr", mode="w")
                else:
                    one[["bold", "confounds"]].to_zarr(f"{tmp}/sim.zarr", append_dim="subject")
            elapsed = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        per = elapsed / n
        print(f"stream {n} subjects to Zarr: {elapsed:.2f} s ({per:.2f} s/subject), peak traced {_mib(peak)}")


if __name__ == "__main__":
    main()
