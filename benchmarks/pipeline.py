"""Wall time and peak memory of the whole study pipeline on a simulated cohort.

Simulates a cohort into a temporary Zarr store (not timed as part of the pipeline), then runs
:func:`brainarr.pipeline.run` twice: the first run computes every subject map, the second one
finds them all committed and only redoes the group level and the report. Prints the timings of
each step and the process's peak resident set size.

Usage::

    python benchmarks/pipeline.py                      # 31 + 32 subjects, 6 mm, 230 volumes
    python benchmarks/pipeline.py --voxel-size 3       # the study's grid (long)
    python benchmarks/pipeline.py --n 6 6 --n-volumes 100
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs=2, default=(31, 32), metavar=("PATIENTS", "CONTROLS"))
    parser.add_argument("--voxel-size", type=float, default=6.0)
    parser.add_argument("--n-volumes", type=int, default=230)
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args()

    from brainarr import io, pipeline
    from brainarr.config import StudyConfig
    from brainarr.datasets import simulate_cohort

    config = StudyConfig()
    config = dataclasses.replace(
        config,
        preprocess=dataclasses.replace(config.preprocess, discard=0),
        output=dataclasses.replace(config.output, figures=not args.no_figures),
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "bench.zarr")
        start = time.perf_counter()
        sim = simulate_cohort(*args.n, voxel_size=args.voxel_size, n_volumes=args.n_volumes, seed=0)
        io.ingest(sim, store)
        print(f"simulate + ingest: {time.perf_counter() - start:.1f} s")
        for label in ("first run", "second run (all maps committed)"):
            result = pipeline.run(config, store, progress=False, output=Path(tmp) / "out")
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
            print(f"{label}: {steps}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
